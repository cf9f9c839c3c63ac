//! Watching an SQLite database for other connections' commits: `PRAGMA
//! data_version` on one connection changes whenever any other connection commits,
//! and reading it touches no table. The status long-polls (`finishes`) and separate
//! workers (`jobs::push_watch`) each run one on a read connection of their own.
//!
//! The connection is rusqlite's, read on the watch's runtime thread: a tick costs
//! a few microseconds, where a round trip to a sqlx connection's thread cost about
//! 40 µs of CPU (docs/benchmarks.md, ninth sitting). That pays for ticking every
//! 2 ms instead of every 5: another process's commit is noticed 1 ms after it on
//! average instead of 2.5.

use std::{future::Future, path::PathBuf, time::Duration};

/// How often a watch reads `data_version`.
pub const TICK: Duration = Duration::from_millis(2);

/// This connection's view of the database's version. The statement stays prepared
/// (`prepare_cached`): preparing it at each tick was most of the tick's cost.
pub fn data_version(connection: &rusqlite::Connection) -> Result<i64, rusqlite::Error> {
    connection
        .prepare_cached("PRAGMA data_version")?
        .query_row([], |row| row.get(0))
}

/// Runs `watch` on a read connection of its own to the SQLite database `file`
/// until the process ends: when it stops (it returns its error), logs, calls
/// `restarted` and runs it again on a new one, with backoff while none opens.
pub fn keep_watching<W, Fut>(
    file: PathBuf,
    what: &'static str,
    watch: W,
    restarted: impl Fn() + Send + 'static,
) where
    W: Fn(rusqlite::Connection) -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Error> + Send,
{
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            // Its own connection: `data_version` is per connection.
            match crate::reader::connect(&file) {
                Ok(connection) => {
                    backoff = Duration::from_millis(200);
                    let error = watch(connection).await;
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
