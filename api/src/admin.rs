//! `api admin …`: operator commands against the configured database — list stuck
//! or failed operations, expire or retry one, and show queue statistics.

use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::Subcommand;
use entity::async_operation::{self, Entity as AsyncOperation, OperationStatus};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;
use worker::{
    config::Settings,
    db::{Database, DbPool},
    jobs::QUEUE_NAME,
    operations,
};

/// Operator commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// List operations, newest first.
    Operations {
        /// `pending`, `ok` or `error`.
        #[arg(long)]
        status: Option<String>,
        /// Only operations older than this (e.g. `2m`): with `--status pending`, the stuck ones.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// End a pending operation with `error` (`expired_by_operator`).
    Expire { id: Uuid },
    /// Queue the job of a pending operation again (e.g. after its job was lost).
    Retry { id: Uuid },
    /// Queue depth, pending operations and job counts by state.
    Queue,
}

/// Runs one admin command.
pub async fn run(settings: Settings, command: AdminCommand) -> anyhow::Result<()> {
    let db = Database::connect(&settings, worker::config::Process::Api).await?;
    db.migrate().await?;
    match command {
        AdminCommand::Operations {
            status,
            older_than,
            limit,
        } => list(&db, status, older_than, limit).await,
        AdminCommand::Expire { id } => {
            let done = operations::mark_error(
                &db.conn,
                id,
                "expired_by_operator",
                "This sign-in was cancelled. Please try again.",
            )
            .await?;
            if !done {
                bail!("operation {id} does not exist or is not pending");
            }
            println!("operation {id} expired");
            Ok(())
        }
        AdminCommand::Retry { id } => retry(&db, id).await,
        AdminCommand::Queue => {
            let stats = worker::metrics::queue_stats(&db.conn, &db.pool).await?;
            println!("jobs waiting or running:      {}", stats.queued_jobs);
            println!("pending operations:           {}", stats.pending_operations);
            println!(
                "oldest pending operation age: {:.1} s",
                stats.oldest_pending_age.as_secs_f64()
            );
            for (state, count) in job_counts(&db.pool).await? {
                println!("jobs {state:<10} {count}");
            }
            Ok(())
        }
    }
}

async fn list(
    db: &Database,
    status: Option<String>,
    older_than: Option<Duration>,
    limit: u64,
) -> anyhow::Result<()> {
    let mut query = AsyncOperation::find()
        .order_by_desc(async_operation::Column::CreatedAt)
        .limit(limit);
    if let Some(status) = status {
        let status = match status.as_str() {
            "pending" => OperationStatus::Pending,
            "ok" => OperationStatus::Ok,
            "error" => OperationStatus::Error,
            other => bail!("--status: `{other}` is not pending, ok or error"),
        };
        query = query.filter(async_operation::Column::Status.eq(status));
    }
    if let Some(age) = older_than {
        query = query.filter(
            async_operation::Column::CreatedAt.lt(Utc::now() - chrono::Duration::from_std(age)?),
        );
    }
    let rows = query.all(&db.conn).await?;
    println!(
        "{:<36}  {:<7}  {:<12}  {:>8}  error",
        "id", "status", "provider", "age"
    );
    for op in &rows {
        let age = Utc::now()
            .signed_duration_since(op.created_at)
            .num_seconds();
        println!(
            "{:<36}  {:<7}  {:<12}  {:>7}s  {}",
            op.id,
            op.status.as_str(),
            op.provider,
            age,
            op.error_code.as_deref().unwrap_or("")
        );
    }
    println!("{} operation(s)", rows.len());
    Ok(())
}

async fn retry(db: &Database, id: Uuid) -> anyhow::Result<()> {
    let operation = operations::find(&db.conn, id)
        .await?
        .with_context(|| format!("operation {id} does not exist"))?;
    if operation.status != OperationStatus::Pending {
        bail!(
            "operation {id} is {}; only pending operations can be retried",
            operation.status.as_str()
        );
    }
    let key = id.to_string();
    let updated = match &db.pool {
        DbPool::Sqlite(pool) => sea_orm::sqlx::query(
            "UPDATE Jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL, attempts = 0 WHERE job_type = ? AND idempotency_key = ?",
        )
        .bind(QUEUE_NAME)
        .bind(&key)
        .execute(pool)
        .await?
        .rows_affected(),
        DbPool::Postgres(pool) => sea_orm::sqlx::query(
            "UPDATE apalis.jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL, attempts = 0 WHERE job_type = $1 AND idempotency_key = $2",
        )
        .bind(QUEUE_NAME)
        .bind(&key)
        .execute(pool)
        .await?
        .rows_affected(),
    };
    if updated == 0 {
        bail!("no job is stored for operation {id}; expire it instead");
    }
    println!("operation {id}: job queued again");
    Ok(())
}

async fn job_counts(pool: &DbPool) -> anyhow::Result<Vec<(String, i64)>> {
    Ok(match pool {
        DbPool::Sqlite(pool) => sea_orm::sqlx::query_as::<_, (String, i64)>(
            "SELECT status, COUNT(*) FROM Jobs WHERE job_type = ? GROUP BY status ORDER BY status",
        )
        .bind(QUEUE_NAME)
        .fetch_all(pool)
        .await?,
        DbPool::Postgres(pool) => sea_orm::sqlx::query_as::<_, (String, i64)>(
            "SELECT status, COUNT(*) FROM apalis.jobs WHERE job_type = $1 GROUP BY status ORDER BY status",
        )
        .bind(QUEUE_NAME)
        .fetch_all(pool)
        .await?,
    })
}
