//! A worker run in the test process as a `worker` process would run it: its own
//! pools, queue and provider registry on the app's database. Stops when dropped.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use worker::config::{Process, Settings};

pub struct InProcessWorker {
    stop: watch::Sender<bool>,
}

impl InProcessWorker {
    pub fn start(settings: &Arc<Settings>) -> Self {
        Self::start_polling_every(settings, None)
    }

    /// With the queue's polling backstop set to `poll` (the default when `None`).
    pub fn start_polling_every(settings: &Arc<Settings>, poll: Option<Duration>) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let settings = settings.clone();
        tokio::spawn(async move {
            let db = worker::db::Database::connect(&settings, Process::Worker)
                .await
                .unwrap();
            db.migrate().await.unwrap();
            let state = worker::WorkerState {
                db: db.conn.clone(),
                writer: db.writer.clone(),
                reader: db.reader.clone(),
                audit: worker::audit::AuditLog::start(db.writer.clone()),
                keys: Arc::new(worker::crypto::Keys::load(&settings).unwrap()),
                providers: Arc::new(
                    worker::providers::ProviderRegistry::from_settings(&settings).unwrap(),
                ),
                settings: settings.clone(),
                events: Default::default(),
            };
            let mut queue = worker::jobs::JobQueue::new(&db, 2, state.keys.clone());
            if let Some(poll) = poll {
                queue = queue.with_poll_interval(poll);
            }
            // As the `worker` binary does.
            queue.watch_pushes_of_other_processes(&db);
            worker::run(state, queue, async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
            .unwrap();
        });
        Self { stop }
    }
}

impl Drop for InProcessWorker {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
