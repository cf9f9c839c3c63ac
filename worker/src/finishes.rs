//! How a long-polling status request learns that its operation finished, whichever
//! process finished it: in-process events from the embedded worker, PostgreSQL's
//! `LISTEN`/`NOTIFY` from any process, and on SQLite a watch of `PRAGMA
//! data_version` that notices other processes' commits. Each finish names its
//! operation, so only the requests waiting on it read the database again (waking
//! every poll on every finish made the reads grow with the square of the number of
//! browsers waiting).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use entity::async_operation::Model;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::{recent_finishes::RecentFinishes, running_here::RunningHere};

mod postgres;
mod sqlite;

pub(crate) use postgres::ANNOUNCEMENT;
pub use postgres::{NOTIFY_CHANNEL, listen_for_finishes};
pub use sqlite::watch_sqlite_commits;

/// Wakes the long-polling status requests of this process when an operation
/// finishes, and knows which operations they wait on.
#[derive(Clone, Debug)]
pub struct OperationEvents {
    sender: broadcast::Sender<Finished>,
    /// Operations some request waits on, with how many requests wait.
    waited: Arc<Mutex<HashMap<Uuid, usize>>>,
    /// Finished operations a status request may be answered from.
    recent: RecentFinishes,
    /// Operations whose job runs here: `pending` until this process says otherwise.
    running: RunningHere,
}

/// What a waiter hears: one operation finished (with what is known of it here),
/// or "re-check whatever you wait on".
#[derive(Clone, Debug)]
enum Finished {
    One(Uuid, Option<Known>),
    Any,
}

/// What a finish tells its waiters besides the id.
#[derive(Clone, Debug)]
enum Known {
    /// The committed row, from the process that finished it or read it.
    Row(Arc<Model>),
    /// What another process's finish wrote (PostgreSQL's announcement).
    Change(Arc<postgres::Finish>),
}

/// Finishes buffered per waiter; one that falls further behind re-checks.
const EVENT_BUFFER: usize = 1024;

impl Default for OperationEvents {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(EVENT_BUFFER).0,
            waited: Arc::default(),
            recent: RecentFinishes::default(),
            running: RunningHere::default(),
        }
    }
}

impl OperationEvents {
    /// Tells the waiters on `id` that it finished; they read it again.
    pub fn finished(&self, id: Uuid) {
        self.running.forget(id);
        let _ = self.sender.send(Finished::One(id, None));
    }

    /// Tells the waiters on `operation` that it finished as it is here (its row as
    /// committed): they answer from it without reading the database again.
    /// The row is also kept among the [`Self::recent`] finishes.
    pub fn finished_as(&self, operation: Model) {
        let operation = Arc::new(operation);
        self.running.forget(operation.id);
        self.recent.remember(operation.clone());
        let _ = self
            .sender
            .send(Finished::One(operation.id, Some(Known::Row(operation))));
    }

    /// Tells the waiters on an operation another process finished what that finish
    /// wrote: they answer from their own row with it applied.
    pub(crate) fn finished_elsewhere(&self, finish: postgres::Finish) {
        let id = finish.id();
        self.running.forget(id);
        let _ = self
            .sender
            .send(Finished::One(id, Some(Known::Change(Arc::new(finish)))));
    }

    /// Operations that finished lately, by id: a status request for one is
    /// answered from here without reading the database.
    pub fn recent(&self) -> &RecentFinishes {
        &self.recent
    }

    /// Operations whose job runs in this process right now.
    pub fn running(&self) -> &RunningHere {
        &self.running
    }

    /// What this process knows of operation `id` of the browser `redeemer_hash`
    /// without reading the database: its finished row, or its row as its job
    /// started here while that job runs. A waiter that took `pending` from here
    /// hears of the finish: every announcement forgets the running entry first.
    pub fn known(&self, id: Uuid, redeemer_hash: &str) -> Option<Arc<Model>> {
        self.recent
            .get(id, redeemer_hash)
            .or_else(|| self.running.get(id, redeemer_hash))
    }

    /// Tells every waiter to re-check (operations expired in bulk, or a lost
    /// `LISTEN` connection came back).
    pub fn notify_all(&self) {
        self.running.forget_all();
        let _ = self.sender.send(Finished::Any);
    }

    /// Starts listening. Subscribe before reading the database, then
    /// [`FinishWatch::wait_for`], so a finish in between is not missed.
    pub fn subscribe(&self) -> FinishWatch {
        FinishWatch {
            receiver: self.sender.subscribe(),
            waited: self.waited.clone(),
        }
    }

