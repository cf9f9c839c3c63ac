//! Errors of the web tier, each mapped to a response in one place: `ApiError` as
//! JSON `{"error":{"code","message"}}`, `PageError` as the HTML error page. Only
//! `Internal` is a 500; it is logged once with its cause chain, the body stays generic.

mod codes;
mod page;

use poem::{
    IntoResponse, Response,
    error::ResponseError,
    http::{StatusCode, header},
    web::Json,
};
use serde_json::json;

pub use codes::ERROR_CODES;
pub use page::PageError;

/// Errors of the JSON routes.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(&'static str),
    #[error("authentication required")]
    Unauthorized,
    /// A service presented no client credentials, or wrong ones (HTTP Basic).
    #[error("invalid client")]
    InvalidClient,
    /// A bearer token was presented but is invalid, expired or revoked.
    #[error("invalid token")]
    InvalidToken,
    /// Too many attempts; retry after this many seconds.
    #[error("too many requests")]
    TooManyRequests { retry_after: u64 },
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// The request conflicts with the current state (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 401 with a specific code (a bad refresh token).
    #[error("{message}")]
    Unauthenticated { code: &'static str, message: String },
    /// Email and password do not match (the same answer for an unknown email).
    #[error("invalid credentials")]
    Credentials,
    /// A state-changing request authenticated by the session cookie came from
    /// another site (CSRF).
    #[error("cross-site request")]
    CrossSite,
    /// A sensitive change needs a recent sign-in (403).
    #[error("sign in again")]
    ReauthenticationRequired,
    /// Already consumed (410), e.g. an operation's tokens were delivered.
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    /// A dependency (the job queue) is down (503).
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// Too busy to take this request now (503 `busy` with `Retry-After`): every
    /// password hashing slot is taken, or the sign-in queue is full. Nothing was
    /// done, so a retry loses nothing.
    #[error("{message}")]
    Busy {
        message: &'static str,
        retry_after: u64,
    },
    /// The request body is over the limit (413).
    #[error("request body too large")]
    PayloadTooLarge,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 400 with a stable code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }
}

