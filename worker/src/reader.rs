//! The hot reads: a status poll's operation, a session check, a job's operation.
//!
//! On a SQLite file they run on the calling thread, through rusqlite connections of
//! their own ([`crate::sqlite`]): sqlx runs each SQLite connection on a thread of
//! its own, and a read of a few pages (a few microseconds in SQLite) cost a round
//! trip to that thread, two sleeps and two wake-ups, about 60 µs of CPU
//! (docs/benchmarks.md, ninth sitting). A read blocks its runtime thread only that
//! long: a write never blocks a read in WAL mode, and a read that finds SQLite busy
//! all the same (a crashed process's WAL being recovered) goes through sqlx's pool,
//! which waits on a thread of its own. Reads that may take longer (the metrics'
//! counts) use [`Reader::pool`], sqlx's read pool, as do PostgreSQL and SQLite in
//! memory.

use std::{
    path::Path,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use rusqlite::{OpenFlags, config::DbConfig};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement,
};

use crate::sqlite;

/// How many rusqlite read connections a process opens. Reads run on the runtime's
/// threads (two on two cores) and the writer's, and return at once: four leave
/// one free almost always.
pub(crate) const CONNECTIONS: usize = 4;

/// Runs the hot reads; cheap to clone.
#[derive(Clone, Debug)]
pub struct Reader {
    own: Option<Arc<Connections>>,
    pool: DatabaseConnection,
}

struct Connections {
    open: Vec<Mutex<rusqlite::Connection>>,
    next: AtomicUsize,
    busy_fallbacks: AtomicU64,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} rusqlite read connections", self.open.len())
    }
}

impl Reader {
    /// Reads through `pool` alone (PostgreSQL, SQLite in memory).
    pub fn pooled(pool: DatabaseConnection) -> Self {
        Self { own: None, pool }
    }

    /// Reads from the SQLite file at `file` on connections of its own ([`connect`]).
    pub fn open(file: &Path, pool: DatabaseConnection) -> Result<Self, DbErr> {
        let open = (0..CONNECTIONS)
            .map(|_| {
                let conn = connect(file)?;
                // Never wait for a lock on a runtime thread: a busy read goes to
                // sqlx's pool, which waits on a thread of its own.
                conn.busy_timeout(Duration::ZERO)?;
                Ok(Mutex::new(conn))
            })
            .collect::<Result<Vec<_>, rusqlite::Error>>()
            .map_err(|e| DbErr::Conn(RuntimeErr::Internal(format!("opening a reader: {e}"))))?;
        let own = Connections {
            open,
            next: AtomicUsize::new(0),
            busy_fallbacks: AtomicU64::new(0),
        };
        Ok(Self {
            own: Some(Arc::new(own)),
            pool,
        })
    }

    /// sqlx's read pool: for reads that may take long (the metrics' counts).
    pub fn pool(&self) -> &DatabaseConnection {
        &self.pool
    }

    /// How many reads found SQLite busy on the reader's own connections and went
    /// through sqlx's pool instead (also `signin_db_read_busy_total`).
    pub fn busy_fallbacks(&self) -> u64 {
        self.own
            .as_ref()
            .map_or(0, |own| own.busy_fallbacks.load(Ordering::Relaxed))
    }

    /// Runs `read` on one of the reader's own connections; `None` without any, or
    /// when SQLite was busy there (the caller then reads through sqlx's pool).
    fn own<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T, DbErr>,
    ) -> Option<Result<T, DbErr>> {
        let own = self.own.as_ref()?;
        match read(&own.take()) {
            Err(error) if sqlite::is_busy(&error) => {
                own.busy_fallbacks.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("signin_db_read_busy_total").increment(1);
                None
            }
            done => Some(done),
        }
    }
}

/// A read connection to the SQLite file at `file`, set up as sqlx's are
/// (`db::Database::connect`): in WAL mode (the writer set it), waiting as long for
/// a lock, with the query planner stability guarantee (`db::stable_plans`).
pub(crate) fn connect(file: &Path) -> Result<rusqlite::Connection, rusqlite::Error> {
    let conn = rusqlite::Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(crate::db::BUSY_TIMEOUT)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // A read connection: a statement that would write is refused.
    conn.pragma_update(None, "query_only", true)?;
    conn.set_prepared_statement_cache_capacity(sqlite::STATEMENT_CACHE);
    Ok(conn)
}

