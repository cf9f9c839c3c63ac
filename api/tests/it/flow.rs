//! The whole path, on SQLite and (when configured) PostgreSQL, with the worker
//! embedded or running separately.

use std::time::{Duration, Instant};

use entity::prelude::{SocialAccount, UserProfile};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    Backend, TestApp, assert_redirect_to, assert_to_preloader, spawn_app, spawn_app_on,
    spawn_app_without_worker_on, workers::InProcessWorker,
};

async fn happy_path(app: TestApp) {
    let me = app.sign_in(&app.browser, "user-1").await;
    assert_eq!(me["email"], "user-1@example.com");
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["first_name"], "Grace");
    assert_eq!(me["last_name"], "Hopper");
    assert_eq!(me["display_name"], "Grace Hopper");
    assert_eq!(me["avatar_url"], "https://example.com/grace.png");
    assert_eq!(me["providers"], json!(["mock"]));
    let index = app.get("/").await.text().await.unwrap();
    assert!(index.contains("Hi, Grace"), "{index}");
    assert!(index.contains(r#"<form method="post" action="/auth/logout">"#));

    // The token request carried the PKCE verifier and the client credentials.
    let token_request = &app.provider.token_requests().await[0];
    let body = String::from_utf8_lossy(&token_request.body).into_owned();
    assert!(
        body.contains("grant_type=authorization_code") && body.contains("code=code-"),
        "{body}"
    );
    assert!(body.contains("code_verifier="), "{body}");
    assert!(
        token_request
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );
}

async fn second_sign_in_finds_the_same_user(app: TestApp) {
    let first = app.sign_in(&app.browser, "user-2").await;
    let other_browser = app.new_browser();
    let second = app.sign_in(&other_browser, "user-2").await;
    assert_eq!(first["id"], second["id"]);
    assert_eq!(app.count(UserProfile).await, 1);
    assert_eq!(app.count(SocialAccount).await, 1);
}

#[tokio::test]
async fn happy_path_on_sqlite() {
    happy_path(spawn_app().await).await;
}

#[tokio::test]
async fn happy_path_on_postgres() {
    let Some(app) = spawn_app_on(Backend::Postgres).await else {
        return;
    };
    happy_path(app).await;
}

#[tokio::test]
async fn second_sign_in_finds_the_same_user_on_sqlite() {
    second_sign_in_finds_the_same_user(spawn_app().await).await;
}

#[tokio::test]
async fn second_sign_in_finds_the_same_user_on_postgres() {
    let Some(app) = spawn_app_on(Backend::Postgres).await else {
        return;
    };
    second_sign_in_finds_the_same_user(app).await;
}

/// `worker.embedded = false`: the api only enqueues; two separate workers (own
/// pools, own queues, as `worker` processes have) finish the sign-ins.
async fn separate_workers_complete_the_flow(backend: Backend) {
    let Some(app) = spawn_app_without_worker_on(backend).await else {
        return;
    };
    let _workers = [
        InProcessWorker::start(&app.settings),
        InProcessWorker::start(&app.settings),
    ];
    let me = app.sign_in(&app.browser, "user-sep").await;
    assert_eq!(me["email"], "user-sep@example.com");
    let other = app.new_browser();
    let again = app.sign_in(&other, "user-sep").await;
    assert_eq!(me["id"], again["id"]);
}

#[tokio::test]
async fn separate_workers_complete_the_flow_on_sqlite() {
    separate_workers_complete_the_flow(Backend::Sqlite).await;
}

#[tokio::test]
async fn separate_workers_complete_the_flow_on_postgres() {
    separate_workers_complete_the_flow(Backend::Postgres).await;
}

/// A separate worker hears of a pushed job at once (SQLite: its commit watch;
/// PostgreSQL: `LISTEN`), not at its next poll: with the poll stretched to two
/// minutes, each sign-in after the first (pushed after the worker's first poll
/// surely ran, since the first one finished) completes in well under a second.
async fn a_separate_worker_takes_a_pushed_job_without_polling(backend: Backend) {
    let Some(app) = spawn_app_without_worker_on(backend).await else {
        return;
    };
    let _worker =
        InProcessWorker::start_polling_every(&app.settings, Some(Duration::from_secs(120)));
    app.sign_in(&app.browser, "user-wake").await;
    // Without a wake-up a job waits for the poll or the 5 s heartbeat; one sign-in
    // might land just before a heartbeat by luck, three in a row cannot.
    for _ in 0..3 {
        let started = Instant::now();
        app.sign_in(&app.new_browser(), "user-wake").await;
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "the job waited for a poll or a heartbeat: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_separate_worker_takes_a_pushed_job_without_polling_on_sqlite() {
    a_separate_worker_takes_a_pushed_job_without_polling(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_separate_worker_takes_a_pushed_job_without_polling_on_postgres() {
    a_separate_worker_takes_a_pushed_job_without_polling(Backend::Postgres).await;
}

#[tokio::test]
async fn two_tabs_signing_in_at_once_both_succeed() {
    let app = spawn_app().await;
    // Both tabs start before either comes back.
    let tab_a = app.start_login("mock", "?next=/a").await;
    let tab_b = app.start_login("mock", "?next=/b").await;
    assert_ne!(tab_a.state, tab_b.state);
    app.given_provider_signs_in(&tab_a, "code-tab-a", "tabs")
        .await;
    app.given_provider_signs_in(&tab_b, "code-tab-b", "tabs")
        .await;
    // Each tab comes back and loads its preloader; then both wait and finish.
    let mut operations = Vec::new();
    for (tab, code, next) in [(&tab_a, "code-tab-a", "/a"), (&tab_b, "code-tab-b", "/b")] {
        let callback = app
            .get_callback("mock", &format!("code={code}&state={}", tab.state))
            .await;
        assert_to_preloader(&callback);
        let id = app.preloader_operation().await;
        operations.push((id, next));
    }
    assert_ne!(operations[0].0, operations[1].0);
    for (id, next) in &operations {
        assert_eq!(
            app.wait_for_status(&format!("?operation={id}")).await["status"],
            "ok"
        );
        assert_redirect_to(&app.get_success(&format!("?operation={id}")).await, next);
    }
    assert_eq!(app.get_me().await.status(), StatusCode::OK);
    // One person in two tabs: one user, one link.
    assert_eq!(app.count(UserProfile).await, 1);
    assert_eq!(app.count(SocialAccount).await, 1);
}

/// Both callbacks land before either preloader loads (a slow page, a tab opened in
/// the background): each preloader still follows the operation its own callback
/// made. One tab's sign-in fails and the other's succeeds, and each shows its own.
#[tokio::test]
async fn two_tabs_whose_callbacks_land_before_either_preloader_each_follow_their_own() {
    let app = spawn_app().await;
    let tab_a = app.start_login("mock", "?next=/a").await;
    let tab_b = app.start_login("mock", "?next=/b").await;
    // Tab A's ID token carries tab B's nonce, so its sign-in fails.
    let wrong_nonce = app.provider.claims("tabs", tab_b.nonce.as_deref().unwrap());
    app.provider
        .given_token_ok("code-tab-a", &app.provider.id_token(&wrong_nonce))
        .await;
    app.given_provider_signs_in(&tab_b, "code-tab-b", "tabs")
        .await;
    let mut preloaders = Vec::new();
    for (tab, code) in [(&tab_a, "code-tab-a"), (&tab_b, "code-tab-b")] {
        let callback = app
            .get_callback("mock", &format!("code={code}&state={}", tab.state))
            .await;
        assert_to_preloader(&callback);
        preloaders.push(crate::helpers::location(&callback).to_owned());
    }
    // Only now do the two pages load, tab A's first.
    let a = app.preloader_operation_at(&preloaders[0]).await;
    let b = app.preloader_operation_at(&preloaders[1]).await;
    assert_ne!(a, b, "tab A must not follow tab B's (latest) operation");
    let status_a = app.wait_for_status(&format!("?operation={a}")).await;
    assert_eq!(status_a["status"], "error", "{status_a}");
    assert_eq!(
        app.wait_for_status(&format!("?operation={b}")).await["status"],
        "ok"
    );
    assert_redirect_to(&app.get_success(&format!("?operation={b}")).await, "/b");
    assert_eq!(app.count(UserProfile).await, 1);
    assert_eq!(app.count(SocialAccount).await, 1);
}

/// Rows in the job table, whatever their state.
async fn job_rows(app: &TestApp) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let table = match app.db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => "apalis.jobs",
        _ => "Jobs",
    };
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// A finished job leaves the queue table within the sweeper's second (no used code
/// stays stored, and apalis-sqlite's acknowledgements stay cheap).
async fn finished_jobs_are_deleted(app: TestApp) {
    app.sign_in(&app.browser, "user-jobs").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while job_rows(&app).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the finished job is still in the queue table"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn finished_jobs_are_deleted_on_sqlite() {
    finished_jobs_are_deleted(spawn_app().await).await;
}

#[tokio::test]
async fn finished_jobs_are_deleted_on_postgres() {
    let Some(app) = spawn_app_on(Backend::Postgres).await else {
        return;
    };
    finished_jobs_are_deleted(app).await;
}
