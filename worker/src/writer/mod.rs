//! The write path. SQLite takes one writer at a time, and with sqlx every statement
//! is a round trip to the connection's own thread; a write that takes the single
//! writer connection from the pool also pays a ping on the way in and out and a
//! hand-over between tasks. Profiled under load, those hand-overs, not SQL, held
//! the writer (docs/benchmarks.md, "One owner of the SQLite writer").
//!
//! So on SQLite one task, on a thread of its own, owns the writer: it takes every
//! write queued meanwhile and
//! runs them back to back in one `BEGIN IMMEDIATE` transaction, each in its own
//! savepoint (a failing write is rolled back alone), then commits once and answers
//! them all (group commit). A write's result reaches its caller only after the
//! commit, so nothing is acknowledged before it is durable. The owner keeps the
//! connection checked out across batches while writes keep coming, and runs the
//! statements itself on its thread rather than through sqlx's ([`held`]). On
//! PostgreSQL, which takes concurrent writers, a write runs on the pool as before.
//!
//! A write is a closure of database statements only: it must not wait for anything
//! else (a provider, a timer, a lock), or every write queued behind it waits too.
//! Nor may a write be started while holding a transaction on the writer connection
//! itself (`Database::conn`): on SQLite the owner would wait for that connection
//! while its holder waits for the owner.

mod conn;
mod held;

pub use conn::{WriteConn, WriteTxn, immediate};

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};
use tracing::Instrument;

use sea_orm::{
    DatabaseConnection, DbBackend, DbErr, RuntimeErr, TransactionTrait, sqlx::SqlitePool,
};
use tokio::sync::{mpsc, oneshot};

use held::{Held, Name};

/// The most writes one transaction takes; more wait for the next.
const MAX_BATCH: usize = 128;
/// The most batches the owner runs in a row before it lends the writer connection
/// to the job queue, which takes its jobs through the same connection.
const HOLD_BATCHES: usize = 4;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// Hands a write's result to its caller once the batch's commit is known.
type Deliver = Box<dyn FnOnce(Option<&DbErr>) + Send>;
type Job = Box<dyn for<'c> FnOnce(&'c Held) -> BoxFuture<'c, Deliver> + Send>;

/// Runs writes; cheap to clone.
#[derive(Clone, Debug)]
pub enum Writer {
    /// SQLite: queued to the task that owns the writer connection, which counts
    /// the transactions it ran.
    Owned(mpsc::UnboundedSender<Job>, Arc<AtomicU64>),
    /// PostgreSQL: a transaction on the pool per write.
    Pool(DatabaseConnection),
}

/// See [`Writer::downgrade`].
#[derive(Debug)]
pub(crate) struct WeakWriter(Option<mpsc::WeakUnboundedSender<Job>>);

impl WeakWriter {
    /// Every clone of the writer was dropped (always, for a pool's).
    pub(crate) fn is_gone(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|sender| sender.strong_count() == 0)
    }
}

impl Writer {
    /// The writer for `conn`: on SQLite, starts the thread whose task owns it (both
    /// end when the last clone of the writer is dropped). A thread of its own, so
    /// the owner's wake-ups do not queue behind the runtime's HTTP tasks.
    pub fn new(conn: DatabaseConnection) -> Self {
        if conn.get_database_backend() != DbBackend::Sqlite {
            return Self::Pool(conn);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let transactions = Arc::new(AtomicU64::new(0));
        // The span names the owner's statements in the log (`signin_bench
        // --count-statements` counts them).
        let pool = conn.get_sqlite_connection_pool().clone();
        let owner =
            own(pool, rx, transactions.clone()).instrument(tracing::info_span!("sqlite_writer"));
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(owner),
                    Err(error) => tracing::error!(%error, "could not start the SQLite writer"),
                }
            })
            .expect("spawning the SQLite writer thread");
        Self::Owned(tx, transactions)
    }

    /// A handle that tells whether a clone of this writer is left, without keeping
    /// it running: for background work that must end with it (checkpoints).
    pub(crate) fn downgrade(&self) -> WeakWriter {
        match self {
            Self::Owned(sender, _) => WeakWriter(Some(sender.downgrade())),
            Self::Pool(_) => WeakWriter(None),
        }
    }

    /// How many transactions the owner of the SQLite writer has run (none on
    /// PostgreSQL): with writes arriving together, fewer than the writes.
    pub fn transactions(&self) -> u64 {
        match self {
            Self::Owned(_, transactions) => transactions.load(Ordering::Relaxed),
            Self::Pool(_) => 0,
        }
    }

    /// Runs `write` atomically and returns its result once it is committed: on
    /// SQLite it shares a transaction with the writes queued beside it, each in its
    /// own savepoint; on PostgreSQL it is a transaction of its own. An error rolls
    /// back this write alone.
    pub async fn run<T, F>(&self, write: F) -> Result<T, DbErr>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c WriteConn<'c>) -> BoxFuture<'c, Result<T, DbErr>> + Send + 'static,
    {
        let sender = match self {
            Self::Pool(conn) => {
                let txn = conn.begin().await?;
                return match write(&WriteConn::Transaction(&txn)).await {
                    Ok(value) => txn.commit().await.map(|()| value),
                    Err(error) => {
                        txn.rollback().await?;
                        Err(error)
                    }
                };
            }
            Self::Owned(sender, _) => sender,
        };
        let (reply, answer) = oneshot::channel::<Result<T, DbErr>>();
        let job: Job = Box::new(move |held| {
            Box::pin(async move {
                let result = in_savepoint(held, write).await;
                Box::new(move |commit_error: Option<&DbErr>| {
                    let result = match (result, commit_error) {
                        (Ok(_), Some(error)) => Err(DbErr::Custom(format!(
                            "the write's transaction did not commit: {error}"
                        ))),
                        (result, _) => result,
                    };
                    let _ = reply.send(result);
                }) as Deliver
            })
        });
        sender
            .send(job)
            .map_err(|_| DbErr::Custom("the database writer has stopped".into()))?;
        answer.await.map_err(|_| {
            DbErr::Custom("the database writer could not start a transaction".into())
        })?
    }

    /// [`Self::run`] for a write that is atomic by itself: exactly one statement,
    /// or statements all inside one transaction it begins itself
    /// ([`WriteConn::begin`]). On PostgreSQL it runs straight on the pool: the
    /// `BEGIN` and `COMMIT` around one statement, or the `SAVEPOINT` and `RELEASE`
    /// a transaction inside a transaction becomes, would be two more round trips,
    /// each parsed and answered by the server. On SQLite it joins the owner's batch
    /// like any write. Any other write must use [`Self::run`].
    pub async fn run_atomic<T, F>(&self, write: F) -> Result<T, DbErr>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c WriteConn<'c>) -> BoxFuture<'c, Result<T, DbErr>> + Send + 'static,
    {
        match self {
            Self::Pool(conn) => write(&WriteConn::Pool(conn)).await,
            Self::Owned(..) => self.run(write).await,
        }
    }
}

