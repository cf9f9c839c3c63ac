//! The SQLite writer connection while the owner holds it checked out of its pool.
//!
//! Returning a connection to a sqlx pool goes through a spawned task, so under load
//! the owner's next `BEGIN` waited in the runtime's queue for its own connection to
//! come back: 11 ms of every 24 ms batch (docs/benchmarks.md, "the writer connection
//! kept"). Holding the connection across batches needs transactions
//! and savepoints as plain statements on it, which sea-orm's own transaction type
//! cannot do on a connection it did not take from the pool itself; the statements
//! are still sea-orm's, run through its sqlx binding.

use std::sync::{
    Arc, Mutex as SyncMutex,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use async_trait::async_trait;
use futures::TryStreamExt;
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr, Statement,
    sqlx::{self, Sqlite, pool::PoolConnection, sqlite::SqliteQueryResult},
};
use sea_query_sqlx::SqlxValues;
use tokio::sync::Mutex;

/// The checked-out writer connection; statements run on it one at a time.
///
/// Every statement is a round trip to the connection's thread, and a savepoint
/// around each write doubled the writer's round trips. So a savepoint is not sent
/// on its own: it goes in front of the next statement (`SAVEPOINT write; INSERT …`,
/// one round trip), and one that succeeds is never released, since `COMMIT` ends
/// them all. Names repeat (`write`, and `inner` for a transaction inside a write):
/// `ROLLBACK TO` finds the latest savepoint of that name, which is always the
/// write's own.
///
/// Several statements in one prepared query is a SQLite-only sqlx behaviour that
/// sqlx marks deprecated; every write in the test suite goes through it, so an
/// upgrade that drops it fails there first.
pub struct Held {
    conn: Mutex<PoolConnection<Sqlite>>,
    /// Savepoints asked for and not sent yet, in order.
    pending: SyncMutex<Vec<(u64, &'static str)>>,
    next_savepoint: AtomicU64,
    /// A transaction is open: if the owner stops halfway, the connection is closed
    /// (which rolls it back) instead of going back to the pool mid-transaction.
    in_transaction: AtomicBool,
    /// A statement that carried a savepoint failed in a way that leaves unsure
    /// whether the savepoint was taken: only rolling back the batch is safe.
    poisoned: AtomicBool,
}

/// A savepoint on [`Held`], released or rolled back by its holder. One dropped
/// without either is undone with the savepoint or transaction around it.
pub struct Savepoint<'a> {
    pub(super) held: &'a Held,
    seq: u64,
    name: &'static str,
}

/// The savepoint around each write, and around a transaction inside one.
pub const WRITE: &str = "write";
pub const INNER: &str = "inner";

impl Held {
    pub fn new(conn: PoolConnection<Sqlite>) -> Self {
        Self {
            conn: Mutex::new(conn),
            pending: SyncMutex::new(Vec::new()),
            next_savepoint: AtomicU64::new(0),
            in_transaction: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
        }
    }

    /// `BEGIN IMMEDIATE`: takes the write lock at once (see [`super::immediate`]).
    pub async fn begin(&self) -> Result<(), DbErr> {
        self.in_transaction.store(true, Ordering::Relaxed);
        self.poisoned.store(false, Ordering::Relaxed);
        self.run_unprepared("BEGIN IMMEDIATE").await
    }

    /// Commits; on failure, or when the batch is poisoned, rolls back, so the
    /// connection is clean either way.
    pub async fn commit(&self) -> Result<(), DbErr> {
        self.pending_savepoints().clear();
        let committed = if self.poisoned.load(Ordering::Relaxed) {
            Err(DbErr::Custom(
                "a savepoint could not be confirmed; the batch was rolled back".into(),
            ))
        } else {
            self.run_unprepared("COMMIT").await
        };
        if committed.is_err() {
            self.run_unprepared("ROLLBACK").await?;
        }
        self.in_transaction.store(false, Ordering::Relaxed);
        committed
    }

    /// A transaction is still open (a failed `COMMIT` whose `ROLLBACK` failed too).
    pub fn in_transaction(&self) -> bool {
        self.in_transaction.load(Ordering::Relaxed)
    }

    /// A savepoint, sent with the next statement.
    pub fn savepoint(&self, name: &'static str) -> Savepoint<'_> {
        let seq = self.next_savepoint.fetch_add(1, Ordering::Relaxed);
        self.pending_savepoints().push((seq, name));
        Savepoint {
            held: self,
            seq,
            name,
        }
    }

    fn pending_savepoints(&self) -> std::sync::MutexGuard<'_, Vec<(u64, &'static str)>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `sql` with the pending savepoints in front, and whether there were any.
    fn with_pending(&self, sql: &str) -> (String, bool) {
        let mut pending = self.pending_savepoints();
        let mut full = String::new();
        for (_, name) in pending.drain(..) {
            full.push_str("SAVEPOINT ");
            full.push_str(name);
            full.push_str("; ");
        }
        let carried = !full.is_empty();
        full.push_str(sql);
        (full, carried)
    }

