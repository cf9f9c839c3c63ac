//! On SQLite, tells the query planner that the job queue's `lock_by` index does not
//! narrow anything down (one worker locks every job), so apalis' ack reads its batch
//! first and finds each job by id.
//!
//! apalis-sqlite acks a batch with `UPDATE Jobs … FROM (SELECT … FROM json_each(?1))
//! WHERE Jobs.id = j.task_id AND Jobs.lock_by = ?2`. Without statistics SQLite takes
//! `lock_by = ?` as selective, scans every job this worker ever locked, and parses the
//! whole batch's JSON again for each: 2.4 ms per ack at p50 and 8.9 ms at p90 at 470
//! sign-ins/s, about a tenth of the single writer connection's time
//! (docs/benchmarks.md, 2026-11-30). With this row of `sqlite_stat1` the plan is a
//! scan of the batch and a primary-key search per job; apalis' other queries keep
//! their plans. A later `ANALYZE` replaces it with measured figures, which say the same.

use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `ANALYZE sqlite_schema` creates `sqlite_stat1` when it is missing and loads it
/// into this connection without analysing any table.
const UP: &str = "ANALYZE sqlite_schema; \
    DELETE FROM sqlite_stat1 WHERE tbl = 'Jobs' AND idx = 'LIdx'; \
    INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('Jobs', 'LIdx', '1000 1000'); \
    ANALYZE sqlite_schema;";

const DOWN: &str = "DELETE FROM sqlite_stat1 WHERE tbl = 'Jobs' AND idx = 'LIdx'; \
    ANALYZE sqlite_schema;";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_on_sqlite(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_on_sqlite(manager, DOWN).await
    }
}

/// PostgreSQL keeps its own statistics (autovacuum's `ANALYZE`).
async fn run_on_sqlite(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DatabaseBackend::Sqlite {
        return Ok(());
    }
    manager
        .get_connection()
        .execute_unprepared(sql)
        .await
        .map(drop)
}
