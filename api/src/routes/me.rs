//! `/api/me`: the signed-in user (`GET`), their own names (`PATCH`), their password
//! (`PUT /api/me/password`), their linked providers (`DELETE
//! /api/me/providers/{name}`) and their audit log (`GET /api/me/events`). By session
//! cookie or bearer token.

use entity::social_account::{self, Entity as SocialAccount};
use poem::{Request, web::Data};
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::MaybeUndefined,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;
use worker::{
    accounts::{self, ProfileEdit, Unlinked},
    audit::{self, EventKind},
    passwords,
};

use crate::text::Text;
use crate::{
    error::ApiError,
    limits::client_ip,
    openapi::NoContent,
    session::{self, Client, CurrentUser},
    state::AppState,
};

/// One entry of the user's audit log.
#[derive(Debug, Object)]
pub struct AuthEventView {
    pub id: Uuid,
    /// `sign_in_started`, `sign_in_succeeded`, `sign_in_failed`, `linked`,
    /// `unlinked`, `password_failure`, `session_revoked` or `refresh_token_reuse`.
    pub kind: String,
    #[oai(nullable)]
    pub provider: Option<String>,
    /// The error code of a failure.
    #[oai(nullable)]
    pub code: Option<String>,
    #[oai(nullable)]
    pub session_id: Option<Uuid>,
    #[oai(nullable)]
    pub ip: Option<String>,
    #[oai(nullable)]
    pub user_agent: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Longest page of `GET /api/me/events`.
const MAX_EVENTS: u64 = 100;

/// The user as the API shows it.
#[derive(Debug, Object)]
pub struct Me {
    pub id: Uuid,
    #[oai(nullable)]
    pub email: Option<String>,
    pub email_verified: bool,
    #[oai(nullable)]
    pub first_name: Option<String>,
    #[oai(nullable)]
    pub last_name: Option<String>,
    #[oai(nullable)]
    pub display_name: Option<String>,
    #[oai(nullable)]
    pub avatar_url: Option<String>,
    /// Names of the linked providers.
    pub providers: Vec<String>,
    /// Whether the user can sign in with a password.
    pub has_password: bool,
}

/// Names the user sets (at most 100 characters each); `null` clears a field.
/// Absent fields stay as they are.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ProfileUpdate {
    #[oai(nullable)]
    pub first_name: MaybeUndefined<Text>,
    #[oai(nullable)]
    pub last_name: MaybeUndefined<Text>,
    #[oai(nullable)]
    pub display_name: MaybeUndefined<Text>,
}

/// A new password; `current_password` is required when one is set already.
#[derive(Debug, Object)]
pub struct PasswordChange {
    /// At least 10 characters, and not common or built from your name or email.
    #[oai(validator(min_length = 10, max_length = 256))]
    pub password: Text,
    #[oai(validator(max_length = 256))]
    #[oai(nullable)]
    pub current_password: Option<Text>,
}

/// The signed-in user's account.
#[derive(Default)]
pub struct MeApi;

#[OpenApi]
impl MeApi {
    /// The signed-in user.
    #[oai(path = "/api/me", method = "get", tag = "crate::routes::Tag::Account")]
    async fn me(
        &self,
        Data(state): Data<&AppState>,
        current: CurrentUser,
    ) -> Result<Json<Me>, ApiError> {
        me_json(state, current.user).await
    }

