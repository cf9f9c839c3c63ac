//! Logging for both binaries: `tracing` with an `EnvFilter` from `RUST_LOG`
//! (default `info`). apalis-sqlite logs through `log`; the fmt subscriber bridges it.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// `RUST_LOG`, else `info` without PostgreSQL's "already exists, skipping" notices.
fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"))
}

/// Lines waiting for the log writer's thread at most. The queue's slots are
/// allocated up front: the crate's default (128,000) took 6 MB of RSS.
const QUEUED_LINES: usize = 8192;

/// Keeps the log writer's thread; the lines logged before it drops are written
/// out then. Hold it for the whole of `main`.
#[must_use = "dropped, it stops the log output"]
pub struct LogGuard {
    _writer: tracing_appender::non_blocking::WorkerGuard,
}

/// Installs the process-wide subscriber. Call once, first thing in `main`, and
/// keep the guard.
///
/// Lines go to stdout from a thread of their own, through a buffer that thread
/// writes out whenever no more lines are queued: under load one `write` per burst
/// of lines instead of one per line on the threads that serve requests (that was
/// 5 % of the api's CPU under `signin_bench --status-load`), and at once when
/// idle. Never lossy: a full queue ([`QUEUED_LINES`]) makes the logging thread
/// wait.
pub fn init(format: LogFormat) -> LogGuard {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    match format {
        // Colours only for a terminal: a log file or journal gets plain text.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(terminal)
            .with_env_filter(filter())
            .with_writer(writer)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter())
            .with_writer(writer)
            .init(),
    }
    LogGuard { _writer: guard }
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
