//! `/api/sessions`: every active session of the signed-in user, browsers and apps
//! alike, and revoking one.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{Object, OpenApi, param::Path, payload::Json};
use uuid::Uuid;

use crate::{error::ApiError, openapi::NoContent, session, state::AppState};

/// One session as its owner sees it.
#[derive(Debug, Object)]
pub struct SessionInfo {
    pub id: Uuid,
    /// `browser` (cookie) or `api` (tokens).
    pub kind: String,
    /// The label the app gave, if any.
    #[oai(nullable)]
    pub device: Option<String>,
    #[oai(nullable)]
    pub user_agent: Option<String>,
    #[oai(nullable)]
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// Whether this request came through it.
    pub current: bool,
}

/// Session management.
#[derive(Default)]
pub struct SessionsApi;

#[OpenApi]
impl SessionsApi {
    /// The user's active sessions, most recently used first.
    #[oai(
        path = "/api/sessions",
        method = "get",
        tag = "crate::routes::Tag::Sessions"
    )]
    async fn list(
        &self,
        Data(state): Data<&AppState>,
        current: session::CurrentUser,
    ) -> Result<Json<Vec<SessionInfo>>, ApiError> {
        let sessions = session::active_sessions(state, current.user.id).await?;
        Ok(Json(
            sessions
                .into_iter()
                .map(|s| SessionInfo {
                    current: s.id == current.session_id,
                    id: s.id,
                    kind: s.kind,
                    device: s.device,
                    user_agent: s.user_agent,
                    ip: s.ip,
                    created_at: s.created_at,
                    last_seen_at: s.last_seen_at,
                })
                .collect(),
        ))
    }

    /// Revokes one of the user's sessions; its tokens stop working at once.
    #[oai(
        path = "/api/sessions/:id",
        method = "delete",
        tag = "crate::routes::Tag::Sessions"
    )]
    async fn revoke(
        &self,
        Data(state): Data<&AppState>,
        req: &poem::Request,
        id: Path<Uuid>,
        current: session::CurrentUser,
    ) -> Result<NoContent, ApiError> {
        if session::revoke_session(state, current.user.id, id.0, &session::Client::of(req)).await? {
            tracing::info!(user.id = %current.user.id, session.id = %id.0, "session revoked");
            Ok(NoContent::Done)
        } else {
            Err(ApiError::NotFound("No such active session."))
        }
    }
}
