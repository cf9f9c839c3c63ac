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
//! connection checked out across batches while writes keep coming ([`held`]). On
//! PostgreSQL, which takes concurrent writers, a write runs on the pool as before.
//!
//! A write is a closure of database statements only: it must not wait for anything
//! else (a provider, a timer, a lock), or every write queued behind it waits too.
//! Nor may a write be started while holding a transaction on the writer connection
//! itself (`Database::conn`): on SQLite the owner would wait for that connection
//! while its holder waits for the owner.

mod held;

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
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
    sqlx::SqlitePool,
};
use tokio::sync::{mpsc, oneshot};

use held::{Held, INNER, Savepoint, WRITE};

/// The most writes one transaction takes; more wait for the next.
const MAX_BATCH: usize = 128;
/// The most batches the owner runs in a row before it lends the writer connection
/// to the job queue, which takes its jobs through the same connection.
const HOLD_BATCHES: usize = 4;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// Hands a write's result to its caller once the batch's commit is known.
type Deliver = Box<dyn FnOnce(Option<&DbErr>) + Send>;
type Job = Box<dyn for<'c> FnOnce(&'c Held) -> BoxFuture<'c, Deliver> + Send>;

/// Where a write's statements run: in the owner's batch on SQLite, in a
/// transaction of its own on PostgreSQL, or straight on a pool. Queries take it like
/// any sea-orm connection.
pub enum WriteConn<'a> {
    Held(&'a Held),
    Transaction(&'a DatabaseTransaction),
    Pool(&'a DatabaseConnection),
}

/// A transaction inside a write ([`WriteConn::begin`]): committed or rolled back by
/// its holder; one dropped without either is rolled back.
pub enum WriteTxn<'a> {
    Savepoint(Savepoint<'a>),
    Transaction(DatabaseTransaction),
}

/// Runs writes; cheap to clone.
#[derive(Clone, Debug)]
pub enum Writer {
    /// SQLite: queued to the task that owns the writer connection, which counts
    /// the transactions it ran.
    Owned(mpsc::UnboundedSender<Job>, Arc<AtomicU64>),
    /// PostgreSQL: a transaction on the pool per write.
    Pool(DatabaseConnection),
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
}

async fn in_savepoint<T, F>(held: &Held, write: F) -> Result<T, DbErr>
where
    F: for<'c> FnOnce(&'c WriteConn<'c>) -> BoxFuture<'c, Result<T, DbErr>>,
{
    let savepoint = held.savepoint(WRITE);
    let result = write(&WriteConn::Held(held)).await;
    match result {
        Ok(value) => {
            savepoint.release();
            Ok(value)
        }
        Err(error) => {
            savepoint.rollback().await?;
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
            Ok(conn) => Held::new(conn),
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
    if let Err(error) = held.begin().await {
        tracing::error!(%error, writes = batch.len(), "could not begin a write transaction");
        batch.clear();
        return;
    }
    let mut deliveries = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        deliveries.push(job(held).await);
    }
    let commit_error = held.commit().await.err();
    if let Some(error) = &commit_error {
        tracing::error!(%error, writes = deliveries.len(), "a write transaction did not commit");
    }
    for deliver in deliveries {
        deliver(commit_error.as_ref());
    }
}

/// Takes the write lock at `BEGIN`: a transaction that read first and wrote later
/// could otherwise find another process committed in between (`SQLITE_BUSY`)
/// instead of waiting its turn.
pub fn immediate() -> TransactionOptions {
    TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    }
}

impl WriteConn<'_> {
    /// A transaction inside this write: a savepoint of the write's transaction, or
    /// a transaction of its own straight on a pool.
    pub async fn begin(&self) -> Result<WriteTxn<'_>, DbErr> {
        Ok(match self {
            Self::Held(held) => WriteTxn::Savepoint(held.savepoint(INNER)),
            Self::Transaction(txn) => WriteTxn::Transaction(txn.begin().await?),
            Self::Pool(conn) => WriteTxn::Transaction(conn.begin_with_options(immediate()).await?),
        })
    }
}

