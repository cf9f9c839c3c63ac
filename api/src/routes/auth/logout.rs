//! `POST /auth/logout`: ends the session server-side and clears its cookie.

use poem::{
    IntoResponse, Request, Response, handler,
    web::{Data, Redirect, cookie::CookieJar},
};

use crate::{error::PageError, session, state::AppState};

/// `POST /auth/logout` — 303 to `/`; 403 page when posted from another site.
#[handler]
pub async fn logout(
    Data(state): Data<&AppState>,
    req: &Request,
    jar: &CookieJar,
) -> Result<Response, PageError> {
    if !crate::security::is_same_origin(req, state, false) {
        tracing::warn!("cross-site logout refused");
        return Err(PageError::CrossSite);
    }
    session::end_browser_session(state, jar, &session::Client::of(req)).await?;
    Ok(Redirect::see_other("/").into_response())
}
