//! Linking a provider adds a way in that outlives a password change and "log out
//! everywhere", so it needs a recent sign-in, and it completes, and is redeemed,
//! only while the session that asked for it is live.

use entity::prelude::{AsyncOperation, Session, SocialAccount};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, Options, TestApp, app_client, operation_status, poll_operation, register,
    rows::set_on_all, spawn_app, spawn_app_on, spawn_app_with, wait_until_finished,
    workers::InProcessWorker,
};

/// A password user's fresh tokens.
async fn password_user(app: &TestApp, email: &str) -> Value {
    let response = register(app, email).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

/// `POST /api/auth/mock/token` linking a mock ID token of `sub` with `access`.
async fn start_link(app: &TestApp, access: &str, sub: &str) -> reqwest::Response {
    let id_token = app
        .provider
        .id_token(&app.provider.claims(sub, "link-nonce"));
    app_client()
        .post(format!("{}/api/auth/mock/token", app.address))
        .bearer_auth(access)
        .json(&json!({"id_token": id_token, "nonce": "link-nonce", "link": true}))
        .send()
        .await
        .unwrap()
}

async fn revoke_every_session(app: &TestApp, access: &str) {
    let response = app_client()
        .post(format!("{}/api/auth/logout?all=1", app.address))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn linking_needs_a_recent_sign_in() {
    let app = spawn_app_with(Options::native()).await.unwrap();
    // A browser whose session began an hour ago.
    app.sign_in(&app.browser, "old-browser").await;
    let tokens = password_user(&app, "old-app@example.com").await;
    set_on_all::<Session>(
        &app.db,
        entity::session::Column::CreatedAt,
        chrono::Utc::now() - chrono::Duration::hours(1),
    )
    .await;

    let operations = app.count(AsyncOperation).await;
    let page = app.get("/auth/mock/login?link=1").await;
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    assert!(page.text().await.unwrap().contains("sign in again"));

    let api = start_link(&app, tokens["access_token"].as_str().unwrap(), "l-1").await;
    assert_eq!(api.status(), StatusCode::FORBIDDEN);
    let body: Value = api.json().await.unwrap();
    assert_eq!(body["error"]["code"], "reauthentication_required");
    assert_eq!(
        app.count(AsyncOperation).await,
        operations,
        "nothing was started"
    );

    // Signing in again makes it possible.
    let fresh = password_user(&app, "fresh-app@example.com").await;
    let api = start_link(&app, fresh["access_token"].as_str().unwrap(), "l-2").await;
    assert_eq!(api.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_link_whose_session_ended_before_its_job_ran_links_nothing() {
    let app = spawn_app_with(Options {
        embedded_worker: false,
        ..Options::native()
    })
    .await
    .unwrap();
    let tokens = password_user(&app, "victim@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    let response = start_link(&app, access, "attacker-sub").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let started: Value = response.json().await.unwrap();
    // No worker yet: the job waits while the owner ends every session.
    assert_eq!(operation_status(&app, &started).await, "pending");
    revoke_every_session(&app, access).await;

    let _worker = InProcessWorker::start(&app.settings);
    let done: Value = poll_operation(&app, &started).await.json().await.unwrap();
    assert_eq!(done["status"], "error", "{done}");
    assert_eq!(done["error"]["code"], "link_session_ended");
    assert_eq!(app.count(SocialAccount).await, 0, "nothing was linked");
}

#[tokio::test]
async fn a_link_that_finished_after_its_session_ended_is_not_redeemed() {
    let app = spawn_app_with(Options::native()).await.unwrap();
    let tokens = password_user(&app, "owner@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    let response = start_link(&app, access, "linked-sub").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let started: Value = response.json().await.unwrap();
    // Wait for the worker to finish it, without redeeming it.
    assert_eq!(wait_until_finished(&app, &started).await, "ok");
    revoke_every_session(&app, access).await;
    let sessions = app.count(Session).await;

    let redeemed = poll_operation(&app, &started).await;
    assert_eq!(redeemed.status(), StatusCode::GONE);
    assert_eq!(app.count(Session).await, sessions, "no session was minted");
}

/// A browser link finished `ok`, not yet redeemed, asked for by the session the
/// browser holds.
async fn finished_browser_link(app: &TestApp) {
    app.sign_in(&app.browser, "browser-owner").await;
    let authorize = app.start_login("mock", "?link=1").await;
    app.given_provider_signs_in(&authorize, "link-code", "second-account")
        .await;
    crate::helpers::assert_to_preloader(
        &app.get_callback("mock", &format!("code=link-code&state={}", authorize.state))
            .await,
    );
    assert_eq!(app.wait_for_status("").await["status"], "ok");
}

#[tokio::test]
async fn a_browser_link_whose_session_is_live_is_redeemed_on_sqlite() {
    a_browser_link_whose_session_is_live_is_redeemed(spawn_app().await).await;
}

#[tokio::test]
async fn a_browser_link_whose_session_is_live_is_redeemed_on_postgres() {
    let Some(app) = spawn_app_on(Backend::Postgres).await else {
        return;
    };
    a_browser_link_whose_session_is_live_is_redeemed(app).await;
}

async fn a_browser_link_whose_session_is_live_is_redeemed(app: TestApp) {
    finished_browser_link(&app).await;
    let sessions = app.count(Session).await;
    let success = app.get_success("").await;
    assert!(
        !crate::helpers::location(&success).starts_with("/auth/error"),
        "{success:?}"
    );
    assert_eq!(
        app.count(Session).await,
        sessions + 1,
        "a session was minted"
    );
    assert_eq!(app.get_me().await.status(), StatusCode::OK);
    assert_eq!(
        app.count(SocialAccount).await,
        2,
        "both accounts are the user's"
    );
}

#[tokio::test]
async fn a_browser_link_that_finished_after_its_session_ended_signs_nobody_in_on_sqlite() {
    a_browser_link_that_finished_after_its_session_ended_signs_nobody_in(spawn_app().await).await;
}

#[tokio::test]
async fn a_browser_link_that_finished_after_its_session_ended_signs_nobody_in_on_postgres() {
    let Some(app) = spawn_app_on(Backend::Postgres).await else {
        return;
    };
    a_browser_link_that_finished_after_its_session_ended_signs_nobody_in(app).await;
}

async fn a_browser_link_that_finished_after_its_session_ended_signs_nobody_in(app: TestApp) {
    finished_browser_link(&app).await;
    // The session that asked is revoked (say, from another device) before the
    // browser redeems.
    use sea_orm::EntityTrait;
    Session::update_many()
        .col_expr(
            entity::session::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(chrono::Utc::now()),
        )
        .exec(&app.db)
        .await
        .unwrap();
    let sessions = app.count(Session).await;
    let success = app.get_success("").await;
    assert!(
        crate::helpers::location(&success).starts_with("/auth/error"),
        "{success:?}"
    );
    assert_eq!(app.count(Session).await, sessions, "no session was minted");
    assert_eq!(app.get_me().await.status(), StatusCode::UNAUTHORIZED);
}
