//! Errors of the web tier, each mapped to a response in one place: `ApiError` as
//! JSON `{"error":{"code","message"}}`, `PageError` as the HTML error page. Only
//! `Internal` is a 500; it is logged once with its cause chain, the body stays generic.

use poem::{
    IntoResponse, Response,
    error::ResponseError,
    http::{StatusCode, header},
    web::Json,
};
use serde_json::json;

/// Errors of the JSON routes.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(&'static str),
    #[error("authentication required")]
    Unauthorized,
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// The request conflicts with the current state (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
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

impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::Internal(error.into())
    }
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn as_response(&self) -> Response {
        let (code, message) = match self {
            Self::NotFound(what) => ("not_found", (*what).to_owned()),
            Self::Unauthorized => ("unauthorized", "Sign in to use this endpoint.".to_owned()),
            Self::BadRequest { code, message } | Self::Conflict { code, message } => {
                (*code, message.clone())
            }
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
        if matches!(self, Self::Unauthorized) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Errors of the HTML routes, rendered as the error page.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// Missing, unknown or mismatched `state`: the attempt cannot be trusted.
    #[error("sign-in state missing or invalid")]
    BadState,
    #[error("unknown provider")]
    UnknownProvider,
    /// Any other malformed request.
    #[error("{0}")]
    BadRequest(&'static str),
    /// The provider's endpoints could not be resolved (discovery failed).
    #[error("provider unavailable")]
    ProviderUnavailable,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for PageError {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::Internal(error.into())
    }
}

impl ResponseError for PageError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadState | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnknownProvider => StatusCode::NOT_FOUND,
            Self::ProviderUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn as_response(&self) -> Response {
        let (title, message) = match self {
            Self::BadState => (
                "This sign-in link is not valid",
                "The sign-in could not be matched to this browser (it may have expired or been started elsewhere). Please start again.",
            ),
            Self::UnknownProvider => (
                "Unknown sign-in provider",
                "There is no such sign-in provider here.",
            ),
            Self::BadRequest(message) => ("Bad request", *message),
            Self::ProviderUnavailable => (
                "Sign-in provider unavailable",
                "We cannot reach this sign-in provider right now. Please try again in a moment.",
            ),
            Self::Internal(error) => {
                tracing::error!(error = ?error, "internal error");
                (
                    "Something went wrong",
                    "Something went wrong on our side. Please try again.",
                )
            }
        };
        crate::assets::error_page(title, message)
            .with_status(self.status())
            .into_response()
    }
}
