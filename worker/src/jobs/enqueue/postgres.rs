//! The callback's write on PostgreSQL: the operation's row and its job's row in one
//! statement (the claiming `INSERT` in a `WITH`, the job's `INSERT` reading from
//! it), atomic by itself and sent straight to the pool: one round trip where a
//! transaction takes four. An api that dies after it leaves a queued (or held)
//! job; before it, nothing.

use entity::async_operation::Model;
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Value};

use super::{JobQueue, MAX_ATTEMPTS, PushedIn, QUEUE_NAME, SignInJob};
use crate::{
    db::with::with_first,
    jobs::exchange,
    operations::{self, Claim, NewOperation},
    writer::Writer,
};

/// The job's row: `Pending` as apalis' push writes it (empty metadata, priority 0,
/// due now; its insert trigger's `NOTIFY` wakes the workers at the commit), or,
/// held by this process (`$V6`), `Running` and locked by `$V7` as apalis' lock
/// leaves it, due a microsecond after the statement's `now()`, which the trigger
/// compares with: no worker is woken to fetch a row nobody else may take (should
/// the holder die, apalis' heartbeat re-queues it seconds later, long due).
/// Nothing when the state was claimed before (`claimed` is empty).
const JOB: &str = "\
, job AS (
  INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at,
                           priority, metadata, idempotency_key, lock_by, lock_at)
  SELECT $V1, $V2, $V3, CASE WHEN $V6 THEN 'Running' ELSE 'Pending' END, 0, $V4,
         CASE WHEN $V6 THEN now() + interval '1 microsecond' ELSE now() END, 0, ''::hstore,
         $V5, $V7, CASE WHEN $V6 THEN now() END
  FROM claimed
  ON CONFLICT (job_type, idempotency_key) DO NOTHING
  RETURNING id
)
SELECT claimed.*, EXISTS (SELECT 1 FROM job) AS job_inserted FROM claimed";

impl JobQueue {
    /// Claims `new`'s state and writes `job`'s row with it, held by this process
    /// when it has a slot free.
    pub(super) async fn claim_and_push_on_postgres(
        &self,
        writer: &Writer,
        new: NewOperation,
        mut job: SignInJob,
    ) -> Result<(Claim, SignInJob, PushedIn), DbErr> {
        let slot = self.handoff.as_ref().and_then(|h| h.reserve());
        // A job this process runs at once is sent on to the provider without a
        // write of its own before the token request: its operation is written with
        // the exchange marked.
        let marked = slot.is_some() && job.exchanges_code();
        let (id, claim) = operations::claim_insert(&new, marked);
        job.operation_id = id;
        let (row_id, holder) = match &slot {
            Some(slot) => (slot.task_id().to_owned(), Some(slot.holder().to_owned())),
            None => (ulid::Ulid::generate().to_string(), None),
        };
        let values: Vec<Value> = vec![
            row_id.into(),
            QUEUE_NAME.into(),
            self.sealed(&job).into(),
            (MAX_ATTEMPTS as i32).into(),
            id.to_string().into(),
            slot.is_some().into(),
            holder.into(),
        ];
        let statement = with_first("claimed", &claim, JOB, values);
        let row = writer
            .run_atomic(move |db| Box::pin(async move { db.query_one_raw(statement).await }))
            .await?;
        let Some(row) = row else {
            let claim = writer
                .run_atomic(move |db| {
                    Box::pin(async move { operations::claimed_by(db, &new).await })
                })
                .await?;
            return Ok((claim, job, PushedIn::No));
        };
        let operation = Model::from_query_result(&row, "")?;
        let inserted: bool = row.try_get("", "job_inserted")?;
        let pushed = match slot {
            Some(slot) if inserted => PushedIn::Held(slot.for_operation(operation.clone())),
            _ if inserted => PushedIn::Queued,
            _ => {
                // Not written (its key was taken): it is pushed after all, and the
                // run that fetches it marks the exchange itself, so it must not
                // find it marked (that looks like an interrupted exchange).
                if marked {
                    writer
                        .run_atomic(move |db| {
                            Box::pin(async move { exchange::unmark(id).exec(db).await.map(|_| ()) })
                        })
                        .await?;
                }
                PushedIn::No
            }
        };
        Ok((Claim::New(operation), job, pushed))
    }
}
