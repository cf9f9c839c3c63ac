//! How a callback queues its job: with its operation, in one write (one
//! transaction), so no crash can leave an operation without its job; held by this
//! process when it runs its own jobs (see `handoff`).

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

mod postgres;

use super::{
    JobQueue, MAX_ATTEMPTS, QUEUE_NAME, QueuedJob, SignInJob, Started, Storage,
    handoff::Reservation,
};
use crate::{
    operations::{self, Claim, NewOperation},
    writer::{WriteConn, Writer},
};

/// What [`JobQueue::push_in`] did with a job.
enum PushedIn {
    /// Queued, for whichever worker fetches it first: wake the embedded one.
    Queued,
    /// Written held by this process: hand it over once committed.
    Held(Reservation),
    /// Nothing (the write failed): push it after the commit.
    No,
}

impl JobQueue {
    /// Records `new` (claiming its `state`, if any; see [`operations::claim_state`])
    /// and queues `job` for it, both in one write: an api that dies after the commit
    /// leaves a queued job, not a pending operation nothing will run (a repeated
    /// callback would only find that operation again). Should the job's row fail
    /// alone, it is pushed after the commit, and an operation whose job could not be
    /// queued at all is ended `queue_unavailable` and returned as
    /// [`Started::Unqueued`].
    ///
    /// Runs to the end in a task of its own, even when the request that called it
    /// is dropped meanwhile (the browser went away): a committed operation always
    /// gets its job handed over or pushed.
    pub async fn start(
        &self,
        writer: &Writer,
        new: NewOperation,
        job: SignInJob,
    ) -> Result<Started, DbErr> {
        let (queue, writer) = (self.clone(), writer.clone());
        tokio::spawn(async move { queue.start_now(&writer, new, job).await })
            .await
            .map_err(|error| DbErr::Custom(format!("starting the sign-in failed: {error}")))?
    }

    async fn start_now(
        &self,
        writer: &Writer,
        new: NewOperation,
        job: SignInJob,
    ) -> Result<Started, DbErr> {
        let (claim, job, pushed) = match self.storage {
            Storage::Postgres(_) => self.claim_and_push_on_postgres(writer, new, job).await?,
            _ => self.claim_and_push_in_batch(writer, new, job).await?,
        };
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

    /// Claims `new`'s state and writes `job`'s row with it, in one of the SQLite
    /// writer's batches.
    async fn claim_and_push_in_batch(
        &self,
        writer: &Writer,
        new: NewOperation,
        mut job: SignInJob,
    ) -> Result<(Claim, SignInJob, PushedIn), DbErr> {
        let queue = self.clone();
        writer
            .run(move |db| {
                Box::pin(async move {
                    // A job this process runs at once is sent on to the provider
                    // without a write of its own before the token request: its
                    // operation is written with the exchange marked.
                    let slot = queue.handoff.as_ref().and_then(|h| h.reserve());
                    let marked = slot.is_some() && job.exchanges_code();
                    let claim = operations::claim_state(db, new, marked).await?;
                    let Claim::New(operation) = &claim else {
                        return Ok((claim, job, PushedIn::No));
                    };
                    job.operation_id = operation.id;
                    let held = slot.map(|slot| slot.for_operation(operation.clone()));
                    let pushed = match queue.push_in(db, &job, held).await {
                        Ok(pushed) => pushed,
                        Err(error) => {
                            tracing::warn!(%error, "could not queue the job beside its operation");
                            PushedIn::No
                        }
                    };
                    // Not held after all: the run that fetches the job marks it
                    // itself, and must not find it marked (that looks like an
                    // interrupted exchange). Should the unmarking fail, so does the
                    // whole write.
                    if marked && !matches!(pushed, PushedIn::Held(_)) {
                        super::exchange::unmark(job.operation_id).exec(db).await?;
                    }
                    Ok((claim, job, pushed))
                })
            })
            .await
    }

    /// `job` sealed, as its row holds it.
    fn sealed(&self, job: &SignInJob) -> Vec<u8> {
        serde_json::to_vec(&QueuedJob::seal(job, &self.keys)).expect("a queued job serializes")
    }

    /// Enqueues `job` as part of the SQLite write `db`, so the job commits with
    /// the operation it serves, in the writer's batch (no turn of its own on the
    /// writer connection). The row is the one apalis' own push writes (its 1.0
    /// layouts; `push_in_writes_what_apalis_reads` checks both, and PostgreSQL's
    /// in `postgres`), or, when this process runs its own jobs and has a slot
    /// free, that row as apalis' lock leaves it, held by this process (`handoff`).
    async fn push_in(
        &self,
        db: &WriteConn<'_>,
        job: &SignInJob,
        held: Option<Reservation>,
    ) -> Result<PushedIn, DbErr> {
        let args = self.sealed(job);
        let (id, status, holder) = match &held {
            Some(h) => (
                h.task_id().to_owned(),
                "Running",
                Some(h.holder().to_owned()),
            ),
            None => (ulid::Ulid::generate().to_string(), "Pending", None),
        };
        let inserted = insert_row(db, job, args, id, status, holder).await?;
        Ok(match held {
            Some(reservation) if inserted => PushedIn::Held(reservation),
            _ => PushedIn::Queued,
        })
    }
}

/// The job's row: `Pending` for any worker to fetch, or `Running` and locked by
/// `holder` as apalis' lock leaves it. `false` when the operation's job was pushed
/// before (nothing inserted).
async fn insert_row(
    db: &impl ConnectionTrait,
    job: &SignInJob,
    args: Vec<u8>,
    id: String,
    status: &str,
    holder: Option<String>,
) -> Result<bool, DbErr> {
    let lock_at = holder.as_ref().map(|_| Utc::now().timestamp());
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, \
         priority, metadata, idempotency_key, lock_by, lock_at) \
         VALUES (?, ?, ?, ?, 0, ?, strftime('%s', 'now'), 0, '{}', ?, ?, ?) \
         ON CONFLICT (job_type, idempotency_key) DO NOTHING",
        [
            args.into(),
            id.into(),
            QUEUE_NAME.into(),
            status.into(),
            (MAX_ATTEMPTS as i64).into(),
            job.operation_id.to_string().into(),
            holder.into(),
            lock_at.into(),
        ],
    ))
    .await
    .map(|done| done.rows_affected() == 1)
}
