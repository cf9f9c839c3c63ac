//! `/api/auth/*`: password registration and sign-in, token refresh with rotation and
//! reuse detection, logout, and native social sign-in through the job queue.

use poem::{Request, web::Data};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;
use worker::{
    accounts::{self, Registered},
    audit::{self, EventKind},
    crypto,
    jobs::{SignInJob, Started},
    operations::{self, NewOperation},
    passwords,
};

use crate::{
    error::ApiError,
    limits::{IpBudget, client_ip},
    openapi::NoContent,
    session::{self, Client, CurrentUser, MaybeUser, RefreshError, TokenPair},
    state::AppState,
};

/// A new password account.
#[derive(Debug, Object)]
pub struct RegisterRequest {
    #[oai(validator(max_length = 254))]
    pub email: String,
    #[oai(validator(max_length = 256))]
    pub password: String,
    #[oai(validator(max_length = 100))]
    pub first_name: Option<String>,
    #[oai(validator(max_length = 100))]
    pub last_name: Option<String>,
    /// A label for the session list ("Ada's iPhone").
    #[oai(validator(max_length = 100))]
    pub device: Option<String>,
}

/// Email and password.
#[derive(Debug, Object)]
pub struct LoginRequest {
    #[oai(validator(max_length = 254))]
    pub email: String,
    #[oai(validator(max_length = 256))]
    pub password: String,
    #[oai(validator(max_length = 100))]
    pub device: Option<String>,
}

/// A refresh token to exchange.
#[derive(Debug, Object)]
pub struct RefreshRequest {
    #[oai(validator(max_length = 256))]
    pub refresh_token: String,
}

/// Native sign-in: either `{code, code_verifier, redirect_uri}` (the app did the
/// authorize step with PKCE) or `{id_token, nonce}` (Google and Apple SDKs).
#[derive(Debug, Object)]
pub struct NativeTokenRequest {
    #[oai(validator(max_length = 4096))]
    pub code: Option<String>,
    #[oai(validator(min_length = 43, max_length = 128))]
    pub code_verifier: Option<String>,
    #[oai(validator(max_length = 2048))]
    pub redirect_uri: Option<String>,
    #[oai(validator(max_length = 8192))]
    pub id_token: Option<String>,
    #[oai(validator(max_length = 512))]
    pub nonce: Option<String>,
    /// Link the provider account to the signed-in user (send the bearer token)
    /// instead of signing in.
    pub link: Option<bool>,
}

/// A started native sign-in: poll `status_url` with the `poll_secret`.
#[derive(Debug, Object)]
pub struct OperationStarted {
    pub operation_id: Uuid,
    /// Send as `X-Poll-Secret` when polling; it is shown only once.
    pub poll_secret: String,
    pub status_url: String,
}

/// 201 with tokens.
#[derive(ApiResponse)]
pub enum Created {
    /// Account created and signed in.
    #[oai(status = 201)]
    Created(Json<TokenPair>),
}

