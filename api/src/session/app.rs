//! App sessions: access and refresh tokens for the JSON API, and their rotation.

use chrono::Utc;
use entity::{
    refresh_token::{self, Entity as RefreshToken},
    session::{self, Entity as Session},
};
use sea_orm::{ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter, sea_query::Expr};
use serde::Serialize;
use uuid::Uuid;
use worker::{
    audit::{self, EventKind},
    crypto, operations,
    writer::WriteConn,
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

/// Redeems an app's finished operation and, in the same write, starts an API
/// session for its user with its first tokens. `None` when the operation was not
/// redeemable (pending, failed, already delivered, past its window, or a link
/// whose session has ended).
pub async fn redeem_into_api_session(
    state: &AppState,
    operation_id: Uuid,
    redeemer_hash: String,
    client: Client,
) -> Result<Option<(Uuid, TokenPair)>, DbErr> {
    let lifetime = refresh_lifetime(state);
    let max_lifetime = state.settings.session_max_lifetime;
    let started = state
        .writer
        .run(move |db| {
            Box::pin(async move {
                let Some((_, user_id)) =
                    operations::redeem(db, operation_id, &redeemer_hash, max_lifetime).await?
                else {
                    return Ok(None);
                };
                let (session_id, refresh) =
                    open_api_session(db, user_id, client, None, lifetime).await?;
                Ok(Some((user_id, session_id, refresh)))
            })
        })
        .await?;
    Ok(started.map(|(user_id, session_id, refresh)| {
        (user_id, token_pair(state, user_id, session_id, refresh))
    }))
}

/// Starts an API session for `user_id` and issues its first tokens.
pub async fn start_api_session(
    state: &AppState,
    user_id: Uuid,
    client: Client,
    device: Option<String>,
) -> Result<TokenPair, DbErr> {
    let lifetime = refresh_lifetime(state);
    let (session_id, refresh) = state
        .writer
        .run(move |db| Box::pin(open_api_session(db, user_id, client, device, lifetime)))
        .await?;
    Ok(token_pair(state, user_id, session_id, refresh))
}

/// Inserts an API session for `user_id` and its first refresh token.
async fn open_api_session(
    db: &WriteConn<'_>,
    user_id: Uuid,
    client: Client,
    device: Option<String>,
    lifetime: chrono::Duration,
) -> Result<(Uuid, String), DbErr> {
    let (session_id, _) = insert_session(db, user_id, KIND_API, client, device, lifetime).await?;
    let refresh = crypto::random_token(32);
    insert_refresh_token(db, session_id, lifetime, &refresh).await?;
    Ok((session_id, refresh))
}

/// Stores refresh token `token` for `session_id`.
async fn insert_refresh_token(
    db: &impl sea_orm::ConnectionTrait,
    session_id: Uuid,
    lifetime: chrono::Duration,
    token: &str,
) -> Result<(), DbErr> {
    let now = Utc::now();
    RefreshToken::insert(refresh_token::ActiveModel {
        id: Set(Uuid::new_v4()),
        session_id: Set(session_id),
        token_hash: Set(crypto::sha256_hex(token)),
        created_at: Set(now),
        expires_at: Set(now + lifetime),
        used_at: Set(None),
    })
    .exec(db)
    .await?;
    Ok(())
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

/// How long a refresh token just exchanged may be presented again and get the same
/// new pair: two tabs refreshing at once, or an app retrying after a lost answer,
/// are not a theft. After it, a second use revokes the session (as Supabase's
/// reuse interval does).
pub const REFRESH_GRACE: chrono::Duration = chrono::Duration::seconds(10);

/// How a presented refresh token was spent.
enum Spent {
    /// Exchanged now, or again inside [`REFRESH_GRACE`] while its successor is unused.
    Rotated(String),
    /// Exchanged before, outside the grace period (or its successor moved on).
    Reused,
}

/// Exchanges a refresh token for new tokens (rotation). Presenting a token that was
/// already exchanged revokes the session, so a stolen token stops working for both;
/// within [`REFRESH_GRACE`] of its exchange it gets the same new pair instead.
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
    let successor = crypto::hmac_b64url(&state.keys.refresh_successors, token);
    let lifetime = refresh_lifetime(state);
    let (stored_id, session_id) = (stored.id, session.id);
    let spent = state
        .writer
        .run(move |db| Box::pin(spend(db, stored_id, session_id, successor, lifetime)))
        .await?;
    match spent {
        Spent::Rotated(next) => Ok(Ok(token_pair(state, session.user_id, session.id, next))),
        Spent::Reused => {
            tracing::warn!(session.id = %session.id, user.id = %session.user_id, "refresh token reused: session revoked");
            let event = audit::Event::new(EventKind::RefreshTokenReuse)
                .user(session.user_id)
                .session(session.id);
            state.audit.record(client.audit(event));
            revoke_session(state, session.user_id, session.id, client).await?;
            Ok(Err(RefreshError::Reused))
        }
    }
}

/// In one write: claims refresh token `stored_id` and stores its `successor`, or,
/// when it was claimed already, hands the successor back if that happened inside
/// [`REFRESH_GRACE`] and the successor is still unused.
async fn spend(
    db: &WriteConn<'_>,
    stored_id: Uuid,
    session_id: Uuid,
    successor: String,
    lifetime: chrono::Duration,
) -> Result<Spent, DbErr> {
    let now = Utc::now();
    // Only one exchange may win: a concurrent or later one sees `used_at` set.
    let claimed = RefreshToken::update_many()
        .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
        .filter(refresh_token::Column::Id.eq(stored_id))
        .filter(refresh_token::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    if claimed.rows_affected == 1 {
        insert_refresh_token(db, session_id, lifetime, &successor).await?;
        Session::update_many()
            .col_expr(session::Column::LastSeenAt, Expr::value(now))
            .col_expr(session::Column::ExpiresAt, Expr::value(now + lifetime))
            .filter(session::Column::Id.eq(session_id))
            .exec(db)
            .await?;
        return Ok(Spent::Rotated(successor));
    }
    let used_at = RefreshToken::find_by_id(stored_id)
        .one(db)
        .await?
        .and_then(|row| row.used_at);
    if used_at.is_none_or(|used_at| now - used_at > REFRESH_GRACE) {
        return Ok(Spent::Reused);
    }
    let unused_successor = RefreshToken::find()
        .filter(refresh_token::Column::TokenHash.eq(crypto::sha256_hex(&successor)))
        .filter(refresh_token::Column::SessionId.eq(session_id))
        .filter(refresh_token::Column::UsedAt.is_null())
        .filter(refresh_token::Column::ExpiresAt.gt(now))
        .one(db)
        .await?;
    Ok(match unused_successor {
        Some(_) => {
            tracing::info!(session.id = %session_id, "refresh repeated inside the grace period: same new pair");
            Spent::Rotated(successor)
        }
        None => Spent::Reused,
    })
}
