//! The sign-in job: exchange the code, validate the ID token (OIDC), read the
//! profile, find-or-create the user and finish the operation. `run` is a plain
//! function tests can call directly; `handler` runs it for the queue.

use std::time::Duration;

use chrono::Utc;
use entity::async_operation::Model;
use rand::Rng;
use sea_orm::DbErr;
use secrecy::ExposeSecret;
use tokio::time::Instant;
use uuid::Uuid;

use super::exchange::{Exchange, exchange};
pub use super::payload::{JobClient, QueuedJob, SignInJob};
pub use super::sign_in_error::{EXCHANGE_INTERRUPTED, SignInError};
use crate::{
    WorkerState,
    accounts::{self, Intent, Outcome, SealedTokens},
    audit::{self, EventKind},
    linking::LinkTo,
    operations,
    providers::{Provider, ProviderError, TokenSet},
};

/// A code older than this is not worth retrying the exchange for.
const MAX_CODE_AGE: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_TRIES: u32 = 5;

/// The whole sign-in for one job. Idempotent: an operation that already left
/// `pending` is left alone.
pub async fn run(job: &SignInJob, state: &WorkerState) -> Result<(), SignInError> {
    // A code to exchange: discovery first (only the token request may leave the
    // code in doubt), then the operation read and its exchange marked together.
    // Otherwise (discovery failed, the operation finished or another run began)
    // the operation is read, and the steps below say what follows.
    if job.exchanges_code()
        && let Some(provider) = state.providers.get(&job.provider)
        && provider.prepare().await.is_ok()
        && let Some(operation) = super::exchange::begin(state, job.operation_id).await?
    {
        return run_from(job, state, operation, true).await;
    }
    let operation = operations::find(&state.reader, job.operation_id)
        .await?
        .ok_or(SignInError::OperationMissing(job.operation_id))?;
    run_from(job, state, operation, false).await
}

/// [`run`] from `operation` as read; `marked_for_us`: its exchange mark was set
/// for this run, by the callback that handed it over (see `handoff`) or as the
/// run read it.
pub(super) async fn run_from(
    job: &SignInJob,
    state: &WorkerState,
    operation: Model,
    marked_for_us: bool,
) -> Result<(), SignInError> {
    if operation.status != entity::async_operation::OperationStatus::Pending {
        tracing::info!("operation already finished; nothing to do");
        return Ok(());
    }
    // Status requests in this process are answered `pending` from memory while it
    // runs here (`running_here`).
    let _running = state.events.running().start(&operation);
    let timeout = state.settings.operation_timeout;
    if operations::is_stale(&operation, timeout) {
        return Err(SignInError::Expired);
    }
    let provider = state
        .providers
        .get(&job.provider)
        .ok_or_else(|| SignInError::UnknownProvider(job.provider.clone()))?;

    let age = Utc::now()
        .signed_duration_since(operation.created_at)
        .to_std()
        .unwrap_or_default();
    let operation_deadline = Instant::now() + timeout.saturating_sub(age);
    let code_deadline = Instant::now() + MAX_CODE_AGE.saturating_sub(age);

    let (tokens, profile) = match (&job.id_token, &job.nonce) {
        // Facebook's SDK: a user access token, checked with Graph before use.
        _ if let Some(access_token) = &job.access_token => {
            let (tokens, profile) = with_retries(operation_deadline, true, "graph", || {
                provider.verify_facebook_access_token(access_token)
            })
            .await?;
            (Some(tokens), profile)
        }
        // An SDK's or One Tap's ID token: validating it is the whole provider step.
        (Some(id_token), Some(nonce)) => {
            let profile = provider
                .verify_native_id_token(id_token, nonce, job.one_tap)
                .await?;
            let remember_until = Utc::now() + crate::replay::REMEMBER;
            if !crate::replay::claim(&state.db, id_token, job.operation_id, remember_until).await? {
                return Err(ProviderError::InvalidIdToken(
                    "this ID token was already used to sign in".into(),
                )
                .into());
            }
            (None, profile)
        }
        (Some(_), None) => {
            return Err(ProviderError::InvalidIdToken("no nonce was sent".into()).into());
        }
        (None, _) => {
            let deadline = code_deadline.min(operation_deadline);
            let tokens =
                match exchange(state, provider, job, &operation, marked_for_us, deadline).await? {
                    Exchange::Tokens(tokens) => tokens,
                    Exchange::FinishedElsewhere => {
                        tracing::info!("another run finished the operation meanwhile");
                        return Ok(());
                    }
                };
            let from_id_token = if provider.is_oidc() {
                Some(
                    provider
                        .verify_id_token(tokens.id_token.as_ref(), job.nonce.as_deref())
                        .await?,
                )
            } else {
                None
            };
            let profile = with_retries(operation_deadline, true, "userinfo", || {
                provider.fetch_profile(&tokens, from_id_token.as_ref(), job.form_user.as_deref())
            })
            .await?;
            (Some(tokens), profile)
        }
    };
    if state.settings.require_email && profile.email.is_none() {
        return Err(SignInError::EmailRequired);
    }
    let sealed = tokens
        .as_ref()
        .map(|t| seal_tokens(state, t))
        .unwrap_or_default();
    match store(
        state,
        job.operation_id,
        provider,
        &profile,
        &sealed,
        match LinkTo::of(&operation) {
            Some(to) => Intent::Link {
                to,
                max_lifetime: state.settings.session_max_lifetime,
            },
            None => Intent::SignIn,
        },
    )
    .await?
    {
        Outcome::SignedIn { user_id, finished } => {
            record_operation_duration(&operation, "ok");
            let kind = if operation.link_user_id.is_some() {
                EventKind::Linked
            } else {
                EventKind::SignInSucceeded
            };
            state
                .audit
                .record(job.audit(audit::Event::new(kind)).user(user_id));
            tracing::info!(user.id = %user_id, linked = operation.link_user_id.is_some(), "signed in");
            state.events.finished_as(*finished);
        }
        Outcome::AlreadyFinished => tracing::info!("operation finished elsewhere meanwhile"),
        Outcome::AccountInUse => return Err(SignInError::AccountInUse),
        Outcome::LinkSessionEnded => return Err(SignInError::LinkSessionEnded),
    }
    Ok(())
}

