//! `GET /auth/status`.

use chrono::{Duration, Utc};
use entity::async_operation;
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel, TransactionTrait};
use serde_json::Value;

use crate::helpers::{
    Backend, Options, assert_redirect_to, assert_to_preloader, spawn_app, spawn_app_with,
    spawn_app_without_worker, spawn_app_without_worker_on, workers::InProcessWorker,
};

#[tokio::test]
async fn no_operation_is_a_404_json() {
    let app = spawn_app().await;
    let response = app.get_status("").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn another_browser_cannot_read_the_status() {
    let app = spawn_app().await;
    app.sign_in(&app.browser, "owner").await;
    let id = the_operation(&app).await.id;
    let stranger = app.new_browser();
    assert_eq!(
        stranger
            .get_status(&format!("?operation={id}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // Even with a browser key of its own.
    stranger.start_login("mock", "").await;
    assert_eq!(
        stranger
            .get_status(&format!("?operation={id}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        stranger.get_status("").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn long_poll_answers_as_soon_as_the_operation_finishes() {
    let app = spawn_app_with(Options {
        backend: Backend::Sqlite,
        embedded_worker: false,
        ..Options::default()
    })
    .await
    .unwrap();
    let authorize = app.start_login("mock", "").await;
    assert_to_preloader(&app.return_from_provider(&authorize, "x").await);
    let operation = the_operation(&app).await;
    let db = app.db.clone();
    let finisher = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        worker::operations::mark_error(&db, operation.id, "test", "finished by the test")
            .await
            .unwrap();
    });
    let started = std::time::Instant::now();
    let body: Value = app.get_status("?wait=20").await.json().await.unwrap();
    let waited = started.elapsed();
    finisher.await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["error"]["message"], "finished by the test");
    assert!(
        waited >= std::time::Duration::from_millis(600),
        "it waited for the change: {waited:?}"
    );
    assert!(
        waited < std::time::Duration::from_secs(10),
        "it answered at the change, not at the deadline: {waited:?}"
    );
}

#[tokio::test]
async fn pending_without_wait_answers_at_once() {
    let app = spawn_app_without_worker().await;
    let authorize = app.start_login("mock", "").await;
    app.return_from_provider(&authorize, "x").await;
    let body: Value = app.get_status("").await.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "pending"}));
}

#[tokio::test]
async fn an_operation_no_job_finished_times_out() {
    let app = spawn_app_without_worker().await;
    let authorize = app.start_login("mock", "").await;
    app.return_from_provider(&authorize, "x").await;
    // Age it past operation_timeout (30 s in tests).
    let operation = the_operation(&app).await;
    let mut aged = operation.into_active_model();
    aged.created_at = Set(Utc::now() - Duration::seconds(31));
    aged.update(&app.db).await.unwrap();
    let body: Value = app.get_status("").await.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["error"]["code"], "timeout");
}

