//! Watching an SQLite database for other connections' commits: `PRAGMA
//! data_version` on one connection changes whenever any other connection commits,
//! and reading it touches no table. The status long-polls (`finishes`) and separate
//! workers (`jobs::push_watch`) each run one on a connection of their own.

use std::{future::Future, time::Duration};

use sea_orm::sqlx::{self, Connection, SqliteConnection, SqlitePool};

/// How often a watch reads `data_version`.
pub const TICK: Duration = Duration::from_millis(5);

/// This connection's view of the database's version.
pub async fn data_version(connection: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(connection)
        .await
}

/// Runs `watch` on a connection of its own from `pool` until the process ends:
/// when it stops (it returns its error), closes that connection, logs, calls
/// `restarted` and runs it again on a new one, with backoff while none opens.
pub fn keep_watching<W, Fut>(
    pool: SqlitePool,
    what: &'static str,
    watch: W,
    restarted: impl Fn() + Send + 'static,
) where
    W: Fn(SqliteConnection) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Error> + Send,
{
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            // Its own connection: `data_version` is per connection.
            match pool.acquire().await {
                Ok(connection) => {
                    backoff = Duration::from_millis(200);
                    let error = watch(connection.detach()).await;
                    tracing::warn!(%error, "the SQLite {what} stopped; restarting");
                    restarted();
                }
                Err(error) => tracing::warn!(%error, "cannot open the SQLite {what}"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    });
}

/// Closes `connection` and hands back why, for a watch that has to stop.
pub async fn stop(connection: SqliteConnection, error: sqlx::Error) -> anyhow::Error {
    let _ = connection.close().await;
    error.into()
}
