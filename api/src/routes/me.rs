//! `GET /api/me`: the signed-in user, by session cookie or bearer token.

use entity::social_account::{self, Entity as SocialAccount};
use poem::{
    IntoResponse, Response, handler,
    http::header,
    web::{Data, Json},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;
use uuid::Uuid;

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
    let providers: Vec<String> = SocialAccount::find()
        .select_only()
        .column(social_account::Column::Provider)
        .filter(social_account::Column::UserId.eq(current.user.id))
        .order_by_asc(social_account::Column::Provider)
        .into_tuple()
        .all(&state.db)
        .await?;
    let user = current.user;
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
