//! Prometheus metrics of both binaries, recorded with the `metrics` facade. The
//! recorder is process-wide; each binary serves it at `/metrics` on a listener of
//! its own ([`MetricsListener`]): `metrics.listen` for `api`, `worker.metrics_listen`
//! for a `worker`.
//!
//! | metric | labels |
//! | --- | --- |
//! | `signin_http_requests_total`, `signin_http_request_duration_seconds` | `method`, `route`, `status` |
//! | `signin_jobs_started_total` | `provider` |
//! | `signin_jobs_handed_over_total` (jobs run by the process that queued them, see `jobs::handoff`) | `provider` |
//! | `signin_jobs_finished_total` | `provider`, `outcome` (`ok`/`error`), `code` |
//! | `signin_jobs_retried_total` | `provider`, `step` |
//! | `signin_jobs_resumed_total` (re-runs that resumed from a stored token response) | — |
//! | `signin_identity_conflicts_total` (a concurrent run linked the same account first) | — |
//! | `signin_operation_duration_seconds` (callback to finished) | `provider`, `outcome` |
//! | `signin_provider_request_duration_seconds` | `provider`, `endpoint` (`token`, `userinfo`, `discovery`) |
//! | `signin_queue_depth`, `signin_pending_operations`, `signin_oldest_pending_operation_age_seconds` | — |
//! | `signin_rows_swept_total` (rows deleted by [`crate::sweep`]) | `table` (`async_operation`, `session`, `refresh_token`) |

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::OnceLock, time::Duration};

use anyhow::Context;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::CONTENT_TYPE,
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use chrono::Utc;
use entity::async_operation::{self, Entity as AsyncOperation};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sea_orm::{DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};

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
    let pending = AsyncOperation::find().filter(crate::operations::is_pending());
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

/// The `/metrics` listener of either binary (`metrics.listen` for `api`,
/// `worker.metrics_listen` for a `worker`), kept off the public port: only
/// operators' scrapers reach it, and only their scrapes cost the database reads
/// behind the queue gauges.
pub struct MetricsListener {
    listener: TcpListener,
    /// The address bound (the setting may say port 0).
    pub addr: SocketAddr,
}

impl MetricsListener {
    /// Installs the recorder and binds `addr`; `key` names the setting in errors.
    pub async fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<Self> {
        Self::bind_first_free(&[addr], key).await
    }

    /// Installs the recorder and binds the first of `addrs` not in use (by another
    /// `worker` on the same host, say); `key` names the setting in errors.
    pub async fn bind_first_free(addrs: &[SocketAddr], key: &str) -> anyhow::Result<Self> {
        let _ = handle();
        let mut taken = Vec::new();
        for &addr in addrs {
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    let addr = listener
                        .local_addr()
                        .context("the metrics listener has no address")?;
                    // `in_use`: the addresses tried before it (another worker's).
                    tracing::info!(%addr, in_use = ?taken, "metrics at /metrics");
                    return Ok(Self { listener, addr });
                }
                Err(error) if error.kind() == std::io::ErrorKind::AddrInUse && addrs.len() > 1 => {
                    taken.push(addr);
                }
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("{key}: cannot serve metrics on {addr}"));
                }
            }
        }
        anyhow::bail!("{key}: cannot serve metrics: {taken:?} are all in use; set {key}")
    }

    /// Answers `GET /metrics` (anything else 404) until `shutdown`, refreshing the
    /// queue gauges from `db` (a reader) on each scrape.
    pub async fn serve(self, db: DatabaseConnection, shutdown: impl Future<Output = ()>) {
        let pool = raw_pool(&db);
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                () = &mut shutdown => return,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "metrics listener: cannot accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (db, pool) = (db.clone(), pool.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let (db, pool) = (db.clone(), pool.clone());
                    async move { Ok::<_, Infallible>(answer(&request, &db, &pool).await) }
                });
                let connection =
                    http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "metrics connection ended");
                }
            });
        }
    }
}

async fn answer(
    request: &Request<Incoming>,
    db: &DatabaseConnection,
    pool: &DbPool,
) -> Response<Full<Bytes>> {
    let response = if request.method() == Method::GET && request.uri().path() == "/metrics" {
        Response::builder()
            .header(CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(render(db, pool).await)))
    } else {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::default())
    };
    response.expect("a static status and header make a valid response")
}

/// The raw pool behind `db`, for the job-table count.
fn raw_pool(db: &DatabaseConnection) -> DbPool {
    match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => {
            DbPool::Postgres(db.get_postgres_connection_pool().clone())
        }
        _ => DbPool::Sqlite(db.get_sqlite_connection_pool().clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpListener};

    use super::MetricsListener;

    #[tokio::test]
    async fn a_taken_address_moves_to_the_next_and_all_taken_is_an_error() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();

        let next = MetricsListener::bind_first_free(&[taken, any], "worker.metrics_listen")
            .await
            .unwrap();
        assert_ne!(next.addr, taken);

        // One address (the setting was given): taken is an error naming the setting.
        let error = MetricsListener::bind(taken, "worker.metrics_listen")
            .await
            .err()
            .expect("taken");
        assert!(
            format!("{error:#}").contains("worker.metrics_listen"),
            "{error:#}"
        );
        let error = MetricsListener::bind_first_free(&[taken, taken], "worker.metrics_listen")
            .await
            .err()
            .expect("all taken");
        assert!(format!("{error:#}").contains("all in use"), "{error:#}");
    }
}
