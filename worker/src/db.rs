//! The connection pools of a process, shared by sea-orm and the apalis storage, and
//! the schema: sea-orm migrations plus apalis' own tables, in the same database.
//!
//! SQLite allows one writer at a time, and a connection that finds the write lock
//! taken sleeps in SQLite's busy handler (1, 2, 5, 10 … ms) instead of queueing. So on
//! SQLite every write goes through one connection, where writers wait their turn in
//! the pool's FIFO queue in microseconds, and reads that need not see their own
//! writes use a separate pool. On PostgreSQL both handles share one pool.

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    DatabaseConnection, SqlxPostgresConnector, SqlxSqliteConnector,
    sqlx::{
        self, PgPool, SqlitePool,
        postgres::{PgConnectOptions, PgPoolOptions},
        sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
    },
};

use crate::{
    config::{Process, Settings},
    reader::Reader,
    writer::Writer,
};

mod busy;
mod checkpoints;
pub mod liveness;
mod loopback_tls;
pub mod stable_plans;
pub(crate) mod with;

/// The raw pool behind the sea-orm connection; apalis storages are built from it.
#[derive(Clone, Debug)]
pub enum DbPool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The database handles a process keeps in its state.
#[derive(Clone, Debug)]
pub struct Database {
    /// For writes, transactions and reads that must see them (one connection on
    /// SQLite).
    pub conn: DatabaseConnection,
    /// For hot reads that may run beside writes: status polls, session checks.
    pub reader: Reader,
    /// `conn`'s pool, for the job queue (whose fetches are writes).
    pub pool: DbPool,
    /// Runs the hot writes; on SQLite, the owner of `conn`'s one connection that
    /// commits queued writes together (see [`crate::writer`]).
    pub writer: Writer,
    /// The SQLite database file (none in memory or on PostgreSQL).
    sqlite_file: Option<std::path::PathBuf>,
}

/// An exclusive lock on `<database file>.migrate-lock`, held while one process
/// migrates; released when dropped (or when the process dies).
struct MigrationTurn(#[allow(dead_code)] std::fs::File);

impl MigrationTurn {
    async fn take(database_file: &std::path::Path) -> anyhow::Result<Self> {
        let mut path = database_file.as_os_str().to_owned();
        path.push(".migrate-lock");
        let path = std::path::PathBuf::from(path);
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            file.lock()
                .with_context(|| format!("locking {}", path.display()))?;
            Ok(Self(file))
        })
        .await
        .context("waiting for the migration lock")?
    }
}

/// sqlx's read connections on SQLite, beside the single writer and the hot
/// readers' own (`reader`): only the metrics' counts read through them now. (When
/// the status polls did, `signin_bench --status-load` measured 2 at 12.7k polls/s,
/// 4 at 17.7k, 8 at 21.6k.)
const SQLITE_READERS: u32 = 2;

/// How long a SQLite connection waits for another's lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Held between migrations on PostgreSQL so that `api` and `worker` starting together
/// do not race (sea-orm takes no lock of its own).
const MIGRATION_LOCK_KEY: i64 = 0x5349_474e_494e; // "SIGNIN"

async fn sqlite_pool(options: SqliteConnectOptions, size: u32) -> anyhow::Result<SqlitePool> {
    SqlitePoolOptions::new()
        .max_connections(size)
        // A connection to a local file does not drop; sqlx's ping before each
        // acquire would be one more round trip to the connection's thread.
        .test_before_acquire(false)
        .after_connect(|conn, _| {
            Box::pin(async move {
                stable_plans::enable(conn).await?;
                busy::install(conn).await
            })
        })
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .context("opening the SQLite database")
}

fn is_sqlite_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

