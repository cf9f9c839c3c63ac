//! `GET /api/me`: the signed-in user, by session cookie or bearer token;
//! `PATCH /api/me`: the user sets their own names, which sign-ins then leave alone.

use entity::social_account::{self, Entity as SocialAccount};
use poem::{
    IntoResponse, Response, handler,
    http::header,
    web::{Data, Json},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;
use uuid::Uuid;

use worker::accounts::{self, ProfileEdit};

use crate::{error::ApiError, session::CurrentUser, state::AppState};

/// The user as the API shows it.
#[derive(Debug, Serialize)]
pub struct Me {
    pub id: Uuid,
    pub email: Option<String>,
    pub email_verified: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    /// Names of the linked providers.
    pub providers: Vec<String>,
}

/// `GET /api/me` — 200 the user; 401 JSON without a valid session.
#[handler]
pub async fn me(Data(state): Data<&AppState>, current: CurrentUser) -> Result<Response, ApiError> {
    me_response(state, current.user).await
}

/// `PATCH /api/me` with `{"first_name"?, "last_name"?, "display_name"?}` (a string,
/// or null to clear) — 200 the updated user; 400 for anything else.
#[handler]
pub async fn update_me(
    Data(state): Data<&AppState>,
    current: CurrentUser,
    body: String,
) -> Result<Response, ApiError> {
    let edit = parse_edit(&body)?;
    let user = accounts::edit_profile(&state.db, current.user.id, edit)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    me_response(state, user).await
}

fn parse_edit(body: &str) -> Result<ProfileEdit, ApiError> {
    let invalid = |message: &str| ApiError::bad_request("invalid_profile", message.to_owned());
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|_| invalid("The body must be a JSON object."))?;
    let object = json
        .as_object()
        .ok_or_else(|| invalid("The body must be a JSON object."))?;
    let mut edit = ProfileEdit::default();
    for (key, value) in object {
        let value = match value {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) if s.trim().chars().count() <= 100 => {
                Some(s.trim().to_owned()).filter(|s| !s.is_empty())
            }
            _ => {
                return Err(invalid(&format!(
                    "`{key}` must be a string of at most 100 characters, or null."
                )));
            }
        };
        match key.as_str() {
            "first_name" => edit.first_name = Some(value),
            "last_name" => edit.last_name = Some(value),
            "display_name" => edit.display_name = Some(value),
            other => return Err(invalid(&format!("`{other}` cannot be changed here."))),
        }
    }
    Ok(edit)
}

async fn me_response(
    state: &AppState,
    user: entity::user_profile::Model,
) -> Result<Response, ApiError> {
    let providers: Vec<String> = SocialAccount::find()
        .select_only()
        .column(social_account::Column::Provider)
        .filter(social_account::Column::UserId.eq(user.id))
        .order_by_asc(social_account::Column::Provider)
        .into_tuple()
        .all(&state.db)
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
    })
    .with_header(header::CACHE_CONTROL, "no-store")
    .into_response())
}
