//! The index of operations by status becomes an index of *pending* operations only
//! (`WHERE status = 'pending'`), on both databases.
//!
//! Every query that looks for operations by status looks for pending ones (the
//! admission cap, the timeout sweep, the queue metrics). The full `(status,
//! created_at)` index also held every finished operation, and PostgreSQL's plans
//! used it for statements keyed by id: on a new database, before autovacuum's first
//! `ANALYZE`, the generic plans cached for the connection's prepared statements
//! took `status = $n` as selective as `id = $n`, so the success route's redeem
//! (`… WHERE id = $3 AND status = 'ok' …`) scanned every `ok` operation ever made,
//! 700 to 970 buffers a call at 170 sign-ins/s, and grew with the table
//! (docs/benchmarks.md, 2026-11-30, sixth sitting). A partial index cannot serve a
//! bound `status = $n`, so those statements take the primary key; the pending
//! queries spell the status as a literal (`operations::is_pending`) and use it. It is
//! also smaller: a finished operation leaves it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: [&str; 2] = [
    "DROP INDEX IF EXISTS idx_async_operation_status_created",
    "CREATE INDEX IF NOT EXISTS idx_async_operation_pending \
     ON async_operation (created_at) WHERE status = 'pending'",
];

const DOWN: [&str; 2] = [
    "DROP INDEX IF EXISTS idx_async_operation_pending",
    "CREATE INDEX IF NOT EXISTS idx_async_operation_status_created \
     ON async_operation (status, created_at)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, DOWN).await
    }
}

/// The same SQL on SQLite and PostgreSQL, one statement at a time.
async fn run(manager: &SchemaManager<'_>, statements: [&str; 2]) -> Result<(), DbErr> {
    for sql in statements {
        manager.get_connection().execute_unprepared(sql).await?;
    }
    Ok(())
}