impl Database {
    /// Connects to `database_url` (SQLite in WAL mode, or PostgreSQL with the pool
    /// size `process` needs) and logs the sizes it took.
    pub async fn connect(settings: &Settings, process: Process) -> anyhow::Result<Self> {
        let url = &settings.database_url;
        let runs_worker = process == Process::Worker || settings.worker.embedded;
        let concurrency = runs_worker.then_some(settings.worker.concurrency);
        if settings.is_postgres() {
            let options = PgConnectOptions::from_str(url)
                .context("database_url: not a valid postgres URL")?;
            let options = loopback_tls::plain_on_loopback(options, url);
            let size = settings.pool_size(process);
            tracing::info!(
                database = "postgres",
                database.sslmode = ?options.get_ssl_mode(),
                database.max_connections = size,
                worker.concurrency = concurrency,
                "connection pool and job slots"
            );
            let pool = liveness::ping_when_idle(PgPoolOptions::new())
                .max_connections(size)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await
                .context("connecting to PostgreSQL")?;
            let conn = SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
            Ok(Self {
                reader: Reader::pooled(conn.clone()),
                writer: Writer::new(conn.clone()),
                conn,
                pool: DbPool::Postgres(pool),
                sqlite_file: None,
            })
        } else {
            let options = SqliteConnectOptions::from_str(url)
                .context("database_url: not a valid sqlite URL")?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(BUSY_TIMEOUT)
                .foreign_keys(true)
                // No `mmap_size`: mapped pages of the database file count in the
                // process's RSS and grow with the file (76 MB after 5,700 sign-ins
                // against 55 MB without), and reading them through `pread` cost no
                // throughput in `signin_bench` (docs/benchmarks.md, 2026-11-30).
                //
                // `temp_store`: the journal of the writer's savepoints (one per
                // write in a batch) outgrows SQLite's 64 KiB in-memory spill and
                // would go to a temporary file, created and unlinked for every
                // batch.
                .pragma("temp_store", "memory");
            tracing::info!(
                database = "sqlite",
                database.writers = 1,
                database.readers = SQLITE_READERS,
                database.hot_readers = crate::reader::CONNECTIONS,
                worker.concurrency = concurrency,
                "connection pool and job slots"
            );
            if is_sqlite_memory(url) {
                // Each connection to `:memory:` is its own database: keep one.
                let pool = sqlite_pool(options, 1).await?;
                let conn = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool.clone());
                return Ok(Self {
                    reader: Reader::pooled(conn.clone()),
                    writer: Writer::new(conn.clone()),
                    conn,
                    pool: DbPool::Sqlite(pool),
                    sqlite_file: None,
                });
            }
            // The writer first: it creates the file and switches it to WAL.
            let file = options.get_filename().to_path_buf();
            // Checkpoints run in the background (`checkpoints`), not in its commits.
            let writer_options = options.clone().pragma("wal_autocheckpoint", "0");
            let writer = sqlite_pool(writer_options, 1).await?;
            let readers = sqlite_pool(options, SQLITE_READERS).await?;
            let readers = SqlxSqliteConnector::from_sqlx_sqlite_pool(readers);
            let reader = Reader::open(&file, readers)?;
            let conn = SqlxSqliteConnector::from_sqlx_sqlite_pool(writer.clone());
            let owner = Writer::new(conn.clone());
            // As long as the writer runs, whoever holds it (not this struct).
            checkpoints::spawn(file.clone(), owner.downgrade());
            Ok(Self {
                writer: owner,
                conn,
                reader,
                pool: DbPool::Sqlite(writer),
                sqlite_file: Some(file),
            })
        }
    }

    /// The SQLite database file (none in memory or on PostgreSQL), for connections
    /// outside the pools (the commit watches).
    pub fn sqlite_file(&self) -> Option<&std::path::Path> {
        self.sqlite_file.as_deref()
    }

    /// Applies our migrations and the job queue's. Safe to run from several processes.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &self.pool {
            DbPool::Sqlite(pool) => {
                // `api` and `worker` processes starting together on one file would
                // race to record the same migration: take turns on a lock file.
                let _turn = match &self.sqlite_file {
                    Some(file) => Some(MigrationTurn::take(file).await?),
                    None => None,
                };
                // Not `SqliteStorage::setup`: it would switch `synchronous` off.
                SqliteStorage::<()>::migrations()
                    .run(pool)
                    .await
                    .context("creating the job queue tables")?;
                Migrator::up(&self.conn, None)
                    .await
                    .context("applying migrations")?;
            }
            DbPool::Postgres(pool) => {
                let mut lock = pool.acquire().await.context("taking the migration lock")?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(MIGRATION_LOCK_KEY)
                    .execute(&mut *lock)
                    .await
                    .context("taking the migration lock")?;
                let result = async {
                    PostgresStorage::<()>::setup(pool)
                        .await
                        .context("creating the job queue tables")?;
                    Migrator::up(&self.conn, None)
                        .await
                        .context("applying migrations")
                }
                .await;
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(MIGRATION_LOCK_KEY)
                    .execute(&mut *lock)
                    .await
                    .context("releasing the migration lock")?;
                result?;
            }
        }
        Ok(())
    }
}

