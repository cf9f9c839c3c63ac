//! The job queue: apalis' SQLite or PostgreSQL storage in the application database,
//! behind one `push`, so the web tier never names a backend. Also the worker loop
//! that consumes it.

mod exchange;
mod handoff;
mod push_watch;
pub mod sign_in;
mod sign_in_error;
mod sweeper;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use apalis::prelude::*;
use apalis_postgres::{PostgresStorage, Pubsub};
use apalis_sqlite::SqliteStorage;
use futures::channel::mpsc;
use handoff::{Handoff, Reservation};

pub(crate) use sweeper::spawn_sweeper;

use crate::{
    WorkerState,
    db::{Database, DbPool},
    operations::{self, Claim, NewOperation},
    writer::{WriteConn, Writer},
};
use chrono::Utc;
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
    /// Jobs in flight in this process, whichever way they came.
    slots: Slots,
    /// SQLite with the embedded worker: jobs queued here run here; see `handoff`.
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

/// What [`JobQueue::push_in`] did with a job.
enum PushedIn {
    /// Queued, for whichever worker fetches it first: wake the embedded one.
    Queued,
    /// Written held by this process: hand it over once committed.
    Held(Reservation),
    /// Nothing (PostgreSQL, or the write failed): push it after the commit.
    No,
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

    /// For the worker embedded in `api` on SQLite: a job this process queues runs
    /// on this process's worker at once, without waiting for the queue to hand it
    /// out (see `handoff`). Does nothing on PostgreSQL.
    #[must_use]
    pub fn run_own_jobs_in_process(mut self) -> Self {
        if let Storage::Sqlite(_) = self.storage {
            let holder = format!("{}-in-process", worker_name());
            self.handoff = Some(Arc::new(Handoff::new(holder, self.slots.0.clone())));
        }
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
        let (claim, job, pushed) = writer
            .run(move |db| {
                Box::pin(async move {
                    // A job that runs here at once is marked as exchanging with its
                    // operation: no write of its own before the token request.
                    let held = queue.handoff.as_ref().and_then(|h| h.reserve());
                    let marked = (held.is_some() && job.id_token.is_none()).then(Utc::now);
                    let claim = operations::claim_state(db, new, marked).await?;
                    let Claim::New(operation) = &claim else {
                        return Ok((claim, job, PushedIn::No));
                    };
                    job.operation_id = operation.id;
                    let held = held.map(|slot| slot.for_operation(operation.clone()));
                    let pushed = queue.push_in(db, &job, held).await.unwrap_or_else(|error| {
                        tracing::warn!(%error, "could not queue the job beside its operation");
                        PushedIn::No
                    });
                    Ok((claim, job, pushed))
                })
            })
            .await?;
        let operation = match claim {
            Claim::New(operation) => operation,
            Claim::Existing(operation) => return Ok(Started::Existing(operation)),
            Claim::Foreign => return Ok(Started::Foreign),
        };
        match pushed {
            PushedIn::Queued => {
                self.wake();
                return Ok(Started::Queued(operation));
            }
            PushedIn::Held(reservation) => {
                reservation.hand(job);
                return Ok(Started::Queued(operation));
            }
            PushedIn::No => {}
        }
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
    /// 1.0 layout; `push_in_writes_what_apalis_reads` checks it), or, when this
    /// process runs its own jobs and has a slot free, that row as apalis' lock
    /// leaves it, held by this process (`handoff`). On PostgreSQL, where writes do
    /// not share a connection, nothing is written: the caller then pushes with
    /// [`JobQueue::push`].
    async fn push_in(
        &self,
        db: &WriteConn<'_>,
        job: &SignInJob,
        held: Option<Reservation>,
    ) -> Result<PushedIn, DbErr> {
        let Storage::Sqlite(_) = self.storage else {
            return Ok(PushedIn::No);
        };
        let args =
            serde_json::to_vec(&QueuedJob::seal(job, &self.keys)).expect("a queued job serializes");
        let id = held.as_ref().map_or_else(
            || ulid::Ulid::generate().to_string(),
            |h| h.task_id().to_owned(),
        );
        let (status, holder) = match &held {
            Some(reservation) => ("Running", Some(reservation.holder().to_owned())),
            None => ("Pending", None),
        };
        let inserted = db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, \
                 priority, metadata, idempotency_key, lock_by, lock_at) \
                 VALUES (?, ?, ?, ?, 0, ?, strftime('%s', 'now'), 0, '{}', ?, ?, \
                         CASE WHEN ?7 IS NULL THEN NULL ELSE strftime('%s', 'now') END) \
                 ON CONFLICT (job_type, idempotency_key) DO NOTHING",
                [
                    args.into(),
                    id.into(),
                    QUEUE_NAME.into(),
                    status.into(),
                    (MAX_ATTEMPTS as i64).into(),
                    job.operation_id.to_string().into(),
                    holder.into(),
                ],
            ))
            .await?;
        Ok(match held {
            Some(reservation) if inserted.rows_affected() == 1 => PushedIn::Held(reservation),
            _ => PushedIn::Queued,
        })
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
                let strategy = Strategy::new()
                    .stream(wake_rx)
                    .interval(self.poll.unwrap_or(SQLITE_POLL));
                let backend = storage.clone().poll_with_strategy(strategy);
                WorkerBuilder::new(name.as_str())
                    .backend(backend)
                    .data(state)
                    .data(self.slots.clone())
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
                    .data(self.slots.clone())
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