impl WriteTxn<'_> {
    pub async fn commit(self) -> Result<(), DbErr> {
        match self {
            Self::Savepoint(savepoint) => {
                savepoint.release();
                Ok(())
            }
            Self::Transaction(txn) => txn.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        match self {
            Self::Savepoint(savepoint) => savepoint.rollback().await,
            Self::Transaction(txn) => txn.rollback().await,
        }
    }
}

/// `$call` on whichever connection the write runs on.
macro_rules! on_inner {
    ($self:ident, $conn:ident => $call:expr) => {
        match $self {
            WriteConn::Held($conn) => $call,
            WriteConn::Transaction($conn) => $call,
            WriteConn::Pool($conn) => $call,
        }
    };
}

/// `$call` on whichever connection the transaction runs on.
macro_rules! on_txn {
    ($self:ident, $conn:ident => $call:expr) => {
        match $self {
            WriteTxn::Savepoint(savepoint) => {
                let $conn = savepoint.held;
                $call
            }
            WriteTxn::Transaction($conn) => $call,
        }
    };
}

macro_rules! connection_trait {
    ($type:ident, $on:ident) => {
        #[async_trait::async_trait]
        impl ConnectionTrait for $type<'_> {
            fn get_database_backend(&self) -> DbBackend {
                $on!(self, c => c.get_database_backend())
            }
            async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
                $on!(self, c => c.execute_raw(stmt).await)
            }
            async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
                $on!(self, c => c.execute_unprepared(sql).await)
            }
            async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
                $on!(self, c => c.query_one_raw(stmt).await)
            }
            async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
                $on!(self, c => c.query_all_raw(stmt).await)
            }
        }
    };
}

connection_trait!(WriteConn, on_inner);
connection_trait!(WriteTxn, on_txn);

#[cfg(test)]
mod tests {
    use sea_orm::{Database, DbBackend, Statement};

    use super::*;

