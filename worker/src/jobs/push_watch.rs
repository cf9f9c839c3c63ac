//! On SQLite, a separate `worker` process learns of jobs `api` pushed within a few
//! milliseconds instead of at its next poll: `PRAGMA data_version` on one
//! connection changes whenever another connection commits, and only then does the
//! watch look (by the pending-jobs index) for a job nobody has claimed, and wake
//! the fetch. Its own commits change the version too, but find no new job and
//! wake nothing. (On PostgreSQL, apalis' `LISTEN` does this.)

use std::{sync::Arc, time::Duration};

use sea_orm::sqlx::{self, Connection, SqlitePool};
use tokio::sync::Notify;

use super::QUEUE_NAME;

/// How often the watch reads `data_version`.
const TICK: Duration = Duration::from_millis(5);

/// Watches `pool`'s database for pushed jobs and wakes `wake`; reconnects with
/// backoff and runs until the process ends.
pub(super) fn spawn(pool: SqlitePool, wake: Arc<Notify>) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match pool.acquire().await {
                Ok(connection) => {
                    backoff = Duration::from_millis(200);
                    let error = watch(connection.detach(), &wake).await;
                    tracing::warn!(%error, "the SQLite job watch stopped; restarting");
                    // A push may have landed while the watch was down.
                    wake.notify_one();
                }
                Err(error) => tracing::warn!(%error, "cannot open the SQLite job watch"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    });
}

async fn watch(mut connection: sqlx::SqliteConnection, wake: &Notify) -> sqlx::Error {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: Option<i64> = None;
    loop {
        tick.tick().await;
        let version: i64 = match sqlx::query_scalar("PRAGMA data_version")
            .fetch_one(&mut connection)
            .await
        {
            Ok(version) => version,
            Err(error) => return close(connection, error).await,
        };
        if seen.replace(version) == Some(version) {
            continue;
        }
        // `idx_jobs_pending` answers this without touching a row.
        let waiting: bool = match sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM Jobs WHERE job_type = ?1 \
             AND status = 'Pending' AND lock_by IS NULL)",
        )
        .bind(QUEUE_NAME)
        .fetch_one(&mut connection)
        .await
        {
            Ok(waiting) => waiting,
            Err(error) => return close(connection, error).await,
        };
        if waiting {
            wake.notify_one();
        }
    }
}

async fn close(connection: sqlx::SqliteConnection, error: sqlx::Error) -> sqlx::Error {
    let _ = connection.close().await;
    error
}
