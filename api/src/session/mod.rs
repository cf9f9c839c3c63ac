//! Server-side sessions, one table for browsers and apps. A browser holds a random
//! session token in a cookie (only its SHA-256 is stored); an app holds a short-lived
//! JWT access token naming its session, plus a rotating refresh token (stored
//! hashed). `CurrentUser` / `MaybeUser` extract the signed-in user from either.

mod app;
mod browser_session;
mod lookup;
mod revoke;

use chrono::Utc;
use entity::user_profile;
use poem::{FromRequest, Request, RequestBody, http::header, web::cookie::CookieJar};
use sea_orm::DbErr;
use uuid::Uuid;
use worker::{audit, crypto, linking::LinkTo, redemption::NewSession};

use crate::{browser, error::ApiError, state::AppState};

pub use app::{
    RefreshError, TokenPair, redeem_into_api_session, refresh_api_session, start_api_session,
};
pub use browser_session::{end_browser_session, redeem_into_browser_session};
pub use revoke::{active_sessions, revoke_all_sessions, revoke_other_sessions, revoke_session};

/// The session cookie: the raw token, `HttpOnly; SameSite=Lax; Path=/`.
pub const SESSION_COOKIE: &str = "signin_session";
/// `session.kind` of cookie sessions…
pub const KIND_BROWSER: &str = "browser";
/// …and of token sessions.
pub const KIND_API: &str = "api";
/// How recent a session's sign-in must be for a change that adds a way in to the
/// account (a first password, a linked provider): a stolen or forgotten old session
/// cannot make itself permanent.
pub const RECENT_SIGN_IN: chrono::Duration = chrono::Duration::minutes(10);
const MAX_TOKEN_LEN: usize = 2048;

/// The signed-in user of a request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: user_profile::Model,
    pub session_id: Uuid,
    /// When this session began (its sign-in).
    pub signed_in_at: chrono::DateTime<Utc>,
}

impl CurrentUser {
    /// Whether this session's sign-in is within [`RECENT_SIGN_IN`].
    pub fn signed_in_recently(&self) -> bool {
        Utc::now() - self.signed_in_at <= RECENT_SIGN_IN
    }

    /// A link to this user asked for from this session; `None` unless the sign-in
    /// is recent.
    pub fn link_to(&self) -> Option<LinkTo> {
        self.signed_in_recently().then_some(LinkTo {
            user_id: self.user.id,
            session_id: self.session_id,
        })
    }
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
            Some(credential) => lookup::find_current_user(state, &credential, req.cookie())
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

/// The claims of `token` when it is one of our access tokens and its session is
/// still live (not revoked, not expired), as `POST /api/token/introspect` answers.
pub async fn live_token_claims(
    state: &AppState,
    token: &str,
) -> Result<Option<crate::tokens::Claims>, sea_orm::DbErr> {
    let Some(claims) = state.tokens.verify(token) else {
        return Ok(None);
    };
    let credential = Credential::Bearer(token.to_owned());
    let live = lookup::find_current_user(state, &credential, &Default::default()).await?;
    Ok(live.map(|_| claims))
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

pub(crate) fn is_plausible_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_TOKEN_LEN
}

/// Sets the session cookie to `token`, living as long as a browser session may
/// stay idle (`session_lifetime`, capped at browsers' 400-day limit).
pub(crate) fn set_session_cookie(state: &AppState, jar: &CookieJar, token: &str) {
    let max_age = state
        .settings
        .session_lifetime
        .min(std::time::Duration::from_secs(400 * 24 * 3600));
    jar.add(browser::cookie(
        SESSION_COOKIE,
        token,
        "/",
        Some(max_age),
        &state.settings,
    ));
}

pub(crate) fn browser_lifetime(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(state.settings.session_lifetime)
        .unwrap_or(chrono::Duration::days(14))
}

/// `session_max_lifetime`: no session outlives it, however active.
pub(crate) fn max_lifetime(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(state.settings.session_max_lifetime)
        .unwrap_or(chrono::Duration::days(90))
}

pub(crate) fn refresh_lifetime(state: &AppState) -> chrono::Duration {
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

/// A new session of `kind` for `client`, and the token its holder gets (only its
/// hash is stored).
pub(crate) fn new_session(
    kind: &'static str,
    client: Client,
    device: Option<String>,
    lifetime: chrono::Duration,
) -> (NewSession, String) {
    let token = crypto::random_token(32);
    let session = NewSession {
        id: Uuid::new_v4(),
        token_hash: crypto::sha256_hex(&token),
        kind,
        user_agent: client.user_agent,
        ip: client.ip,
        device,
        lifetime,
    };
    (session, token)
}

/// Inserts a new session for `user_id`: its id and token.
pub(crate) async fn insert_session(
    db: &impl sea_orm::ConnectionTrait,
    user_id: Uuid,
    kind: &'static str,
    client: Client,
    device: Option<String>,
    lifetime: chrono::Duration,
) -> Result<(Uuid, String), DbErr> {
    let (session, token) = new_session(kind, client, device, lifetime);
    let id = session.id;
    session.insert(db, user_id).await?;
    Ok((id, token))
}
