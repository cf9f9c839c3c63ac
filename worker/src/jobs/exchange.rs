//! The code exchange of a sign-in job, made safe against worker crashes. A provider
//! accepts a code once, so a re-run of the job must never present it again:
//!
//! 1. before the token request, the operation records `exchange_started_at`;
//! 2. the moment the token response arrives it is stored with the operation,
//!    sealed like queued jobs, before any further step;
//! 3. a re-run resumes from a stored response. One that finds the exchange begun
//!    but no response waits out the longest a live run's token request can take
//!    (the provider's `timeout`, counted from the latest attempt): by then a live run
//!    has stored the response (resume from it) or finished the operation (nothing to
//!    do). If neither, the run that sent the request died with it, and whether the
//!    code was spent cannot be known: the operation ends `exchange_interrupted` (the
//!    preloader then restarts the sign-in once).
//!
//! Finishing the operation (`ok` or `error`) removes the stored response.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::async_operation::{Column, Entity as AsyncOperation, Model, OperationStatus};
use openidconnect::core::CoreIdToken;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, UpdateMany, sea_query::Expr};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use uuid::Uuid;

use super::{SignInError, SignInJob, sign_in::with_retries};
use crate::{
    WorkerState,
    providers::{Provider, TokenSet},
};

/// What a job does about the code.
pub(super) enum Exchange {
    /// The token response: fresh from the provider, or stored by another run.
    Tokens(TokenSet),
    /// Another run of this job finished the operation meanwhile.
    FinishedElsewhere,
}

/// Added to the provider's `timeout` before a begun exchange counts as abandoned.
const IN_FLIGHT_SLACK: Duration = Duration::from_secs(1);
const RECHECK: Duration = Duration::from_millis(100);

/// The token response for `job`'s code, with the code presented at most once per
/// operation (see the module docs). `marked_for_us`: the mark was set for this
/// run, by the callback that handed the job over in process as it wrote the
/// operation, or by the run itself as it read it ([`begin`]).
pub(super) async fn exchange(
    state: &WorkerState,
    provider: &Provider,
    job: &SignInJob,
    operation: &Model,
    marked_for_us: bool,
    deadline: Instant,
) -> Result<Exchange, SignInError> {
    if !marked_for_us
        && (operation.token_response.is_some() || operation.exchange_started_at.is_some())
    {
        return after_another_run(state, provider, operation.id).await;
    }
    // Discovery first: only the token request itself may leave the code in doubt.
    provider.prepare().await?;
    if !marked_for_us && !mark_started(state, operation.id, true).await? {
        return after_another_run(state, provider, operation.id).await;
    }
    let mut attempts = 0;
    let tokens = with_retries(deadline, false, "token", || {
        attempts += 1;
        let retry = attempts > 1;
        async move {
            // A retry renews the mark: a waiting run counts from the latest attempt.
            if retry && let Err(error) = mark_started(state, operation.id, false).await {
                tracing::warn!(%error, "could not renew the exchange mark");
            }
            provider
                .exchange_code(&job.code, &job.pkce_verifier, job.redirect_uri.as_deref())
                .await
        }
    })
    .await?;
    store(state, operation.id, seal(state, &tokens)).await?;
    Ok(Exchange::Tokens(tokens))
}

/// Another run began the exchange: resume from its response, leave the finished
/// operation alone, or (once its request cannot be in flight any more) give up.
async fn after_another_run(
    state: &WorkerState,
    provider: &Provider,
    id: Uuid,
) -> Result<Exchange, SignInError> {
    let in_flight = chrono::Duration::from_std(provider.request_timeout() + IN_FLIGHT_SLACK)
        .unwrap_or(chrono::Duration::MAX);
    loop {
        let operation = crate::operations::find(&state.reader, id)
            .await?
            .ok_or(SignInError::OperationMissing(id))?;
        if operation.status != OperationStatus::Pending {
            return Ok(Exchange::FinishedElsewhere);
        }
        if let Some(sealed) = &operation.token_response {
            tracing::info!("resuming from the stored token response");
            metrics::counter!("signin_jobs_resumed_total").increment(1);
            return open(state, sealed)
                .map(Exchange::Tokens)
                .ok_or(SignInError::StoredResponseUnreadable);
        }
        let begun = operation
            .exchange_started_at
            .unwrap_or(operation.created_at);
        if Utc::now() - begun > in_flight {
            return Err(SignInError::ExchangeInterrupted);
        }
        tokio::time::sleep(RECHECK).await;
    }
}

