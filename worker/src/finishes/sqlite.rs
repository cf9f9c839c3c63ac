//! On SQLite, finishes committed by other processes (separate `worker`s), seen
//! through a watch of `PRAGMA data_version` (see `commit_watch`).

use std::path::PathBuf;

use entity::async_operation::{Column, Entity as AsyncOperation, OperationStatus};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::OperationEvents;
use crate::{commit_watch, reader::Reader};

/// Notices commits of other processes and wakes the requests waiting on operations
/// they finished, with the finished rows. Only while some request waits, and then
/// one read by primary key of the waited-on operations per change (or per new
/// waiter). Runs until the process ends.
pub fn watch_sqlite_commits(file: PathBuf, reader: Reader, events: OperationEvents) {
    let restarted = events.clone();
    commit_watch::keep_watching(
        file,
        "commit watch",
        move |connection| {
            let (reader, events) = (reader.clone(), events.clone());
            async move { watch(connection, &reader, &events).await }
        },
        move || restarted.notify_all(),
    );
}

async fn watch(
    connection: rusqlite::Connection,
    reader: &Reader,
    events: &OperationEvents,
) -> anyhow::Error {
    let mut tick = tokio::time::interval(commit_watch::TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: Option<i64> = None;
    let mut checked: Vec<Uuid> = Vec::new();
    loop {
        tick.tick().await;
        let mut waited = events.waited_on();
        if waited.is_empty() {
            seen = None;
            checked.clear();
            continue;
        }
        // A request that began waiting may have read its operation just before a
        // commit this watch already saw: look at new waiters whatever the version.
        waited.sort_unstable();
        let newcomers = waited.iter().any(|id| checked.binary_search(id).is_err());
        let version = match commit_watch::data_version(&connection) {
            Ok(version) => version,
            Err(error) => return error.into(),
        };
        if seen == Some(version) && !newcomers {
            continue;
        }
        seen = Some(version);
        checked.clone_from(&waited);
        // The whole rows: the waiters answer from them instead of each reading
        // its own again.
        let finished = AsyncOperation::find()
            .filter(Column::Id.is_in(waited))
            .filter(Column::Status.ne(OperationStatus::Pending))
            .all(reader)
            .await;
        match finished {
            Ok(rows) => rows.into_iter().for_each(|row| events.finished_as(row)),
            Err(error) => return error.into(),
        }
    }
}
