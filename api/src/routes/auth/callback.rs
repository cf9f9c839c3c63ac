//! `GET /auth/{provider}/callback`: turns the provider's redirect into a pending
//! operation and a job. It never calls the provider.

use poem::{
    IntoResponse, Response, handler,
    http::Uri,
    web::{Data, Path, Redirect, cookie::CookieJar},
};
use worker::{jobs::SignInJob, operations};

use crate::{
    browser::{self, MAX_STATE_LEN},
    error::PageError,
    routes::QueryParams,
    state::AppState,
};

const PARAMS: &[(&str, usize)] = &[
    ("state", MAX_STATE_LEN),
    ("code", 4096),
    ("error", 256),
    ("error_description", 1024),
    ("iss", 1024),
];

/// `GET /auth/{provider}/callback` — 303 to `/auth/preloader` with the operation
/// bound to this browser; 400 page for a missing or wrong `state` (nothing recorded);
/// 303 to `/auth/error?reason=…` when the provider sent `error`.
#[handler]
#[tracing::instrument(skip_all, fields(provider = %provider, operation.id))]
pub async fn callback(
    Data(state): Data<&AppState>,
    Path(provider): Path<String>,
    uri: &Uri,
    jar: &CookieJar,
) -> Result<Response, PageError> {
    let Some(provider) = state.providers.get(&provider) else {
        return Err(PageError::UnknownProvider);
    };
    let params = QueryParams::parse(uri, PARAMS).map_err(|_| PageError::BadState)?;
    let attempt = params
        .get("state")
        .and_then(|s| browser::take_attempt(jar, &state.settings, &provider.name, s));

    if let Some(reason) = params.get("error") {
        // Nothing is recorded, so even an unmatched error is safe to show.
        tracing::info!(bound = attempt.is_some(), "provider returned an error");
        return Ok(
            Redirect::see_other(format!("/auth/error?reason={}", sanitize_reason(reason)))
                .into_response(),
        );
    }
    let attempt = attempt.ok_or(PageError::BadState)?;
    // RFC 9207: a provider that names itself must be the one this attempt went to.
    if let (Some(iss), Some(expected)) = (params.get("iss"), &provider.issuer) {
        if iss.trim_end_matches('/') != expected.as_str().trim_end_matches('/') {
            return Err(PageError::BadState);
        }
    }
    let code = params
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or(PageError::BadRequest(
            "The provider did not send an authorization code.",
        ))?;
    let browser_key = browser::browser_key(jar).ok_or(PageError::BadState)?;

    let operation = operations::create_pending(
        &state.db,
        &provider.name,
        &browser::redeemer_hash(&browser_key),
        attempt.next,
    )
    .await?;
    tracing::Span::current().record("operation.id", tracing::field::display(operation.id));
    let job = SignInJob {
        operation_id: operation.id,
        provider: provider.name.clone(),
        code: code.to_owned(),
        pkce_verifier: attempt.pkce_verifier,
        nonce: attempt.nonce,
    };
    if let Err(error) = state.jobs.push(job).await {
        tracing::error!(%error, "could not enqueue the sign-in job");
        let (code, message) = operations::QUEUE_UNAVAILABLE;
        operations::mark_error(&state.db, operation.id, code, message).await?;
        return Ok(
            Redirect::see_other(format!("/auth/error?operation={}", operation.id)).into_response(),
        );
    }
    tracing::info!("sign-in queued");
    Ok(Redirect::see_other("/auth/preloader").into_response())
}

/// Keeps `error` to a short identifier so it is safe in a URL and a page.
fn sanitize_reason(reason: &str) -> String {
    let cleaned: String = reason
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "provider_error".to_owned()
    } else {
        cleaned
    }
}
