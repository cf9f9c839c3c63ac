//! `GET /auth/{provider}/login[?next=/path]`: starts one sign-in attempt.

use poem::{
    IntoResponse, Response, handler,
    http::Uri,
    web::{Data, Path, Redirect, cookie::CookieJar},
};
use worker::{
    audit::{self, EventKind},
    crypto,
};

use crate::{
    browser::{self, Attempt},
    error::PageError,
    limits::IpBudget,
    routes::QueryParams,
    session::MaybeUser,
    state::AppState,
};

/// `GET /auth/{provider}/login[?next=/path][&link=1]` — 303 to the provider's
/// authorize URL with a fresh `state`, PKCE S256 challenge and (OIDC) `nonce`, bound
/// to this browser; 303 to `/` when already signed in (unless `link=1`, which links
/// the provider account to the signed-in user); 404 page for an unknown provider.
#[handler]
#[tracing::instrument(skip_all, fields(provider = %provider))]
pub async fn login(
    Data(state): Data<&AppState>,
    Path(provider): Path<String>,
    uri: &Uri,
    req: &poem::Request,
    jar: &CookieJar,
    MaybeUser(user): MaybeUser,
) -> Result<Response, PageError> {
    state.limits.check(IpBudget::SignInStart, req).await?;
    let Some(provider) = state.providers.get(&provider) else {
        return Err(PageError::UnknownProvider);
    };
    let params = QueryParams::parse(uri, &[("next", 1024), ("link", 8)])
        .map_err(|_| PageError::BadRequest("The sign-in link is malformed."))?;
    let link = matches!(params.get("link"), Some("1" | "true"));
    // Linking attaches whatever account the browser signs in with at the provider to
    // the signed-in user: another site must not be able to start it.
    if link && !crate::security::is_same_origin(req, state, true) {
        tracing::warn!("cross-site link attempt refused");
        return Err(PageError::CrossSite);
    }
    let link_to = match (link, &user) {
        (false, Some(_)) => return Ok(Redirect::see_other("/").into_response()),
        (false, None) => None,
        // A link adds a way in that outlives a password change and "log out
        // everywhere": only a recent sign-in may add one.
        (true, Some(current)) => Some(
            current
                .link_to()
                .ok_or(PageError::ReauthenticationRequired)?,
        ),
        (true, None) => {
            return Err(PageError::BadRequest(
                "Sign in first to link another account.",
            ));
        }
    };
    let next = params.get("next").and_then(browser::validate_next);

    let csrf_state = crypto::random_token(32);
    let pkce_verifier = crypto::random_token(32);
    let nonce = provider.is_oidc().then(|| crypto::random_token(32));
    let authorize_url = provider
        .authorize_url(
            &csrf_state,
            &crypto::sha256_b64url(&pkce_verifier),
            nonce.as_deref(),
        )
        .await
        .map_err(|error| {
            tracing::warn!(%error, "cannot build the authorize URL");
            PageError::ProviderUnavailable
        })?;

    browser::ensure_browser_key(jar, &state.settings);
    let attempt = Attempt::new(
        &provider.name,
        &csrf_state,
        pkce_verifier,
        nonce,
        next,
        link_to,
    );
    browser::save_attempt(jar, &state.settings, &csrf_state, &attempt);
    tracing::info!("sign-in started");
    let event = audit::Event::new(EventKind::SignInStarted)
        .user(link_to.map(|link| link.user_id))
        .provider(&provider.name);
    state
        .audit
        .record(crate::session::Client::of(req).audit(event));
    Ok(Redirect::see_other(authorize_url.as_str()).into_response())
}