/// Default settings on a new SQLite file in `dir`.
#[cfg(test)]
pub(crate) fn sqlite_file_settings(dir: &std::path::Path) -> Settings {
    use figment::{Figment, providers::Serialized};
    let url = format!("sqlite://{}?mode=rwc", dir.join("signin.db").display());
    Settings::from_figment(Figment::from(Serialized::defaults(
        serde_json::json!({"database_url": url}),
    )))
    .expect("default settings")
}

#[cfg(test)]
mod migration_tests {
    use super::*;

    /// `api` and `worker` started together on one SQLite file used to race to record
    /// the same migration (`UNIQUE constraint failed: _sqlx_migrations.version`), and
    /// one of them died at start. Separate pools stand for separate processes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_starting_together_on_one_sqlite_file_take_turns_to_migrate() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let settings = sqlite_file_settings(dir.path());
            let api = Database::connect(&settings, Process::Api).await.unwrap();
            let worker = Database::connect(&settings, Process::Worker).await.unwrap();
            let (a, b) = tokio::join!(api.migrate(), worker.migrate());
            a.unwrap();
            b.unwrap();
        }
    }

    /// apalis-sqlite's ack (`queries/task/ack.sql` of apalis-sqlite 1.0) reads the
    /// batch and finds each job by id, on the connection that migrated and on a
    /// new one: not one scan of every job the worker locked per batch entry.
    #[tokio::test]
    async fn the_job_queue_ack_finds_jobs_by_id() {
        const ACK: &str = "EXPLAIN QUERY PLAN WITH j AS (SELECT value ->> 'task_id' AS task_id, \
            value ->> 'attempt' AS attempt, value ->> 'result' AS result, \
            value ->> 'status' AS status FROM json_each(?1)) \
            UPDATE Jobs SET status = j.status, attempts = j.attempt, last_result = j.result, \
            done_at = strftime('%s', 'now') FROM j WHERE Jobs.id = j.task_id AND Jobs.lock_by = ?2";
        let dir = tempfile::tempdir().unwrap();
        let db = Database::connect(&sqlite_file_settings(dir.path()), Process::Api)
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let DbPool::Sqlite(writer) = &db.pool else {
            panic!("not SQLite")
        };
        let readers = db.reader.pool().get_sqlite_connection_pool();
        for (name, pool) in [("the migrating connection", writer), ("a new one", readers)] {
            let rows = sqlx::query(ACK).fetch_all(pool).await.unwrap();
            let details: Vec<String> = rows
                .iter()
                .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
                .collect();
            let plan = details.join(" | ");
            assert!(plan.contains("(id=?)"), "{name}: {plan}");
            assert!(!plan.contains("LIdx"), "{name}: {plan}");
        }
    }
}
