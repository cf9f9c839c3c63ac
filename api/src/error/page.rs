//! `PageError`: errors of the HTML routes, rendered as the error page.

use poem::{
    IntoResponse, Response,
    error::ResponseError,
    http::{StatusCode, header},
};

use super::is_outage;

impl From<crate::limits::RateLimited> for PageError {
    fn from(limited: crate::limits::RateLimited) -> Self {
        Self::TooManyRequests {
            retry_after: limited.retry_after,
        }
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
    /// The database cannot be reached.
    #[error("service unavailable")]
    Unavailable,
    /// A state-changing browser request from another site (CSRF).
    #[error("cross-site request")]
    CrossSite,
    /// Too many requests from this address; retry after this many seconds.
    #[error("too many requests")]
    TooManyRequests { retry_after: u64 },
    /// Linking needs a recent sign-in (403).
    #[error("sign in again")]
    ReauthenticationRequired,
    /// The sign-in queue is full (503); retry after this many seconds.
    #[error("busy")]
    Busy { retry_after: u64 },
    /// The request body is over the limit (413).
    #[error("request body too large")]
    PayloadTooLarge,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for PageError {
    fn from(error: sea_orm::DbErr) -> Self {
        if is_outage(&error) {
            tracing::warn!(%error, "database unavailable");
            return Self::Unavailable;
        }
        Self::Internal(error.into())
    }
}

impl ResponseError for PageError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadState | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnknownProvider => StatusCode::NOT_FOUND,
            Self::ProviderUnavailable | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::CrossSite | Self::ReauthenticationRequired => StatusCode::FORBIDDEN,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn as_response(&self) -> Response {
        let (title, message) = match self {
            Self::ReauthenticationRequired => (
                "Sign in again first",
                "Linking another account needs a recent sign-in. Sign out, sign in again, and then link the account.",
            ),
            Self::Busy { .. } => (
                "Too many sign-ins right now",
                "So many sign-ins are in progress that we cannot take yours right now. Please wait a few seconds and try again.",
            ),
            Self::PayloadTooLarge => (
                "Request too large",
                "The form sent more data than this site accepts. Go back and try again.",
            ),
            Self::BadState => (
                "This sign-in link is not valid",
                "The sign-in could not be matched to this browser (it may have expired or been started elsewhere). Please start again.",
            ),
            Self::UnknownProvider => (
                "Unknown sign-in provider",
                "There is no such sign-in provider here.",
            ),
            Self::BadRequest(message) => ("Bad request", *message),
            Self::Unavailable => (
                "Temporarily unavailable",
                "We cannot complete sign-ins right now. Please try again in a moment.",
            ),
            Self::ProviderUnavailable => (
                "Sign-in provider unavailable",
                "We cannot reach this sign-in provider right now. Please try again in a moment.",
            ),
            Self::CrossSite => (
                "Request refused",
                "This action must be started from this site's own pages. Go back to the site and try again.",
            ),
            Self::TooManyRequests { .. } => (
                "Too many attempts",
                "Too many sign-in attempts from your network. Please wait a moment and try again.",
            ),
            Self::Internal(error) => {
                tracing::error!(error = ?error, "internal error");
                (
                    "Something went wrong",
                    "Something went wrong on our side. Please try again.",
                )
            }
        };
        let mut response = crate::assets::error_page(title, message)
            .with_status(self.status())
            .into_response();
        if let Self::TooManyRequests { retry_after } | Self::Busy { retry_after } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(*retry_after));
        }
        response
    }
}

impl From<crate::limits::Refused> for PageError {
    fn from(refused: crate::limits::Refused) -> Self {
        use crate::limits::{RETRY_AFTER_SECS, Refused};
        match refused {
            Refused::Browser | Refused::Client => Self::TooManyRequests {
                retry_after: RETRY_AFTER_SECS,
            },
            Refused::Full => Self::Busy {
                retry_after: RETRY_AFTER_SECS,
            },
            Refused::Db(error) => error.into(),
        }
    }
}
