//! `/api/auth/*`: password registration and sign-in, token refresh with rotation and
//! reuse detection, logout. Native social sign-in is `native_token`.

use poem::{Request, web::Data};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Query, payload::Json};
use uuid::Uuid;
use worker::{
    accounts::{self, Registered},
    audit::{self, EventKind},
    passwords,
};

use crate::text::Text;
use crate::{
    error::ApiError,
    limits::{IpBudget, client_ip},
    openapi::NoContent,
    session::{self, Client, CurrentUser, RefreshError, TokenPair},
    state::AppState,
};

/// A new password account.
#[derive(Debug, Object)]
pub struct RegisterRequest {
    /// An address like `ada@example.com` (surrounding spaces are dropped, and it is
    /// lower-cased): something before the `@`, a domain with a dot inside it.
    #[oai(validator(
        max_length = 254,
        pattern = r"^\s*[^@\s<>\x00-\x1f\x7f-\x9f]+@[^.@\s<>\x00-\x1f\x7f-\x9f][^@\s<>\x00-\x1f\x7f-\x9f]*\.[^@\s<>\x00-\x1f\x7f-\x9f]*[^.@\s<>\x00-\x1f\x7f-\x9f]\s*$"
    ))]
    pub email: Text,
    /// At least 10 characters, and not common or built from your name or email.
    #[oai(validator(min_length = 10, max_length = 256))]
    pub password: Text,
    #[oai(validator(max_length = 100))]
    #[oai(nullable)]
    pub first_name: Option<Text>,
    #[oai(validator(max_length = 100))]
    #[oai(nullable)]
    pub last_name: Option<Text>,
    /// A label for the session list ("Ada's iPhone").
    #[oai(validator(max_length = 100))]
    #[oai(nullable)]
    pub device: Option<Text>,
}

/// Email and password.
#[derive(Debug, Object)]
pub struct LoginRequest {
    #[oai(validator(max_length = 254))]
    pub email: Text,
    #[oai(validator(max_length = 256))]
    pub password: Text,
    #[oai(validator(max_length = 100))]
    #[oai(nullable)]
    pub device: Option<Text>,
}

/// A refresh token to exchange.
#[derive(Debug, Object)]
pub struct RefreshRequest {
    #[oai(validator(max_length = 256))]
    pub refresh_token: Text,
}

/// 201 with tokens.
#[derive(ApiResponse)]
pub enum Created {
    /// Account created and signed in.
    #[oai(status = 201)]
    Created(Json<TokenPair>),
}

/// Password and token sign-in.
#[derive(Default)]
pub struct AuthApi;

