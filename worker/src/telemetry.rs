//! Logging for both binaries: `tracing` with an `EnvFilter` from `RUST_LOG`
//! (default `info`). apalis-sqlite logs through `log`; the fmt subscriber bridges it.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// `RUST_LOG`, else `info` without PostgreSQL's "already exists, skipping" notices.
fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"))
}

/// Installs the process-wide subscriber. Call once, first thing in `main`.
pub fn init(format: LogFormat) {
    match format {
        // Colours only for a terminal: a log file or journal gets plain text.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_env_filter(filter())
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter())
            .init(),
    }
}

/// For tests: output goes through the test harness (shown only for failing tests),
/// and a second call is harmless.
pub fn init_for_test() {
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,worker=debug,api=debug"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_test_writer())
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(|| TestLogWriter),
        )
        .try_init();
}

/// Everything logged so far by a test process (after [`init_for_test`]), so tests
/// can check that no secret ever reaches a log line.
pub fn captured_test_logs() -> String {
    let logs = TEST_LOGS.lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&logs).into_owned()
}

static TEST_LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

/// Appends to [`TEST_LOGS`].
struct TestLogWriter;

impl std::io::Write for TestLogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        TEST_LOGS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// reqwest is built without a default TLS provider (one crypto stack: ring);
/// install it before the first client is built. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