/// 202 with where to poll.
#[derive(ApiResponse)]
pub enum Accepted {
    /// The sign-in is queued.
    #[oai(status = 202)]
    Accepted(Json<OperationStarted>, #[oai(header = "Location")] String),
}

/// Password and token sign-in.
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
        let password = body.password;
        let hash = state.hashing.hash(password).await?;
        let trim = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        match accounts::register_password_user(&state.db, &email, hash, trim(body.first_name), trim(body.last_name)).await? {
            Registered::Created(user) => {
                tracing::info!(user.id = %user.id, "password account registered");
                let tokens = session::start_api_session(state, user.id, Client::of(req), body.device).await?;
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
        let password = body.password;
        let matches = state.hashing.verify(password, hash).await?;
        match user {
            Some(user) if matches => {
                tracing::info!(user.id = %user.id, "password sign-in");
                let tokens =
                    session::start_api_session(state, user.id, Client::of(req), body.device)
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

    /// Native social sign-in through the job queue: answers 202 at once; poll the
    /// operation for the tokens. 400 `invalid_request` for any other shape of body,
    /// `invalid_redirect_uri` for a redirect URI not in `native_redirect_uris`,
    /// `unsupported_grant` for an ID token to a provider without them, and
    /// `nonce_required` for an OpenID Connect provider's code sent without its nonce.
    #[oai(
        path = "/api/auth/:provider/token",
        method = "post",
        tag = "crate::routes::Tag::Auth"
    )]
    async fn token(
        &self,
        Data(state): Data<&AppState>,
        req: &Request,
        provider: Path<String>,
        MaybeUser(user): MaybeUser,
        body: Json<NativeTokenRequest>,
    ) -> Result<Accepted, ApiError> {
        state.limits.check(IpBudget::NativeSignIn, req).await?;
        let provider = state
            .providers
            .get(&provider.0)
            .ok_or(ApiError::NotFound("No such provider."))?;
        let body = body.0;
        let link = match (body.link.unwrap_or(false), &user) {
            (false, _) => None,
            // A link outlives a password change and "log out everywhere": only a
            // recent sign-in may add one.
            (true, Some(current)) => Some(
                current
                    .link_to()
                    .ok_or(ApiError::ReauthenticationRequired)?,
            ),
            (true, None) => return Err(ApiError::Unauthorized),
        };
        let mut job = SignInJob {
            operation_id: Uuid::nil(),
            provider: provider.name.clone(),
            code: String::new(),
            pkce_verifier: String::new(),
            nonce: None,
            form_user: None,
            redirect_uri: None,
            id_token: None,
            client: Client::of(req).for_job(),
        };
        match (
            body.code,
            body.code_verifier,
            body.redirect_uri,
            body.id_token,
            body.nonce,
        ) {
            (Some(code), Some(verifier), Some(redirect_uri), None, nonce) => {
                if !provider.is_allowed_native_redirect(&redirect_uri) {
                    return Err(ApiError::bad_request(
                        "invalid_redirect_uri",
                        "This redirect_uri is not registered for native sign-in.",
                    ));
                }
                // The ID token must carry the nonce the app sent to the provider;
                // without it the job could only fail, after queueing.
                if provider.is_oidc() && nonce.is_none() {
                    return Err(ApiError::bad_request(
                        "nonce_required",
                        "Send the nonce your app put in the authorization request with the code.",
                    ));
                }
                job.code = code;
                job.pkce_verifier = verifier;
                job.redirect_uri = Some(redirect_uri);
                job.nonce = nonce;
            }
            (None, None, None, Some(id_token), Some(nonce)) => {
                if !provider.is_oidc() {
                    return Err(ApiError::bad_request(
                        "unsupported_grant",
                        "This provider issues no ID tokens; send a code.",
                    ));
                }
                job.id_token = Some(id_token);
                job.nonce = Some(nonce);
            }
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "Send either code, code_verifier and redirect_uri, or id_token and nonce.",
                ));
            }
        }
        // The client address's and the queue's pending caps (a poll secret is new
        // each time, so there is no per-browser cap here).
        let client_key = state.limits.pending.admit(&state.reader, req, None).await?;
        let poll_secret = crypto::random_token(32);
        let redeemer_hash = crypto::sha256_hex(&poll_secret);
        let new = NewOperation {
            kind: operations::KIND_NATIVE,
            provider: provider.name.clone(),
            redeemer_hash,
            next_path: None,
            link,
            state_hash: None,
            client_key,
        };
        let operation = match state.jobs.start(&state.writer, new, job).await? {
            Started::Queued(operation) => operation,
            Started::Unqueued(_) => {
                let (code, message) = operations::QUEUE_UNAVAILABLE;
                return Err(ApiError::Unavailable {
                    code,
                    message: message.to_owned(),
                });
            }
            // Only a claimed `state` can be met again, and this operation has none.
            Started::Existing(_) | Started::Foreign => {
                return Err(sea_orm::DbErr::Custom(
                    "an operation without state was claimed twice".into(),
                )
                .into());
            }
        };
        tracing::info!(provider = %provider.name, operation.id = %operation.id, "native sign-in queued");
        let event = audit::Event::new(EventKind::SignInStarted)
            .user(link.map(|link| link.user_id))
            .provider(&provider.name)
            .operation(operation.id);
        state.audit.record(Client::of(req).audit(event));
        let status_url = format!("/api/operations/{}", operation.id);
        Ok(Accepted::Accepted(
            Json(OperationStarted {
                operation_id: operation.id,
                poll_secret,
                status_url: status_url.clone(),
            }),
            status_url,
        ))
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
