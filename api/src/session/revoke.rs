//! Ending sessions: one, all but the current one, or all; and listing the live ones.

use chrono::Utc;
use entity::session::{self, Entity as Session};
use sea_orm::{ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;
use worker::audit::{self, EventKind};

use super::Client;
use crate::state::AppState;

/// After `revoked` sessions were revoked in the database: every instance's cache
/// forgets them, and one `session_revoked` audit event each.
pub(super) async fn after_revoke(state: &AppState, revoked: &[session::Model], client: &Client) {
    if let Some(cache) = &state.session_cache {
        cache.forget(revoked).await;
    }
    for session in revoked {
        let event = audit::Event::new(EventKind::SessionRevoked)
            .user(session.user_id)
            .session(session.id);
        state.audit.record(client.audit(event));
    }
}

/// Revokes one of `user_id`'s sessions; false if there was no such active session.
pub async fn revoke_session(
    state: &AppState,
    user_id: Uuid,
    session_id: Uuid,
    client: &Client,
) -> Result<bool, DbErr> {
    let only = Condition::all().add(session::Column::Id.eq(session_id));
    Ok(revoke(state, user_id, only, client).await? == 1)
}

/// Revokes every session of `user_id` but `keep`; returns how many.
pub async fn revoke_other_sessions(
    state: &AppState,
    user_id: Uuid,
    keep: Uuid,
    client: &Client,
) -> Result<u64, DbErr> {
    let only = Condition::all().add(session::Column::Id.ne(keep));
    revoke(state, user_id, only, client).await
}

/// Revokes every session of `user_id`; returns how many.
pub async fn revoke_all_sessions(
    state: &AppState,
    user_id: Uuid,
    client: &Client,
) -> Result<u64, DbErr> {
    revoke(state, user_id, Condition::all(), client).await
}

/// Revokes `user_id`'s active sessions that match `only`, with an audit event
/// each; returns how many.
async fn revoke(
    state: &AppState,
    user_id: Uuid,
    only: Condition,
    client: &Client,
) -> Result<u64, DbErr> {
    let revoked = Session::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null())
        .filter(only)
        .exec_with_returning(&state.db)
        .await?;
    after_revoke(state, &revoked, client).await;
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
