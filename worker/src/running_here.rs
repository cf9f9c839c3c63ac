//! Operations whose job runs in this process right now (the embedded worker's,
//! handed over or fetched), kept so that a status request for one is answered `pending`
//! without a database read: while its job runs here, this process is where the
//! operation finishes, and it announces the finish to the waiting requests.
//!
//! An entry goes when its finish is announced ([`crate::finishes::OperationEvents`]
//! removes it before telling the waiters, so a waiter re-reads the finished row),
//! when a finish elsewhere is heard of, and when the job ends whatever its
//! outcome (the guard). Bounded by the job slots of the process.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use entity::async_operation::Model;
use uuid::Uuid;

/// The operations running here, by id.
#[derive(Clone, Debug, Default)]
pub struct RunningHere {
    entries: Arc<Mutex<HashMap<Uuid, Arc<Model>>>>,
}

impl RunningHere {
    /// Keeps `operation` (pending, as its job started) until the guard drops or
    /// [`Self::forget`] is called.
    pub fn start(&self, operation: &Model) -> Running {
        self.lock()
            .insert(operation.id, Arc::new(operation.clone()));
        Running {
            registry: self.clone(),
            id: operation.id,
        }
    }

    /// The running operation `id`, if it runs here and is bound to `redeemer_hash`.
    pub fn get(&self, id: Uuid, redeemer_hash: &str) -> Option<Arc<Model>> {
        self.lock()
            .get(&id)
            .filter(|operation| operation.redeemer_hash == redeemer_hash)
            .cloned()
    }

    /// Drops `id`: it finished, or is about to be announced as finished.
    pub fn forget(&self, id: Uuid) {
        self.lock().remove(&id);
    }

    /// Drops every entry (everyone is told to re-check).
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Model>>> {
        self.entries.lock().expect("not poisoned")
    }
}

/// Removes its operation from [`RunningHere`] when dropped.
#[derive(Debug)]
pub struct Running {
    registry: RunningHere,
    id: Uuid,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.registry.forget(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(redeemer_hash: &str) -> Model {
        Model {
            status: entity::async_operation::OperationStatus::Pending,
            redeemer_hash: redeemer_hash.into(),
            ..crate::finishes::tests::finished_row(Uuid::new_v4())
        }
    }

    #[test]
    fn answers_its_own_browser_while_the_job_runs() {
        let running = RunningHere::default();
        let operation = pending("mine");
        let guard = running.start(&operation);
        assert_eq!(
            running.get(operation.id, "mine").map(|o| o.id),
            Some(operation.id)
        );
        assert!(running.get(operation.id, "theirs").is_none());
        drop(guard);
        assert!(running.get(operation.id, "mine").is_none());
    }

    #[test]
    fn a_finish_or_a_recheck_forgets_it_before_the_job_ends() {
        let running = RunningHere::default();
        let (one, two) = (pending("h"), pending("h"));
        let _guards = (running.start(&one), running.start(&two));
        running.forget(one.id);
        assert!(running.get(one.id, "h").is_none());
        assert!(running.get(two.id, "h").is_some());
        running.forget_all();
        assert!(running.get(two.id, "h").is_none());
    }
}
