//! The audit log: security-relevant events written to `auth_event` and as one
//! structured log line each (target `audit`). Recording never waits for the
//! database: [`AuditLog::record`] logs the line at once and hands the row to a
//! background task that inserts whatever has queued up in one statement, so the
//! audit log costs a sign-in no write of its own on the (single, on SQLite) writer
//! connection. A failure is logged and never fails the sign-in or request.

use std::time::Duration;

use chrono::Utc;
use entity::auth_event::{self, Column, Entity as AuthEvent};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::writer::Writer;

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

/// Rows waiting for the writer task; beyond this, new rows are dropped (the log line
/// is still written) rather than holding up sign-ins.
const QUEUE: usize = 8192;
/// Most rows per insert statement.
const BATCH: usize = 256;

/// Where events go. Cheap to clone; clones share one writer task.
#[derive(Clone, Debug)]
pub struct AuditLog {
    rows: tokio::sync::mpsc::Sender<auth_event::ActiveModel>,
}

impl AuditLog {
    /// Starts the task that stores queued rows through `writer` (so they join the
    /// sign-in writes' transactions on SQLite). It ends when the last clone is
    /// dropped, after writing what is queued.
    pub fn start(writer: Writer) -> Self {
        let (rows, mut queued) = tokio::sync::mpsc::channel(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while queued.recv_many(&mut batch, BATCH).await > 0 {
                let count = batch.len();
                let rows: Vec<_> = batch.drain(..).collect();
                let stored = writer
                    .run_atomic(move |db| {
                        Box::pin(async move { AuthEvent::insert_many(rows).exec(db).await })
                    })
                    .await;
                if let Err(error) = stored {
                    tracing::warn!(%error, events = count, "could not store audit events");
                }
            }
        });
        Self { rows }
    }

    /// Logs `event` now and queues its row.
    pub fn record(&self, event: Event) {
        log(&event);
        if self.rows.try_send(row(event)).is_err() {
            metrics::counter!("signin_audit_events_dropped_total").increment(1);
            tracing::warn!("audit queue full or closed: event logged but not stored");
        }
    }
}

fn log(event: &Event) {
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
}

fn row(event: Event) -> auth_event::ActiveModel {
    auth_event::ActiveModel {
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