#[OpenApi]
impl AuthApi {
    /// Creates a password account and signs it in.
    #[oai(
        path = "/api/auth/register",
        method = "post",
        tag = "crate::routes::Tag::Auth"
    )]
    async fn register(
        &self,
        Data(state): Data<&AppState>,
        req: &Request,
        body: Json<RegisterRequest>,
    ) -> Result<Created, ApiError> {
        state.limits.check(IpBudget::Registration, req).await?;
        let body = body.0;
        let email = body.email.trim().to_lowercase();
        if !worker::accounts::is_plausible_email(&email) {
            return Err(ApiError::bad_request(
                "invalid_email",
                "Enter an email address like ada@example.com.",
            ));
        }
        let context: Vec<&str> = [
            Some(email.as_str()),
            body.first_name.as_deref(),
            body.last_name.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        passwords::check_policy(&body.password, &context)
            .map_err(|e| ApiError::bad_request("weak_password", e.to_string()))?;
        let password = body.password.0;
        let hash = state.hashing.hash(password).await?;
        let trim = |v: Option<Text>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        match accounts::register_password_user(&state.db, &email, hash, trim(body.first_name), trim(body.last_name)).await? {
            Registered::Created(user) => {
                tracing::info!(user.id = %user.id, "password account registered");
                let tokens = session::start_api_session(state, user.id, Client::of(req), body.device.map(String::from)).await?;
                record_password_sign_in(state, req, user.id, tokens.session_id);
                Ok(Created::Created(Json(tokens)))
            }
            Registered::EmailInUse => Err(ApiError::Conflict {
                code: "email_in_use",
                message: "An account with this email exists. Sign in (with its provider), then set a password from your account.".to_owned(),
            }),
        }
    }

    /// Signs in with email and password. An unknown email and a wrong password get
    /// the same answer in about the same time.
    #[oai(
        path = "/api/auth/login",
        method = "post",
        tag = "crate::routes::Tag::Auth"
    )]
    async fn login(
        &self,
        Data(state): Data<&AppState>,
        req: &Request,
        body: Json<LoginRequest>,
    ) -> Result<Json<TokenPair>, ApiError> {
        let body = body.0;
        let email = body.email.trim().to_lowercase();
        state.limits.check_login(client_ip(req), &email).await?;
        let user = accounts::find_password_user(&state.db, &email).await?;
        let hash = user
            .as_ref()
            .and_then(|u| u.password_hash.clone())
            .unwrap_or_else(|| passwords::dummy_hash().to_owned());
        let password = body.password.0;
        let matches = state.hashing.verify(password, hash).await?;
        match user {
            Some(user) if matches => {
                tracing::info!(user.id = %user.id, "password sign-in");
                let tokens = session::start_api_session(
                    state,
                    user.id,
                    Client::of(req),
                    body.device.map(String::from),
                )
                .await?;
                record_password_sign_in(state, req, user.id, tokens.session_id);
                Ok(Json(tokens))
            }
            _ => {
                tracing::info!("password sign-in failed");
                // Only a known user's failures are theirs to see; an unknown email is
                // in the log line alone (never the email itself).
                let event = audit::Event::new(EventKind::PasswordFailure)
                    .user(user.map(|u| u.id))
                    .code("invalid_credentials");
                state.audit.record(Client::of(req).audit(event));
                Err(ApiError::Credentials)
            }
        }
    }

    /// Exchanges a refresh token for new tokens. Each refresh token works once;
    /// presenting a used one revokes the whole session.
    #[oai(
        path = "/api/auth/refresh",
        method = "post",
        tag = "crate::routes::Tag::Auth"
    )]
    async fn refresh(
        &self,
        Data(state): Data<&AppState>,
        req: &Request,
        body: Json<RefreshRequest>,
    ) -> Result<Json<TokenPair>, ApiError> {
        match session::refresh_api_session(state, &body.0.refresh_token, &Client::of(req)).await? {
            Ok(tokens) => Ok(Json(tokens)),
            Err(RefreshError::Invalid) => Err(ApiError::Unauthenticated {
                code: "invalid_refresh_token",
                message: "The refresh token is invalid or expired; sign in again.".to_owned(),
            }),
            Err(RefreshError::Reused) => Err(ApiError::Unauthenticated {
                code: "refresh_token_reused",
                message: "This refresh token was already used; the session has been ended for safety. Sign in again.".to_owned(),
            }),
        }
    }

    /// Ends this session, or every session of the user with `all=1`.
    #[oai(
        path = "/api/auth/logout",
        method = "post",
        tag = "crate::routes::Tag::Auth"
    )]
    async fn logout(
        &self,
        Data(state): Data<&AppState>,
        req: &Request,
        current: CurrentUser,
        all: Query<Option<String>>,
    ) -> Result<NoContent, ApiError> {
        if matches!(all.0.as_deref(), Some("1" | "true")) {
            let ended =
                session::revoke_all_sessions(state, current.user.id, &Client::of(req)).await?;
            tracing::info!(user.id = %current.user.id, sessions = ended, "signed out everywhere");
        } else {
            session::revoke_session(state, current.user.id, current.session_id, &Client::of(req))
                .await?;
        }
        // A browser calling this also loses its cookie and its browser key.
        let name = crate::browser::cookie_name(session::SESSION_COOKIE, "/", &state.settings);
        if req.cookie().get(&name).is_some() {
            crate::browser::expire(req.cookie(), session::SESSION_COOKIE, "/", &state.settings);
            crate::browser::forget_browser_key(req.cookie(), &state.settings);
        }
        Ok(NoContent::Done)
    }
}

/// A successful password sign-in (or registration) in the audit log.
fn record_password_sign_in(state: &AppState, req: &Request, user_id: Uuid, session_id: Uuid) {
    let event = audit::Event::new(EventKind::SignInSucceeded)
        .user(user_id)
        .provider("password")
        .session(session_id);
    state.audit.record(Client::of(req).audit(event));
}
