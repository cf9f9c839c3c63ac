//! `GET /auth/status[?wait=N][&operation=ID]`: where this browser's sign-in stands,
//! long-polling up to 30 s until it leaves `pending`.

use std::time::Duration;

use entity::async_operation::{Model as Operation, OperationStatus};
use poem::{
    IntoResponse, Response, handler,
    http::{Uri, header},
    web::{Data, Json, cookie::CookieJar},
};
use serde_json::json;
use tokio::time::Instant;
use worker::operations;

use super::{browser_operation, parse_operation_id};
use crate::{error::ApiError, routes::QueryParams, state::AppState};

/// Longest long-poll.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting request re-reads the database when no in-process event
/// arrives (a separate worker process finished it).
const RECHECK: Duration = Duration::from_millis(250);

/// `GET /auth/status` — 200 `{"status","error"?}`; 404 JSON when no operation is
/// bound to this browser; 400 JSON for a malformed `wait` or `operation`.
#[handler]
pub async fn status(
    Data(state): Data<&AppState>,
    uri: &Uri,
    jar: &CookieJar,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(uri, &[("wait", 8), ("operation", 64)])
        .map_err(|e| ApiError::bad_request("invalid_query", e.message()))?;
    let wait = match params.get("wait") {
        None => Duration::ZERO,
        Some(w) => Duration::from_secs(w.parse::<u64>().map_err(|_| {
            ApiError::bad_request("invalid_wait", "`wait` must be a whole number of seconds.")
        })?)
        .min(MAX_WAIT),
    };
    let id = parse_operation_id(params.get("operation")).map_err(|()| {
        ApiError::bad_request("invalid_operation", "`operation` must be an operation id.")
    })?;

    let deadline = Instant::now() + wait;
    let mut following = id;
    let operation = loop {
        // Listen before reading, so a finish between the read and the wait wakes us.
        let notified = state.events.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let operation = current(state, jar, following).await?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if operation.status != OperationStatus::Pending || remaining.is_zero() {
            break operation;
        }
        // Follow the same operation even if the browser starts another meanwhile.
        following = Some(operation.id);
        let _ = tokio::time::timeout(remaining.min(RECHECK), notified).await;
    };
    Ok(Json(status_json(&operation))
        .with_header(header::CACHE_CONTROL, "no-store")
        .into_response())
}

/// The operation, with a stale pending one ended as `timeout` on the way.
async fn current(
    state: &AppState,
    jar: &CookieJar,
    id: Option<uuid::Uuid>,
) -> Result<Operation, ApiError> {
    let operation = browser_operation(state, jar, id)
        .await?
        .ok_or(ApiError::NotFound(
            "No sign-in is in progress in this browser.",
        ))?;
    if operations::is_stale(&operation, state.settings.operation_timeout) {
        let (code, message) = operations::TIMEOUT;
        operations::mark_error(&state.db, operation.id, code, message).await?;
        return browser_operation(state, jar, Some(operation.id))
            .await?
            .ok_or(ApiError::NotFound(
                "No sign-in is in progress in this browser.",
            ));
    }
    Ok(operation)
}

fn status_json(operation: &Operation) -> serde_json::Value {
    match operation.status {
        OperationStatus::Error => json!({
            "status": "error",
            "error": {
                "code": operation.error_code.as_deref().unwrap_or("error"),
                "message": operation.error_message.as_deref().unwrap_or("The sign-in failed."),
            }
        }),
        other => json!({"status": other.as_str()}),
    }
}