/// A unique index or primary key refused the row. Asks the driver's error its
/// kind, which every connection answers, the SQLite writer's included; sea-orm's
/// `DbErr::sql_err` only knows sqlx's own error types, and the writer's
/// statements do not run through sqlx ([`held`]).
pub fn is_unique_violation(error: &DbErr) -> bool {
    match error {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => e
            .as_database_error()
            .is_some_and(|e| e.kind() == sea_orm::sqlx::error::ErrorKind::UniqueViolation),
        _ => false,
    }
}

async fn in_savepoint<T, F>(held: &Held, write: F) -> Result<T, DbErr>
where
    F: for<'c> FnOnce(&'c WriteConn<'c>) -> BoxFuture<'c, Result<T, DbErr>>,
{
    let savepoint = held.savepoint(Name::Write)?;
    match write(&WriteConn::Held(held)).await {
        Ok(value) => savepoint.release().map(|()| value),
        Err(error) => {
            savepoint.rollback()?;
            Err(error)
        }
    }
}

/// The owner of the SQLite writer: one transaction per batch of queued writes. It
/// keeps the connection checked out while writes keep coming (see [`held`]), and
/// gives it back after [`HOLD_BATCHES`] batches in a row or when the queue is empty.
async fn own(
    pool: SqlitePool,
    mut queue: mpsc::UnboundedReceiver<Job>,
    transactions: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if batch.is_empty() && queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let held = match pool.acquire().await {
            Ok(conn) => Held::new(conn).await,
            Err(error) => Err(DbErr::Conn(RuntimeErr::SqlxError(Arc::new(error)))),
        };
        let held = match held {
            Ok(held) => held,
            Err(error) => {
                // Dropping the jobs tells their callers; the next batch tries again.
                tracing::error!(%error, writes = batch.len(), "could not take the writer connection");
                batch.clear();
                continue;
            }
        };
        for _ in 0..HOLD_BATCHES {
            run_batch(&held, &mut batch).await;
            transactions.fetch_add(1, Ordering::Relaxed);
            if held.in_transaction() {
                // Dropped mid-transaction, the connection is closed, not reused.
                break;
            }
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
        }
    }
}

/// Runs `batch` (emptying it) in one transaction on `held` and answers every write.
/// Leaves the transaction open only when it could be neither committed nor rolled
/// back (or not begun).
async fn run_batch(held: &Held, batch: &mut Vec<Job>) {
    metrics::histogram!("signin_db_write_batch_size").record(batch.len() as f64);
    if let Err(error) = held.begin() {
        tracing::error!(%error, writes = batch.len(), "could not begin a write transaction");
        batch.clear();
        return;
    }
    let mut deliveries = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        deliveries.push(job(held).await);
    }
    let commit_error = held.commit().err();
    if let Some(error) = &commit_error {
        tracing::error!(%error, writes = deliveries.len(), "a write transaction did not commit");
    }
    for deliver in deliveries {
        deliver(commit_error.as_ref());
    }
}

#[cfg(test)]
mod tests;