#[tokio::test]
async fn the_sweeper_ends_operations_whose_job_never_ran() {
    let app = spawn_app().await;
    // An operation with no job behind it, older than operation_timeout.
    let operation = worker::operations::create_pending(
        &app.db,
        worker::operations::NewOperation {
            kind: worker::operations::KIND_BROWSER,
            provider: "mock".into(),
            redeemer_hash: "nobody".into(),
            next_path: None,
            link: None,
            state_hash: None,
            client_key: None,
        },
    )
    .await
    .unwrap();
    let mut aged = operation.clone().into_active_model();
    aged.created_at = Set(Utc::now() - Duration::seconds(31));
    aged.update(&app.db).await.unwrap();
    let finished = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        loop {
            let current = async_operation::Entity::find_by_id(operation.id)
                .one(&app.db)
                .await
                .unwrap()
                .unwrap();
            if current.status != async_operation::OperationStatus::Pending {
                return current;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the sweep ended the operation");
    assert_eq!(finished.error_code.as_deref(), Some("timeout"));
}

/// A worker that died while its token request was in flight leaves the code in
/// doubt: the next run ends the operation `exchange_interrupted`, and the status
/// offers the same sign-in again (the preloader follows it once), which lands the
/// person signed in on the same `next`.
#[tokio::test]
async fn an_interrupted_exchange_offers_one_restart() {
    let app = spawn_app_without_worker().await;
    let first = app.start_login("mock", "?next=/dash").await;
    let callback = app.return_from_provider(&first, "code-in-doubt").await;
    assert_to_preloader(&callback);
    // What a worker that died a minute ago left: the token request begun, no
    // response stored (a run waits out the provider's timeout before giving up).
    let mut op = the_operation(&app).await.into_active_model();
    op.exchange_started_at = Set(Some(Utc::now() - Duration::minutes(1)));
    op.update(&app.db).await.unwrap();
    let _worker = InProcessWorker::start(&app.settings);

    let status = app.wait_for_status("").await;
    assert_eq!(status["error"]["code"], "exchange_interrupted");
    assert_eq!(status["restart_url"], "/auth/mock/login?next=%2Fdash");

    let again = app.start_login("mock", "?next=%2Fdash").await;
    app.given_provider_signs_in(&again, "code-fresh", "restarted")
        .await;
    let callback = app.return_from_provider(&again, "code-fresh").await;
    assert_to_preloader(&callback);
    let status = app.wait_for_status("").await;
    assert_eq!(status["status"], "ok", "{status}");
    assert!(status.get("restart_url").is_none());
    assert_redirect_to(&app.get_success("").await, "/dash");
    assert_eq!(app.get_me().await.status(), StatusCode::OK);
}

/// Only an interrupted exchange is restarted: other errors send the person to the
/// error page.
#[tokio::test]
async fn other_errors_offer_no_restart() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    app.provider.given_token_error("invalid_grant", 1).await;
    app.return_from_provider(&authorize, "code-refused").await;
    let status = app.wait_for_status("").await;
    assert_eq!(status["error"]["code"], "invalid_grant");
    assert!(status.get("restart_url").is_none(), "{status}");
}

/// With separate workers on SQLite, a long poll hears of a finish committed by
/// another connection (another process) through the commit watch at once, not at
/// its re-read, which is only a 5 s backstop now.
#[tokio::test]
async fn a_finish_committed_by_another_process_answers_the_long_poll_at_once_on_sqlite() {
    let app = spawn_app_without_worker().await;
    let authorize = app.start_login("mock", "").await;
    app.return_from_provider(&authorize, "code-elsewhere").await;
    let id = the_operation(&app).await.id;
    // Its own connection to the file, as a `worker` process has.
    let other = sea_orm::Database::connect(&app.settings.database_url)
        .await
        .unwrap();
    let (response, committed) = tokio::join!(app.get_status("?wait=20"), async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            worker::operations::mark_error(&other, id, "provider_error", "Finished elsewhere.")
                .await
                .unwrap()
        );
        std::time::Instant::now()
    });
    let waited = committed.elapsed();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert!(
        waited < std::time::Duration::from_secs(2),
        "answered {waited:?} after the commit (the re-read backstop is 5 s)"
    );
}

/// With separate workers on PostgreSQL, the `NOTIFY` of a finish carries what the
/// finish wrote, and the waiting long poll answers from it without reading the row
/// again: here the row is deleted in the transaction that finished it, so a poll
/// that read it again would find nothing (a 404).
#[tokio::test]
async fn a_finish_announced_by_another_process_answers_the_long_poll_from_the_announcement() {
    let Some(app) = spawn_app_without_worker_on(Backend::Postgres).await else {
        return;
    };
    let authorize = app.start_login("mock", "").await;
    app.return_from_provider(&authorize, "code-announced").await;
    let id = the_operation(&app).await.id;
    let other = sea_orm::Database::connect(&app.settings.database_url)
        .await
        .unwrap();
    let (response, ()) = tokio::join!(app.get_status("?wait=20"), async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let txn = other.begin().await.unwrap();
        let finished = worker::operations::mark_error(&txn, id, "provider_error", "Announced.");
        assert!(finished.await.unwrap());
        async_operation::Entity::delete_by_id(id)
            .exec(&txn)
            .await
            .unwrap();
        txn.commit().await.unwrap();
    });
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error"]["message"], "Announced.", "{body}");
}

/// The one operation of a test's app.
#[tokio::test]
async fn a_finished_operation_asked_for_by_id_is_answered_from_memory() {
    let app = spawn_app().await;
    app.sign_in(&app.browser, "remembered").await;
    let operation = the_operation(&app).await;
    assert_eq!(operation.status, async_operation::OperationStatus::Ok);
    let ask = |query: String| {
        let app = &app;
        async move { app.get_status(&query).await }
    };
    // The row is gone from the database: only the copy in memory can answer.
    async_operation::Entity::delete_by_id(operation.id)
        .exec(&app.db)
        .await
        .unwrap();
    let by_id = ask(format!("?operation={}", operation.id)).await;
    assert_eq!(by_id.status(), StatusCode::OK);
    assert_eq!(by_id.json::<Value>().await.unwrap()["status"], "ok");
    // Without the id ("this browser's latest") the database answers, and has none.
    assert_eq!(ask(String::new()).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_malformed_operation_id_is_a_400_json() {
    let app = spawn_app().await;
    for id in ["not-an-id", "1234", "%00", ""] {
        let response = app.get_status(&format!("?operation={id}")).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{id}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{id}: {body}");
    }
}

async fn the_operation(app: &crate::helpers::TestApp) -> async_operation::Model {
    async_operation::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .expect("an operation was recorded")
}
