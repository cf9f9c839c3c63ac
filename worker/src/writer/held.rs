//! The SQLite writer connection while the owner holds it checked out of its pool.
//!
//! Returning a connection to a sqlx pool goes through a spawned task, so under load
//! the owner's next `BEGIN` waited in the runtime's queue for its own connection to
//! come back: 11 ms of every 24 ms batch (docs/benchmarks.md, "the writer connection
//! kept"). So the owner keeps it across batches.
//!
//! And sqlx runs each SQLite statement on the connection's own thread: every
//! statement was two thread hops, 12–58 µs of wall time and about 37 µs of CPU,
//! against 2–4 µs for the statement itself, all serialised on the one writer
//! (docs/benchmarks.md, ninth sitting). While the owner holds the connection, it
//! runs the statements itself, on its own thread, through rusqlite on the same
//! SQLite handle ([`crate::sqlite`]): one connection, one write lock, the same
//! pragmas, and sqlx's thread parked until the connection goes back to the pool,
//! where apalis and the readers find it as they left it.

use std::sync::{
    Mutex,
    atomic::{AtomicBool, Ordering},
};

use async_trait::async_trait;
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr, Statement,
    sqlx::{Sqlite, pool::PoolConnection},
};

use crate::sqlite;

/// The checked-out writer connection; statements run on it one at a time, on the
/// thread that calls.
///
/// Each write runs in a savepoint of the batch's transaction, released when it
/// succeeds and rolled back when it fails. Names repeat (`write`, and `inner`
/// for a transaction inside a write): `ROLLBACK TO` finds the latest savepoint of
/// that name, which is always the caller's own.
pub struct Held {
    /// rusqlite over `conn`'s handle. Declared first: it drops first, finalizing
    /// its prepared statements while the handle is still open.
    db: Mutex<rusqlite::Connection>,
    conn: PoolConnection<Sqlite>,
    /// A transaction is open: if the owner stops halfway, the connection is closed
    /// (which rolls it back) instead of going back to the pool mid-transaction.
    in_transaction: AtomicBool,
    /// A savepoint could not be rolled back, or SQLite ended the transaction by
    /// itself (it does on some I/O errors): only rolling back the batch is safe,
    /// and no further statement runs in it.
    poisoned: AtomicBool,
}

/// A savepoint on [`Held`], released or rolled back by its holder. One dropped
/// without either is undone with the savepoint or transaction around it.
pub struct Savepoint<'a> {
    pub(super) held: &'a Held,
    name: Name,
}

/// A savepoint's name: the one around each write, or around a transaction
/// inside one.
#[derive(Clone, Copy)]
pub enum Name {
    Write,
    Inner,
}

impl Name {
    /// The statements that take, keep and undo it (static, so preparing one is a
    /// lookup in the statement cache).
    fn sql(self) -> [&'static str; 3] {
        match self {
            Self::Write => ["SAVEPOINT write", "RELEASE write", "ROLLBACK TO write"],
            Self::Inner => ["SAVEPOINT inner", "RELEASE inner", "ROLLBACK TO inner"],
        }
    }
}

impl Held {
    /// Takes `conn`'s SQLite handle from sqlx's thread for as long as it is held.
    pub async fn new(mut conn: PoolConnection<Sqlite>) -> Result<Self, DbErr> {
        let handle = conn
            .lock_handle()
            .await
            .map_err(|e| DbErr::Conn(RuntimeErr::Internal(e.to_string())))?
            .as_raw_handle();
        // SAFETY: the handle stays open while `conn` lives, and `db` is dropped
        // before it (field order; `from_handle` never closes the handle). Once the
        // lock above is released, sqlx's thread touches the handle only on a
        // command sent through `conn`, and none is sent while `Held` owns it: the
        // connection is checked out to the owner, which runs every statement here.
        let db = unsafe { rusqlite::Connection::from_handle(handle.as_ptr()) }
            .map_err(|e| DbErr::Conn(RuntimeErr::Internal(e.to_string())))?;
        db.set_prepared_statement_cache_capacity(sqlite::STATEMENT_CACHE);
        Ok(Self {
            db: Mutex::new(db),
            conn,
            in_transaction: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
        })
    }

