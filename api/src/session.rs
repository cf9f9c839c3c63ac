//! Server-side sessions, one table for browsers and apps. A browser holds a random
//! session token in a cookie (only its SHA-256 is stored); an app holds a short-lived
//! JWT access token naming its session, plus a rotating refresh token (stored
//! hashed). `CurrentUser` / `MaybeUser` extract the signed-in user from either.

use std::time::Duration;

use chrono::Utc;
use entity::{
    async_operation,
    refresh_token::{self, Entity as RefreshToken},
    session::{self, Entity as Session},
    user_profile::{self, Entity as UserProfile},
};
use poem::{FromRequest, Request, RequestBody, http::header, web::cookie::CookieJar};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, TransactionTrait,
    sea_query::Expr,
};
use serde::Serialize;
use uuid::Uuid;
use worker::{crypto, operations};

use worker::audit::{self, EventKind};

use crate::{browser, error::ApiError, state::AppState};

/// The session cookie: the raw token, `HttpOnly; SameSite=Lax; Path=/`.
pub const SESSION_COOKIE: &str = "signin_session";
/// `session.kind` of cookie sessions…
pub const KIND_BROWSER: &str = "browser";
/// …and of token sessions.
pub const KIND_API: &str = "api";
/// `last_seen_at` is written at most this often, to keep reads cheap.
const TOUCH_INTERVAL: chrono::Duration = chrono::Duration::minutes(5);
const MAX_TOKEN_LEN: usize = 2048;

/// The signed-in user of a request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: user_profile::Model,
    pub session_id: Uuid,
    /// When this session began (its sign-in).
    pub signed_in_at: chrono::DateTime<Utc>,
}

/// The signed-in user, if any.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<CurrentUser>);

/// What a request presented.
enum Credential {
    Bearer(String),
    Cookie(String),
}

impl<'a> FromRequest<'a> for MaybeUser {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let state = req
            .data::<AppState>()
            .expect("AppState is registered with .data()");
        let credential = credential(req);
        // A cookie rides along on cross-site requests too; changes need our origin.
        if matches!(credential, Some(Credential::Cookie(_)))
            && !req.method().is_safe()
            && !crate::security::is_same_origin(req, state, false)
        {
            tracing::warn!("cross-site request with the session cookie refused");
            return Err(ApiError::CrossSite.into());
        }
        Ok(Self(match credential {
            None => None,
            Some(credential) => find_current_user(state, &credential)
                .await
                .map_err(ApiError::from)?,
        }))
    }
}

impl<'a> FromRequest<'a> for CurrentUser {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        let presented_bearer = matches!(credential(req), Some(Credential::Bearer(_)));
        MaybeUser::from_request(req, body).await?.0.ok_or_else(|| {
            if presented_bearer {
                ApiError::InvalidToken.into()
            } else {
                ApiError::Unauthorized.into()
            }
        })
    }
}

/// The bearer token first, then the session cookie.
fn credential(req: &Request) -> Option<Credential> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default();
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        // A malformed Authorization header is a bad bearer, not "no credentials".
        return Some(Credential::Bearer(token.unwrap_or_default().to_owned()));
    }
    let settings = &req.data::<AppState>()?.settings;
    req.cookie()
        .get(&browser::cookie_name(SESSION_COOKIE, "/", settings))
        .map(|c| c.value_str().to_owned())
        .filter(|t| is_plausible_token(t))
        .map(Credential::Cookie)
}

fn is_plausible_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_TOKEN_LEN
}

async fn find_current_user(
    state: &AppState,
    credential: &Credential,
) -> Result<Option<CurrentUser>, DbErr> {
    let now = Utc::now();
    let query = Session::find()
        .filter(session::Column::RevokedAt.is_null())
        .filter(session::Column::ExpiresAt.gt(now));
    let query = match credential {
        Credential::Bearer(token) => {
            let Some(claims) = state.tokens.verify(token) else {
                return Ok(None);
            };
            query
                .filter(session::Column::Id.eq(claims.sid))
                .filter(session::Column::UserId.eq(claims.sub))
        }
        Credential::Cookie(token) => query
            .filter(session::Column::TokenHash.eq(crypto::sha256_hex(token)))
            .filter(session::Column::Kind.eq(KIND_BROWSER)),
    };
    let Some((session, Some(user))) = query
        .find_also_related(UserProfile)
        .one(&state.reader)
        .await?
    else {
        return Ok(None);
    };
    if now - session.created_at > max_lifetime(state) {
        return Ok(None);
    }
    if now - session.last_seen_at > TOUCH_INTERVAL {
        touch(state, &session).await?;
    }
    Ok(Some(CurrentUser {
        user,
        session_id: session.id,
        signed_in_at: session.created_at,
    }))
}

