//! `GET /auth/preloader`: the waiting page whose script polls `/auth/status`.

use poem::{
    IntoResponse, Response, handler,
    http::header,
    web::{Data, cookie::CookieJar},
};

use super::browser_operation;
use crate::{assets, error::PageError, state::AppState};

/// `GET /auth/preloader` — 200 HTML, bound to this browser's latest operation (the
/// one its callback just created), so each tab polls its own.
#[handler]
pub async fn preloader(
    Data(state): Data<&AppState>,
    jar: &CookieJar,
) -> Result<Response, PageError> {
    let operation = browser_operation(state, jar, None).await?;
    let id = operation.map(|op| op.id.to_string()).unwrap_or_default();
    Ok(assets::preloader_page(&id)
        .with_header(header::REFERRER_POLICY, "no-referrer")
        .into_response())
}