    /// `BEGIN IMMEDIATE`: takes the write lock at once (see [`super::immediate`]).
    pub fn begin(&self) -> Result<(), DbErr> {
        self.in_transaction.store(true, Ordering::Relaxed);
        self.poisoned.store(false, Ordering::Relaxed);
        sqlite::batch(&self.db(), "BEGIN IMMEDIATE")
    }

    /// Commits; on failure, or when the batch is poisoned, rolls back, so the
    /// connection is clean either way.
    pub fn commit(&self) -> Result<(), DbErr> {
        let db = self.db();
        let committed = if self.poisoned.load(Ordering::Relaxed) {
            Err(DbErr::Custom(
                "a write's savepoint failed; the batch was rolled back".into(),
            ))
        } else {
            sqlite::batch(&db, "COMMIT")
        };
        if committed.is_err() && !db.is_autocommit() {
            sqlite::batch(&db, "ROLLBACK")?;
        }
        self.in_transaction.store(false, Ordering::Relaxed);
        committed
    }

    /// A transaction is still open (a failed `COMMIT` whose `ROLLBACK` failed too).
    pub fn in_transaction(&self) -> bool {
        self.in_transaction.load(Ordering::Relaxed)
    }

    pub fn savepoint(&self, name: Name) -> Result<Savepoint<'_>, DbErr> {
        let [take, _, _] = name.sql();
        self.run(|db| sqlite::batch(db, take))?;
        Ok(Savepoint { held: self, name })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `statement` inside the batch's transaction, refusing to once the batch
    /// is poisoned, and poisoning it when SQLite ended the transaction by itself:
    /// a statement after that would commit on its own, outside the batch.
    fn run<T>(
        &self,
        statement: impl FnOnce(&rusqlite::Connection) -> Result<T, DbErr>,
    ) -> Result<T, DbErr> {
        if self.poisoned.load(Ordering::Relaxed) {
            return Err(DbErr::Custom(
                "an earlier write left the batch unusable; it is being rolled back".into(),
            ));
        }
        let db = self.db();
        let result = statement(&db);
        if result.is_err() && self.in_transaction() && db.is_autocommit() {
            self.poisoned.store(true, Ordering::Relaxed);
        }
        result
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.in_transaction.load(Ordering::Relaxed) {
            self.conn.close_on_drop();
        }
    }
}

impl Savepoint<'_> {
    /// Keeps what was done since the savepoint.
    pub fn release(self) -> Result<(), DbErr> {
        let [_, keep, _] = self.name.sql();
        self.settle(&[keep])
    }

    /// Undoes what was done since the savepoint, then takes it off the stack.
    pub fn rollback(self) -> Result<(), DbErr> {
        let [_, keep, undo] = self.name.sql();
        self.settle(&[undo, keep])
    }

    /// Runs `statements` in order. If one fails the batch is poisoned: the write's
    /// caller hears of an error, so nothing it did may commit.
    fn settle(&self, statements: &[&'static str]) -> Result<(), DbErr> {
        let settled = self
            .held
            .run(|db| statements.iter().try_for_each(|sql| sqlite::batch(db, sql)));
        if settled.is_err() {
            self.held.poisoned.store(true, Ordering::Relaxed);
        }
        settled
    }
}

#[async_trait]
impl ConnectionTrait for Held {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Sqlite
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let done = self.run(|db| sqlite::execute(db, &stmt))?;
        sqlite::exec_result(done).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.execute_raw(Statement::from_string(DbBackend::Sqlite, sql))
            .await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let rows = self.run(|db| sqlite::query(db, &stmt, Some(1)))?;
        Ok(sqlite::results(rows).await?.pop())
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let rows = self.run(|db| sqlite::query(db, &stmt, None))?;
        sqlite::results(rows).await
    }
}