/// Time from the callback (the operation's creation) to its end.
pub(super) fn record_operation_duration(
    operation: &entity::async_operation::Model,
    outcome: &'static str,
) {
    let seconds = Utc::now()
        .signed_duration_since(operation.created_at)
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1e6;
    metrics::histogram!("signin_operation_duration_seconds", "provider" => operation.provider.clone(), "outcome" => outcome)
        .record(seconds.max(0.0));
}

/// The identity transaction, tried again on a database error: by now the code is
/// spent, so a whole-job re-run could only fail.
async fn store(
    state: &WorkerState,
    operation_id: Uuid,
    provider: &Provider,
    profile: &crate::providers::Profile,
    sealed: &SealedTokens,
    intent: Intent,
) -> Result<Outcome, DbErr> {
    let mut delay = Duration::from_millis(50);
    let mut tries = 1;
    loop {
        let (provider, profile, sealed) = (provider.name.clone(), profile.clone(), sealed.clone());
        // One transaction of its own (`accounts::sign_in` begins it).
        let result = state
            .writer
            .run_atomic(move |db| {
                Box::pin(async move {
                    accounts::sign_in(db, operation_id, &provider, &profile, &sealed, intent).await
                })
            })
            .await;
        match result {
            Err(error) if tries < 3 => {
                tracing::warn!(%error, "identity transaction failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 4;
                tries += 1;
            }
            result => return result,
        }
    }
}

fn seal_tokens(state: &WorkerState, tokens: &TokenSet) -> SealedTokens {
    let seal = |s: &str| state.keys.tokens.seal(s.as_bytes());
    SealedTokens {
        access_token: Some(seal(tokens.access_token.expose_secret())),
        refresh_token: tokens
            .refresh_token
            .as_ref()
            .map(|t| seal(t.expose_secret())),
        expires_at: tokens
            .expires_in
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| Utc::now() + d),
    }
}

/// Calls `step` until it succeeds, fails for good, or the next try would pass
/// `deadline`; exponential backoff with jitter between tries.
pub(super) async fn with_retries<T, F, Fut>(
    deadline: Instant,
    idempotent: bool,
    step: &'static str,
    mut f: F,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut tries = 1;
    loop {
        match f().await {
            Ok(value) => return Ok(value),
            Err(error) => {
                let jittered = backoff.mul_f64(rand::rng().random_range(0.75..1.25));
                if !error.is_retryable(idempotent)
                    || tries >= MAX_TRIES
                    || Instant::now() + jittered >= deadline
                {
                    return Err(error);
                }
                tracing::info!(step, tries, %error, "provider call failed; retrying");
                metrics::counter!("signin_jobs_retried_total", "step" => step).increment(1);
                tokio::time::sleep(jittered).await;
                backoff *= 2;
                tries += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn invalid_grant_is_not_retried() {
        let mut calls = 0;
        let result: Result<(), _> = with_retries(
            Instant::now() + Duration::from_secs(10),
            false,
            "token",
            || {
                calls += 1;
                async { Err(ProviderError::InvalidGrant) }
            },
        )
        .await;
        assert!(matches!(result, Err(ProviderError::InvalidGrant)));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn lost_answers_are_retried_only_for_idempotent_steps() {
        for (idempotent, expected_calls) in [(false, 1), (true, 3)] {
            let mut calls = 0;
            let _ = with_retries(
                Instant::now() + Duration::from_secs(10),
                idempotent,
                "x",
                || {
                    calls += 1;
                    let n = calls;
                    async move {
                        if n < 3 {
                            Err(ProviderError::NoAnswer(
                                crate::providers::TransportError::Timeout,
                            ))
                        } else {
                            Ok(())
                        }
                    }
                },
            )
            .await;
            assert_eq!(calls, expected_calls, "idempotent = {idempotent}");
        }
    }
}
