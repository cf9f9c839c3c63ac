//! Operator endpoints: `/healthz` (the process is alive), `/readyz` (the database
//! answers and its migrations are current) and `/metrics` (Prometheus).

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
/// 503 with the reason otherwise.
#[handler]
pub async fn readyz(Data(state): Data<&AppState>) -> Response {
    let problem = match state.db.execute_unprepared("SELECT 1").await {
        Err(error) => Some(format!("database unreachable: {error}")),
        Ok(_) => match Migrator::get_pending_migrations(&state.db).await {
            Ok(pending) if pending.is_empty() => None,
            Ok(pending) => Some(format!("{} migrations pending", pending.len())),
            Err(error) => Some(format!("cannot read migrations: {error}")),
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

/// `GET /metrics` — the Prometheus text exposition.
#[handler]
pub async fn metrics(Data(state): Data<&AppState>) -> Response {
    worker::metrics::render(&state.db, &state.pool)
        .await
        .with_content_type("text/plain; version=0.0.4")
        .into_response()
}
