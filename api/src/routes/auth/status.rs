//! `GET /auth/status[?wait=N][&operation=ID]`: where this browser's sign-in stands,
//! long-polling up to 30 s until it leaves `pending`.

use entity::async_operation::{Model as Operation, OperationStatus};
use poem::{Request, http::Uri, web::Data};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Query, payload::Json};
use worker::operations;

use super::{browser_redeemer_hash, long_poll, parse_operation_id, wait_duration};
use crate::{
    error::ApiError, limits::IpBudget, openapi::ErrorDetail, routes::QueryParams, state::AppState,
};

/// Where a browser sign-in stands.
#[derive(Debug, Object)]
pub struct StatusBody {
    /// `pending`, `ok` or `error`.
    pub status: String,
    /// Present when `error`.
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<ErrorDetail>,
    /// With `exchange_interrupted` (a worker died while the provider had the code):
    /// where to start the same sign-in again. The preloader follows it once.
    #[oai(skip_serializing_if_is_none)]
    pub restart_url: Option<String>,
}

/// A status answer.
#[derive(ApiResponse)]
pub enum StatusResponse {
    /// Where the sign-in stands. With `Retry-After`, the server could not hold this
    /// request open (too many waiting): ask again after that many seconds.
    #[oai(status = 200)]
    Status(Json<StatusBody>, #[oai(header = "Retry-After")] Option<u64>),
}

/// The browser flow's status endpoint.
#[derive(Default)]
pub struct StatusApi;

#[OpenApi]
impl StatusApi {
    /// This browser's operation (its latest, or `operation`); 404 when none.
    #[oai(
        path = "/auth/status",
        method = "get",
        tag = "crate::routes::Tag::Browser"
    )]
    async fn status(
        &self,
        Data(state): Data<&AppState>,
        req: &Request,
        uri: &Uri,
        /// Seconds to wait for the status to leave `pending` (capped at 30).
        #[oai(
            name = "wait",
            validator(minimum(value = "0"), maximum(value = "3600"))
        )]
        _wait: Query<Option<u64>>,
        /// A specific operation of this browser (its id).
        #[oai(name = "operation")]
        _operation: Query<Option<uuid::Uuid>>,
    ) -> Result<StatusResponse, ApiError> {
        state.limits.check(IpBudget::StatusPoll, req).await?;
        // Read strictly (no repeated or oversized parameters) from the raw query.
        let params = QueryParams::parse(uri, &[("wait", 8), ("operation", 64)])
            .map_err(|e| ApiError::bad_request("invalid_query", e.message()))?;
        let wait = match params.get("wait") {
            None => None,
            Some(w) => Some(w.parse::<u64>().map_err(|_| {
                ApiError::bad_request("invalid_wait", "`wait` must be a whole number of seconds.")
            })?),
        };
        let id = parse_operation_id(params.get("operation")).map_err(|()| {
            ApiError::bad_request("invalid_operation", "`operation` must be an operation id.")
        })?;
        let jar = req.cookie();
        // The first read picks the operation, and is also the long poll's first
        // look at it; waiting (only while it is pending) follows that one. A poll
        // costs one read, plus one per wake-up.
        let chosen = std::sync::OnceLock::new();
        let polled = long_poll(state, wait_duration(wait), || async {
            let operation = current(state, jar, chosen.get().copied().or(id)).await?;
            let _ = chosen.set(operation.id);
            Ok::<_, ApiError>(Some(operation))
        })
        .await?;
        let operation = polled.operation.ok_or(ApiError::NotFound(
            "No sign-in is in progress in this browser.",
        ))?;
        Ok(StatusResponse::Status(
            Json(body(&operation)),
            polled.retry_after,
        ))
    }
}

/// The operation, with a stale pending one ended as `timeout` on the way.
async fn current(
    state: &AppState,
    jar: &poem::web::cookie::CookieJar,
    id: Option<uuid::Uuid>,
) -> Result<Operation, ApiError> {
    let missing = || ApiError::NotFound("No sign-in is in progress in this browser.");
    let operation = known_or_read(state, jar, id, true)
        .await?
        .ok_or_else(missing)?;
    if operations::is_stale(&operation, state.settings.operation_timeout) {
        let (code, message) = operations::TIMEOUT;
        operations::mark_error(&state.db, operation.id, code, message).await?;
        // From the database: a copy in memory may be the pending one.
        return known_or_read(state, jar, Some(operation.id), false)
            .await?
            .ok_or_else(missing);
    }
    Ok(operation)
}

/// This browser's operation (`id` when given and bound here, else its latest).
/// With `from_memory`, an operation asked for by id comes from memory when this
/// process knows it: finished here or read finished lately (nothing this route
/// reports of a finished one changes), or pending while its job runs here (the
/// finish will be announced here). A finished one read here is kept for the
/// browser's next ask.
async fn known_or_read(
    state: &AppState,
    jar: &poem::web::cookie::CookieJar,
    id: Option<uuid::Uuid>,
    from_memory: bool,
) -> Result<Option<Operation>, ApiError> {
    let Some(redeemer_hash) = browser_redeemer_hash(state, jar) else {
        return Ok(None);
    };
    let known = id
        .filter(|_| from_memory)
        .and_then(|id| state.events.known(id, &redeemer_hash));
    if let Some(known) = known {
        return Ok(Some(Operation::clone(&known)));
    }
    let operation = operations::find_for_browser(&state.reader, &redeemer_hash, id).await?;
    if let Some(operation) = &operation
        && operation.status != OperationStatus::Pending
    {
        state
            .events
            .recent()
            .remember(std::sync::Arc::new(operation.clone()));
    }
    Ok(operation)
}

fn body(operation: &Operation) -> StatusBody {
    match operation.status {
        OperationStatus::Error => StatusBody {
            status: "error".into(),
            error: Some(ErrorDetail {
                code: operation
                    .error_code
                    .clone()
                    .unwrap_or_else(|| "error".into()),
                message: operation
                    .error_message
                    .clone()
                    .unwrap_or_else(|| "The sign-in failed.".into()),
            }),
            restart_url: restart_url(operation),
        },
        other => StatusBody {
            status: other.as_str().into(),
            error: None,
            restart_url: None,
        },
    }
}

/// The login that starts `operation`'s sign-in again, for an interrupted exchange.
fn restart_url(operation: &Operation) -> Option<String> {
    let interrupted = operation.error_code.as_deref() == Some(worker::jobs::EXCHANGE_INTERRUPTED);
    if !interrupted || operation.kind != operations::KIND_BROWSER {
        return None;
    }
    let login = format!("/auth/{}/login", operation.provider);
    Some(match &operation.next_path {
        Some(next) => {
            let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
            format!("{login}?next={next}")
        }
        None => login,
    })
}
