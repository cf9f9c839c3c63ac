//! The core of social-signin, shared by both binaries: configuration, database,
//! providers, identity rules and the sign-in job. `api` links it to run the
//! embedded worker; nothing here knows about the web framework.

pub mod accounts;
pub mod audit;
pub mod commit_watch;
pub mod config;
pub mod crypto;
pub mod db;
pub mod finishes;
pub mod jobs;
pub mod linking;
pub mod metrics;
pub mod operations;
pub mod passwords;
#[cfg(test)]
mod proptest_config;
pub mod provider_tokens;
pub mod providers;
pub mod reader;
pub mod recent_finishes;
pub mod redemption;
pub mod replay;
pub mod running_here;
pub mod shutdown;
mod sqlite;
pub mod sweep;
pub mod telemetry;
pub mod writer;

use std::{future::Future, sync::Arc};

use anyhow::Context;
use futures::FutureExt;

/// What a sign-in job needs; registered with the apalis worker as `Data`.
#[derive(Clone, Debug)]
pub struct WorkerState {
    /// Writes, transactions and reads that must see them.
    pub db: sea_orm::DatabaseConnection,
    /// The hot writes of a sign-in; see [`writer`].
    pub writer: writer::Writer,
    /// Reads that may run beside writes; see [`reader`].
    pub reader: reader::Reader,
    pub settings: Arc<config::Settings>,
    pub providers: Arc<providers::ProviderRegistry>,
    pub keys: Arc<crypto::Keys>,
    /// The audit log's writer.
    pub audit: audit::AuditLog,
    /// Wakes long-polling status requests when the worker runs inside `api`.
    pub events: operations::OperationEvents,
}

/// Runs a worker on `queue` until `shutdown`: consumes sign-in jobs with
/// `worker.concurrency` in flight and expires operations no job finished in time.
pub async fn run(
    state: WorkerState,
    queue: jobs::JobQueue,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shutdown = shutdown.boxed().shared();
    jobs::spawn_sweeper(state.clone(), queue.clone(), shutdown.clone());
    // A task of the runtime: awaited from `main`, the worker and every job it drives
    // would run on `main`'s own thread, beside the runtime's workers.
    tokio::spawn(async move { queue.run_worker(state, shutdown).await })
        .await
        .context("the worker panicked")?
}
