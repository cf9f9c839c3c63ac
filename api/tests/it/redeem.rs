//! Redeeming a finished sign-in: only soon after it finished, only by the browser
//! that started it while it still holds its key, and together with the session it
//! starts or not at all.

use entity::prelude::{AsyncOperation, Session};
use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::helpers::{
    Options, TestApp, app_client, assert_to_preloader, location, poll_operation, rows::set_on_all,
    spawn_app, spawn_app_with, wait_until_finished,
};

/// Runs `browser`'s sign-in up to `ok` on the status endpoint, without redeeming.
async fn finish_without_redeeming(app: &TestApp, browser: &crate::helpers::Browser, sub: &str) {
    let authorize = browser.start_login("mock", "").await;
    let code = format!("code-{sub}");
    app.given_provider_signs_in(&authorize, &code, sub).await;
    assert_to_preloader(
        &browser
            .get_callback("mock", &format!("code={code}&state={}", authorize.state))
            .await,
    );
    assert_eq!(browser.wait_for_status("").await["status"], "ok");
}

#[tokio::test]
async fn an_ok_operation_left_unredeemed_past_its_window_is_refused() {
    let app = spawn_app().await;
    finish_without_redeeming(&app, &app.browser, "left-open").await;
    // It finished six minutes ago.
    set_on_all::<AsyncOperation>(
        &app.db,
        entity::async_operation::Column::UpdatedAt,
        chrono::Utc::now() - chrono::Duration::minutes(6),
    )
    .await;
    let success = app.get_success("").await;
    assert!(location(&success).starts_with("/auth/error"), "{success:?}");
    assert_eq!(app.count(Session).await, 0);
    assert_eq!(app.get_me().await.status(), StatusCode::UNAUTHORIZED);

    // Within the window it is redeemed as before.
    let other = app.new_browser();
    finish_without_redeeming(&app, &other, "prompt").await;
    crate::helpers::assert_redirect_to(&other.get_success("").await, "/");
}

#[tokio::test]
async fn logout_forgets_the_browser_key_so_the_next_person_gets_no_session() {
    let app = spawn_app().await;
    // Two tabs start a sign-in; the first one is redeemed, the second finishes
    // but is never redeemed (its tab was closed).
    let first = app.start_login("mock", "").await;
    let second = app.start_login("mock", "").await;
    let mut operations = Vec::new();
    for (authorize, code) in [(&first, "code-tab-1"), (&second, "code-tab-2")] {
        app.given_provider_signs_in(authorize, code, "first-person")
            .await;
        operations.push(assert_to_preloader(
            &app.get_callback("mock", &format!("code={code}&state={}", authorize.state))
                .await,
        ));
    }
    for operation in &operations {
        let status = app
            .wait_for_status(&format!("?operation={operation}"))
            .await;
        assert_eq!(status["status"], "ok");
    }
    crate::helpers::assert_redirect_to(
        &app.get_success(&format!("?operation={}", operations[0]))
            .await,
        "/",
    );
    let logout = app.post_logout().await;
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let removed = logout
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("signin_browser=") && c.contains("Max-Age=0"));
    assert!(removed, "the browser key is removed: {logout:?}");

    // The next person at this browser opens the success page.
    let sessions = app.count(Session).await;
    let success = app
        .get_success(&format!("?operation={}", operations[1]))
        .await;
    assert!(location(&success).starts_with("/auth/error"), "{success:?}");
    assert_eq!(app.count(Session).await, sessions, "no session was minted");
    assert_eq!(app.get_me().await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_app_redeem_that_cannot_start_its_session_leaves_the_operation_redeemable() {
    let app = spawn_app_with(Options::native()).await.unwrap();
    let id_token = app
        .provider
        .id_token(&app.provider.claims("atomic-sub", "atomic-nonce"));
    let started: Value = app_client()
        .post(format!("{}/api/auth/mock/token", app.address))
        .json(&json!({"id_token": id_token, "nonce": "atomic-nonce"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wait_until_finished(&app, &started).await, "ok");
    // Sessions cannot be written for now.
    app.db
        .execute_unprepared(
            "CREATE TRIGGER no_sessions BEFORE INSERT ON session \
             BEGIN SELECT RAISE(ABORT, 'sessions are read-only'); END",
        )
        .await
        .unwrap();
    let failed = poll_operation(&app, &started).await;
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    app.db
        .execute_unprepared("DROP TRIGGER no_sessions")
        .await
        .unwrap();
    // The redemption rolled back with the session: the tokens still come, once.
    let delivered = poll_operation(&app, &started).await;
    assert_eq!(delivered.status(), StatusCode::OK);
    let body: Value = delivered.json().await.unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    assert!(body["tokens"]["access_token"].is_string());
    assert_eq!(
        poll_operation(&app, &started).await.status(),
        StatusCode::GONE
    );
}