    /// Maps a failed statement's error with `shape`, first noting that the batch
    /// is poisoned when the statement carried savepoints and was not refused by a
    /// constraint (the savepoints may then not exist).
    fn failed(
        &self,
        carried: bool,
        shape: fn(sqlx::Error) -> DbErr,
    ) -> impl FnOnce(sqlx::Error) -> DbErr + '_ {
        move |error| {
            let refused = error
                .as_database_error()
                .is_some_and(|e| !matches!(e.kind(), sqlx::error::ErrorKind::Other));
            if carried && !refused {
                self.poisoned.store(true, Ordering::Relaxed);
            }
            shape(error)
        }
    }

    async fn run_unprepared(&self, sql: &str) -> Result<(), DbErr> {
        let mut conn = self.conn.lock().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut **conn)
            .await
            .map(drop)
            .map_err(exec_err)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.in_transaction.load(Ordering::Relaxed) {
            self.conn.get_mut().close_on_drop();
        }
    }
}

impl Savepoint<'_> {
    /// Keeps what was done since the savepoint (`COMMIT` releases it).
    pub fn release(self) {
        self.forget_if_unsent();
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        if self.forget_if_unsent() {
            return Ok(());
        }
        let sql = format!("ROLLBACK TO {}", self.name);
        let rolled_back = self.held.run_unprepared(&sql).await;
        if rolled_back.is_err() {
            self.held.poisoned.store(true, Ordering::Relaxed);
        }
        rolled_back
    }

    /// Drops this savepoint and those after it from the pending ones when it was
    /// never sent (nothing ran since it). True if it was unsent.
    fn forget_if_unsent(&self) -> bool {
        let mut pending = self.held.pending_savepoints();
        match pending.iter().position(|(seq, _)| *seq == self.seq) {
            Some(at) => {
                pending.truncate(at);
                true
            }
            None => false,
        }
    }
}

/// `sql` (the statement's, perhaps behind savepoints) with the statement's values.
fn bound<'q>(sql: &'q str, stmt: &Statement) -> sqlx::query::Query<'q, Sqlite, SqlxValues> {
    let values = stmt.values.clone().unwrap_or(sea_orm::Values(Vec::new()));
    sqlx::query_with(sqlx::AssertSqlSafe(sql), SqlxValues(values))
}

/// The result of the last statement in `query`. SQLite reports a `SAVEPOINT`'s
/// change count as the previous statement's, so a sum over the statements, which
/// sqlx's `execute` gives, would count rows a carried savepoint did not change.
async fn last_result<'q>(
    conn: &mut PoolConnection<Sqlite>,
    query: impl sqlx::Execute<'q, Sqlite> + 'q,
) -> Result<SqliteQueryResult, sqlx::Error> {
    use sqlx::Executor;
    conn.fetch_many(query)
        .try_fold(None, |last, step| async move { Ok(step.left().or(last)) })
        .await
        .map(Option::unwrap_or_default)
}

/// The error shapes sea-orm's own sqlx driver gives, so `DbErr::sql_err` still
/// recognises constraint violations.
fn exec_err(error: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(error)))
}

fn query_err(error: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(error)))
}

#[async_trait]
impl ConnectionTrait for Held {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Sqlite
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let (sql, carried) = self.with_pending(&stmt.sql);
        let mut conn = self.conn.lock().await;
        let done = last_result(&mut conn, bound(&sql, &stmt)).await;
        done.map(Into::into).map_err(self.failed(carried, exec_err))
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let (sql, carried) = self.with_pending(sql);
        let mut conn = self.conn.lock().await;
        let done = last_result(&mut conn, sqlx::raw_sql(sqlx::AssertSqlSafe(sql))).await;
        done.map(Into::into).map_err(self.failed(carried, exec_err))
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let (sql, carried) = self.with_pending(&stmt.sql);
        let mut conn = self.conn.lock().await;
        let row = bound(&sql, &stmt).fetch_optional(&mut **conn).await;
        row.map(|row| row.map(Into::into))
            .map_err(self.failed(carried, query_err))
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let (sql, carried) = self.with_pending(&stmt.sql);
        let mut conn = self.conn.lock().await;
        let rows = bound(&sql, &stmt).fetch_all(&mut **conn).await;
        rows.map(|rows| rows.into_iter().map(Into::into).collect())
            .map_err(self.failed(carried, query_err))
    }
}
