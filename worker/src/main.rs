//! `worker`: consumes sign-in jobs from the database `api` enqueues them in.
//! Run any number of them next to `api` with `worker.embedded = false`.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::Parser;
use worker::{
    WorkerState,
    config::{Process, Settings},
    crypto::Keys,
    db::Database,
    jobs::JobQueue,
    metrics::MetricsListener,
    operations::OperationEvents,
    providers::ProviderRegistry,
    shutdown, telemetry,
};

/// The same allocator as `api`'s (see its `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Consume social-signin's sign-in jobs.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// TOML configuration file (default: `signin.toml` when present).
    #[arg(long, env = "SIGNIN_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Arc::new(Settings::load(cli.config.as_deref())?);
    let _logs = telemetry::init(settings.log.format);
    let db = Database::connect(&settings, Process::Worker).await?;
    db.migrate().await?;
    let keys = Arc::new(Keys::load(&settings)?);
    let providers =
        Arc::new(ProviderRegistry::from_settings(&settings).context("configuring providers")?);
    providers.warm_up();
    let metrics = MetricsListener::bind_first_free(
        &settings.worker.metrics_addresses(),
        "worker.metrics_listen",
    )
    .await?;
    // Ends with the process.
    tokio::spawn(metrics.serve(db.reader.pool().clone(), std::future::pending()));
    let queue = JobQueue::new(&db, settings.worker.concurrency, keys.clone());
    queue.watch_pushes_of_other_processes(&db);
    let state = WorkerState {
        db: db.conn.clone(),
        writer: db.writer.clone(),
        reader: db.reader.clone(),
        audit: worker::audit::AuditLog::start(db.writer.clone()),
        settings,
        providers,
        keys,
        events: OperationEvents::default(),
    };
    worker::run(state, queue, shutdown::signal()).await
}
