//! The browser sign-in flow: login → provider → callback → preloader (polling
//! status) → success, plus the error page and logout.

pub mod callback;
pub mod error;
pub mod login;
pub mod logout;
pub mod one_tap;
pub mod preloader;
pub mod status;
pub mod success;

use std::{future::Future, time::Duration};

use entity::async_operation::{Model as Operation, OperationStatus};
use poem::web::cookie::CookieJar;
use tokio::time::Instant;
use uuid::Uuid;
use worker::operations;

use crate::{browser, limits::LONG_POLL_RETRY_AFTER_SECS, state::AppState};

/// This browser's operation: `id` when given and bound here, else its latest.
/// `None` without a browser key, or when nothing matches.
pub(crate) async fn browser_operation(
    state: &AppState,
    jar: &CookieJar,
    id: Option<Uuid>,
) -> Result<Option<Operation>, sea_orm::DbErr> {
    let Some(redeemer_hash) = browser_redeemer_hash(state, jar) else {
        return Ok(None);
    };
    operations::find_for_browser(&state.reader, &redeemer_hash, id).await
}

/// The hash operations of this browser are bound to; `None` without a browser key.
pub(crate) fn browser_redeemer_hash(state: &AppState, jar: &CookieJar) -> Option<String> {
    browser::browser_key(jar, &state.settings).map(|key| browser::redeemer_hash(&key))
}

/// `operation=<uuid>` from a query, or `Err` for a malformed one.
pub(crate) fn parse_operation_id(value: Option<&str>) -> Result<Option<Uuid>, ()> {
    value
        .map(|v| Uuid::parse_str(v).map_err(|_| ()))
        .transpose()
}

/// Longest long-poll.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// A backstop only: every finish reaches a waiting request as an event (in-process
/// from the embedded worker, `NOTIFY` on PostgreSQL, the commit watch on SQLite with
/// separate workers), so a waiting request reads the database again this rarely.
const RECHECK: Duration = Duration::from_secs(5);

/// `wait` seconds, capped at 30.
pub(crate) fn wait_duration(wait: Option<u64>) -> Duration {
    Duration::from_secs(wait.unwrap_or(0)).min(MAX_WAIT)
}

/// What a long poll found.
pub(crate) struct Polled {
    /// `None` when `load` found nothing.
    pub operation: Option<Operation>,
    /// Set when the request should have waited but every long-poll slot was taken,
    /// so it answered at once: the client should ask again after this many seconds
    /// (`Retry-After`), not at once.
    pub retry_after: Option<u64>,
}

/// Loads the operation until it leaves `pending` or `wait` passes. Waiting holds
/// one of `limits.concurrent_long_polls` slots; with none free, the current status
/// is the answer (nothing is lost: the client asks again after `retry_after`).
pub(crate) async fn long_poll<F, Fut, E>(
    state: &AppState,
    wait: Duration,
    mut load: F,
) -> Result<Polled, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<Operation>, E>>,
{
    let deadline = Instant::now() + wait;
    let mut slot = None;
    loop {
        // Listen before reading, so a finish between the read and the wait wakes us.
        let mut finishes = state.events.subscribe();
        let operation = load().await?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        match operation {
            Some(op) if op.status == OperationStatus::Pending && !remaining.is_zero() => {
                if slot.is_none() {
                    slot = state.limits.hold_long_poll();
                    if slot.is_none() {
                        metrics::counter!("signin_long_polls_refused_total").increment(1);
                        return Ok(Polled {
                            operation: Some(op),
                            retry_after: Some(LONG_POLL_RETRY_AFTER_SECS),
                        });
                    }
                }
                // The finish said how it ended (the embedded worker's row, another
                // process's announcement): answer from it.
                if let Ok(Some(finished)) =
                    tokio::time::timeout(remaining.min(RECHECK), finishes.wait_for(&op)).await
                {
                    return Ok(Polled {
                        operation: Some(Operation::clone(&finished)),
                        retry_after: None,
                    });
                }
            }
            operation => {
                return Ok(Polled {
                    operation,
                    retry_after: None,
                });
            }
        }
    }
}
