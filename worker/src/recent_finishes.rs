//! Operations that finished recently, kept in memory so that a status request for
//! one (the preloader's long poll, or its re-asks) is answered without a database
//! read. A finished operation never changes what the status route reports (its
//! status, error and restart target are written once, when it leaves `pending`),
//! so a copy is as good as the row for as long as the row exists; sweeps remove
//! rows only after `retention.operations` (at least an hour), far longer than an
//! entry lives here.
//!
//! Filled by the embedded worker as it finishes operations, and by status reads
//! that find one finished (another process finished it). Bounded in count and age;
//! the least recently used entry goes first.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use entity::async_operation::{Model, OperationStatus};
use hashlink::LruCache;
use uuid::Uuid;

/// Entries kept at most (under a kilobyte each). A browser asks again within a
/// second of the finish, and at 500 finishes a second 1024 entries last two.
const CAPACITY: usize = 1024;
/// How long an entry answers: the preloader has redeemed by then.
const TTL: Duration = Duration::from_secs(300);

/// A bounded, shared map of recently finished operations by id.
#[derive(Clone, Debug)]
pub struct RecentFinishes {
    entries: Arc<Mutex<Entries>>,
}

/// Each operation with when it was kept.
type Entries = LruCache<Uuid, (Instant, Arc<Model>)>;

impl Default for RecentFinishes {
    fn default() -> Self {
        Self {
            entries: Arc::new(Mutex::new(LruCache::new(CAPACITY))),
        }
    }
}

impl RecentFinishes {
    /// Keeps `operation` if it has finished (a pending one is never kept).
    pub fn remember(&self, operation: Arc<Model>) {
        if operation.status == OperationStatus::Pending {
            return;
        }
        let mut entries = self.entries.lock().expect("not poisoned");
        entries.insert(operation.id, (Instant::now(), operation));
    }

    /// The finished operation `id`, if it is known here, bound to `redeemer_hash`
    /// and young enough. A copy bound to another browser is not an answer: the
    /// caller reads the database as before.
    pub fn get(&self, id: Uuid, redeemer_hash: &str) -> Option<Arc<Model>> {
        let mut entries = self.entries.lock().expect("not poisoned");
        let (kept, operation) = entries.get(&id)?;
        if kept.elapsed() > TTL {
            entries.remove(&id);
            return None;
        }
        (operation.redeemer_hash == redeemer_hash).then(|| operation.clone())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().expect("not poisoned").len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation(status: OperationStatus, redeemer_hash: &str) -> Arc<Model> {
        Arc::new(Model {
            status,
            redeemer_hash: redeemer_hash.into(),
            ..crate::finishes::tests::finished_row(Uuid::new_v4())
        })
    }

    #[test]
    fn keeps_finished_operations_for_their_own_browser_only() {
        let recent = RecentFinishes::default();
        let ok = operation(OperationStatus::Ok, "mine");
        recent.remember(ok.clone());
        assert_eq!(recent.get(ok.id, "mine").map(|o| o.id), Some(ok.id));
        assert!(recent.get(ok.id, "theirs").is_none());
        assert!(recent.get(Uuid::new_v4(), "mine").is_none());
    }

    #[test]
    fn never_keeps_a_pending_operation() {
        let recent = RecentFinishes::default();
        let pending = operation(OperationStatus::Pending, "mine");
        recent.remember(pending.clone());
        assert!(recent.is_empty());
        assert!(recent.get(pending.id, "mine").is_none());
    }

    #[test]
    fn holds_no_more_than_its_capacity_and_drops_the_oldest_first() {
        let recent = RecentFinishes::default();
        let first = operation(OperationStatus::Error, "h");
        recent.remember(first.clone());
        for _ in 0..CAPACITY {
            recent.remember(operation(OperationStatus::Ok, "h"));
        }
        assert_eq!(recent.len(), CAPACITY);
        assert!(recent.get(first.id, "h").is_none());
    }
}
