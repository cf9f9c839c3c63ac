//! The audit log: security-relevant events written to `auth_event` and as one
//! structured log line each (target `audit`). Recording is best effort: a failure
//! is logged and never fails the sign-in or request that caused it.

use std::time::Duration;

use chrono::Utc;
use entity::auth_event::{self, Column, Entity as AuthEvent};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    SignInStarted,
    SignInSucceeded,
    SignInFailed,
    Linked,
    Unlinked,
    PasswordFailure,
    SessionRevoked,
    RefreshTokenReuse,
}

impl EventKind {
    /// The stored and logged name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignInStarted => "sign_in_started",
            Self::SignInSucceeded => "sign_in_succeeded",
            Self::SignInFailed => "sign_in_failed",
            Self::Linked => "linked",
            Self::Unlinked => "unlinked",
            Self::PasswordFailure => "password_failure",
            Self::SessionRevoked => "session_revoked",
            Self::RefreshTokenReuse => "refresh_token_reuse",
        }
    }
}

/// One event. Build with [`Event::new`] and the `with_*` setters.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub user_id: Option<Uuid>,
    pub provider: Option<String>,
    /// A failure's error code.
    pub code: Option<String>,
    pub operation_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Event {
    pub fn new(kind: EventKind) -> Self {
        Self {
            kind,
            user_id: None,
            provider: None,
            code: None,
            operation_id: None,
            session_id: None,
            ip: None,
            user_agent: None,
        }
    }

    pub fn user(mut self, user_id: impl Into<Option<Uuid>>) -> Self {
        self.user_id = user_id.into();
        self
    }

    pub fn provider(mut self, provider: &str) -> Self {
        self.provider = Some(provider.chars().take(64).collect());
        self
    }

    pub fn code(mut self, code: &str) -> Self {
        self.code = Some(code.chars().take(64).collect());
        self
    }

    pub fn operation(mut self, id: Uuid) -> Self {
        self.operation_id = Some(id);
        self
    }

    pub fn session(mut self, id: Uuid) -> Self {
        self.session_id = Some(id);
        self
    }

    /// The client's address and user agent, bounded in size.
    pub fn client(mut self, ip: Option<&str>, user_agent: Option<&str>) -> Self {
        self.ip = ip.map(|s| s.chars().take(64).collect());
        self.user_agent = user_agent.map(|s| s.chars().take(512).collect());
        self
    }
}

/// Logs `event` and stores it; a storage failure is logged, not returned.
pub async fn record(db: &impl ConnectionTrait, event: Event) {
    tracing::info!(
        target: "audit",
        event = event.kind.as_str(),
        user.id = event.user_id.map(|u| u.to_string()),
        provider = event.provider.as_deref(),
        error.code = event.code.as_deref(),
        operation.id = event.operation_id.map(|u| u.to_string()),
        session.id = event.session_id.map(|u| u.to_string()),
        client.ip = event.ip.as_deref(),
        "audit"
    );
    let row = auth_event::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(event.user_id),
        kind: Set(event.kind.as_str().to_owned()),
        provider: Set(event.provider),
        code: Set(event.code),
        operation_id: Set(event.operation_id),
        session_id: Set(event.session_id),
        ip: Set(event.ip),
        user_agent: Set(event.user_agent),
        created_at: Set(Utc::now()),
    };
    if let Err(error) = AuthEvent::insert(row).exec(db).await {
        tracing::warn!(%error, "could not store an audit event");
    }
}

/// A user's own events, newest first, at most `limit`, older than `before` if given.
pub async fn for_user(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    limit: u64,
    before: Option<chrono::DateTime<Utc>>,
) -> Result<Vec<auth_event::Model>, DbErr> {
    let mut query = AuthEvent::find().filter(Column::UserId.eq(user_id));
    if let Some(before) = before {
        query = query.filter(Column::CreatedAt.lt(before));
    }
    query
        .order_by_desc(Column::CreatedAt)
        .limit(limit)
        .all(db)
        .await
}

/// Deletes events older than `retention`; returns how many.
pub async fn delete_older_than(
    db: &impl ConnectionTrait,
    retention: Duration,
) -> Result<u64, DbErr> {
    let cutoff =
        Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let result = AuthEvent::delete_many()
        .filter(Column::CreatedAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
