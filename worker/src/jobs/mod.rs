//! The job queue: apalis' SQLite or PostgreSQL storage in the application database,
//! behind one `push`, so the web tier never names a backend. Also the worker loop
//! that consumes it.

mod exchange;
mod push_watch;
pub mod sign_in;
mod sign_in_error;

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use apalis::prelude::*;
use apalis_postgres::{PostgresStorage, Pubsub};
use apalis_sqlite::SqliteStorage;
use futures::{FutureExt, channel::mpsc};

use crate::{
    WorkerState,
    db::{Database, DbPool},
    operations::{self, Claim, NewOperation},
    writer::{WriteConn, Writer},
};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
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
        }
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

    /// Records `new` (claiming its `state`, if any; see [`operations::claim_state`])
    /// and queues `job` for it. On SQLite both go in one write; on PostgreSQL the job
    /// is pushed after the operation commits. An operation whose job could not be
    /// queued is ended `queue_unavailable` and returned as [`Started::Unqueued`].
    pub async fn start(
        &self,
        writer: &Writer,
        new: NewOperation,
        mut job: SignInJob,
    ) -> Result<Started, DbErr> {
        let queue = self.clone();
        let (claim, unqueued) = writer
            .run(move |db| {
                Box::pin(async move {
                    let claim = operations::claim_state(db, new).await?;
                    let Claim::New(operation) = &claim else {
                        return Ok((claim, None));
                    };
                    job.operation_id = operation.id;
                    let queued = queue.push_in(db, &job).await.unwrap_or_else(|error| {
                        tracing::warn!(%error, "could not queue the job beside its operation");
                        false
                    });
                    Ok((claim, (!queued).then_some(job)))
                })
            })
            .await?;
        let operation = match claim {
            Claim::New(operation) => operation,
            Claim::Existing(operation) => return Ok(Started::Existing(operation)),
            Claim::Foreign => return Ok(Started::Foreign),
        };
        let Some(job) = unqueued else {
            self.wake();
            return Ok(Started::Queued(operation));
        };
        if let Err(error) = self.push(job).await {
            tracing::error!(%error, operation.id = %operation.id, "could not enqueue the sign-in job");
            let (code, message) = operations::QUEUE_UNAVAILABLE;
            let id = operation.id;
            writer
                .run(move |db| {
                    Box::pin(async move { operations::mark_error(db, id, code, message).await })
                })
                .await?;
            return Ok(Started::Unqueued(operation));
        }
        Ok(Started::Queued(operation))
    }

    /// Enqueues `job` as part of the write `db`, so that on SQLite the job commits
    /// with the operation it serves, in the writer's batch (no turn of its own on
    /// the writer connection). The row is the one apalis' own push writes (its
    /// 1.0 layout; `push_in_writes_what_apalis_reads` checks it). Returns `false`
    /// on PostgreSQL, where writes do not share a connection: the caller then
    /// pushes with [`JobQueue::push`]. Call [`JobQueue::wake`] after the commit.
    pub async fn push_in(&self, db: &WriteConn<'_>, job: &SignInJob) -> Result<bool, DbErr> {
        let Storage::Sqlite(_) = self.storage else {
            return Ok(false);
        };
        let args =
            serde_json::to_vec(&QueuedJob::seal(job, &self.keys)).expect("a queued job serializes");
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, \
             priority, metadata, idempotency_key) \
             VALUES (?, ?, ?, 'Pending', 0, ?, strftime('%s', 'now'), 0, '{}', ?) \
             ON CONFLICT (job_type, idempotency_key) DO NOTHING",
            [
                args.into(),
                ulid::Ulid::generate().to_string().into(),
                QUEUE_NAME.into(),
                (MAX_ATTEMPTS as i64).into(),
                job.operation_id.to_string().into(),
            ],
        ))
        .await?;
        Ok(true)
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
    /// Does nothing on PostgreSQL, where workers `LISTEN` for pushes.
    pub fn watch_pushes_of_other_processes(&self, db: &Database) {
        if let DbPool::Sqlite(_) = db.pool {
            push_watch::spawn(
                db.reader.get_sqlite_connection_pool().clone(),
                self.wake.clone(),
            );
        }
    }

    /// Consumes jobs until `shutdown` resolves, then finishes the ones in flight.
    /// When the worker stops on an error (the database went away), it is started
    /// again with backoff, so neither binary dies with the database.
    pub async fn run_worker(&self, state: WorkerState, shutdown: Shutdown) -> anyhow::Result<()> {
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
                let strategy = Strategy::new()
                    .stream(wake_rx)
                    .interval(self.poll.unwrap_or(SQLITE_POLL));
                let backend = storage.clone().poll_with_strategy(strategy);
                WorkerBuilder::new(name.as_str())
                    .backend(backend)
                    .data(state)
                    .concurrency(self.concurrency)
                    .enable_tracing()
                    .build(sign_in::process)
                    .run_until(stop)
                    .await
            }
            Storage::Postgres(storage) => {
                let pubsub = Pubsub::new(storage.pool().clone(), QUEUE_NAME.to_owned());
                let strategy = Strategy::new()
                    .stream(pubsub)
                    .stream(wake_rx)
                    .interval(self.poll.unwrap_or(POSTGRES_POLL));
                let backend = storage.clone().poll_with_strategy(strategy);
                WorkerBuilder::new(name.as_str())
                    .backend(backend)
                    .data(state)
                    .concurrency(self.concurrency)
                    .enable_tracing()
                    .build(sign_in::process)
                    .run_until(stop)
                    .await
            }
        }
        .context("the worker stopped with an error")?;
        tracing::info!(worker.name = %name, "worker stopped");
        Ok(())
    }
}

