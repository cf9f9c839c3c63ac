//! `GET|POST /auth/{provider}/callback`: turns the provider's redirect into a pending
//! operation and a job. It never calls the provider. POST is for providers that
//! return with `response_mode=form_post` (Apple).

use entity::async_operation::Model as Operation;
use poem::{
    IntoResponse, Request, Response, handler,
    http::{Uri, header},
    web::{Data, Html, Path, Redirect, cookie::CookieJar},
};
use uuid::Uuid;
use worker::{
    audit::{self, EventKind},
    crypto,
    jobs::{SignInJob, Started},
    operations::{self, NewOperation},
    providers::Provider,
};

use crate::{
    assets,
    browser::{self, MAX_STATE_LEN},
    error::PageError,
    limits::IpBudget,
    routes::QueryParams,
    state::AppState,
};

const PARAMS: &[(&str, usize)] = &[
    ("state", MAX_STATE_LEN),
    ("code", 4096),
    ("error", 256),
    ("error_description", 1024),
    ("iss", 1024),
    // Apple's first sign-in: `{"name":{"firstName","lastName"},"email"}`.
    ("user", 2048),
    // Set by our own re-post page; see `repost_page`.
    ("_hop", 1),
];

/// `GET /auth/{provider}/callback` — 303 to `/auth/preloader?operation=ID` (an
/// operation bound to this browser; a repeated callback gets the same one); 400 page for a missing or wrong `state` (nothing recorded);
/// 303 to `/auth/error?reason=…` when the provider sent `error`.
#[handler]
#[tracing::instrument(skip_all, fields(provider = %provider, operation.id))]
pub async fn callback(
    Data(state): Data<&AppState>,
    Path(provider): Path<String>,
    uri: &Uri,
    req: &Request,
    jar: &CookieJar,
) -> Result<Response, PageError> {
    state.limits.check(IpBudget::Callback, req).await?;
    let provider = state
        .providers
        .get(&provider)
        .ok_or(PageError::UnknownProvider)?;
    let params = QueryParams::parse(uri, PARAMS).map_err(|_| PageError::BadState)?;
    handle(state, provider, &params, req, jar).await
}

/// `POST /auth/{provider}/callback` — the same for `form_post` providers. Their POST
/// is cross-site, so `SameSite=Lax` cookies do not come with it: when they are
/// missing, answer a page that re-posts the form from our own origin once.
#[handler]
#[tracing::instrument(skip_all, fields(provider = %provider, operation.id))]
pub async fn callback_post(
    Data(state): Data<&AppState>,
    Path(provider): Path<String>,
    req: &Request,
    body: String,
    jar: &CookieJar,
) -> Result<Response, PageError> {
    state.limits.check(IpBudget::Callback, req).await?;
    let provider = state
        .providers
        .get(&provider)
        .ok_or(PageError::UnknownProvider)?;
    if !provider.uses_form_post() {
        return Err(PageError::BadRequest(
            "This provider returns with a GET request.",
        ));
    }
    let params = QueryParams::parse_str(&body, PARAMS).map_err(|_| PageError::BadState)?;
    if browser::browser_key(jar, &state.settings).is_none() && params.get("_hop").is_none() {
        return Ok(repost_page(&provider.name, &params));
    }
    handle(state, provider, &params, req, jar).await
}

async fn handle(
    state: &AppState,
    provider: &Provider,
    params: &QueryParams,
    req: &Request,
    jar: &CookieJar,
) -> Result<Response, PageError> {
    let attempt = params
        .get("state")
        .and_then(|s| browser::take_attempt(jar, &state.settings, &provider.name, s));

    if let Some(reason) = params.get("error") {
        // No operation is recorded, so even an unmatched error is safe to show.
        tracing::info!(bound = attempt.is_some(), "provider returned an error");
        if let Some(attempt) = &attempt {
            let event = audit::Event::new(EventKind::SignInFailed)
                .user(attempt.link.map(|link| link.user_id))
                .provider(&provider.name)
                .code(&sanitize_reason(reason));
            state
                .audit
                .record(crate::session::Client::of(req).audit(event));
        }
        return Ok(
            Redirect::see_other(format!("/auth/error?reason={}", sanitize_reason(reason)))
                .into_response(),
        );
    }
    let claimed = StateClaim::of(params, jar, state);
    let Some(attempt) = attempt else {
        // Its attempt cookie is gone because this callback already ran (a reload, the
        // back button, a second submit): follow the operation it made, if any.
        if let Some(operation) = claimed.existing(state).await? {
            tracing::info!(operation.id = %operation.id, "callback repeated; following its operation");
            return Ok(to_preloader(operation.id));
        }
        return Err(PageError::BadState);
    };
    // RFC 9207: a provider that names itself must be the one this attempt went to,
    // and one that promised to name itself must have done so.
    // Simple string comparison (RFC 9207 §2.4): `https://a.example/` is not
    // `https://a.example`.
    match (params.get("iss"), provider.issuer().await) {
        (Some(iss), Some(expected)) if iss != expected.as_str() => {
            tracing::warn!("authorization response from another issuer (mix-up?)");
            return Err(PageError::BadState);
        }
        (None, Some(_)) if provider.sends_iss().await => {
            tracing::warn!("authorization response without the `iss` its provider promised");
            return Err(PageError::BadState);
        }
        _ => {}
    }
    let code = params
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or(PageError::BadRequest(
            "The provider did not send an authorization code.",
        ))?;
    let (Some(state_hash), Some(redeemer_hash)) = (&claimed.state_hash, &claimed.redeemer_hash)
    else {
        return Err(PageError::BadState);
    };

    // No browser, client address or queue piles up sign-ins (each one is a job and
    // provider calls); a repeated callback still follows the operation it made.
    let client_key = match state
        .limits
        .pending
        .admit(&state.reader, req, Some(redeemer_hash))
        .await
    {
        Ok(client_key) => client_key,
        Err(refused) => {
            if let Some(operation) = claimed.existing(state).await? {
                return Ok(to_preloader(operation.id));
            }
            tracing::warn!(%refused, "sign-in refused");
            return Err(refused.into());
        }
    };
    let new = NewOperation {
        kind: operations::KIND_BROWSER,
        provider: provider.name.clone(),
        redeemer_hash: redeemer_hash.clone(),
        next_path: attempt.next,
        link: attempt.link,
        state_hash: Some(state_hash.clone()),
        client_key,
    };
    let job = SignInJob {
        operation_id: Uuid::nil(),
        provider: provider.name.clone(),
        code: code.to_owned(),
        pkce_verifier: attempt.pkce_verifier,
        nonce: attempt.nonce,
        form_user: params.get("user").map(str::to_owned),
        redirect_uri: None,
        id_token: None,
        access_token: None,
        one_tap: false,
        client: crate::session::Client::of(req).for_job(),
    };
    follow(state.jobs.start(&state.writer, new, job).await?)
}

