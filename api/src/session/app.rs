//! App sessions: access and refresh tokens for the JSON API, and their rotation.

use chrono::Utc;
use entity::{
    refresh_token::{self, Entity as RefreshToken},
    session::{self, Entity as Session},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, TransactionTrait,
    sea_query::Expr,
};
use serde::Serialize;
use uuid::Uuid;
use worker::{
    audit::{self, EventKind},
    crypto,
};

use super::{
    Client, KIND_API, insert_session, is_plausible_token, max_lifetime, refresh_lifetime,
    revoke::revoke_session,
};
use crate::state::AppState;

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
