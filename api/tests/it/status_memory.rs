//! `GET /auth/status` answered from memory while the operation's job runs in this
//! process (the embedded worker's hand-over): no database read for the poll that
//! finds it pending.

use std::time::{Duration, Instant};

use entity::{async_operation, prelude::AsyncOperation};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, preloader_operation_of, spawn_app, spawn_app_on};

/// How long the provider holds the token request: the test's two steps (one
/// write, one status request) take milliseconds of it.
const HELD: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_pending_operation_whose_job_runs_here_is_answered_from_memory_on_sqlite() {
    a_pending_operation_whose_job_runs_here_is_answered_from_memory(spawn_app().await).await;
}

#[tokio::test]
async fn a_pending_operation_whose_job_runs_here_is_answered_from_memory_on_postgres() {
    let Some(app) = spawn_app_on(Backend::Postgres).await else {
        return;
    };
    a_pending_operation_whose_job_runs_here_is_answered_from_memory(app).await;
}

async fn a_pending_operation_whose_job_runs_here_is_answered_from_memory(app: TestApp) {
    let authorize = app.start_login("mock", "").await;
    let nonce = authorize.nonce.as_deref().expect("OIDC sends a nonce");
    let id_token = app.provider.id_token(&app.provider.claims("held", nonce));
    app.provider
        .given_token_after("held-code", &id_token, HELD)
        .await;
    app.provider
        .given_userinfo(json!({"sub": "held", "email": "held@example.com", "email_verified": true}))
        .await;
    let callback = app
        .get_callback("mock", &format!("code=held-code&state={}", authorize.state))
        .await;
    let location = callback.headers()["location"].to_str().unwrap().to_owned();
    let id = preloader_operation_of(&location).expect("to its preloader");
    // The job runs here: it is waiting on the token endpoint.
    let started = Instant::now();
    while app.provider.token_requests().await.is_empty() {
        assert!(started.elapsed() < HELD, "the job sent its token request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Behind the worker's back, the row is ended; a poll that read it would say so.
    AsyncOperation::update_many()
        .col_expr(async_operation::Column::Status, Expr::value("error"))
        .col_expr(async_operation::Column::ErrorCode, Expr::value("test"))
        .filter(async_operation::Column::Id.eq(id))
        .exec(&app.db)
        .await
        .unwrap();
    let body = status_of(&app, id).await;
    assert!(started.elapsed() < HELD, "answered while the job still ran");
    assert_eq!(body["status"], "pending", "answered from memory: {body}");
    // Once the job has ended (finding the row no longer pending), the database
    // answers again.
    let body = app.wait_for_status(&format!("?operation={id}")).await;
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error"]["code"], "test", "{body}");
}

async fn status_of(app: &TestApp, id: uuid::Uuid) -> Value {
    let response = app.get_status(&format!("?operation={id}")).await;
    response.json().await.expect("a JSON status")
}
