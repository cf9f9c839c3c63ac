//! `POST /auth/{provider}/one-tap`: Google's "Sign in with Google" button and One
//! Tap prompt post the ID token here (`credential`) from our own index page. Like
//! the callback, it only records a pending operation and queues the token for the
//! worker, which checks it as any Google ID token (signature, `iss`, `aud` = our
//! web client, `exp`, `iat`, `nonce`, `hd`); then the preloader takes over.

use poem::{
    Request, Response, handler,
    web::{Data, Path, cookie::CookieJar},
};
use uuid::Uuid;
use worker::{
    audit::{self, EventKind},
    crypto,
    jobs::SignInJob,
    operations::{self, NewOperation},
};

use super::callback::follow;
use crate::{browser, error::PageError, limits::IpBudget, routes::QueryParams, state::AppState};

/// The double-submit cookie Google's script sets beside the form field.
const CSRF_COOKIE: &str = "g_csrf_token";

const PARAMS: &[(&str, usize)] = &[
    ("credential", 4096),
    ("g_csrf_token", 256),
    ("select_by", 64),
];

/// `POST /auth/{provider}/one-tap` — 303 to `/auth/preloader?operation=ID`; 400 page
/// for a missing or mismatched `g_csrf_token`, a missing credential, or a browser
/// without the nonce its page was given; 404 page for a provider without One Tap.
#[handler]
#[tracing::instrument(skip_all, fields(provider = %provider, operation.id))]
pub async fn one_tap(
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
        .filter(|p| p.one_tap)
        .ok_or(PageError::UnknownProvider)?;
    let params = QueryParams::parse_str(&body, PARAMS).map_err(|_| PageError::BadState)?;
    if !csrf_matches(jar, params.get("g_csrf_token")) {
        tracing::warn!("One Tap post without its double-submit token");
        return Err(PageError::BadRequest(
            "The sign-in could not be verified. Reload the page and try again.",
        ));
    }
    let credential = params
        .get("credential")
        .filter(|c| !c.is_empty())
        .ok_or(PageError::BadRequest("Google did not send a credential."))?;
    let Some(browser_key) = browser::browser_key(jar, &state.settings) else {
        return Err(PageError::BadState);
    };
    let nonce = browser::current_one_tap_nonce(jar, &state.settings).ok_or(
        PageError::BadRequest("This sign-in prompt has expired. Reload the page and try again."),
    )?;
    let redeemer_hash = browser::redeemer_hash(&browser_key);
    let client_key = state
        .limits
        .pending
        .admit(&state.reader, req, Some(&redeemer_hash))
        .await?;
    let new = NewOperation {
        kind: operations::KIND_BROWSER,
        provider: provider.name.clone(),
        redeemer_hash,
        next_path: None,
        link: None,
        // One nonce, one operation: a double submit follows the first.
        state_hash: Some(crypto::sha256_hex(&nonce)),
        client_key,
    };
    let job = SignInJob {
        operation_id: Uuid::nil(),
        provider: provider.name.clone(),
        id_token: Some(credential.to_owned()),
        nonce: Some(nonce),
        one_tap: true,
        client: crate::session::Client::of(req).for_job(),
        ..SignInJob::default()
    };
    // A refusal above (a full queue, too many pending) spends nothing: the same
    // page can post again.
    let started = follow(state.jobs.start(&state.writer, new, job).await?)?;
    browser::spend_one_tap_nonce(jar, &state.settings);
    let event = audit::Event::new(EventKind::SignInStarted).provider(&provider.name);
    state
        .audit
        .record(crate::session::Client::of(req).audit(event));
    Ok(started)
}

/// Google's double submit: the form field equals the cookie, and neither is empty.
fn csrf_matches(jar: &CookieJar, field: Option<&str>) -> bool {
    match (jar.get(CSRF_COOKIE), field) {
        (Some(cookie), Some(field)) => {
            !field.is_empty()
                && crypto::constant_time_eq(cookie.value_str().as_bytes(), field.as_bytes())
        }
        _ => false,
    }
}
