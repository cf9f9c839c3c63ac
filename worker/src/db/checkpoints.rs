//! SQLite's WAL checkpoints, off the writer.
//!
//! By default SQLite checkpoints inside the commit that takes the WAL past 1,000
//! pages: the committing connection copies the pages into the database file and
//! syncs both files. On the one writer that was about every 0.4 s under load,
//! three `fsync`s of 2–3 ms each, while every queued write waited. So the writer
//! connection does not checkpoint (`wal_autocheckpoint = 0`, set in `db`), and a
//! connection of its own checkpoints every [`EVERY`] on a blocking thread instead,
//! `PASSIVE`ly: it never waits for, nor holds up, the writer or a reader. Each
//! process on the file runs one; SQLite lets one checkpoint run at a time and the
//! others find nothing to do.
//!
//! A passive checkpoint copies pages but cannot start the WAL over: only a writer
//! that begins when every frame is copied does, and under steady writes that
//! moment never comes (some frames always arrive during the copy), so the WAL grew
//! without bound (about a gigabyte in 13 s at 64 browsers; every write then
//! extended the file, and zeroing the new pages was a tenth of the api's CPU). When a passive
//! checkpoint leaves more than [`RESTART_AT_FRAMES`] in the WAL, a `RESTART`
//! checkpoint follows: it takes the write lock, copies the few frames left and
//! waits for readers to leave the WAL, so the next writer starts it over. Writers
//! wait for it meanwhile, at most [`RESTART_PATIENCE`] for readers plus the copy.
//!
//! The checkpoints run as long as the writer does, whoever holds it: until the
//! eleventh sitting they ended with the `Database` that started them, which the
//! binaries drop once its pieces are handed out, so none ran at all (and the ninth
//! sitting's figures for them measured no checkpoints; docs/benchmarks.md,
//! eleventh sitting).

use std::{path::PathBuf, time::Duration};

use crate::writer::WeakWriter;

/// How often the WAL is checkpointed (about the pace of SQLite's own 1,000 pages
/// under load).
pub const EVERY: Duration = Duration::from_millis(250);
/// A WAL longer than this (about 32 MB) after a passive checkpoint is started over.
const RESTART_AT_FRAMES: i64 = 8_000;
/// How long a restart waits for the write lock, then for readers (holding writers
/// up meanwhile), before it gives up until the next tick.
const RESTART_PATIENCE: Duration = Duration::from_millis(20);

/// When checkpoints run, and when they start the WAL over.
#[derive(Clone, Copy, Debug)]
struct Policy {
    every: Duration,
    /// `None`: passive checkpoints only (a test shows what they leave).
    restart_at_frames: Option<i64>,
}

const POLICY: Policy = Policy {
    every: EVERY,
    restart_at_frames: Some(RESTART_AT_FRAMES),
};

/// Checkpoints `file` every [`EVERY`] until the last clone of `writer` is dropped.
pub(super) fn spawn(file: PathBuf, writer: WeakWriter) {
    spawn_with(file, POLICY, move || !writer.is_gone());
}

/// Checkpoints `file` by `policy` while `running` says so.
fn spawn_with(file: PathBuf, policy: Policy, running: impl Fn() -> bool + Send + 'static) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(policy.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Handed to each blocking checkpoint and back; reopened after a failure.
        let mut conn: Option<rusqlite::Connection> = None;
        loop {
            tick.tick().await;
            if !running() {
                return;
            }
            let (open, file) = (conn.take(), file.clone());
            let done = tokio::task::spawn_blocking(move || {
                let conn = match open {
                    Some(conn) => conn,
                    None => connect(&file)?,
                };
                checkpoint(&conn, policy.restart_at_frames).map(|()| conn)
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

fn connect(file: &std::path::Path) -> Result<rusqlite::Connection, rusqlite::Error> {
    let conn = rusqlite::Connection::open(file)?;
    conn.busy_handler(Some(restart_may_wait))?;
    Ok(conn)
}

/// The checkpoint connection's busy handler: the pauses of every connection's
/// (`busy`), soon given up.
fn restart_may_wait(tries: i32) -> bool {
    super::busy::wait(tries, RESTART_PATIENCE)
}

fn checkpoint(
    conn: &rusqlite::Connection,
    restart_at_frames: Option<i64>,
) -> Result<(), rusqlite::Error> {
    // Busy only means another process's checkpoint ran, which did the work.
    let frames = run(conn, "PRAGMA wal_checkpoint(PASSIVE)")?;
    if restart_at_frames.is_some_and(|limit| frames > limit) {
        // Busy (a reader stayed, or another process held the lock): next tick.
        let started = std::time::Instant::now();
        let left = run(conn, "PRAGMA wal_checkpoint(RESTART)")?;
        tracing::debug!(
            frames,
            left,
            elapsed_us = started.elapsed().as_micros() as u64,
            "WAL restart checkpoint"
        );
    }
    Ok(())
}

/// Runs a `wal_checkpoint` pragma; the frames in the WAL (its row is busy, frames
/// in the WAL, frames checkpointed).
fn run(conn: &rusqlite::Connection, pragma: &str) -> Result<i64, rusqlite::Error> {
    conn.query_row(pragma, [], |row| row.get(1))
}

#[cfg(test)]
mod tests;