    /// Sets names locally; later sign-ins leave them alone.
    #[oai(
        path = "/api/me",
        method = "patch",
        tag = "crate::routes::Tag::Account"
    )]
    async fn update_me(
        &self,
        Data(state): Data<&AppState>,
        current: CurrentUser,
        body: Json<ProfileUpdate>,
    ) -> Result<Json<Me>, ApiError> {
        let body = body.0;
        for (name, value) in [
            ("first_name", &body.first_name),
            ("last_name", &body.last_name),
            ("display_name", &body.display_name),
        ] {
            if value.value().is_some_and(|v| v.chars().count() > 100) {
                return Err(ApiError::bad_request(
                    "invalid_profile",
                    format!("`{name}` must be at most 100 characters."),
                ));
            }
        }
        // Undefined: leave as is; null: clear; a string: set.
        let clean = |v: MaybeUndefined<Text>| match v {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(s) => Some(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
        };
        let edit = ProfileEdit {
            first_name: clean(body.first_name),
            last_name: clean(body.last_name),
            display_name: clean(body.display_name),
        };
        let user = accounts::edit_profile(&state.db, current.user.id, edit)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        me_json(state, user).await
    }

    /// Sets or changes the password (a social user may add one). 409 `email_in_use`
    /// when another user already signs in with a password as this user's email.
    #[oai(
        path = "/api/me/password",
        method = "put",
        tag = "crate::routes::Tag::Account"
    )]
    async fn set_password(
        &self,
        Data(state): Data<&AppState>,
        req: &Request,
        current: CurrentUser,
        body: Json<PasswordChange>,
    ) -> Result<NoContent, ApiError> {
        let user = &current.user;
        // Adding a first password turns a session into a permanent credential: a
        // stolen, old session must not be able to do it.
        if user.password_hash.is_none() && !current.signed_in_recently() {
            return Err(ApiError::ReauthenticationRequired);
        }
        if let Some(existing) = &user.password_hash {
            // Guesses at the current password share the account's login budget.
            state
                .limits
                .check_login(client_ip(req), &format!("user:{}", user.id))
                .await?;
            let given = body.0.current_password.clone().unwrap_or_default().0;
            let existing = existing.clone();
            if !state.hashing.verify(given, existing).await? {
                let event = audit::Event::new(EventKind::PasswordFailure)
                    .user(user.id)
                    .session(current.session_id)
                    .code("wrong_current_password");
                state.audit.record(Client::of(req).audit(event));
                return Err(ApiError::Credentials);
            }
        }
        let context: Vec<&str> = [
            user.email.as_deref(),
            user.first_name.as_deref(),
            user.last_name.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        passwords::check_policy(&body.0.password, &context)
            .map_err(|e| ApiError::bad_request("weak_password", e.to_string()))?;
        let password = body.0.password.0;
        let hash = state.hashing.hash(password).await?;
        if accounts::set_password(&state.db, user.id, hash).await?
            == accounts::PasswordSet::EmailInUse
        {
            return Err(ApiError::Conflict {
                code: "email_in_use",
                message: "Another account already signs in with a password as this email."
                    .to_owned(),
            });
        }
        // Whoever else held a session (with the old password, perhaps) is out.
        let ended =
            session::revoke_other_sessions(state, user.id, current.session_id, &Client::of(req))
                .await?;
        tracing::info!(user.id = %user.id, other_sessions_ended = ended, "password set");
        Ok(NoContent::Done)
    }

    /// Unlinks a provider, unless it is the last way to sign in (409).
    #[oai(
        path = "/api/me/providers/:provider",
        method = "delete",
        tag = "crate::routes::Tag::Account"
    )]
    async fn unlink(
        &self,
        Data(state): Data<&AppState>,
        req: &Request,
        provider: Path<String>,
        current: CurrentUser,
    ) -> Result<NoContent, ApiError> {
        match accounts::unlink(&state.db, current.user.id, &provider.0).await? {
            Unlinked::Removed => {
                tracing::info!(user.id = %current.user.id, provider = %provider.0, "provider unlinked");
                let event = audit::Event::new(EventKind::Unlinked)
                    .user(current.user.id)
                    .session(current.session_id)
                    .provider(&provider.0);
                state.audit.record(Client::of(req).audit(event));
                Ok(NoContent::Done)
            }
            Unlinked::NotLinked => Err(ApiError::NotFound("No account at that provider is linked.")),
            Unlinked::LastMethod => Err(ApiError::Conflict {
                code: "last_sign_in_method",
                message: "This is your only way to sign in; link another provider or set a password first.".to_owned(),
            }),
        }
    }

    /// The user's own audit log, newest first: sign-ins started, succeeded and
    /// failed, links and unlinks, password failures, revoked sessions and reused
    /// refresh tokens, with the address and browser of each.
    #[oai(
        path = "/api/me/events",
        method = "get",
        tag = "crate::routes::Tag::Account"
    )]
    async fn events(
        &self,
        Data(state): Data<&AppState>,
        current: CurrentUser,
        /// At most this many (1–100, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u64>>,
        /// Only events older than this time (RFC 3339), to page back.
        before: Query<Option<chrono::DateTime<chrono::Utc>>>,
    ) -> Result<Json<Vec<AuthEventView>>, ApiError> {
        let limit = limit.0.unwrap_or(50);
        if limit == 0 || limit > MAX_EVENTS {
            return Err(ApiError::bad_request(
                "invalid_limit",
                "`limit` must be between 1 and 100.",
            ));
        }
        let events = audit::for_user(&state.reader, current.user.id, limit, before.0).await?;
        Ok(Json(
            events
                .into_iter()
                .map(|e| AuthEventView {
                    id: e.id,
                    kind: e.kind,
                    provider: e.provider,
                    code: e.code,
                    session_id: e.session_id,
                    ip: e.ip,
                    user_agent: e.user_agent,
                    created_at: e.created_at,
                })
                .collect(),
        ))
    }
}

async fn me_json(
    state: &AppState,
    user: entity::user_profile::Model,
) -> Result<Json<Me>, ApiError> {
    // The read pool: committed links are visible there, and on SQLite the writer
    // connection stays with the writes.
    let providers: Vec<String> = SocialAccount::find()
        .select_only()
        .column(social_account::Column::Provider)
        .filter(social_account::Column::UserId.eq(user.id))
        .order_by_asc(social_account::Column::Provider)
        .into_tuple()
        .all(&state.reader)
        .await?;
    Ok(Json(Me {
        id: user.id,
        email: user.email,
        email_verified: user.email_verified,
        first_name: user.first_name,
        last_name: user.last_name,
        display_name: user.display_name,
        avatar_url: user.avatar_url,
        providers,
        has_password: user.password_hash.is_some(),
    }))
}
