//! An explicit "link another provider" belongs to the session that started it: it
//! links, and its result is redeemed, only while that session is live. A session
//! revoked meanwhile (logout everywhere, a password change, a stolen-token report)
//! takes its unfinished links with it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{
    async_operation,
    session::{self, Entity as Session},
};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who asked for a link: the signed-in user and the session they asked from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkTo {
    pub user_id: Uuid,
    pub session_id: Uuid,
}

impl LinkTo {
    /// The link `operation` asks for, if it is one. An operation recorded before
    /// links named their session has none, and can never prove it is live.
    pub fn of(operation: &async_operation::Model) -> Option<Self> {
        operation.link_user_id.map(|user_id| Self {
            user_id,
            session_id: operation.link_session_id.unwrap_or_else(Uuid::nil),
        })
    }

    /// Whether the session that asked for this link is still live: the user's,
    /// not revoked, not expired, and not older than `max_lifetime`.
    pub async fn session_is_live(
        &self,
        db: &impl ConnectionTrait,
        max_lifetime: Duration,
    ) -> Result<bool, DbErr> {
        let now = Utc::now();
        let oldest = oldest_live_start(now, max_lifetime);
        let live = Session::find_by_id(self.session_id)
            .filter(session::Column::UserId.eq(self.user_id))
            .filter(session::Column::RevokedAt.is_null())
            .filter(session::Column::ExpiresAt.gt(now))
            .filter(session::Column::CreatedAt.gt(oldest))
            .one(db)
            .await?;
        Ok(live.is_some())
    }
}

/// The earliest start of a session still within `max_lifetime` at `now`; any
/// start qualifies when the lifetime reaches past the calendar's beginning.
pub fn oldest_live_start(now: DateTime<Utc>, max_lifetime: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(max_lifetime)
        .ok()
        .and_then(|lifetime| now.checked_sub_signed(lifetime))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lifetime_past_the_calendars_beginning_admits_any_start() {
        let now = Utc::now();
        let day = Duration::from_secs(86_400);
        assert_eq!(oldest_live_start(now, day), now - chrono::Duration::days(1));
        // Once a panic (`now - TimeDelta::MAX`) for a very long `session_max_lifetime`.
        assert_eq!(
            oldest_live_start(now, Duration::from_secs(u64::MAX)),
            DateTime::<Utc>::MIN_UTC
        );
        assert_eq!(
            oldest_live_start(now, day * 365 * 1_000_000),
            DateTime::<Utc>::MIN_UTC
        );
    }
}
