//! `GET /auth/error[?reason=CODE][&operation=ID]`: why a sign-in did not finish, in
//! words, with a "try again" link.

use entity::async_operation::OperationStatus;
use poem::{
    Response, handler,
    http::Uri,
    web::{Data, cookie::CookieJar},
};

use super::{browser_operation, parse_operation_id};
use crate::{assets, error::PageError, routes::QueryParams, state::AppState};

/// `GET /auth/error` — 200 HTML with the reason.
#[handler]
pub async fn error(
    Data(state): Data<&AppState>,
    uri: &Uri,
    jar: &CookieJar,
) -> Result<Response, PageError> {
    let params = QueryParams::parse(uri, &[("reason", 64), ("operation", 64)]).unwrap_or_default();
    if let Ok(Some(id)) = parse_operation_id(params.get("operation")) {
        if let Some(operation) = browser_operation(state, jar, Some(id)).await? {
            let message = match operation.status {
                OperationStatus::Error => operation
                    .error_message
                    .unwrap_or_else(|| "The sign-in failed.".to_owned()),
                OperationStatus::Ok if operation.redeemed_at.is_some() => {
                    "This sign-in was already used. Start a new one if you are not signed in."
                        .to_owned()
                }
                _ => "The sign-in has not finished.".to_owned(),
            };
            return Ok(assets::error_page("Sign-in did not complete", &message));
        }
    }
    let message = reason_message(params.get("reason").unwrap_or_default());
    Ok(assets::error_page("Sign-in did not complete", &message))
}

/// A sentence for an OAuth `error` code or one of ours.
fn reason_message(reason: &str) -> String {
    match reason {
        "access_denied" => "You cancelled the sign-in, or the provider denied access.".to_owned(),
        "temporarily_unavailable" | "server_error" => {
            "The sign-in provider is having trouble right now. Please try again in a moment."
                .to_owned()
        }
        "login_required" | "consent_required" | "interaction_required" => {
            "The provider needs you to sign in or consent again.".to_owned()
        }
        "no_operation" => "No sign-in is in progress in this browser.".to_owned(),
        "" => "The sign-in did not complete.".to_owned(),
        other => {
            let code: String = other
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            format!("The sign-in provider reported an error ({code}).")
        }
    }
}
