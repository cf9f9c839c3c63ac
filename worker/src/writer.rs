//! The write path. SQLite takes one writer at a time, and with sqlx every statement
//! is a round trip to the connection's own thread; a write that takes the single
//! writer connection from the pool also pays a ping on the way in and out and a
//! hand-over between tasks. Profiled under load, those hand-overs, not SQL, held
//! the writer (docs/benchmarks.md, "One owner of the SQLite writer").
//!
//! So on SQLite one task owns the writer: it takes every write queued meanwhile and
//! runs them back to back in one `BEGIN IMMEDIATE` transaction, each in its own
//! savepoint (a failing write is rolled back alone), then commits once and answers
//! them all (group commit). A write's result reaches its caller only after the
//! commit, so nothing is acknowledged before it is durable. On PostgreSQL, which
//! takes concurrent writers, a write runs on the pool as before.
//!
//! A write is a closure of database statements only: it must not wait for anything
//! else (a provider, a timer, a lock), or every write queued behind it waits too.
//! Nor may a write be started while holding a transaction on the writer connection
//! itself (`Database::conn`): on SQLite the owner would wait for that connection
//! while its holder waits for the owner.

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
};
use tokio::sync::{mpsc, oneshot};

/// The most writes one transaction takes; more wait for the next.
const MAX_BATCH: usize = 128;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// Hands a write's result to its caller once the batch's commit is known.
type Deliver = Box<dyn FnOnce(Option<&DbErr>) + Send>;
type Job = Box<dyn for<'c> FnOnce(&'c DatabaseTransaction) -> BoxFuture<'c, Deliver> + Send>;

/// Where a write's statements run: inside its transaction (a savepoint of the
/// batch on SQLite, a transaction of its own on PostgreSQL), or straight on a pool.
/// Queries take it like any sea-orm connection.
pub enum WriteConn<'a> {
    Batch(&'a DatabaseTransaction),
    Pool(&'a DatabaseConnection),
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
    /// The writer for `conn`: on SQLite, spawns the task that owns it (the task
    /// ends when the last clone of the writer is dropped).
    pub fn new(conn: DatabaseConnection) -> Self {
        if conn.get_database_backend() != DbBackend::Sqlite {
            return Self::Pool(conn);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let transactions = Arc::new(AtomicU64::new(0));
        // The span names the owner's statements in the log (`signin_bench
        // --count-statements` counts them).
        tokio::spawn(
            own(conn, rx, transactions.clone()).instrument(tracing::info_span!("sqlite_writer")),
        );
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
                return match write(&WriteConn::Batch(&txn)).await {
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
        let job: Job = Box::new(move |batch| {
            Box::pin(async move {
                let result = in_savepoint(batch, write).await;
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

async fn in_savepoint<T, F>(batch: &DatabaseTransaction, write: F) -> Result<T, DbErr>
where
    F: for<'c> FnOnce(&'c WriteConn<'c>) -> BoxFuture<'c, Result<T, DbErr>>,
{
    let savepoint = batch.begin().await?;
    let result = write(&WriteConn::Batch(&savepoint)).await;
    match result {
        Ok(value) => savepoint.commit().await.map(|()| value),
        Err(error) => {
            savepoint.rollback().await?;
            Err(error)
        }
    }
}

/// The owner of the SQLite writer: one transaction per batch of queued writes.
async fn own(
    conn: DatabaseConnection,
    mut queue: mpsc::UnboundedReceiver<Job>,
    transactions: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        metrics::histogram!("signin_db_write_batch_size").record(batch.len() as f64);
        let txn = match conn.begin_with_options(immediate()).await {
            Ok(txn) => txn,
            Err(error) => {
                // Dropping the jobs tells their callers; the next batch tries again.
                tracing::error!(%error, writes = batch.len(), "could not begin a write transaction");
                batch.clear();
                continue;
            }
        };
        let mut deliveries = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            deliveries.push(job(&txn).await);
        }
        let commit_error = txn.commit().await.err();
        transactions.fetch_add(1, Ordering::Relaxed);
        if let Some(error) = &commit_error {
            tracing::error!(%error, writes = deliveries.len(), "a write transaction did not commit");
        }
        for deliver in deliveries {
            deliver(commit_error.as_ref());
        }
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
    pub async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        match self {
            Self::Batch(txn) => txn.begin().await,
            Self::Pool(conn) => conn.begin_with_options(immediate()).await,
        }
    }
}

/// `$call` on whichever connection the write runs on.
macro_rules! on_inner {
    ($self:ident, $conn:ident => $call:expr) => {
        match $self {
            WriteConn::Batch($conn) => $call,
            WriteConn::Pool($conn) => $call,
        }
    };
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteConn<'_> {
    fn get_database_backend(&self) -> DbBackend {
        on_inner!(self, c => c.get_database_backend())
    }
    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        on_inner!(self, c => c.execute_raw(stmt).await)
    }
    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        on_inner!(self, c => c.execute_unprepared(sql).await)
    }
    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        on_inner!(self, c => c.query_one_raw(stmt).await)
    }
    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        on_inner!(self, c => c.query_all_raw(stmt).await)
    }
}

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

    /// Writes queued together share a transaction, and a write that fails halfway
    /// leaves nothing behind while the writes beside it commit. (On one runtime
    /// thread all 64 are queued before the owner first runs.)
    #[tokio::test]
    async fn writes_queued_together_commit_together_and_a_failing_one_rolls_back_alone() {
        let (writer, conn) = table().await;
        let writes = (0..64i64).map(|n| {
            let writer = writer.clone();
            async move {
                writer
                    .run(move |db| {
                        Box::pin(async move {
                            db.execute_raw(insert(n)).await?;
                            if n % 2 == 1 {
                                // Odd writes insert, then fail (n is already there).
                                db.execute_raw(insert(n)).await?;
                            }
                            Ok(n)
                        })
                    })
                    .await
            }
        });
        let results = futures::future::join_all(writes).await;
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
}