    async fn table() -> (Writer, DatabaseConnection) {
        let conn = Database::connect("sqlite::memory:").await.unwrap();
        conn.execute_unprepared("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .await
            .unwrap();
        (Writer::new(conn.clone()), conn)
    }

    fn insert(n: i64) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO t (n) VALUES (?)",
            [n.into()],
        )
    }

    async fn rows(conn: &DatabaseConnection) -> Vec<i64> {
        conn.query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT n FROM t ORDER BY n",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<i64>("", "n").unwrap())
        .collect()
    }

    /// Runs `write(n)` for every `n` of `ns` at once, so that they queue together.
    async fn all_at_once<T, F>(
        writer: &Writer,
        ns: std::ops::Range<i64>,
        write: impl Fn(i64) -> F,
    ) -> Vec<Result<T, DbErr>>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c WriteConn<'c>) -> BoxFuture<'c, Result<T, DbErr>> + Send + 'static,
    {
        futures::future::join_all(ns.map(|n| writer.run(write(n)))).await
    }

    /// Writes queued together share a transaction, and a write that fails halfway
    /// leaves nothing behind while the writes beside it commit. (On one runtime
    /// thread all 64 are queued before the owner first runs.)
    #[tokio::test]
    async fn writes_queued_together_commit_together_and_a_failing_one_rolls_back_alone() {
        let (writer, conn) = table().await;
        let results = all_at_once(&writer, 0..64, |n| {
            move |db| {
                Box::pin(async move {
                    db.execute_raw(insert(n)).await?;
                    if n % 2 == 1 {
                        // Odd writes insert, then fail (n is already there).
                        db.execute_raw(insert(n)).await?;
                    }
                    Ok(n)
                })
            }
        })
        .await;
        for (n, result) in results.iter().enumerate() {
            assert_eq!(result.is_ok(), n % 2 == 0, "write {n}: {result:?}");
        }
        assert_eq!(rows(&conn).await, (0..64).step_by(2).collect::<Vec<_>>());
        assert_eq!(writer.transactions(), 1, "64 writes queued at once");
    }

    /// A caller hears of its write only once it is committed: a transaction that
    /// cannot commit fails every write in it, and none of them is kept.
    #[tokio::test]
    async fn a_batch_that_cannot_commit_fails_every_write_in_it() {
        let (writer, conn) = table().await;
        conn.execute_unprepared(
            "CREATE TABLE child (n INTEGER REFERENCES t (n) DEFERRABLE INITIALLY DEFERRED)",
        )
        .await
        .unwrap();
        conn.execute_unprepared("PRAGMA foreign_keys = ON")
            .await
            .unwrap();
        let result = writer
            .run(|db| {
                Box::pin(async move {
                    db.execute_raw(insert(1)).await?;
                    // Checked at COMMIT: no parent row 99.
                    db.execute_unprepared("INSERT INTO child (n) VALUES (99)")
                        .await?;
                    Ok(())
                })
            })
            .await;
        let error = result.expect_err("the commit fails");
        assert!(error.to_string().contains("did not commit"), "{error}");
        assert!(rows(&conn).await.is_empty());
        // The failed transaction was rolled back: the next write gets a fresh one.
        writer
            .run(|db| Box::pin(async move { db.execute_raw(insert(2)).await }))
            .await
            .unwrap();
        assert_eq!(rows(&conn).await, [2]);
    }

    /// A write's savepoint goes to SQLite in front of its first statement, and
    /// SQLite reports a `SAVEPOINT`'s change count as the previous statement's: the
    /// count a write sees is still its own statement's.
    #[tokio::test]
    async fn a_write_counts_only_the_rows_its_own_statement_changed() {
        let (writer, _conn) = table().await;
        all_at_once(&writer, 0..3, |n| {
            move |db| Box::pin(async move { db.execute_raw(insert(n)).await })
        })
        .await;
        let (inserted, untouched) = writer
            .run(|db| {
                Box::pin(async move {
                    let inserted = db.execute_raw(insert(10)).await?.rows_affected();
                    let untouched = db
                        .execute_unprepared("UPDATE t SET n = n WHERE n = 99")
                        .await?
                        .rows_affected();
                    Ok((inserted, untouched))
                })
            })
            .await
            .unwrap();
        assert_eq!((inserted, untouched), (1, 0));
    }

    /// The same holds for a statement sent unprepared as a write's first.
    #[tokio::test]
    async fn an_unprepared_first_statement_counts_only_its_own_rows() {
        let (writer, _conn) = table().await;
        writer
            .run(|db| Box::pin(async move { db.execute_raw(insert(1)).await }))
            .await
            .unwrap();
        let untouched = writer
            .run(|db| {
                Box::pin(async move {
                    db.execute_unprepared("UPDATE t SET n = n WHERE n = 99")
                        .await
                })
            })
            .await
            .unwrap();
        assert_eq!(untouched.rows_affected(), 0);
    }

    /// The owner keeps the writer connection while writes keep coming, but lends it
    /// to others (the job queue takes its jobs through it) every few batches: a
    /// reader queued behind a stream of writes gets it before the stream ends. More
    /// writers than a batch holds keep the queue from ever running dry.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_steady_stream_of_writes_still_lends_the_connection() {
        let (writer, conn) = table().await;
        let writers = 2 * MAX_BATCH as i64;
        let streams_done = Arc::new(AtomicU64::new(0));
        let streams: Vec<_> = (0..writers)
            .map(|stream| {
                let (writer, done) = (writer.clone(), streams_done.clone());
                tokio::spawn(async move {
                    for i in 0..40i64 {
                        let n = stream * 1000 + i;
                        writer
                            .run(move |db| Box::pin(async move { db.execute_raw(insert(n)).await }))
                            .await
                            .unwrap();
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        // Let the stream start, then ask for the connection.
        while writer.transactions() < 2 {
            tokio::task::yield_now().await;
        }
        conn.execute_unprepared("SELECT 1").await.unwrap();
        let transactions = writer.transactions();
        assert_eq!(
            streams_done.load(Ordering::Relaxed),
            0,
            "the read waited for the whole stream ({transactions} transactions)"
        );
        for stream in streams {
            stream.await.unwrap();
        }
        assert_eq!(rows(&conn).await.len(), writers as usize * 40);
    }
}
