//! `POST /auth/logout`: ends the session server-side and clears its cookie.

use poem::{
    IntoResponse, Response, handler,
    web::{Data, Redirect, cookie::CookieJar},
};

use crate::{error::PageError, session, state::AppState};

/// `POST /auth/logout` — 303 to `/`.
#[handler]
pub async fn logout(Data(state): Data<&AppState>, jar: &CookieJar) -> Result<Response, PageError> {
    session::end_browser_session(state, jar).await?;
    Ok(Redirect::see_other("/").into_response())
}
