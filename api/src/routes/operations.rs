//! `GET /api/operations/{id}`: a native sign-in's status for the app that started
//! it (by its poll secret), long-polling up to 30 s; on `ok` the tokens, once.

use entity::async_operation::{Model as Operation, OperationStatus};
use poem::{Request, web::Data};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Header, Path, Query},
    payload::Json,
};
use uuid::Uuid;
use worker::{crypto, operations};

use super::auth::{long_poll, wait_duration};
use crate::{
    error::ApiError,
    limits::IpBudget,
    openapi::ErrorDetail,
    session::{self, Client, TokenPair},
    state::AppState,
};

/// Where a native sign-in stands.
#[derive(Debug, Object)]
pub struct OperationResult {
    /// `pending`, `ok` or `error`.
    pub status: String,
    /// Present when `error`.
    #[oai(nullable)]
    pub error: Option<ErrorDetail>,
    /// Present when `ok`, in the first answer only.
    #[oai(nullable)]
    pub tokens: Option<TokenPair>,
}

/// A status answer.
#[derive(ApiResponse)]
pub enum OperationResponse {
    /// Where the sign-in stands. With `Retry-After`, the server could not hold this
    /// request open (too many waiting): ask again after that many seconds.
    #[oai(status = 200)]
    Status(
        Json<OperationResult>,
        #[oai(header = "Retry-After")] Option<u64>,
    ),
}

/// Native sign-in operations.
#[derive(Default)]
pub struct OperationsApi;

#[OpenApi]
impl OperationsApi {
    /// The operation's status; `ok` carries the tokens exactly once (then 410).
    #[oai(
        path = "/api/operations/:id",
        method = "get",
        tag = "crate::routes::Tag::Auth"
    )]
    async fn get(
        &self,
        Data(state): Data<&AppState>,
        req: &Request,
        id: Path<Uuid>,
        /// The poll secret from the token exchange.
        #[oai(name = "X-Poll-Secret")]
        secret: Header<Option<String>>,
        /// Seconds to wait for the status to leave `pending` (capped at 30).
        #[oai(validator(minimum(value = "0"), maximum(value = "3600")))]
        wait: Query<Option<u64>>,
    ) -> Result<OperationResponse, ApiError> {
        state.limits.check(IpBudget::StatusPoll, req).await?;
        let not_found = || ApiError::NotFound("No such operation for this poll secret.");
        let secret = secret
            .0
            .filter(|s| !s.is_empty() && s.len() <= 128)
            .ok_or_else(not_found)?;
        let redeemer = crypto::sha256_hex(&secret);
        let polled = long_poll(state, wait_duration(wait.0), || async {
            operations::find_for_browser(&state.reader, &redeemer, Some(id.0)).await
        })
        .await?;
        let operation = polled
            .operation
            .filter(|op| op.kind == operations::KIND_NATIVE)
            .ok_or_else(not_found)?;
        let result = result(state, req, &redeemer, operation).await?;
        Ok(OperationResponse::Status(Json(result), polled.retry_after))
    }
}

async fn result(
    state: &AppState,
    req: &Request,
    redeemer: &str,
    operation: Operation,
) -> Result<OperationResult, ApiError> {
    match operation.status {
        OperationStatus::Pending => Ok(OperationResult {
            status: "pending".into(),
            error: None,
            tokens: None,
        }),
        OperationStatus::Error => Ok(OperationResult {
            status: "error".into(),
            error: Some(ErrorDetail {
                code: operation.error_code.unwrap_or_else(|| "error".into()),
                message: operation
                    .error_message
                    .unwrap_or_else(|| "The sign-in failed.".into()),
            }),
            tokens: None,
        }),
        OperationStatus::Ok => {
            let Some((user_id, tokens)) = session::redeem_into_api_session(
                state,
                operation.id,
                redeemer.to_owned(),
                Client::of(req),
            )
            .await?
            else {
                return Err(ApiError::Gone {
                    code: "already_redeemed",
                    message:
                        "The tokens of this operation were already delivered, or can no longer be."
                            .into(),
                });
            };
            tracing::info!(operation.id = %operation.id, user.id = %user_id, "native sign-in redeemed");
            Ok(OperationResult {
                status: "ok".into(),
                error: None,
                tokens: Some(tokens),
            })
        }
    }
}