impl From<crate::limits::RateLimited> for ApiError {
    fn from(limited: crate::limits::RateLimited) -> Self {
        Self::TooManyRequests {
            retry_after: limited.retry_after,
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        if is_outage(&error) {
            tracing::warn!(%error, "database unavailable");
            return Self::Unavailable {
                code: "database_unavailable",
                message: "The service is temporarily unavailable. Please try again in a moment."
                    .to_owned(),
            };
        }
        Self::Internal(error.into())
    }
}

/// Whether `path` is a JSON route, whose errors are `{"error":{"code","message"}}`
/// (the others are pages).
/// The error code and sentence of a request poem-openapi refused while parsing it
/// against the document (a parameter or a body field out of its declared bounds):
/// the ones the route itself uses for that field, so a client sees `invalid_email`
/// whichever check caught it. `None` for other errors (they stay `bad_request`).
pub fn parse_error_code(error: &poem::Error) -> Option<(&'static str, &'static str)> {
    use poem_openapi::error::{ParseParamError, ParseRequestPayloadError};
    let (object, field) = if let Some(param) = error.downcast_ref::<ParseParamError>() {
        ("", param.name)
    } else if let Some(payload) = error.downcast_ref::<ParseRequestPayloadError>() {
        let reason = payload.reason.as_str();
        let object = reason.split('"').nth(1).unwrap_or_default();
        let field = reason
            .split("field `")
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .unwrap_or_default();
        (object, field)
    } else {
        return None;
    };
    Some(match (object, field) {
        ("RegisterRequest", "email") => (
            "invalid_email",
            "Enter an email address like ada@example.com.",
        ),
        ("RegisterRequest" | "PasswordChange", "password") => (
            "weak_password",
            "Use at least 10 characters (and at most 256).",
        ),
        (_, "limit") => ("invalid_limit", "`limit` must be between 1 and 100."),
        (_, "wait") => (
            "invalid_wait",
            "`wait` must be a whole number of seconds, at most 3600.",
        ),
        (_, "operation") => ("invalid_operation", "`operation` must be an operation id."),
        _ => return None,
    })
}

pub fn is_json_route(path: &str) -> bool {
    path.starts_with("/api/") || path == "/auth/status"
}

/// Whether a database error means the database cannot be reached (503), not a bug.
pub fn is_outage(error: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            matches!(
                **e,
                sea_orm::sqlx::Error::Io(_)
                    | sea_orm::sqlx::Error::PoolTimedOut
                    | sea_orm::sqlx::Error::PoolClosed
            )
        }
        _ => false,
    }
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized | Self::InvalidToken | Self::InvalidClient => {
                StatusCode::UNAUTHORIZED
            }
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Credentials | Self::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            Self::Gone { .. } => StatusCode::GONE,
            Self::CrossSite | Self::ReauthenticationRequired => StatusCode::FORBIDDEN,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn as_response(&self) -> Response {
        let (code, message) = match self {
            Self::Busy { message, .. } => ("busy", (*message).to_owned()),
            Self::PayloadTooLarge => (
                "payload_too_large",
                format!(
                    "The request body is larger than {} KiB.",
                    crate::body_limit::MAX_BODY / 1024
                ),
            ),
            Self::CrossSite => (
                "cross_site_request",
                "This change must come from this site's own pages.".to_owned(),
            ),
            Self::ReauthenticationRequired => (
                "reauthentication_required",
                "For your security, sign in again before making this change.".to_owned(),
            ),
            Self::NotFound(what) => ("not_found", (*what).to_owned()),
            Self::Unauthorized => ("unauthorized", "Sign in to use this endpoint.".to_owned()),
            Self::InvalidClient => (
                "invalid_client",
                "Authenticate with the client id and secret of tokens.introspection_clients (HTTP Basic).".to_owned(),
            ),
            Self::InvalidToken => (
                "invalid_token",
                "The access token is invalid, expired or revoked.".to_owned(),
            ),
            Self::TooManyRequests { retry_after } => (
                "too_many_requests",
                format!("Too many attempts. Try again in {retry_after} seconds."),
            ),
            Self::BadRequest { code, message }
            | Self::Conflict { code, message }
            | Self::Gone { code, message }
            | Self::Unavailable { code, message }
            | Self::Unauthenticated { code, message } => (*code, message.clone()),
            Self::Credentials => (
                "invalid_credentials",
                "Email or password is incorrect.".to_owned(),
            ),
            Self::Internal(error) => {
                tracing::error!(error = ?error, "internal error");
                (
                    "internal_error",
                    "Something went wrong on our side.".to_owned(),
                )
            }
        };
        let mut response = Json(json!({"error": {"code": code, "message": message}}))
            .with_status(self.status())
            .with_header(header::CACHE_CONTROL, "no-store")
            .into_response();
        let headers = response.headers_mut();
        match self {
            Self::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            Self::InvalidClient => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Basic realm=\"social-signin\""),
                );
            }
            Self::InvalidToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            Self::TooManyRequests { retry_after } | Self::Busy { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, header::HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        response
    }
}

impl From<crate::limits::Refused> for ApiError {
    fn from(refused: crate::limits::Refused) -> Self {
        use crate::limits::{RETRY_AFTER_SECS, Refused};
        match refused {
            Refused::Browser | Refused::Client => Self::TooManyRequests {
                retry_after: RETRY_AFTER_SECS,
            },
            Refused::Full => Self::Busy {
                message: "Too many sign-ins are in progress right now. Please try again in a moment.",
                retry_after: RETRY_AFTER_SECS,
            },
            Refused::Db(error) => error.into(),
        }
    }
}

impl From<worker::passwords::Busy> for ApiError {
    fn from(_: worker::passwords::Busy) -> Self {
        Self::Busy {
            message: "The server is busy. Please try again in a moment.",
            retry_after: 1,
        }
    }
}
