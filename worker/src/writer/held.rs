//! The SQLite writer connection while the owner holds it checked out of its pool.
//!
//! Returning a connection to a sqlx pool goes through a spawned task, so under load
//! the owner's next `BEGIN` waited in the runtime's queue for its own connection to
//! come back: 11 ms of every 24 ms batch (docs/benchmarks.md, "The owner keeps the
//! writer connection"). Holding the connection across batches needs transactions
//! and savepoints as plain statements on it, which sea-orm's own transaction type
//! cannot do on a connection it did not take from the pool itself; the statements
//! are still sea-orm's, run through its sqlx binding.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use async_trait::async_trait;
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr, Statement,
    sqlx::{self, Sqlite, pool::PoolConnection},
};
use sea_query_sqlx::SqlxValues;
use tokio::sync::Mutex;

/// The checked-out writer connection; statements run on it one at a time.
pub struct Held {
    conn: Mutex<PoolConnection<Sqlite>>,
    /// A transaction is open: if the owner stops halfway, the connection is closed
    /// (which rolls it back) instead of going back to the pool mid-transaction.
    in_transaction: AtomicBool,
    savepoints: AtomicU64,
}

/// A savepoint on [`Held`]: released or rolled back by its holder. One dropped
/// without either is undone with the savepoint or transaction around it.
pub struct Savepoint<'a> {
    pub(super) held: &'a Held,
    name: String,
}

impl Held {
    pub fn new(conn: PoolConnection<Sqlite>) -> Self {
        Self {
            conn: Mutex::new(conn),
            in_transaction: AtomicBool::new(false),
            savepoints: AtomicU64::new(0),
        }
    }

    /// `BEGIN IMMEDIATE`: takes the write lock at once (see [`super::immediate`]).
    pub async fn begin(&self) -> Result<(), DbErr> {
        self.in_transaction.store(true, Ordering::Relaxed);
        self.execute_unprepared("BEGIN IMMEDIATE").await.map(drop)
    }

    /// Commits; on failure rolls back, so the connection is clean either way.
    pub async fn commit(&self) -> Result<(), DbErr> {
        let committed = self.execute_unprepared("COMMIT").await.map(drop);
        if committed.is_err() {
            self.execute_unprepared("ROLLBACK").await?;
        }
        self.in_transaction.store(false, Ordering::Relaxed);
        committed
    }

    /// A transaction is still open (a failed `COMMIT` whose `ROLLBACK` failed too).
    pub fn in_transaction(&self) -> bool {
        self.in_transaction.load(Ordering::Relaxed)
    }

    pub async fn savepoint(&self) -> Result<Savepoint<'_>, DbErr> {
        let n = self.savepoints.fetch_add(1, Ordering::Relaxed);
        let name = format!("write_{n}");
        self.execute_unprepared(&format!("SAVEPOINT {name}"))
            .await?;
        Ok(Savepoint { held: self, name })
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
    pub async fn release(self) -> Result<(), DbErr> {
        let sql = format!("RELEASE {}", self.name);
        self.held.execute_unprepared(&sql).await.map(drop)
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        let sql = format!("ROLLBACK TO {0}; RELEASE {0}", self.name);
        self.held.execute_unprepared(&sql).await.map(drop)
    }
}

fn bound(stmt: &Statement) -> sqlx::query::Query<'_, Sqlite, SqlxValues> {
    let values = stmt.values.clone().unwrap_or(sea_orm::Values(Vec::new()));
    sqlx::query_with(sqlx::AssertSqlSafe(stmt.sql.as_str()), SqlxValues(values))
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
        let mut conn = self.conn.lock().await;
        bound(&stmt)
            .execute(&mut **conn)
            .await
            .map(Into::into)
            .map_err(exec_err)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let mut conn = self.conn.lock().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut **conn)
            .await
            .map(Into::into)
            .map_err(exec_err)
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let mut conn = self.conn.lock().await;
        let row = bound(&stmt).fetch_optional(&mut **conn).await;
        row.map(|row| row.map(Into::into)).map_err(query_err)
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut conn = self.conn.lock().await;
        let rows = bound(&stmt).fetch_all(&mut **conn).await;
        rows.map(|rows| rows.into_iter().map(Into::into).collect())
            .map_err(query_err)
    }
}
