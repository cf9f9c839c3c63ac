//! Operator endpoints on the public listener: `/healthz` (the process is alive) and
//! `/readyz` (the database answers and its migrations are current). They say what
//! is wrong in a word; the details go to the log. `/metrics` is on a listener of
//! its own (`worker::metrics::MetricsListener`).

use migration::{Migrator, MigratorTrait};
use poem::{
    IntoResponse, Response, handler,
    http::{StatusCode, header},
    web::{Data, Json},
};
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::state::AppState;

/// `GET /healthz` — 200 while the process serves requests.
#[handler]
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"}))
        .with_header(header::CACHE_CONTROL, "no-store")
        .into_response()
}

/// `GET /readyz` — 200 when the database answers and no migration is pending;
/// 503 with a generic reason otherwise (the database's own error text, which can
/// name hosts, users and tables, goes to the log only).
#[handler]
pub async fn readyz(Data(state): Data<&AppState>) -> Response {
    let problem = match state.db.execute_unprepared("SELECT 1").await {
        Err(error) => {
            tracing::warn!(%error, "not ready: the database does not answer");
            Some("database unavailable")
        }
        Ok(_) => match Migrator::get_pending_migrations(&state.db).await {
            Ok(pending) if pending.is_empty() => None,
            Ok(pending) => {
                tracing::warn!(pending = pending.len(), "not ready: migrations pending");
                Some("migrations pending")
            }
            Err(error) => {
                tracing::warn!(%error, "not ready: cannot read the applied migrations");
                Some("database unavailable")
            }
        },
    };
    let (status, body) = match problem {
        None => (StatusCode::OK, json!({"status": "ready"})),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "reason": reason}),
        ),
    };
    Json(body)
        .with_status(status)
        .with_header(header::CACHE_CONTROL, "no-store")
        .into_response()
}
