//! `GET /auth/preloader[?operation=ID]`: the waiting page whose script polls
//! `/auth/status`.

use poem::{
    IntoResponse, Response, handler,
    http::{Uri, header},
    web::{Data, cookie::CookieJar},
};

use super::{browser_operation, parse_operation_id};
use crate::{assets, error::PageError, routes::QueryParams, state::AppState};

/// `GET /auth/preloader[?operation=ID]` — 200 HTML bound to `operation` (the one
/// this tab's callback made, so tabs whose callbacks landed together each follow
/// their own), or without it to this browser's latest. The status endpoint checks
/// that the operation belongs to this browser; the page itself reads nothing then.
#[handler]
pub async fn preloader(
    Data(state): Data<&AppState>,
    uri: &Uri,
    jar: &CookieJar,
) -> Result<Response, PageError> {
    let bad = || PageError::BadRequest("`operation` must be an operation id.");
    let params = QueryParams::parse(uri, &[("operation", 64)]).map_err(|_| bad())?;
    let id = match parse_operation_id(params.get("operation")).map_err(|()| bad())? {
        Some(id) => id.to_string(),
        None => browser_operation(state, jar, None)
            .await?
            .map(|op| op.id.to_string())
            .unwrap_or_default(),
    };
    Ok(assets::preloader_page(&id)
        .with_header(header::REFERRER_POLICY, "no-referrer")
        .into_response())
}