impl JobQueue {
    /// Deletes finished jobs: `Done` ones at once (the operation row keeps the
    /// outcome), failed and killed ones after `keep_failed` (the admin CLI shows
    /// them meanwhile). Returns how many went.
    ///
    /// Besides keeping codes and verifiers out of the table once used, this keeps
    /// acknowledgements cheap: apalis-sqlite's ack joins every row the worker ever
    /// locked against its JSON payload, so with done jobs kept each ack grew with
    /// the number of sign-ins so far (the profile showed SQLite's JSON parser as
    /// the writer's largest cost after a few thousand sign-ins).
    pub async fn delete_finished(&self, keep_failed: Duration) -> Result<u64, QueueError> {
        let keep_failed = i64::try_from(keep_failed.as_secs()).unwrap_or(i64::MAX);
        let result = match &self.storage {
            Storage::Sqlite(s) => sea_orm::sqlx::query(
                "DELETE FROM Jobs WHERE job_type = ?1 AND done_at IS NOT NULL AND ( \
                   status = 'Done' \
                   OR (status IN ('Killed', 'Failed') AND attempts >= max_attempts \
                       AND done_at < CAST(strftime('%s', 'now') AS INTEGER) - ?2))",
            )
            .bind(QUEUE_NAME)
            .bind(keep_failed)
            .execute(s.pool())
            .await
            .map(|r| r.rows_affected()),
            Storage::Postgres(s) => sea_orm::sqlx::query(
                "DELETE FROM apalis.jobs WHERE job_type = $1 AND done_at IS NOT NULL AND ( \
                   status = 'Done' \
                   OR (status IN ('Killed', 'Failed') AND attempts >= max_attempts \
                       AND done_at < NOW() - make_interval(secs => $2)))",
            )
            .bind(QUEUE_NAME)
            .bind(keep_failed as f64)
            .execute(s.pool())
            .await
            .map(|r| r.rows_affected()),
        };
        result.map_err(|e| QueueError(e.to_string()))
    }
}

/// How long failed and killed jobs stay for `api admin` to show.
const KEEP_FAILED_JOBS: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the sweeper deletes finished jobs; stale operations are checked every
/// [`EXPIRE_EVERY`] ticks.
const SWEEP_TICK: Duration = Duration::from_secs(1);
const EXPIRE_EVERY: u32 = 5;
/// Audit events past `audit.retention`, spent ID tokens past their expiry, and the
/// operations, sessions and refresh tokens past `retention.*` ([`crate::sweep`])
/// are deleted every this many ticks (and at start).
const AUDIT_SWEEP_EVERY: u32 = 3600;

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

/// Until `shutdown`: deletes finished jobs every second, ends stale pending
/// operations every few seconds, and sweeps old rows hourly.
pub(crate) fn spawn_sweeper(
    state: WorkerState,
    queue: JobQueue,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    tokio::spawn(async move {
        let mut shutdown = Box::pin(shutdown.fuse());
        let mut tick = tokio::time::interval(SWEEP_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for round in 0u32.. {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            if let Err(error) = queue.delete_finished(KEEP_FAILED_JOBS).await {
                tracing::warn!(%error, "could not delete finished jobs");
            }
            if round % AUDIT_SWEEP_EVERY == 0 {
                if let Err(error) = crate::replay::forget_expired(&state.db).await {
                    tracing::warn!(%error, "could not forget expired ID tokens");
                }
                match crate::audit::delete_older_than(&state.db, state.settings.audit.retention)
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "old audit events deleted"),
                    Err(error) => tracing::warn!(%error, "could not delete old audit events"),
                }
                crate::sweep::run(&state.db, &state.settings).await;
            }
            if round % EXPIRE_EVERY != 0 {
                continue;
            }
            match crate::operations::expire_stale(&state.db, state.settings.operation_timeout).await
            {
                Ok(0) => {}
                Ok(n) => {
                    tracing::warn!(operations = n, "pending operations timed out");
                    state.events.notify_all();
                }
                Err(error) => tracing::warn!(%error, "could not expire stale operations"),
            }
        }
    });
}