/// Records use; browser sessions also slide their expiry forward.
async fn touch(state: &AppState, session: &session::Model) -> Result<(), DbErr> {
    let now = Utc::now();
    let mut update = Session::update_many().col_expr(session::Column::LastSeenAt, Expr::value(now));
    if session.kind == KIND_BROWSER {
        update = update.col_expr(
            session::Column::ExpiresAt,
            Expr::value(now + browser_lifetime(state)),
        );
    }
    update
        .filter(session::Column::Id.eq(session.id))
        .exec(&state.db)
        .await?;
    Ok(())
}

fn browser_lifetime(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(state.settings.session_lifetime)
        .unwrap_or(chrono::Duration::days(14))
}

/// `session_max_lifetime`: no session outlives it, however active.
fn max_lifetime(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(state.settings.session_max_lifetime)
        .unwrap_or(chrono::Duration::days(90))
}

fn refresh_lifetime(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(state.settings.tokens.refresh_ttl)
        .unwrap_or(chrono::Duration::days(30))
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
            ip: crate::limits::client_ip(req).map(|ip| ip.to_string()),
        }
    }

    /// The same, carried by a sign-in job for its audit events.
    pub fn for_job(self) -> worker::jobs::sign_in::JobClient {
        worker::jobs::sign_in::JobClient {
            ip: self.ip,
            user_agent: self.user_agent,
        }
    }

    /// `event` with this client's address and user agent.
    pub fn audit(&self, event: audit::Event) -> audit::Event {
        event.client(self.ip.as_deref(), self.user_agent.as_deref())
    }
}

async fn insert_session(
    db: &impl sea_orm::ConnectionTrait,
    user_id: Uuid,
    kind: &str,
    client: Client,
    device: Option<String>,
    lifetime: chrono::Duration,
) -> Result<(Uuid, String), DbErr> {
    let token = crypto::random_token(32);
    let now = Utc::now();
    let id = Uuid::new_v4();
    Session::insert(session::ActiveModel {
        id: Set(id),
        token_hash: Set(crypto::sha256_hex(&token)),
        user_id: Set(user_id),
        created_at: Set(now),
        last_seen_at: Set(now),
        expires_at: Set(now + lifetime),
        revoked_at: Set(None),
        user_agent: Set(client.user_agent),
        ip: Set(client.ip),
        kind: Set(kind.to_owned()),
        device: Set(device),
    })
    .exec(db)
    .await?;
    Ok((id, token))
}

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
    let for_session = client.clone();
    let started = state
        .writer
        .run(move |db| {
            Box::pin(async move {
                let Some(operation) = operations::redeem(db, operation_id, &redeemer_hash).await?
                else {
                    return Ok(None);
                };
                let Some(user_id) = operation.user_id else {
                    return Ok(None);
                };
                let (_, token) =
                    insert_session(db, user_id, KIND_BROWSER, for_session, None, lifetime).await?;
                Ok(Some((operation, user_id, token)))
            })
        })
        .await?;
    let Some((operation, user_id, token)) = started else {
        return Ok(None);
    };
    if let Some(old) = jar.get(&browser::cookie_name(SESSION_COOKIE, "/", &state.settings)) {
        revoke_by_cookie(state, old.value_str(), &client).await?;
    }
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
    Ok(Some((operation, user_id)))
}

/// Ends the browser's session server-side and clears the cookie.
pub async fn end_browser_session(
    state: &AppState,
    jar: &CookieJar,
    client: &Client,
) -> Result<(), DbErr> {
    if let Some(cookie) = jar.get(&browser::cookie_name(SESSION_COOKIE, "/", &state.settings)) {
        revoke_by_cookie(state, cookie.value_str(), client).await?;
    }
    browser::expire(jar, SESSION_COOKIE, "/", &state.settings);
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
    record_revoked(state, &revoked, client);
    Ok(())
}

/// One `session_revoked` audit event per session in `revoked`.
fn record_revoked(state: &AppState, revoked: &[session::Model], client: &Client) {
    for session in revoked {
        let event = audit::Event::new(EventKind::SessionRevoked)
            .user(session.user_id)
            .session(session.id);
        state.audit.record(client.audit(event));
    }
}

/// What an app receives when it signs in or refreshes.
#[derive(Debug, Clone, Serialize, poem_openapi::Object)]
pub struct TokenPair {
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Opaque; exchange it at `POST /api/auth/refresh` before `refresh_expires_in`.
    pub refresh_token: String,
    pub refresh_expires_in: i64,
    /// The server-side session these tokens belong to.
    pub session_id: Uuid,
}

/// Starts an API session for `user_id` and issues its first tokens.
pub async fn start_api_session(
    state: &AppState,
    user_id: Uuid,
    client: Client,
    device: Option<String>,
) -> Result<TokenPair, DbErr> {
    let txn = state.db.begin().await?;
    let (session_id, _) = insert_session(
        &txn,
        user_id,
        KIND_API,
        client,
        device,
        refresh_lifetime(state),
    )
    .await?;
    let refresh = insert_refresh_token(&txn, session_id, refresh_lifetime(state)).await?;
    txn.commit().await?;
    Ok(token_pair(state, user_id, session_id, refresh))
}

