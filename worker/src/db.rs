//! One connection pool per process, shared by sea-orm and the apalis storage, and
//! the schema: sea-orm migrations plus apalis' own tables, in the same database.

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

use crate::config::Settings;

/// The raw pool behind the sea-orm connection; apalis storages are built from it.
#[derive(Clone, Debug)]
pub enum DbPool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The database handle a process keeps in its state.
#[derive(Clone, Debug)]
pub struct Database {
    /// For sea-orm queries.
    pub conn: DatabaseConnection,
    /// The same pool, for the job queue.
    pub pool: DbPool,
}

/// Held between migrations on PostgreSQL so that `api` and `worker` starting together
/// do not race (sea-orm takes no lock of its own).
const MIGRATION_LOCK_KEY: i64 = 0x5349_474e_494e; // "SIGNIN"

impl Database {
    /// Connects to `database_url` (SQLite in WAL mode, or PostgreSQL).
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let url = &settings.database_url;
        if settings.is_postgres() {
            let options = PgConnectOptions::from_str(url)
                .context("database_url: not a valid postgres URL")?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await
                .context("connecting to PostgreSQL")?;
            let conn = SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
            Ok(Self {
                conn,
                pool: DbPool::Postgres(pool),
            })
        } else {
            let options = SqliteConnectOptions::from_str(url)
                .context("database_url: not a valid sqlite URL")?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .context("opening the SQLite database")?;
            let conn = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool.clone());
            Ok(Self {
                conn,
                pool: DbPool::Sqlite(pool),
            })
        }
    }

    /// Applies our migrations and the job queue's. Safe to run from several processes.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &self.pool {
            DbPool::Sqlite(pool) => {
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
