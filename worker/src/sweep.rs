//! Keeps tables bounded: deletes finished `async_operation` rows, ended `session`
//! rows and spent `refresh_token` rows once past their `retention.*`, in batches so
//! a large backlog never holds SQLite's single writer for long. The periodic
//! sweeper in [`crate::jobs`] calls [`run`]; each `delete_*` returns rows removed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{
    async_operation::{self, Entity as AsyncOperation, OperationStatus},
    refresh_token::{self, Entity as RefreshToken},
    session::{self, Entity as Session},
};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
    QueryTrait,
};

use crate::config::Settings;

/// Rows per `DELETE`: small enough that other writers wait milliseconds, not
/// seconds, behind a sweep of a large backlog.
const BATCH: u64 = 1000;

/// Runs every sweep with `settings`' retentions. Counts go to
/// `signin_rows_swept_total{table}` and, when non-zero, to an `info` line; a failed
/// sweep is logged and the others still run (the next round tries again).
pub async fn run(db: &impl ConnectionTrait, settings: &Settings) {
    let retention = &settings.retention;
    let max_lifetime = settings.session_max_lifetime;
    // Tokens first: a session's deletion cascades to the tokens left, uncounted.
    let tokens = delete_spent_refresh_tokens(db, retention.refresh_tokens, max_lifetime).await;
    record("refresh_token", tokens);
    let sessions = delete_ended_sessions(db, retention.sessions, max_lifetime).await;
    record("session", sessions);
    let operations = delete_finished_operations(db, retention.operations).await;
    record("async_operation", operations);
}

fn record(table: &'static str, result: Result<u64, DbErr>) {
    match result {
        Ok(0) => {}
        Ok(rows) => {
            metrics::counter!("signin_rows_swept_total", "table" => table).increment(rows);
            tracing::info!(table, rows, "old rows swept");
        }
        Err(error) => tracing::warn!(table, %error, "could not sweep old rows"),
    }
}

/// Deletes `ok` and `error` operations whose `updated_at` (when they finished, or
/// were redeemed) is older than `retention`. An `ok` one nobody redeemed goes too:
/// its browser had the whole retention to do so. `pending` ones are never touched;
/// [`crate::operations::expire_stale`] ends them first.
pub async fn delete_finished_operations(
    db: &impl ConnectionTrait,
    retention: Duration,
) -> Result<u64, DbErr> {
    let cutoff = before(Utc::now(), retention);
    let finished = Condition::all()
        .add(async_operation::Column::Status.is_in([OperationStatus::Ok, OperationStatus::Error]))
        .add(async_operation::Column::UpdatedAt.lt(cutoff));
    delete_in_batches::<AsyncOperation>(db, async_operation::Column::Id, finished).await
}

/// Deletes sessions that ended more than `retention` ago, whichever way they ended:
/// revoked, past their (idle or refresh) expiry, or past `max_lifetime`
/// (`session_max_lifetime`) since sign-in. None of these can come back, and until
/// then they remain in the user's history and audit lookups. Their refresh tokens
/// go with them (`ON DELETE CASCADE`).
pub async fn delete_ended_sessions(
    db: &impl ConnectionTrait,
    retention: Duration,
    max_lifetime: Duration,
) -> Result<u64, DbErr> {
    let ended_long_ago = ended_before(before(Utc::now(), retention), max_lifetime);
    delete_in_batches::<Session>(db, session::Column::Id, ended_long_ago).await
}

/// Deletes refresh tokens that can no longer matter, once `retention` has passed:
///
/// - any token whose own `expires_at` is more than `retention` ago, used or not;
/// - a used token whose `used_at` is more than `retention` ago **and** whose session
///   has ended (revoked, expired, or past `max_lifetime`).
///
/// A used token is kept while its session lives because it is the tripwire for
/// reuse: `POST /api/auth/refresh` with a used token revokes the session, as the
/// token must have leaked. That check only runs for a live session and an unexpired
/// token (anything else is answered "invalid" whether or not the row exists), so
/// once the session has ended or the token has expired, the row detects nothing
/// and only the retention keeps it. Unused tokens of a live session are never
/// deleted before they expire: they are the app's way back in.
pub async fn delete_spent_refresh_tokens(
    db: &impl ConnectionTrait,
    retention: Duration,
    max_lifetime: Duration,
) -> Result<u64, DbErr> {
    let now = Utc::now();
    let cutoff = before(now, retention);
    let ended_sessions = Session::find()
        .select_only()
        .column(session::Column::Id)
        .filter(ended_before(now, max_lifetime))
        .into_query();
    let spent = Condition::any()
        .add(refresh_token::Column::ExpiresAt.lt(cutoff))
        .add(
            Condition::all()
                .add(refresh_token::Column::UsedAt.lt(cutoff))
                .add(refresh_token::Column::SessionId.in_subquery(ended_sessions)),
        );
    delete_in_batches::<RefreshToken>(db, refresh_token::Column::Id, spent).await
}

/// Sessions that had ended by `when`: revoked, expired, or signed in more than
/// `max_lifetime` before it.
fn ended_before(when: DateTime<Utc>, max_lifetime: Duration) -> Condition {
    Condition::any()
        .add(session::Column::RevokedAt.lte(when))
        .add(session::Column::ExpiresAt.lte(when))
        .add(session::Column::CreatedAt.lt(before(when, max_lifetime)))
}

/// Deletes the rows of `E` matching `condition`, [`BATCH`] at a time by primary
/// key `id` (`DELETE … WHERE id IN (SELECT id … LIMIT n)`, which SQLite and
/// PostgreSQL both accept), yielding between batches.
async fn delete_in_batches<E: EntityTrait>(
    db: &impl ConnectionTrait,
    id: E::Column,
    condition: Condition,
) -> Result<u64, DbErr> {
    let mut total = 0;
    loop {
        let batch = E::find()
            .select_only()
            .column(id)
            .filter(condition.clone())
            .limit(BATCH)
            .into_query();
        let deleted = E::delete_many()
            .filter(id.in_subquery(batch))
            .exec(db)
            .await?
            .rows_affected;
        total += deleted;
        if deleted < BATCH {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// `now - age`, floored at the Unix epoch so an absurd retention deletes nothing
/// instead of overflowing (or leaving PostgreSQL's timestamp range).
fn before(now: DateTime<Utc>, age: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(age)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .map_or(DateTime::UNIX_EPOCH, |t| t.max(DateTime::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_cutoff_is_now_minus_the_retention() {
        let now = Utc::now();
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(before(now, day), now - chrono::Duration::days(1));
    }

    #[test]
    fn sweep_cutoff_of_an_absurd_retention_deletes_nothing() {
        let now = Utc::now();
        assert_eq!(before(now, Duration::MAX), DateTime::UNIX_EPOCH);
        assert_eq!(
            before(now, Duration::from_secs(400 * 365 * 24 * 3600)),
            DateTime::UNIX_EPOCH
        );
    }
}
