//! The job queue: apalis' SQLite or PostgreSQL storage in the application database,
//! behind one `push`, so the web tier never names a backend. Also the worker loop
//! that consumes it.

mod enqueue;
mod exchange;
mod handler;
mod handoff;
mod payload;
mod push_watch;
pub mod sign_in;
mod sign_in_error;
mod sweeper;
mod wakeups;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use apalis::prelude::*;
use apalis_postgres::{PostgresStorage, Pubsub};
use apalis_sqlite::SqliteStorage;
use futures::channel::mpsc;
use handoff::Handoff;
use wakeups::Wakeups;

pub(crate) use sweeper::spawn_sweeper;

use crate::{
    WorkerState,
    db::{Database, DbPool},
};
pub use sign_in::{EXCHANGE_INTERRUPTED, QueuedJob, SignInError, SignInJob};

/// The apalis queue name: explicit, so renaming a module cannot orphan jobs.
pub const QUEUE_NAME: &str = "signin";
/// Total runs of one job, counting re-runs after a worker crash.
const MAX_ATTEMPTS: usize = 3;
/// Heartbeat × missed beats: how long a dead worker's jobs wait before re-running.
const HEARTBEAT: Duration = Duration::from_secs(5);
const MISSED_HEARTBEATS: usize = 3;
/// Polling backstop; pushes in this process wake the embedded worker at once,
/// separate workers watch SQLite's commits, and PostgreSQL workers LISTEN for inserts.
const SQLITE_POLL: Duration = Duration::from_millis(200);
const POSTGRES_POLL: Duration = Duration::from_secs(1);

#[derive(Clone)]
enum Storage {
    Sqlite(SqliteStorage<QueuedJob>),
    Postgres(PostgresStorage<QueuedJob>),
}

/// Where sign-in jobs go. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct JobQueue {
    storage: Storage,
    /// Pushed to by `push`; each worker run relays it into its poll strategy.
    wake: Arc<tokio::sync::Notify>,
    concurrency: usize,
    /// The polling backstop; see [`JobQueue::with_poll_interval`].
    poll: Option<Duration>,
    /// Seals each job's secrets before it is stored.
    keys: Arc<crate::crypto::Keys>,
    /// Jobs in flight in this process, whichever way they came.
    slots: Slots,
    /// With the embedded worker: jobs queued here run here; see `handoff`.
    handoff: Option<Arc<Handoff>>,
}

/// The `concurrency` slots of one process's jobs: the queue's and the handed-over
/// ones together run no more than that many at once.
#[derive(Clone, Debug)]
pub struct Slots(Arc<tokio::sync::Semaphore>);

impl Slots {
    async fn take(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        // Never closed.
        self.0.acquire().await.ok()
    }
}

impl std::fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobQueue")
    }
}

/// What [`JobQueue::start`] did.
#[derive(Debug)]
pub enum Started {
    /// A new pending operation, its job queued.
    Queued(entity::async_operation::Model),
    /// The `state` was claimed before by this browser: its operation (whose job
    /// the first claim queued).
    Existing(entity::async_operation::Model),
    /// The `state` is held by another browser's operation.
    Foreign,
    /// A new operation whose job could not be queued: it is now `error`
    /// (`queue_unavailable`).
    Unqueued(entity::async_operation::Model),
}

/// Pushing a job failed; the caller marks the operation `error`.
#[derive(Debug, thiserror::Error)]
#[error("could not enqueue the job: {0}")]
pub struct QueueError(String);

