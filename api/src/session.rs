//! Server-side sessions: the browser (or an app, as a bearer token) holds a random
//! token, the `session` table its SHA-256. `CurrentUser` and `MaybeUser` extract the
//! signed-in user from the session cookie or `Authorization: Bearer`.

use std::time::Duration;

use chrono::Utc;
use entity::{
    session::{self, Entity as Session},
    user_profile::{self, Entity as UserProfile},
};
use poem::{FromRequest, Request, RequestBody, http::header, web::cookie::CookieJar};
use sea_orm::{ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;
use worker::crypto;

use crate::{browser, error::ApiError, state::AppState};

/// The session cookie: the raw token, `HttpOnly; SameSite=Lax; Path=/`.
pub const SESSION_COOKIE: &str = "signin_session";
/// `last_seen_at` is written at most this often, to keep reads cheap.
const TOUCH_INTERVAL: chrono::Duration = chrono::Duration::minutes(5);
const MAX_TOKEN_LEN: usize = 256;

/// The signed-in user of a request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: user_profile::Model,
    pub session_id: Uuid,
}

/// The signed-in user, if any.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<CurrentUser>);

impl<'a> FromRequest<'a> for MaybeUser {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let state = req
            .data::<AppState>()
            .expect("AppState is registered with .data()");
        let Some(token) = request_token(req) else {
            return Ok(Self(None));
        };
        Ok(Self(
            find_current_user(state, &token)
                .await
                .map_err(ApiError::from)?,
        ))
    }
}

impl<'a> FromRequest<'a> for CurrentUser {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        MaybeUser::from_request(req, body)
            .await?
            .0
            .ok_or_else(|| ApiError::Unauthorized.into())
    }
}

/// The session token of a request: bearer header first, then the cookie.
fn request_token(req: &Request) -> Option<String> {
    if let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
            .filter(|t| valid_token(t));
    }
    let jar = req.cookie();
    jar.get(SESSION_COOKIE)
        .map(|c| c.value_str().to_owned())
        .filter(|t| valid_token(t))
}

fn valid_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_TOKEN_LEN
}

async fn find_current_user(state: &AppState, token: &str) -> Result<Option<CurrentUser>, DbErr> {
    let now = Utc::now();
    let found = Session::find()
        .filter(session::Column::TokenHash.eq(crypto::sha256_hex(token)))
        .filter(session::Column::RevokedAt.is_null())
        .filter(session::Column::ExpiresAt.gt(now))
        .find_also_related(UserProfile)
        .one(&state.db)
        .await?;
    let Some((session, Some(user))) = found else {
        return Ok(None);
    };
    if now - session.last_seen_at > TOUCH_INTERVAL {
        touch(state, session.id).await?;
    }
    Ok(Some(CurrentUser {
        user,
        session_id: session.id,
    }))
}

/// Slides the expiry forward on use.
async fn touch(state: &AppState, session_id: Uuid) -> Result<(), DbErr> {
    let now = Utc::now();
    Session::update_many()
        .col_expr(session::Column::LastSeenAt, Expr::value(now))
        .col_expr(
            session::Column::ExpiresAt,
            Expr::value(now + lifetime(state)),
        )
        .filter(session::Column::Id.eq(session_id))
        .exec(&state.db)
        .await?;
    Ok(())
}

fn lifetime(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(state.settings.session_lifetime)
        .unwrap_or(chrono::Duration::days(14))
}

/// Request details recorded with a new session.
#[derive(Debug, Default, Clone)]
pub struct Client {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl Client {
    /// The user agent and peer address of `req`, bounded in size.
    pub fn of(req: &Request) -> Self {
        Self {
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(512).collect()),
            ip: req
                .remote_addr()
                .as_socket_addr()
                .map(|a| a.ip().to_string()),
        }
    }
}

/// Starts a new session with a fresh random token for `user_id`, sets the cookie,
/// and revokes the session the browser held before (no fixation, no stale sessions).
pub async fn start_browser_session(
    state: &AppState,
    jar: &CookieJar,
    user_id: Uuid,
    client: Client,
) -> Result<(), DbErr> {
    if let Some(old) = jar.get(SESSION_COOKIE) {
        revoke_by_token(state, old.value_str()).await?;
    }
    let token = crypto::random_token(32);
    let now = Utc::now();
    Session::insert(session::ActiveModel {
        id: Set(Uuid::new_v4()),
        token_hash: Set(crypto::sha256_hex(&token)),
        user_id: Set(user_id),
        created_at: Set(now),
        last_seen_at: Set(now),
        expires_at: Set(now + lifetime(state)),
        revoked_at: Set(None),
        user_agent: Set(client.user_agent),
        ip: Set(client.ip),
    })
    .exec(&state.db)
    .await?;
    let max_age = Some(
        state
            .settings
            .session_lifetime
            .min(Duration::from_secs(400 * 24 * 3600)),
    );
    jar.add(browser::cookie(
        SESSION_COOKIE,
        &token,
        "/",
        max_age,
        &state.settings,
    ));
    Ok(())
}

/// Ends the browser's session server-side and clears the cookie.
pub async fn end_browser_session(state: &AppState, jar: &CookieJar) -> Result<(), DbErr> {
    if let Some(cookie) = jar.get(SESSION_COOKIE) {
        revoke_by_token(state, cookie.value_str()).await?;
    }
    browser::expire(jar, SESSION_COOKIE, "/", &state.settings);
    Ok(())
}

async fn revoke_by_token(state: &AppState, token: &str) -> Result<(), DbErr> {
    if !valid_token(token) {
        return Ok(());
    }
    Session::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(session::Column::TokenHash.eq(crypto::sha256_hex(token)))
        .filter(session::Column::RevokedAt.is_null())
        .exec(&state.db)
        .await?;
    Ok(())
}
