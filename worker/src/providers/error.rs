//! [`ProviderError`]: what can go wrong talking to a provider, and how a failed
//! token request's answer is read into one.

use openidconnect::{RequestTokenError, core::CoreErrorResponseType};

use super::{AccessTokenProblem, TransportError, facebook};

/// What can go wrong talking to a provider.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Connection refused before sending, 5xx or 429: the provider is unwell.
    #[error("provider unavailable: {0}")]
    Unavailable(#[source] TransportError),
    /// The request went out and no answer came back (timeout or broken connection).
    #[error("provider did not answer: {0}")]
    NoAnswer(#[source] TransportError),
    /// `invalid_grant`: the code is expired, used, or was issued to someone else.
    #[error("authorization code rejected (invalid_grant)")]
    InvalidGrant,
    /// Any other OAuth error response (`invalid_client`, …): usually misconfiguration.
    #[error("provider refused the request: {0}")]
    Rejected(String),
    /// The ID token failed validation.
    #[error("invalid ID token: {0}")]
    InvalidIdToken(String),
    /// The profile could not be read or lacks a subject.
    #[error("invalid profile: {0}")]
    Profile(String),
    /// The account is outside the allowed Google Workspace domain (`hd`).
    #[error("account outside the allowed domain")]
    DomainNotAllowed,
    /// Discovery or JWKS could not be used.
    #[error("discovery failed: {0}")]
    Discovery(String),
    /// A Facebook SDK access token that must not sign anyone in.
    #[error("access token refused: {0}")]
    AccessToken(AccessTokenProblem),
}

impl ProviderError {
    /// Whether a retry can help. `idempotent` steps (profile, discovery) may also
    /// retry when the answer was lost; the code exchange may not (the code may be spent).
    pub fn is_retryable(&self, idempotent: bool) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::NoAnswer(_) => idempotent,
            _ => false,
        }
    }
}

impl From<TransportError> for ProviderError {
    fn from(error: TransportError) -> Self {
        match error {
            TransportError::NotSent(_) | TransportError::Unavailable(_) => Self::Unavailable(error),
            TransportError::Timeout | TransportError::Broken(_) => Self::NoAnswer(error),
            TransportError::TooLarge => Self::Profile("response larger than 1 MiB".to_owned()),
            TransportError::Invalid(e) => Self::Rejected(e),
        }
    }
}

/// Classifies a failed token request.
pub(super) fn token_error(
    error: RequestTokenError<
        TransportError,
        openidconnect::StandardErrorResponse<CoreErrorResponseType>,
    >,
) -> ProviderError {
    match error {
        RequestTokenError::ServerResponse(err) => match err.error() {
            CoreErrorResponseType::InvalidGrant => ProviderError::InvalidGrant,
            other => ProviderError::Rejected(other.to_string()),
        },
        RequestTokenError::Request(transport) => ProviderError::from(transport),
        RequestTokenError::Parse(e, body) => error_in_body(&body)
            .unwrap_or_else(|| ProviderError::Rejected(format!("unreadable token response: {e}"))),
        RequestTokenError::Other(e) => ProviderError::Rejected(e),
    }
}

/// A failed token request's error, where oauth2 could not read one: GitHub
/// answers HTTP 200 with an OAuth error body, and Facebook's Graph an error object
/// instead of the OAuth string.
fn error_in_body(body: &[u8]) -> Option<ProviderError> {
    if let Some(graph) = facebook::graph_error(body, facebook::GraphCall::Token) {
        return Some(graph);
    }
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = json.get("error")?.as_str()?;
    Some(match code {
        "invalid_grant" | "bad_verification_code" => ProviderError::InvalidGrant,
        other => ProviderError::Rejected(other.to_owned()),
    })
}
