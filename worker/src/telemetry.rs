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
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter()).init(),
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_test_writer()
        .try_init();
}

/// reqwest is built without a default TLS provider (one crypto stack: ring);
/// install it before the first client is built. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
