//! Running a sign-in job for whoever hands it out: apalis ([`process`]) or the
//! in-process hand-over (`handoff`), with its metrics, log lines and, on a
//! permanent failure, the operation ended `error`.

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data};
use entity::async_operation::Model;
use sea_orm::DbErr;

use super::{
    QueuedJob, SignInError, SignInJob,
    sign_in::{record_operation_duration, run, run_from},
};
use crate::{
    WorkerState,
    audit::{self, EventKind},
    operations,
};

/// The apalis handler: opens the job, waits for a slot (shared with jobs handed
/// over in process, see `handoff`) and runs it; a permanent failure aborts it (no
/// re-run), a database error leaves it to apalis to run again.
pub async fn process(
    queued: QueuedJob,
    state: Data<WorkerState>,
    slots: Data<super::Slots>,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let Some(job) = queued.open(&state.keys) else {
        // Sealed under another secret_key: no worker here can ever run it.
        tracing::error!(operation.id = %queued.operation_id, "cannot open the job (was secret_key changed?)");
        let (code, message) = (
            "internal_error",
            "Something went wrong on our side. Please try again.",
        );
        if let Ok(true) =
            operations::mark_error(&state.db, queued.operation_id, code, message).await
        {
            state.events.finished(queued.operation_id);
        }
        return Err(AbortError::new(std::io::Error::other("job sealed under another key")).into());
    };
    let _slot = slots.take().await;
    match handle(&job, &state, attempt.current(), None).await {
        Ran::Done => Ok(()),
        Ran::RunAgain(error) => Err(Box::new(error)),
        Ran::Aborted(error) => Err(AbortError::new(error).into()),
    }
}

/// How one run of a job ended, for whoever acknowledges it (apalis, or the
/// in-process hand-over).
pub(super) enum Ran {
    Done,
    /// A database error before the last attempt: the job runs again.
    RunAgain(DbErr),
    /// Finished for good, the operation marked `error` (when it was still pending).
    Aborted(SignInError),
}

/// Runs `job` as its `attempt`-th run (from 1), with its metrics, log lines and,
/// on a permanent failure, the operation marked `error`. `handed_over` is the
/// operation as the callback that hands the job over in process just wrote it.
#[tracing::instrument(skip_all, fields(provider = %job.provider, operation.id = %job.operation_id, job.attempt = attempt))]
pub(super) async fn handle(
    job: &SignInJob,
    state: &WorkerState,
    attempt: usize,
    handed_over: Option<Model>,
) -> Ran {
    let started = std::time::Instant::now();
    metrics::counter!("signin_jobs_started_total", "provider" => job.provider.clone()).increment(1);
    let ran = match handed_over {
        Some(operation) => run_from(job, state, operation, true).await,
        None => run(job, state).await,
    };
    match ran {
        Ok(()) => {
            metrics::counter!("signin_jobs_finished_total", "provider" => job.provider.clone(), "outcome" => "ok", "code" => "")
                .increment(1);
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "sign-in job finished"
            );
            Ran::Done
        }
        Err(SignInError::Db(error)) if attempt < super::MAX_ATTEMPTS => {
            tracing::warn!(%error, "database error; the job will run again");
            Ran::RunAgain(error)
        }
        Err(error) => {
            let display = state
                .providers
                .get(&job.provider)
                .map_or(job.provider.as_str(), |p| p.display_name.as_str());
            let (code, message) = error.user_error(display);
            tracing::warn!(error.code = code, error = %error, "sign-in failed");
            metrics::counter!("signin_jobs_finished_total", "provider" => job.provider.clone(), "outcome" => "error", "code" => code)
                .increment(1);
            match operations::mark_error(&state.db, job.operation_id, code, &message).await {
                Ok(true) => {
                    state.events.finished(job.operation_id);
                    let mut event = job
                        .audit(audit::Event::new(EventKind::SignInFailed))
                        .code(code);
                    if let Ok(Some(op)) = operations::find(&state.reader, job.operation_id).await {
                        record_operation_duration(&op, "error");
                        event = event.user(op.link_user_id);
                    }
                    state.audit.record(event);
                }
                Ok(false) => {}
                Err(db) => tracing::error!(error = %db, "could not mark the operation as failed"),
            }
            Ran::Aborted(error)
        }
    }
}