impl Connections {
    /// A free connection, or the next one to free up if all are in use.
    fn take(&self) -> MutexGuard<'_, rusqlite::Connection> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.open.len();
        for at in 0..count {
            if let Ok(conn) = self.open[(start + at) % count].try_lock() {
                return conn;
            }
        }
        self.open[start % count]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl ConnectionTrait for Reader {
    fn get_database_backend(&self) -> DbBackend {
        self.pool.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        if let Some(done) = self.own(|c| sqlite::execute(c, &stmt)) {
            return sqlite::exec_result(done?).await;
        }
        self.pool.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match &self.own {
            Some(_) => {
                self.execute_raw(Statement::from_string(DbBackend::Sqlite, sql))
                    .await
            }
            None => self.pool.execute_unprepared(sql).await,
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        if let Some(rows) = self.own(|c| sqlite::query(c, &stmt, Some(1))) {
            return Ok(sqlite::results(rows?).await?.pop());
        }
        self.pool.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        if let Some(rows) = self.own(|c| sqlite::query(c, &stmt, None)) {
            return sqlite::results(rows?).await;
        }
        self.pool.query_all_raw(stmt).await
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    use super::Reader;

    use crate::{
        config::Process,
        db::{Database, sqlite_file_settings},
    };

    /// On a file, hot reads run on the reader's own connections: they see what the
    /// writer committed, plan without looking at bound values like every connection
    /// (`db::stable_plans`), and refuse to write.
    #[tokio::test]
    async fn the_readers_own_connections_see_commits_and_only_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::connect(&sqlite_file_settings(dir.path()), Process::Api)
            .await
            .unwrap();
        let own = db
            .reader
            .own
            .as_ref()
            .expect("a file has connections of its own");
        db.writer
            .run(|w| {
                Box::pin(async move { w.execute_unprepared("CREATE TABLE t (n INTEGER)").await })
            })
            .await
            .unwrap();
        db.writer
            .run(|w| {
                Box::pin(async move { w.execute_unprepared("INSERT INTO t VALUES (7)").await })
            })
            .await
            .unwrap();
        let row = db
            .reader
            .query_one_raw(Statement::from_string(DbBackend::Sqlite, "SELECT n FROM t"))
            .await
            .unwrap()
            .expect("the committed row");
        assert_eq!(row.try_get::<i64>("", "n").unwrap(), 7);
        for conn in &own.open {
            let conn = conn.lock().unwrap();
            assert!(
                conn.db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG)
                    .unwrap()
            );
        }
        let refused = db
            .reader
            .execute_unprepared("INSERT INTO t VALUES (8)")
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("readonly"), "{refused}");
    }

    /// A read that finds SQLite busy on the reader's own connections does not wait
    /// on the runtime's thread: it goes to sqlx's pool, which waits on its own, and
    /// succeeds once the lock is gone. (A rollback-journal file, where a writer's
    /// exclusive lock keeps readers out; in WAL mode only recovery does.)
    #[tokio::test]
    async fn a_busy_read_waits_in_sqlx_pool_not_on_the_runtime_thread() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("busy.db");
        let holder = rusqlite::Connection::open(&file).unwrap();
        holder.execute_batch("CREATE TABLE t (n INTEGER)").unwrap();
        let options = sea_orm::sqlx::sqlite::SqliteConnectOptions::new().filename(&file);
        let pool = sea_orm::sqlx::SqlitePool::connect_with(options)
            .await
            .unwrap();
        let reader = Reader::open(
            &file,
            sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool),
        )
        .unwrap();
        holder
            .execute_batch("BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);")
            .unwrap();
        let read = tokio::spawn({
            let reader = reader.clone();
            async move {
                reader
                    .query_all_raw(Statement::from_string(DbBackend::Sqlite, "SELECT n FROM t"))
                    .await
            }
        });
        // The runtime (one thread in this test) keeps running while the read waits.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!read.is_finished(), "the read waits for the lock");
        assert_eq!(reader.busy_fallbacks(), 1, "it went to sqlx's pool");
        holder.execute_batch("COMMIT").unwrap();
        let rows = tokio::time::timeout(std::time::Duration::from_secs(4), read)
            .await
            .expect("the read ends once the lock is gone")
            .unwrap()
            .unwrap();
        assert_eq!(rows.len(), 1);
    }
}
