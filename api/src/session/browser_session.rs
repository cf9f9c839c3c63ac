//! Browser sessions: a finished operation redeemed into a cookie session, and logout.

use chrono::Utc;
use entity::{
    async_operation,
    session::{self, Entity as Session},
};
use poem::web::cookie::CookieJar;
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;
use worker::{crypto, redemption};

use super::{
    Client, KIND_BROWSER, SESSION_COOKIE, browser_lifetime, is_plausible_token, new_session,
    revoke::after_revoke, set_session_cookie,
};
use crate::{browser, state::AppState};

/// Redeems this browser's finished operation and, in the same write, starts a
/// session with a fresh random token for its user; sets the cookie, and revokes the
/// session the browser held before (no fixation). `None` when the operation was not
/// redeemable (pending, failed, already used, or another browser's).
pub async fn redeem_into_browser_session(
    state: &AppState,
    jar: &CookieJar,
    operation_id: Uuid,
    redeemer_hash: String,
    client: Client,
) -> Result<Option<(async_operation::Model, Uuid)>, DbErr> {
    let lifetime = browser_lifetime(state);
    let max_lifetime = state.settings.session_max_lifetime;
    let (session, token) = new_session(KIND_BROWSER, client.clone(), None, lifetime);
    // One statement on PostgreSQL, so no transaction of its own.
    let started = state
        .writer
        .run_atomic(move |db| {
            Box::pin(async move {
                redemption::redeem_into_session(
                    db,
                    operation_id,
                    &redeemer_hash,
                    max_lifetime,
                    session,
                )
                .await
            })
        })
        .await?;
    let Some((operation, user_id)) = started else {
        return Ok(None);
    };
    if let Some(old) = jar.get(&browser::cookie_name(SESSION_COOKIE, "/", &state.settings)) {
        revoke_by_cookie(state, old.value_str(), &client).await?;
    }
    set_session_cookie(state, jar, &token);
    Ok(Some((operation, user_id)))
}

/// Ends the browser's session server-side and clears its cookie and its browser key.
pub async fn end_browser_session(
    state: &AppState,
    jar: &CookieJar,
    client: &Client,
) -> Result<(), DbErr> {
    if let Some(cookie) = jar.get(&browser::cookie_name(SESSION_COOKIE, "/", &state.settings)) {
        revoke_by_cookie(state, cookie.value_str(), client).await?;
    }
    browser::expire(jar, SESSION_COOKIE, "/", &state.settings);
    browser::forget_browser_key(jar, &state.settings);
    Ok(())
}

async fn revoke_by_cookie(state: &AppState, token: &str, client: &Client) -> Result<(), DbErr> {
    if !is_plausible_token(token) {
        return Ok(());
    }
    let revoked = Session::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(session::Column::TokenHash.eq(crypto::sha256_hex(token)))
        .filter(session::Column::RevokedAt.is_null())
        .exec_with_returning(&state.db)
        .await?;
    after_revoke(state, &revoked, client).await;
    Ok(())
}
