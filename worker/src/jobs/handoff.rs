//! On SQLite with the embedded worker, a job the callback queues goes straight to
//! this process's worker instead of waiting for the queue to hand it out.
//!
//! Through the queue a job waits for the batch that commits it, then for a fetch
//! and a lock (two more writes, each waiting its turn on the one writer
//! connection), and its acknowledgement is a third: under load that was a fifth of
//! callback→ok (docs/benchmarks.md). Here the callback's own write inserts the job
//! row already locked by this process's *holder*, a row in apalis' `Workers` table
//! like any worker's, and once that write commits the job runs on a free slot.
//!
//! Crash safety is the queue's: the holder beats like an apalis worker, so when the
//! process dies the rows it held are re-queued by any live worker's heartbeat
//! (apalis' `reenqueue_orphaned`) after the same 15 s as a fetched job's, and run
//! again from what the operation stored. When no slot is free the job is queued
//! as before.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use entity::async_operation::Model;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    task::JoinSet,
};

use super::{HEARTBEAT, QUEUE_NAME, Shutdown, SignInJob, sign_in};
use crate::{WorkerState, writer::Writer};

/// How long a shutdown waits for handed-over jobs still running.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// This process's side of the hand-over; see the module docs.
pub(super) struct Handoff {
    /// The `Workers` row that holds handed-over jobs: unique to the process.
    holder: String,
    /// Jobs in flight in this process, shared with the jobs the queue hands out.
    slots: Arc<Semaphore>,
    /// Registered and beating: only then may a job be held by `holder`.
    live: AtomicBool,
    to_runner: mpsc::UnboundedSender<Handed>,
    runner: Mutex<Option<mpsc::UnboundedReceiver<Handed>>>,
}

/// A slot taken for a job about to be written locked by the holder.
pub(super) struct Slot {
    handoff: Arc<Handoff>,
    permit: OwnedSemaphorePermit,
    task_id: String,
}

impl Slot {
    /// The slot of the job for `operation`, just written.
    pub(super) fn for_operation(self, operation: Model) -> Reservation {
        Reservation {
            slot: self,
            operation: Box::new(operation),
        }
    }
}

/// A slot and the operation its job serves.
pub(super) struct Reservation {
    slot: Slot,
    operation: Box<Model>,
}

impl Reservation {
    /// Who locks the reserved job's row.
    pub(super) fn holder(&self) -> &str {
        &self.slot.handoff.holder
    }

    /// The id of the reserved job's row.
    pub(super) fn task_id(&self) -> &str {
        &self.slot.task_id
    }

    /// Runs `job` on the reserved slot; call once its row has committed.
    pub(super) fn hand(self, job: SignInJob) {
        let Slot {
            handoff,
            permit,
            task_id,
        } = self.slot;
        let handed = Handed {
            job,
            operation: self.operation,
            task_id,
            _slot: permit,
        };
        if handoff.to_runner.send(handed).is_err() {
            // The runner stopped (shutdown): the holder's heartbeat stopped with it,
            // so the row is re-queued like a dead worker's.
            tracing::warn!("the worker stopped; the job will be re-queued");
        }
    }
}

struct Handed {
    job: SignInJob,
    operation: Box<Model>,
    task_id: String,
    _slot: OwnedSemaphorePermit,
}

impl Handoff {
    pub(super) fn new(holder: String, slots: Arc<Semaphore>) -> Self {
        let (to_runner, runner) = mpsc::unbounded_channel();
        Self {
            holder,
            slots,
            live: AtomicBool::new(false),
            to_runner,
            runner: Mutex::new(Some(runner)),
        }
    }

