//! Prometheus metrics of both binaries, recorded with the `metrics` facade. The
//! recorder is process-wide; `api` renders it at `/metrics`, a `worker` process
//! serves it on `worker.metrics_listen`.
//!
//! | metric | labels |
//! | --- | --- |
//! | `signin_http_requests_total`, `signin_http_request_duration_seconds` | `method`, `route`, `status` |
//! | `signin_jobs_started_total` | `provider` |
//! | `signin_jobs_finished_total` | `provider`, `outcome` (`ok`/`error`), `code` |
//! | `signin_jobs_retried_total` | `provider`, `step` |
//! | `signin_jobs_resumed_total` (re-runs that resumed from a stored token response) | — |
//! | `signin_identity_conflicts_total` (a concurrent run linked the same account first) | — |
//! | `signin_operation_duration_seconds` (callback to finished) | `provider`, `outcome` |
//! | `signin_provider_request_duration_seconds` | `provider`, `endpoint` (`token`, `userinfo`, `discovery`) |
//! | `signin_queue_depth`, `signin_pending_operations`, `signin_oldest_pending_operation_age_seconds` | — |
//! | `signin_rows_swept_total` (rows deleted by [`crate::sweep`]) | `table` (`async_operation`, `session`, `refresh_token`) |

use std::{sync::OnceLock, time::Duration};

use chrono::Utc;
use entity::async_operation::{self, Entity as AsyncOperation, OperationStatus};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};

use crate::db::DbPool;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets from 1 ms to 30 s.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the recorder once per process and returns its handle.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS)
                .expect("valid buckets")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder (a test harness) may be installed already; keep ours for rendering.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Renders the text exposition after refreshing the queue gauges from `db`.
pub async fn render(db: &DatabaseConnection, pool: &DbPool) -> String {
    if let Err(error) = refresh_queue_gauges(db, pool).await {
        tracing::warn!(%error, "could not read queue statistics for /metrics");
    }
    handle().render()
}

/// Queue statistics for gauges and the admin CLI.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueStats {
    /// Jobs waiting or claimed but not finished.
    pub queued_jobs: i64,
    pub pending_operations: u64,
    pub oldest_pending_age: Duration,
}

/// Reads queue depth and pending operations.
pub async fn queue_stats(db: &DatabaseConnection, pool: &DbPool) -> Result<QueueStats, DbErr> {
    let pending =
        AsyncOperation::find().filter(async_operation::Column::Status.eq(OperationStatus::Pending));
    let pending_operations = pending.clone().count(db).await?;
    let oldest = pending
        .order_by_asc(async_operation::Column::CreatedAt)
        .one(db)
        .await?;
    let oldest_pending_age = oldest
        .map(|op| {
            Utc::now()
                .signed_duration_since(op.created_at)
                .to_std()
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let queued_jobs = match pool {
        DbPool::Sqlite(pool) => sea_orm::sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM Jobs WHERE job_type = ? AND status IN ('Pending', 'Queued', 'Running')",
        )
        .bind(crate::jobs::QUEUE_NAME)
        .fetch_one(pool)
        .await
        .map_err(|e| DbErr::Custom(e.to_string()))?,
        DbPool::Postgres(pool) => sea_orm::sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = $1 AND status IN ('Pending', 'Queued', 'Running')",
        )
        .bind(crate::jobs::QUEUE_NAME)
        .fetch_one(pool)
        .await
        .map_err(|e| DbErr::Custom(e.to_string()))?,
    };
    Ok(QueueStats {
        queued_jobs,
        pending_operations,
        oldest_pending_age,
    })
}

async fn refresh_queue_gauges(db: &DatabaseConnection, pool: &DbPool) -> Result<(), DbErr> {
    let stats = queue_stats(db, pool).await?;
    metrics::gauge!("signin_queue_depth").set(stats.queued_jobs as f64);
    metrics::gauge!("signin_pending_operations").set(stats.pending_operations as f64);
    metrics::gauge!("signin_oldest_pending_operation_age_seconds")
        .set(stats.oldest_pending_age.as_secs_f64());
    Ok(())
}

/// For a `worker` process: installs the recorder with its own small HTTP listener
/// serving `/metrics` on `addr`, and refreshes the queue gauges every 5 s.
pub fn serve_for_worker(
    addr: std::net::SocketAddr,
    db: DatabaseConnection,
    pool: DbPool,
) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS)?
        .install()
        .map_err(|e| {
            anyhow::anyhow!("worker.metrics_listen: cannot serve metrics on {addr}: {e}")
        })?;
    tracing::info!(%addr, "worker metrics at /metrics");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            if let Err(error) = refresh_queue_gauges(&db, &pool).await {
                tracing::debug!(%error, "could not refresh queue gauges");
            }
        }
    });
    Ok(())
}
