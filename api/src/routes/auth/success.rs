//! `GET /auth/success`: redeems this browser's finished operation, once, into a new
//! session.

use poem::{
    IntoResponse, Request, Response, handler,
    http::Uri,
    web::{Data, Redirect, cookie::CookieJar},
};

use super::{browser_operation, parse_operation_id};
use crate::{
    browser,
    error::PageError,
    routes::QueryParams,
    session::{self, Client},
    state::AppState,
};

/// `GET /auth/success[?operation=ID]` — 303 to the validated `next` (or `/`) with a
/// fresh session cookie when the operation is `ok` and unredeemed; otherwise 303 to
/// `/auth/error`.
#[handler]
#[tracing::instrument(skip_all, fields(operation.id, user.id))]
pub async fn success(
    Data(state): Data<&AppState>,
    req: &Request,
    uri: &Uri,
    jar: &CookieJar,
) -> Result<Response, PageError> {
    let failed =
        |query: String| Ok(Redirect::see_other(format!("/auth/error{query}")).into_response());
    let Ok(params) = QueryParams::parse(uri, &[("operation", 64)]) else {
        return failed(String::new());
    };
    let Ok(id) = parse_operation_id(params.get("operation")) else {
        return failed(String::new());
    };
    let Some(key) = browser::browser_key(jar, &state.settings) else {
        return failed("?reason=no_operation".to_owned());
    };
    // The preloader names its operation, and the redemption checks it belongs to
    // this browser; only a bare `/auth/success` needs a read to find the latest.
    let operation_id = match id {
        Some(id) => id,
        None => match browser_operation(state, jar, None).await? {
            Some(operation) => operation.id,
            None => return failed("?reason=no_operation".to_owned()),
        },
    };
    tracing::Span::current().record("operation.id", tracing::field::display(operation_id));
    let Some((redeemed, user_id)) = session::redeem_into_browser_session(
        state,
        jar,
        operation_id,
        browser::redeemer_hash(&key),
        Client::of(req),
    )
    .await?
    else {
        tracing::info!("operation not redeemable (unknown here, pending, failed or already used)");
        return failed(format!("?operation={operation_id}"));
    };
    tracing::Span::current().record("user.id", tracing::field::display(user_id));
    tracing::info!("signed in");
    let next = redeemed
        .next_path
        .as_deref()
        .and_then(browser::validate_next)
        .unwrap_or_else(|| "/".to_owned());
    Ok(Redirect::see_other(next).into_response())
}