impl JobQueue {
    /// The queue in `db`; `concurrency` sizes fetch batches so one worker does not
    /// hoard jobs others could run.
    pub fn new(db: &Database, concurrency: usize, keys: Arc<crate::crypto::Keys>) -> Self {
        let storage = match &db.pool {
            DbPool::Sqlite(pool) => {
                Storage::Sqlite(SqliteStorage::new(pool).with_config(sqlite_config(concurrency)))
            }
            DbPool::Postgres(pool) => Storage::Postgres(
                PostgresStorage::new(pool).with_config(postgres_config(concurrency)),
            ),
        };

        Self {
            storage,
            wake: Arc::new(tokio::sync::Notify::new()),
            concurrency,
            poll: None,
            keys,
            slots: Slots(Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)))),
            handoff: None,
        }
    }

    /// For the worker embedded in `api`: a job this process queues runs on this
    /// process's worker at once, without waiting for the queue to hand it out (see
    /// `handoff`).
    #[must_use]
    pub fn run_own_jobs_in_process(mut self) -> Self {
        let backend = match self.storage {
            Storage::Sqlite(_) => sea_orm::DbBackend::Sqlite,
            Storage::Postgres(_) => sea_orm::DbBackend::Postgres,
        };
        let holder = format!("{}-in-process", worker_name());
        self.handoff = Some(Arc::new(Handoff::new(
            holder,
            self.slots.0.clone(),
            backend,
        )));
        self
    }

    /// Enqueues `job`, keyed by its operation so a duplicate push is harmless.
    pub async fn push(&self, job: SignInJob) -> Result<(), QueueError> {
        let key = job.operation_id.to_string();
        let task = TaskBuilder::new(QueuedJob::seal(&job, &self.keys))
            .max_attempts(MAX_ATTEMPTS)
            .idempotency_key(&key)
            .build();
        let result = match &self.storage {
            Storage::Sqlite(s) => s.clone().push_task(task).await.map_err(|e| e.to_string()),
            Storage::Postgres(s) => s.clone().push_task(task).await.map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            // PostgreSQL reports a repeated idempotency key; the job is queued already.
            if !e.contains("idx_jobs_idempotency_key") {
                return Err(QueueError(e));
            }
        }
        // Wake an embedded worker now instead of at its next poll.
        self.wake.notify_one();
        Ok(())
    }

    /// Wakes an embedded worker now instead of at its next poll.
    fn wake(&self) {
        self.wake.notify_one();
    }

    /// Polls for jobs every `interval` instead of the backend's default (200 ms on
    /// SQLite, 1 s on PostgreSQL). Tests stretch it to show that a job reached a
    /// worker through a wake-up, not a poll.
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll = Some(interval);
        self
    }

    /// For a `worker` process beside `api` on SQLite: notice jobs other processes
    /// push within milliseconds rather than at the next poll (see `push_watch`).
    /// Does nothing on PostgreSQL, where workers `LISTEN` for pushes, nor on
    /// SQLite in memory, which no other process can reach.
    pub fn watch_pushes_of_other_processes(&self, db: &Database) {
        if let Some(file) = db.sqlite_file() {
            push_watch::spawn(file.to_path_buf(), self.wake.clone());
        }
    }

    /// Consumes jobs until `shutdown` resolves, then finishes the ones in flight:
    /// the queue's, and the ones this process hands itself (see
    /// [`JobQueue::run_own_jobs_in_process`]). When the queue's worker stops on an
    /// error (the database went away), it is started again with backoff, so neither
    /// binary dies with the database.
    pub async fn run_worker(&self, state: WorkerState, shutdown: Shutdown) -> anyhow::Result<()> {
        let in_process = {
            let (state, shutdown) = (state.clone(), shutdown.clone());
            async move {
                if let Some(handoff) = &self.handoff {
                    handoff.run(state, shutdown).await;
                }
            }
        };
        let (_, queue) = tokio::join!(in_process, self.run_queue(state, shutdown));
        queue
    }

    async fn run_queue(&self, state: WorkerState, shutdown: Shutdown) -> anyhow::Result<()> {
        let mut backoff = Duration::from_secs(1);
        loop {
            let result = self.run_once(state.clone(), shutdown.clone()).await;
            if shutdown.peek().is_some() {
                return result;
            }
            match result {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        retry_in_s = backoff.as_secs(),
                        "worker stopped; restarting"
                    );
                    tokio::select! {
                        () = shutdown.clone() => return Ok(()),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn run_once(&self, state: WorkerState, shutdown: Shutdown) -> anyhow::Result<()> {
        let name = worker_name();
        let stop = async move {
            shutdown.await;
            Ok::<(), std::io::Error>(())
        };
        // Relay in-process pushes into this run's poll strategy; the relay ends
        // with the run (its receiver is dropped).
        let (wake_tx, wake_rx) = mpsc::channel::<()>(1);
        let notify = self.wake.clone();
        tokio::spawn(async move {
            let mut wake_tx = wake_tx;
            loop {
                notify.notified().await;
                if let Err(e) = wake_tx.try_send(()) {
                    if e.is_disconnected() {
                        break;
                    }
                }
            }
        });
        tracing::info!(worker.name = %name, concurrency = self.concurrency, "worker started");
        match &self.storage {
            Storage::Sqlite(storage) => {
                let strategy = Wakeups::every(self.poll.unwrap_or(SQLITE_POLL)).on(wake_rx);
                let backend = storage.clone().poll_with_strategy(strategy);
                WorkerBuilder::new(name.as_str())
                    .backend(backend)
                    .data(state)
                    .data(self.slots.clone())
                    .concurrency(self.concurrency)
                    .enable_tracing()
                    .build(handler::process)
                    .run_until(stop)
                    .await
            }
            Storage::Postgres(storage) => {
                let pubsub = Pubsub::new(storage.pool().clone(), QUEUE_NAME.to_owned());
                let strategy = Wakeups::every(self.poll.unwrap_or(POSTGRES_POLL))
                    .looking_again()
                    .on(pubsub)
                    .on(wake_rx);
                let backend = storage.clone().poll_with_strategy(strategy);
                WorkerBuilder::new(name.as_str())
                    .backend(backend)
                    .data(state)
                    .data(self.slots.clone())
                    .concurrency(self.concurrency)
                    .enable_tracing()
                    .build(handler::process)
                    .run_until(stop)
                    .await
            }
        }
        .context("the worker stopped with an error")?;
        tracing::info!(worker.name = %name, "worker stopped");
        Ok(())
    }
}

/// The shutdown signal, shared by everything that must stop with it.
pub type Shutdown = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

fn sqlite_config(concurrency: usize) -> apalis_sqlite::Config {
    apalis_sqlite::Config::default()
        .queue(QUEUE_NAME)
        .batch_size(concurrency.max(1))
        .heartbeat_interval(HEARTBEAT)
        .missed_heartbeats(MISSED_HEARTBEATS)
}

fn postgres_config(concurrency: usize) -> apalis_postgres::Config {
    apalis_postgres::Config::default()
        .queue(QUEUE_NAME)
        .batch_size(concurrency.max(1))
        .heartbeat_interval(HEARTBEAT)
        .missed_heartbeats(MISSED_HEARTBEATS)
}

/// Unique among live workers: apalis refuses a name whose owner looks alive.
fn worker_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".to_owned());
    format!(
        "signin-{host}-{}-{}",
        std::process::id(),
        &crate::crypto::random_token(6)
    )
}
