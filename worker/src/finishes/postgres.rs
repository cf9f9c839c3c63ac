//! On PostgreSQL, finishes announced by any process: the statement that finishes an
//! operation also sends a `NOTIFY` (see `operations::finish`) carrying what the
//! finish wrote, so a waiting status request answers from it without reading the
//! row again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::async_operation::{Model, OperationStatus};
use sea_orm::ActiveEnum;
use serde::Deserialize;
use uuid::Uuid;

use super::OperationEvents;

/// The channel's name as a literal, for [`NOTIFY_CHANNEL`] and [`ANNOUNCEMENT`].
macro_rules! channel {
    () => {
        "signin_operation_finished"
    };
}

/// The PostgreSQL channel on which every finished operation is announced.
pub const NOTIFY_CHANNEL: &str = channel!();

/// The `pg_notify` call for the `RETURNING` of the statement that finishes an
/// operation (`async_operation`'s columns in scope): the columns a finish writes,
/// as JSON, or the id alone (the waiters then read the row) when the error message
/// is over 4,000 bytes, as `NOTIFY` takes under 8,000. Built at compile time: it
/// goes into every finish.
pub(crate) const ANNOUNCEMENT: &str = concat!(
    "pg_notify('",
    channel!(),
    "', CASE WHEN coalesce(octet_length(error_message), 0) <= 4000 \
     THEN json_build_object('id', id, 'status', status, 'user_id', user_id, \
     'error_code', error_code, 'error_message', error_message, \
     'updated_at', updated_at)::text \
     ELSE id::text END)"
);

/// What a finish wrote into an operation's row, as announced.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Finish {
    id: Uuid,
    status: String,
    user_id: Option<Uuid>,
    error_code: Option<String>,
    error_message: Option<String>,
    updated_at: DateTime<Utc>,
}

impl Finish {
    pub(crate) fn id(&self) -> Uuid {
        self.id
    }

    /// The row `pending` became, when this finish is its own.
    pub(crate) fn applied_to(&self, pending: &Model) -> Option<Model> {
        let status = OperationStatus::try_from_value(&self.status)
            .ok()
            .filter(|status| *status != OperationStatus::Pending)?;
        (pending.id == self.id).then(|| Model {
            status,
            user_id: self.user_id,
            error_code: self.error_code.clone(),
            error_message: self.error_message.clone(),
            updated_at: self.updated_at,
            token_response: None,
            ..pending.clone()
        })
    }
}

/// What one notification says.
#[derive(Debug)]
enum Heard {
    Finish(Finish),
    /// The id alone (a long error message, or an older worker): read it again.
    Id(Uuid),
    /// Anything else: everyone re-checks.
    Unknown,
}

fn hear(payload: &str) -> Heard {
    if let Ok(id) = Uuid::parse_str(payload) {
        return Heard::Id(id);
    }
    match serde_json::from_str::<Finish>(payload) {
        Ok(finish) => Heard::Finish(finish),
        Err(_) => Heard::Unknown,
    }
}

/// Relays `NOTIFY`s of finished operations from any process to `events`, so long
/// polls answer at once even when separate workers finish the operations.
/// Reconnects with backoff; runs until the process ends.
pub fn listen_for_finishes(pool: sea_orm::sqlx::PgPool, events: OperationEvents) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(mut listener) => {
                    if let Err(error) = listener.listen(NOTIFY_CHANNEL).await {
                        tracing::warn!(%error, "cannot LISTEN for finished operations");
                    } else {
                        backoff = Duration::from_millis(200);
                        // Something may have finished while we were not listening.
                        events.notify_all();
                        while let Ok(notification) = listener.recv().await {
                            match hear(notification.payload()) {
                                Heard::Finish(finish) => events.finished_elsewhere(finish),
                                Heard::Id(id) => events.finished(id),
                                Heard::Unknown => events.notify_all(),
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot connect to LISTEN for finished operations")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    });
}

#[cfg(test)]
mod tests {
    use entity::async_operation::OperationStatus;
    use uuid::Uuid;

    use super::{Heard, hear};
    use crate::finishes::tests::finished_row;

    #[test]
    fn an_announced_finish_is_applied_to_its_own_pending_row_only() {
        let id = Uuid::new_v4();
        let user = Uuid::new_v4();
        let pending = crate::finishes::tests::pending_row(id);
        // As PostgreSQL's json_build_object writes it.
        let payload = format!(
            r#"{{"id" : "{id}", "status" : "ok", "user_id" : "{user}", "error_code" : null, "error_message" : null, "updated_at" : "2026-12-01T05:40:11.123456+00:00"}}"#
        );
        let Heard::Finish(finish) = hear(&payload) else {
            panic!("a finish")
        };
        let row = finish.applied_to(&pending).expect("its own row");
        assert_eq!((row.status, row.user_id), (OperationStatus::Ok, Some(user)));
        assert_eq!(row.redeemer_hash, pending.redeemer_hash);
        assert!(finish.applied_to(&finished_row(Uuid::new_v4())).is_none());

        assert!(matches!(hear(&id.to_string()), Heard::Id(i) if i == id));
        assert!(matches!(hear("{\"id\": 1}"), Heard::Unknown));
        let odd = payload.replace("\"ok\"", "\"pending\"");
        let Heard::Finish(finish) = hear(&odd) else {
            panic!("parsed")
        };
        assert!(
            finish.applied_to(&pending).is_none(),
            "not a finished status"
        );
    }
}