/// Records that the token request is about to be sent: the first time (`first`)
/// only if no run recorded it yet, false then when another run did (or the
/// operation is no longer pending); before a retry, renewing the mark, so a
/// waiting run counts from the latest attempt.
async fn mark_started(state: &WorkerState, id: Uuid, first: bool) -> Result<bool, DbErr> {
    let update = mark(id, first);
    let updated = state
        .writer
        .run_atomic(move |db| Box::pin(async move { update.exec(db).await }))
        .await?;
    Ok(updated.rows_affected == 1)
}

/// The statement of [`mark_started`].
fn mark(id: Uuid, first: bool) -> UpdateMany<AsyncOperation> {
    let update = AsyncOperation::update_many()
        .col_expr(Column::ExchangeStartedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(OperationStatus::Pending));
    match first {
        true => update.filter(Column::ExchangeStartedAt.is_null()),
        false => update,
    }
}

/// For a run the queue handed out: marks the exchange of operation `id` begun, by
/// this run, and returns the operation, in one statement (`RETURNING`) instead of a
/// read and then the mark; `None` when it is no longer pending or another run began
/// its exchange (read it to see which).
pub(super) async fn begin(state: &WorkerState, id: Uuid) -> Result<Option<Model>, DbErr> {
    let update = mark(id, true).filter(Column::TokenResponse.is_null());
    let rows = state
        .writer
        .run_atomic(move |db| Box::pin(async move { update.exec_with_returning(db).await }))
        .await?;
    Ok(rows.into_iter().next())
}

/// Clears the mark of an operation written marked (`operations::claim_state`)
/// whose job could not be handed over in process after all.
pub(super) fn unmark(id: Uuid) -> UpdateMany<AsyncOperation> {
    AsyncOperation::update_many()
        .col_expr(
            Column::ExchangeStartedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(Column::Id.eq(id))
}

async fn store(state: &WorkerState, id: Uuid, sealed: String) -> Result<(), DbErr> {
    let update = AsyncOperation::update_many()
        .col_expr(Column::TokenResponse, Expr::value(sealed))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(OperationStatus::Pending));
    state
        .writer
        .run_atomic(move |db| Box::pin(async move { update.exec(db).await }))
        .await?;
    Ok(())
}

/// A [`TokenSet`] as stored (sealed) between its arrival and the operation's end.
#[derive(Serialize, Deserialize)]
struct Stored {
    access_token: String,
    refresh_token: Option<String>,
    expires_in_secs: Option<u64>,
    /// As the provider sent it (the signature is checked again on resume).
    id_token: Option<String>,
}

fn seal(state: &WorkerState, tokens: &TokenSet) -> String {
    let stored = Stored {
        access_token: tokens.access_token.expose_secret().to_owned(),
        refresh_token: tokens
            .refresh_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned()),
        expires_in_secs: tokens.expires_in.map(|d| d.as_secs()),
        id_token: tokens.id_token.as_ref().map(ToString::to_string),
    };
    let plaintext = serde_json::to_vec(&stored).expect("a token response serializes");
    state.keys.jobs.seal(&plaintext)
}

fn open(state: &WorkerState, sealed: &str) -> Option<TokenSet> {
    let stored: Stored = serde_json::from_slice(&state.keys.jobs.open(sealed)?).ok()?;
    let id_token = match stored.id_token {
        Some(raw) => Some(raw.parse::<CoreIdToken>().ok()?),
        None => None,
    };
    Some(TokenSet {
        access_token: SecretString::from(stored.access_token),
        refresh_token: stored.refresh_token.map(SecretString::from),
        expires_in: stored.expires_in_secs.map(Duration::from_secs),
        id_token,
    })
}
