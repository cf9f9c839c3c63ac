//! With the embedded worker, a job the callback queues goes straight to this
//! process's worker instead of waiting for the queue to hand it out.
//!
//! Through the queue a job waits for the write that commits it, then for a fetch
//! and a lock (another write: on SQLite a turn on the one writer connection, on
//! PostgreSQL apalis' `get_jobs`, its costliest statement), and its acknowledgement
//! is a third: under load that was a fifth of callback→ok on SQLite, and on
//! PostgreSQL the embedded worker's pick-up alone took 66 ms at the median
//! (docs/benchmarks.md). Here the callback's own write inserts the job row already
//! locked by this process's *holder*, a row in apalis' workers table like any
//! worker's, and once that write commits the job runs on a free slot. The
//! operation is written already marked as exchanging (the job is sent on at once),
//! and the rows of done jobs are deleted together every [`DELETE_DONE_EVERY`].
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

use super::{HEARTBEAT, QUEUE_NAME, Shutdown, SignInJob, handler};
use crate::{WorkerState, writer::Writer};
use sql::{POSTGRES, SQLITE, Sql};

mod sql;

/// How long a shutdown waits for handed-over jobs still running.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);
/// How often the rows of done jobs are deleted, together.
const DELETE_DONE_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// This process's side of the hand-over; see the module docs.
pub(super) struct Handoff {
    /// The workers row that holds handed-over jobs: unique to the process.
    holder: String,
    /// The statements of the holder's database.
    sql: &'static Sql,
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
    /// Who locks the reserved job's row.
    pub(super) fn holder(&self) -> &str {
        &self.handoff.holder
    }

    /// The id of the reserved job's row.
    pub(super) fn task_id(&self) -> &str {
        &self.task_id
    }

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
        self.slot.holder()
    }

    /// The id of the reserved job's row.
    pub(super) fn task_id(&self) -> &str {
        self.slot.task_id()
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
    pub(super) fn new(holder: String, slots: Arc<Semaphore>, backend: DbBackend) -> Self {
        let (to_runner, runner) = mpsc::unbounded_channel();
        Self {
            holder,
            sql: if backend == DbBackend::Postgres {
                &POSTGRES
            } else {
                &SQLITE
            },
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
        let (holder, sql) = (self.holder.clone(), self.sql);
        if let Err(error) = write(
            &state.writer,
            sql.statement(sql.register, vec![holder.clone().into(), QUEUE_NAME.into()]),
        )
        .await
        {
            tracing::error!(%error, "could not register the in-process job holder; every job goes through the queue");
            return;
        }
        self.live.store(true, Ordering::Release);
        tracing::info!(%holder, "jobs queued here run here");
        let mut beat = tokio::time::interval(HEARTBEAT);
        let mut flush = tokio::time::interval(DELETE_DONE_EVERY);
        for tick in [&mut beat, &mut flush] {
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        let mut running = JoinSet::new();
        let mut done = Vec::new();
        loop {
            // Writes are spawned, not awaited: a turn on the writer must not hold up
            // the next handed-over job.
            tokio::select! {
                () = shutdown.clone() => break,
                _ = beat.tick() => {
                    let writer = state.writer.clone();
                    let beat = sql.statement(sql.keep_alive, vec![holder.clone().into()]);
                    tokio::spawn(async move {
                        if let Err(error) = write(&writer, beat).await {
                            tracing::warn!(%error, "the in-process job holder missed a heartbeat");
                        }
                    });
                }
                _ = flush.tick(), if !done.is_empty() => {
                    let ids = std::mem::take(&mut done);
                    tokio::spawn(delete_done(state.writer.clone(), sql, holder.clone(), ids));
                }
                Some(job) = handed.recv() => {
                    running.spawn(run_one(state.clone(), sql, holder.clone(), job));
                }
                Some(finished) = running.join_next(), if !running.is_empty() => {
                    done.extend(finished.ok().flatten());
                }
            }
        }
        self.live.store(false, Ordering::Release);
        // Jobs reserved before the flag fell arrive still: run them too.
        handed.close();
        while let Some(job) = handed.recv().await {
            running.spawn(run_one(state.clone(), sql, holder.clone(), job));
        }
        let drained = tokio::time::timeout(DRAIN, async {
            while let Some(finished) = running.join_next().await {
                done.extend(finished.ok().flatten());
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                jobs = running.len(),
                "handed-over jobs still running at shutdown; they will be re-queued"
            );
        }
        delete_done(state.writer.clone(), sql, holder, done).await;
    }
}

/// Runs one handed-over job. Returns its row's id when it is done, for
/// [`delete_done`]; otherwise acknowledges it as apalis would: `Failed` (run again
/// by the queue) on a database error, `Killed` when aborted.
async fn run_one(
    state: WorkerState,
    sql: &'static Sql,
    holder: String,
    handed: Handed,
) -> Option<String> {
    metrics::counter!("signin_jobs_handed_over_total", "provider" => handed.job.provider.clone())
        .increment(1);
    let (status, error) =
        match handler::handle(&handed.job, &state, 1, Some(*handed.operation)).await {
            handler::Ran::Done => return Some(handed.task_id),
            handler::Ran::RunAgain(error) => ("Failed", error.to_string()),
            handler::Ran::Aborted(error) => ("Killed", error.to_string()),
        };
    let values = vec![
        status.into(),
        serde_json::json!({ "Err": error }).to_string().into(),
        handed.task_id.into(),
        holder.into(),
    ];
    if let Err(error) = write(&state.writer, sql.statement(sql.ack_failed, values)).await {
        tracing::error!(%error, "could not acknowledge a handed-over job");
    }
    None
}

/// Deletes the rows of done jobs `ids`, together: one write every
/// [`DELETE_DONE_EVERY`] instead of one per job. A row a crash leaves behind is
/// re-queued with its holder's others, and its run finds the operation finished.
async fn delete_done(writer: Writer, sql: &Sql, holder: String, ids: Vec<String>) {
    if ids.is_empty() {
        return;
    }
    let ids = serde_json::to_string(&ids).expect("ids serialize");
    if let Err(error) = write(
        &writer,
        sql.statement(sql.delete_done, vec![holder.into(), ids.into()]),
    )
    .await
    {
        tracing::warn!(%error, "could not delete done jobs; the sweeper will not either, the queue re-runs them if the process dies");
    }
}

/// Runs `statement` as a write of its own.
async fn write(writer: &Writer, statement: Statement) -> Result<(), DbErr> {
    writer
        .run_atomic(move |db| Box::pin(async move { db.execute_raw(statement).await.map(|_| ()) }))
        .await
}
