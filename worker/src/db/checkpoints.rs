//! SQLite's WAL checkpoints, off the writer.
//!
//! By default SQLite checkpoints inside the commit that takes the WAL past 1,000
//! pages: the committing connection copies the pages into the database file and
//! syncs both files. On the one writer that was about every 0.4 s under load,
//! three `fsync`s of 2–3 ms each, while every queued write waited. So the writer
//! connection does not checkpoint (`wal_autocheckpoint = 0`, set in `db`), and a
//! connection of its own checkpoints every [`EVERY`] on a blocking thread instead,
//! `PASSIVE`ly: it never waits for, nor holds up, the writer or a reader. At 64
//! browsers that took the callback's p99 from 35–36 to 30–31 ms
//! (docs/benchmarks.md, ninth sitting). Each process on the file runs one; SQLite
//! lets one checkpoint run at a time and the others find nothing to do.

use std::{
    path::PathBuf,
    sync::{Arc, Weak},
    time::Duration,
};

/// How often the WAL is checkpointed (about the pace of SQLite's own 1,000 pages
/// under load).
pub const EVERY: Duration = Duration::from_millis(250);

/// Keeps the checkpoints running while held (each clone of the database holds it).
#[derive(Debug)]
pub struct Running;

/// Checkpoints `file` every [`EVERY`] until `running` is dropped.
pub(super) fn spawn(file: PathBuf, running: &Arc<Running>) {
    let running = Arc::downgrade(running);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Handed to each blocking checkpoint and back; reopened after a failure.
        let mut conn: Option<rusqlite::Connection> = None;
        loop {
            tick.tick().await;
            if Weak::strong_count(&running) == 0 {
                return;
            }
            let (open, file) = (conn.take(), file.clone());
            let done = tokio::task::spawn_blocking(move || {
                let conn = match open {
                    Some(conn) => conn,
                    None => rusqlite::Connection::open(&file)?,
                };
                checkpoint(&conn).map(|()| conn)
            })
            .await;
            match done {
                Ok(Ok(open)) => conn = Some(open),
                Ok(Err(error)) => tracing::warn!(%error, "a SQLite checkpoint failed; reopening"),
                Err(error) => tracing::warn!(%error, "a SQLite checkpoint did not finish"),
            }
        }
    });
}

fn checkpoint(conn: &rusqlite::Connection) -> Result<(), rusqlite::Error> {
    // (busy, frames in the WAL, frames checkpointed); busy only means another
    // process's checkpoint ran, which did the work.
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    use crate::{
        config::Process,
        db::{Database, sqlite_file_settings},
    };

    /// The writer never checkpoints, and the background checkpoints copy what it
    /// wrote into the database file: it grows past what the WAL held.
    #[tokio::test]
    async fn the_writer_leaves_checkpoints_to_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::connect(&sqlite_file_settings(dir.path()), Process::Api)
            .await
            .unwrap();
        let file = db.sqlite_file().unwrap().to_path_buf();
        let autocheckpoint = db
            .writer
            .run(|w| {
                Box::pin(async move {
                    w.query_one_raw(Statement::from_string(
                        DbBackend::Sqlite,
                        "PRAGMA wal_autocheckpoint",
                    ))
                    .await
                })
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(autocheckpoint.try_get_by_index::<i64>(0).unwrap(), 0);
        db.writer
            .run(|w| {
                Box::pin(async move {
                    w.execute_unprepared("CREATE TABLE t (b BLOB)").await?;
                    // About 2,500 pages, past SQLite's own 1,000-page checkpoint.
                    w.execute_unprepared(
                        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
                         WHERE i < 1200) INSERT INTO t SELECT randomblob(8000) FROM n",
                    )
                    .await
                })
            })
            .await
            .unwrap();
        let mut grown = 0;
        for _ in 0..100 {
            grown = std::fs::metadata(&file).unwrap().len();
            if grown > 9_000_000 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(grown > 9_000_000, "the database file holds {grown} bytes");
    }
}
