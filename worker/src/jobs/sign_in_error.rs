//! Why a sign-in job failed, and what the person signing in is told: each error
//! maps to the operation's stable `error_code` and a sentence (README, "Sign-in
//! errors").

use sea_orm::DbErr;
use uuid::Uuid;

use crate::{
    operations,
    providers::{AccessTokenProblem, ProviderError},
};

/// Why a sign-in job failed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("operation {0} does not exist")]
    OperationMissing(Uuid),
    #[error("provider `{0}` is not configured in this worker")]
    UnknownProvider(String),
    #[error("the operation ran out of time")]
    Expired,
    #[error("the provider gave no email and one is required")]
    EmailRequired,
    #[error("the provider account is linked to another user")]
    AccountInUse,
    /// The session that asked for a link ended before the link was made.
    #[error("the session that asked for this link has ended")]
    LinkSessionEnded,
    /// A worker died while its token request was in flight: the code may be spent.
    #[error("an earlier run was interrupted during the token request")]
    ExchangeInterrupted,
    /// The stored token response was sealed under another `secret_key`.
    #[error("the stored token response cannot be opened")]
    StoredResponseUnreadable,
}

impl SignInError {
    /// The operation's `error_code` and a sentence for the person signing in.
    pub fn user_error(&self, provider: &str) -> (&'static str, String) {
        match self {
            Self::Provider(e) => match e {
                ProviderError::Unavailable(_) | ProviderError::NoAnswer(_) => (
                    "provider_unavailable",
                    format!(
                        "{provider} is not responding right now. Please try again in a moment."
                    ),
                ),
                ProviderError::InvalidGrant => (
                    "invalid_grant",
                    format!(
                        "{provider} did not accept this sign-in (it may have expired or been used already). Please try again."
                    ),
                ),
                ProviderError::InvalidIdToken(_) => (
                    "id_token_invalid",
                    format!("We could not verify the identity {provider} sent. Please try again."),
                ),
                ProviderError::Rejected(_) | ProviderError::Discovery(_) => (
                    "provider_error",
                    format!(
                        "{provider} refused the sign-in request. If this keeps happening, contact the site's administrators."
                    ),
                ),
                ProviderError::Profile(_) => (
                    "profile_invalid",
                    format!("We could not read your profile from {provider}. Please try again."),
                ),
                ProviderError::AccessToken(problem) => access_token_error(*problem, provider),
                ProviderError::DomainNotAllowed => (
                    "domain_not_allowed",
                    format!(
                        "This {provider} account is not from an organisation allowed to sign in here."
                    ),
                ),
            },
            Self::EmailRequired => (
                "email_required",
                format!(
                    "{provider} did not share an email address, and this site needs one. Allow access to your email and try again."
                ),
            ),
            Self::AccountInUse => (
                "account_in_use",
                format!("This {provider} account is already linked to another user."),
            ),
            Self::LinkSessionEnded => (
                "link_session_ended",
                format!(
                    "The session that asked to link {provider} has ended, so nothing was linked. Sign in again and link from there."
                ),
            ),
            Self::Expired => (operations::TIMEOUT.0, operations::TIMEOUT.1.to_owned()),
            Self::ExchangeInterrupted => (
                EXCHANGE_INTERRUPTED,
                "Your sign-in was interrupted on our side. Please sign in again.".to_owned(),
            ),
            Self::Db(_)
            | Self::OperationMissing(_)
            | Self::UnknownProvider(_)
            | Self::StoredResponseUnreadable => (
                "internal_error",
                "Something went wrong on our side. Please try again.".to_owned(),
            ),
        }
    }
}

/// What a person is told when their Facebook SDK access token was refused.
fn access_token_error(problem: AccessTokenProblem, provider: &str) -> (&'static str, String) {
    match problem {
        AccessTokenProblem::OtherApp => (
            "token_not_for_this_app",
            format!(
                "This {provider} sign-in was made for another app. Sign in again from this app."
            ),
        ),
        AccessTokenProblem::Expired => (
            "access_token_expired",
            format!("Your {provider} sign-in has expired. Please sign in again."),
        ),
        AccessTokenProblem::Invalid | AccessTokenProblem::NotThisUser => (
            "access_token_invalid",
            format!("{provider} did not confirm this sign-in. Please sign in again."),
        ),
    }
}

/// The error code of an operation whose token request a dying worker left in doubt;
/// the preloader restarts such a sign-in once by itself.
pub const EXCHANGE_INTERRUPTED: &str = "exchange_interrupted";
