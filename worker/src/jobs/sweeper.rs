//! The queue's housekeeping: finished jobs deleted every second, stale pending
//! operations ended every few seconds, old rows swept hourly.

use std::{future::Future, time::Duration};

use futures::FutureExt;

use super::{JobQueue, QUEUE_NAME, QueueError, Storage};
use crate::WorkerState;

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
                   OR ((status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts)) \
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
                   OR ((status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts)) \
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