    /// The operations requests wait on right now.
    pub fn waited_on(&self) -> Vec<Uuid> {
        self.waited
            .lock()
            .expect("not poisoned")
            .keys()
            .copied()
            .collect()
    }
}

/// A subscription from [`OperationEvents::subscribe`].
#[derive(Debug)]
pub struct FinishWatch {
    receiver: broadcast::Receiver<Finished>,
    waited: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl FinishWatch {
    /// Resolves when the operation of the `pending` row finishes (or everyone is
    /// told to re-check), with its finished row when the finish said enough
    /// (`None`: read it again). Never resolves otherwise: bound it with a timeout.
    /// While it waits, its id is in [`OperationEvents::waited_on`].
    pub async fn wait_for(&mut self, pending: &Model) -> Option<Arc<Model>> {
        let id = pending.id;
        let _waiting = Waiting::new(&self.waited, id);
        loop {
            match self.receiver.recv().await {
                Ok(Finished::One(done, _)) if done != id => {}
                Ok(Finished::One(_, None)) => return None,
                Ok(Finished::One(_, Some(Known::Row(row)))) => return Some(row),
                Ok(Finished::One(_, Some(Known::Change(finish)))) => {
                    return finish.applied_to(pending).map(Arc::new);
                }
                Ok(Finished::Any) | Err(broadcast::error::RecvError::Lagged(_)) => return None,
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }
}

/// Counts one waiter on an operation for as long as it lives (a timed-out wait is
/// dropped, and so uncounted, too).
struct Waiting<'a> {
    waited: &'a Mutex<HashMap<Uuid, usize>>,
    id: Uuid,
}

impl<'a> Waiting<'a> {
    fn new(waited: &'a Mutex<HashMap<Uuid, usize>>, id: Uuid) -> Self {
        *waited.lock().expect("not poisoned").entry(id).or_default() += 1;
        Self { waited, id }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut waited = self.waited.lock().expect("not poisoned");
        if let Some(n) = waited.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                waited.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use entity::async_operation::{Model, OperationStatus};
    use uuid::Uuid;

    use super::OperationEvents;

    /// An `ok` operation `id` bound to the browser hash `h` (also for
    /// `recent_finishes`' tests).
    pub(crate) fn finished_row(id: Uuid) -> Model {
        let now = Utc::now();
        Model {
            id,
            status: OperationStatus::Ok,
            provider: "mock".into(),
            user_id: Some(Uuid::new_v4()),
            error_code: None,
            error_message: None,
            redeemer_hash: "h".into(),
            kind: "browser".into(),
            next_path: None,
            link_user_id: None,
            link_session_id: None,
            redeemed_at: None,
            exchange_started_at: None,
            token_response: None,
            state_hash: None,
            client_key: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// The `pending` row of operation `id`, as a waiter read it.
    pub(crate) fn pending_row(id: Uuid) -> Model {
        Model {
            status: OperationStatus::Pending,
            user_id: None,
            ..finished_row(id)
        }
    }

    #[tokio::test]
    async fn a_waiter_gets_the_finished_row_when_the_finisher_sends_it() {
        let events = OperationEvents::default();
        let (waited, other) = (Uuid::new_v4(), Uuid::new_v4());
        let pending = pending_row(waited);
        let bound = Duration::from_secs(5);

        // Another operation's finish does not end the wait; its own, with the row, does.
        let mut watch = events.subscribe();
        events.finished_as(finished_row(other));
        events.finished_as(finished_row(waited));
        let row = tokio::time::timeout(bound, watch.wait_for(&pending))
            .await
            .expect("woken")
            .expect("with the row");
        assert_eq!((row.id, row.status), (waited, OperationStatus::Ok));

        // Another process's announced finish: applied to the waiter's own row.
        let mut watch = events.subscribe();
        let user = Uuid::new_v4();
        let finish = serde_json::from_value(serde_json::json!({
            "id": waited, "status": "ok", "user_id": user, "error_code": null,
            "error_message": null, "updated_at": Utc::now(),
        }))
        .unwrap();
        events.finished_elsewhere(finish);
        let row = tokio::time::timeout(bound, watch.wait_for(&pending))
            .await
            .expect("woken")
            .expect("with the row");
        assert_eq!((row.status, row.user_id), (OperationStatus::Ok, Some(user)));

        // A finish heard from elsewhere (only the id) means: read it again.
        let mut watch = events.subscribe();
        events.finished(waited);
        let row = tokio::time::timeout(bound, watch.wait_for(&pending))
            .await
            .expect("woken");
        assert!(row.is_none());
    }
}