    /// A free slot for a job about to be written, or `None` (no runner, or every
    /// slot busy): then the job is queued.
    pub(super) fn reserve(self: &Arc<Self>) -> Option<Slot> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        Some(Slot {
            handoff: self.clone(),
            permit,
            task_id: ulid::Ulid::generate().to_string(),
        })
    }

    /// Registers the holder, then runs handed-over jobs and beats until
    /// `shutdown`; then lets the running ones finish (up to [`DRAIN`]). Runs once
    /// per process; a second call returns at once.
    pub(super) async fn run(&self, state: WorkerState, shutdown: Shutdown) {
        let Some(mut handed) = self.runner.lock().expect("not poisoned").take() else {
            return;
        };
        if let Err(error) = register(&state.writer, &self.holder).await {
            tracing::error!(%error, "could not register the in-process job holder; every job goes through the queue");
            return;
        }
        self.live.store(true, Ordering::Release);
        tracing::info!(holder = %self.holder, "jobs queued here run here");
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut running = JoinSet::new();
        loop {
            tokio::select! {
                () = shutdown.clone() => break,
                _ = beat.tick() => {
                    if let Err(error) = keep_alive(&state.writer, &self.holder).await {
                        tracing::warn!(%error, "the in-process job holder missed a heartbeat");
                    }
                }
                Some(job) = handed.recv() => {
                    running.spawn(run_one(state.clone(), self.holder.clone(), job));
                }
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
        self.live.store(false, Ordering::Release);
        // Jobs reserved before the flag fell arrive still: run them too.
        handed.close();
        while let Some(job) = handed.recv().await {
            running.spawn(run_one(state.clone(), self.holder.clone(), job));
        }
        let drained = tokio::time::timeout(DRAIN, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                jobs = running.len(),
                "handed-over jobs still running at shutdown; they will be re-queued"
            );
        }
    }
}

/// Runs one handed-over job and acknowledges it as apalis would: gone when done,
/// `Failed` (run again by the queue) on a database error, `Killed` when aborted.
async fn run_one(state: WorkerState, holder: String, handed: Handed) {
    metrics::counter!("signin_jobs_handed_over_total", "provider" => handed.job.provider.clone())
        .increment(1);
    let ran = sign_in::handle(&handed.job, &state, 1, Some(*handed.operation)).await;
    let ack = match &ran {
        sign_in::Ran::Done => None,
        sign_in::Ran::RunAgain(error) => Some(("Failed", error.to_string())),
        sign_in::Ran::Aborted(error) => Some(("Killed", error.to_string())),
    };
    let task_id = handed.task_id;
    let acked = state
        .writer
        .run(move |db| {
            Box::pin(async move {
                let statement = match ack {
                    None => Statement::from_sql_and_values(
                        DbBackend::Sqlite,
                        "DELETE FROM Jobs WHERE id = ? AND lock_by = ?",
                        [task_id.into(), holder.into()],
                    ),
                    Some((status, error)) => Statement::from_sql_and_values(
                        DbBackend::Sqlite,
                        "UPDATE Jobs SET status = ?, attempts = 1, last_result = ?, \
                         done_at = strftime('%s', 'now') WHERE id = ? AND lock_by = ?",
                        [
                            status.into(),
                            serde_json::json!({ "Err": error }).to_string().into(),
                            task_id.into(),
                            holder.into(),
                        ],
                    ),
                };
                db.execute_raw(statement).await.map(|_| ())
            })
        })
        .await;
    if let Err(error) = acked {
        tracing::error!(%error, "could not acknowledge a handed-over job");
    }
}

/// The holder's row, as apalis registers a worker of the queue.
async fn register(writer: &Writer, holder: &str) -> Result<(), DbErr> {
    let holder = holder.to_owned();
    writer
        .run(move |db| {
            Box::pin(async move {
                db.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    "INSERT INTO Workers (id, worker_type, storage_name, layers, last_seen, started_at) \
                     VALUES (?, ?, 'SqliteStorage', 'in-process hand-over', \
                             strftime('%s', 'now'), strftime('%s', 'now'))",
                    [holder.into(), QUEUE_NAME.into()],
                ))
                .await
                .map(|_| ())
            })
        })
        .await
}

async fn keep_alive(writer: &Writer, holder: &str) -> Result<(), DbErr> {
    let holder = holder.to_owned();
    writer
        .run(move |db| {
            Box::pin(async move {
                db.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    "UPDATE Workers SET last_seen = strftime('%s', 'now') WHERE id = ?",
                    [holder.into()],
                ))
                .await
                .map(|_| ())
            })
        })
        .await
}