async fn insert_refresh_token(
    db: &impl sea_orm::ConnectionTrait,
    session_id: Uuid,
    lifetime: chrono::Duration,
) -> Result<String, DbErr> {
    let token = crypto::random_token(32);
    let now = Utc::now();
    RefreshToken::insert(refresh_token::ActiveModel {
        id: Set(Uuid::new_v4()),
        session_id: Set(session_id),
        token_hash: Set(crypto::sha256_hex(&token)),
        created_at: Set(now),
        expires_at: Set(now + lifetime),
        used_at: Set(None),
    })
    .exec(db)
    .await?;
    Ok(token)
}

fn token_pair(
    state: &AppState,
    user_id: Uuid,
    session_id: Uuid,
    refresh_token: String,
) -> TokenPair {
    let (access_token, expires_in) = state.tokens.issue(user_id, session_id);
    TokenPair {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in,
        refresh_token,
        refresh_expires_in: refresh_lifetime(state).num_seconds(),
        session_id,
    }
}

/// Why a refresh failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshError {
    /// Unknown, expired, or its session has ended.
    Invalid,
    /// Already used once: it leaked; the whole session is now revoked.
    Reused,
}

/// Exchanges a refresh token for new tokens (rotation). Presenting a token that was
/// already exchanged revokes the session, so a stolen token stops working for both.
pub async fn refresh_api_session(
    state: &AppState,
    token: &str,
    client: &Client,
) -> Result<Result<TokenPair, RefreshError>, DbErr> {
    if !is_plausible_token(token) {
        return Ok(Err(RefreshError::Invalid));
    }
    let now = Utc::now();
    let Some((stored, Some(session))) = RefreshToken::find()
        .filter(refresh_token::Column::TokenHash.eq(crypto::sha256_hex(token)))
        .find_also_related(Session)
        .one(&state.db)
        .await?
    else {
        return Ok(Err(RefreshError::Invalid));
    };
    if session.revoked_at.is_some()
        || session.expires_at <= now
        || stored.expires_at <= now
        || now - session.created_at > max_lifetime(state)
    {
        return Ok(Err(RefreshError::Invalid));
    }
    let txn = state.db.begin().await?;
    // Only one exchange may win: a concurrent or later one sees `used_at` set.
    let claimed = RefreshToken::update_many()
        .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
        .filter(refresh_token::Column::Id.eq(stored.id))
        .filter(refresh_token::Column::UsedAt.is_null())
        .exec(&txn)
        .await?;
    if claimed.rows_affected != 1 {
        txn.rollback().await?;
        tracing::warn!(session.id = %session.id, user.id = %session.user_id, "refresh token reused: session revoked");
        let event = audit::Event::new(EventKind::RefreshTokenReuse)
            .user(session.user_id)
            .session(session.id);
        state.audit.record(client.audit(event));
        revoke_session(state, session.user_id, session.id, client).await?;
        return Ok(Err(RefreshError::Reused));
    }
    let next = insert_refresh_token(&txn, session.id, refresh_lifetime(state)).await?;
    Session::update_many()
        .col_expr(session::Column::LastSeenAt, Expr::value(now))
        .col_expr(
            session::Column::ExpiresAt,
            Expr::value(now + refresh_lifetime(state)),
        )
        .filter(session::Column::Id.eq(session.id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(Ok(token_pair(state, session.user_id, session.id, next)))
}

/// Revokes one of `user_id`'s sessions; false if there was no such active session.
pub async fn revoke_session(
    state: &AppState,
    user_id: Uuid,
    session_id: Uuid,
    client: &Client,
) -> Result<bool, DbErr> {
    let revoked = Session::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(session::Column::Id.eq(session_id))
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec_with_returning(&state.db)
        .await?;
    record_revoked(state, &revoked, client);
    Ok(revoked.len() == 1)
}

/// Revokes every session of `user_id` but `keep`; returns how many.
pub async fn revoke_other_sessions(
    state: &AppState,
    user_id: Uuid,
    keep: Uuid,
    client: &Client,
) -> Result<u64, DbErr> {
    let revoked = Session::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::Id.ne(keep))
        .filter(session::Column::RevokedAt.is_null())
        .exec_with_returning(&state.db)
        .await?;
    record_revoked(state, &revoked, client);
    Ok(revoked.len() as u64)
}

/// Revokes every session of `user_id`; returns how many.
pub async fn revoke_all_sessions(
    state: &AppState,
    user_id: Uuid,
    client: &Client,
) -> Result<u64, DbErr> {
    let revoked = Session::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec_with_returning(&state.db)
        .await?;
    record_revoked(state, &revoked, client);
    Ok(revoked.len() as u64)
}

/// The user's active sessions, newest first.
pub async fn active_sessions(
    state: &AppState,
    user_id: Uuid,
) -> Result<Vec<session::Model>, DbErr> {
    use sea_orm::QueryOrder;
    Session::find()
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null())
        .filter(session::Column::ExpiresAt.gt(Utc::now()))
        .order_by_desc(session::Column::LastSeenAt)
        .all(&state.db)
        .await
}
