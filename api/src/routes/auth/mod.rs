//! The browser sign-in flow: login → provider → callback → preloader (polling
//! status) → success, plus the error page and logout.

pub mod callback;
pub mod error;
pub mod login;
pub mod logout;
pub mod preloader;
pub mod status;
pub mod success;

use entity::async_operation::Model as Operation;
use poem::web::cookie::CookieJar;
use uuid::Uuid;
use worker::operations;

use crate::{browser, state::AppState};

/// This browser's operation: `id` when given and bound here, else its latest.
/// `None` without a browser key, or when nothing matches.
pub(crate) async fn browser_operation(
    state: &AppState,
    jar: &CookieJar,
    id: Option<Uuid>,
) -> Result<Option<Operation>, sea_orm::DbErr> {
    let Some(key) = browser::browser_key(jar) else {
        return Ok(None);
    };
    operations::find_for_browser(&state.db, &browser::redeemer_hash(&key), id).await
}

/// `operation=<uuid>` from a query, or `Err` for a malformed one.
pub(crate) fn parse_operation_id(value: Option<&str>) -> Result<Option<Uuid>, ()> {
    value
        .map(|v| Uuid::parse_str(v).map_err(|_| ()))
        .transpose()
}