/// Where a browser goes once its sign-in was handed to the queue: the waiting page
/// of its operation, or of the one a concurrent copy of the same request made.
pub(super) fn follow(started: Started) -> Result<Response, PageError> {
    let operation = match started {
        Started::Queued(operation) => operation,
        Started::Existing(operation) => {
            // A concurrent copy of this request got there first; it queued the job.
            tracing::info!(operation.id = %operation.id, "submitted twice; following its operation");
            return Ok(to_preloader(operation.id));
        }
        Started::Foreign => {
            tracing::warn!("state already claimed by another browser");
            return Err(PageError::BadState);
        }
        Started::Unqueued(operation) => {
            return Ok(
                Redirect::see_other(format!("/auth/error?operation={}", operation.id))
                    .into_response(),
            );
        }
    };
    tracing::Span::current().record("operation.id", tracing::field::display(operation.id));
    tracing::info!("sign-in queued");
    Ok(to_preloader(operation.id))
}

/// The waiting page for `operation`: each tab follows the operation its own
/// callback made, even when several callbacks land before any preloader loads.
fn to_preloader(operation: Uuid) -> Response {
    Redirect::see_other(format!("/auth/preloader?operation={operation}")).into_response()
}

/// The `state` this callback carries and the browser it came from, hashed as the
/// operation stores them.
struct StateClaim {
    state_hash: Option<String>,
    redeemer_hash: Option<String>,
}

impl StateClaim {
    fn of(params: &QueryParams, jar: &CookieJar, state: &AppState) -> Self {
        Self {
            state_hash: params
                .get("state")
                .filter(|s| !s.is_empty() && s.len() <= MAX_STATE_LEN)
                .map(crypto::sha256_hex),
            redeemer_hash: browser::browser_key(jar, &state.settings)
                .map(|key| browser::redeemer_hash(&key)),
        }
    }

    /// The operation an earlier callback of this browser made with this state (a
    /// committed row, so the readers see it and the writer is left alone).
    async fn existing(&self, state: &AppState) -> Result<Option<Operation>, sea_orm::DbErr> {
        match (&self.state_hash, &self.redeemer_hash) {
            (Some(state_hash), Some(redeemer_hash)) => {
                operations::find_by_state(&state.reader, state_hash, redeemer_hash).await
            }
            _ => Ok(None),
        }
    }
}

/// A page that posts the provider's fields back to the callback from our origin, so
/// the browser attaches its `SameSite=Lax` cookies. `_hop` stops a second round.
fn repost_page(provider: &str, params: &QueryParams) -> Response {
    let fields: String = ["state", "code", "error", "error_description", "iss", "user"]
        .iter()
        .filter_map(|key| params.get(key).map(|value| (key, value)))
        .map(|(key, value)| {
            format!(
                "<input type=\"hidden\" name=\"{key}\" value=\"{}\">",
                assets::escape(value)
            )
        })
        .collect();
    let page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signing you in…</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"stylesheet\" href=\"/static/style.css\"><script src=\"/static/repost.js\" defer></script></head>\
         <body><main class=\"card\"><h1>Signing you in…</h1>\
         <form id=\"repost\" method=\"post\" action=\"/auth/{}/callback\">{fields}<input type=\"hidden\" name=\"_hop\" value=\"1\">\
         <button type=\"submit\" class=\"btn btn-primary\">Continue</button></form></main></body></html>",
        assets::escape(provider)
    );
    Html(page)
        .with_header(header::CACHE_CONTROL, "no-store")
        .with_header(header::REFERRER_POLICY, "no-referrer")
        .into_response()
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
