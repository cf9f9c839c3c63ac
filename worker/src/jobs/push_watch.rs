//! On SQLite, a separate `worker` process learns of jobs `api` pushed within a few
//! milliseconds instead of at its next poll: when `PRAGMA data_version` says
//! another connection committed (see `commit_watch`), the watch looks (by the
//! pending-jobs index) for a job nobody has claimed, and wakes the fetch. Its own
//! commits change the version too, but find no new job and wake nothing. For a
//! short while after each change it keeps looking: a wake-up that lands while a
//! fetch begun before the push is still running is spent on that fetch, and the job
//! would otherwise wait for the next commit or heartbeat. (On PostgreSQL, apalis'
//! `LISTEN` does this.)

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::Notify;

use super::QUEUE_NAME;
use crate::commit_watch;

/// How long after a commit the watch keeps waking the fetch while a job waits.
const AFTER_A_CHANGE: Duration = Duration::from_millis(50);

/// Watches the SQLite database `file` for pushed jobs and wakes `wake`; runs
/// until the process ends.
pub(super) fn spawn(file: PathBuf, wake: Arc<Notify>) {
    let restarted = wake.clone();
    commit_watch::keep_watching(
        file,
        "job watch",
        move |connection| {
            let wake = wake.clone();
            async move { watch(connection, &wake).await }
        },
        // A push may have landed while the watch was down.
        move || restarted.notify_one(),
    );
}

async fn watch(connection: rusqlite::Connection, wake: &Notify) -> anyhow::Error {
    let mut tick = tokio::time::interval(commit_watch::TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: Option<i64> = None;
    let mut look_until = tokio::time::Instant::now();
    loop {
        let now = tick.tick().await;
        let version = match commit_watch::data_version(&connection) {
            Ok(version) => version,
            Err(error) => return error.into(),
        };
        if seen.replace(version) != Some(version) {
            look_until = now + AFTER_A_CHANGE;
        } else if now > look_until {
            continue;
        }
        match job_waiting(&connection) {
            Ok(true) => wake.notify_one(),
            Ok(false) => {}
            Err(error) => return error.into(),
        }
    }
}

/// A job nobody has claimed waits; `idx_jobs_pending` answers without touching a
/// row.
fn job_waiting(connection: &rusqlite::Connection) -> Result<bool, rusqlite::Error> {
    connection
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM Jobs WHERE job_type = ?1 \
             AND status = 'Pending' AND lock_by IS NULL)",
        )?
        .query_row([QUEUE_NAME], |row| row.get(0))
}
