//! `GET /auth/{provider}/callback`.

use entity::prelude::AsyncOperation;
use reqwest::StatusCode;
use sea_orm::ConnectionTrait;

use crate::helpers::{assert_redirect_to, location, spawn_app, spawn_app_without_worker};

#[tokio::test]
async fn callback_with_missing_state_returns_400_and_records_nothing() {
    let app = spawn_app().await;
    app.start_login("mock", "").await;
    let response = app.get_callback("mock", "code=abc").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("not valid"));
    assert_eq!(app.count(AsyncOperation).await, 0);
}

#[tokio::test]
async fn callback_with_wrong_state_returns_400_and_records_nothing() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    let response = app
        .get_callback("mock", &format!("code=abc&state={}x", authorize.state))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count(AsyncOperation).await, 0);
}

#[tokio::test]
async fn state_from_another_browser_is_refused() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    let attacker = app.new_browser();
    let response = attacker
        .get_callback("mock", &format!("code=abc&state={}", authorize.state))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count(AsyncOperation).await, 0);
}

#[tokio::test]
async fn a_state_works_for_one_callback_only() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    let first = app.return_from_provider(&authorize, "abc").await;
    assert_redirect_to(&first, "/auth/preloader");
    let replay = app.return_from_provider(&authorize, "abc").await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count(AsyncOperation).await, 1);
}

#[tokio::test]
async fn provider_error_goes_to_the_error_page() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    let response = app
        .get_callback(
            "mock",
            &format!(
                "error=access_denied&error_description=User+said+no&state={}",
                authorize.state
            ),
        )
        .await;
    assert_redirect_to(&response, "/auth/error?reason=access_denied");
    let page = app.get(location(&response)).await;
    assert_eq!(page.status(), StatusCode::OK);
    let text = page.text().await.unwrap();
    assert!(text.contains("cancelled the sign-in"), "{text}");
    assert!(text.contains(r#"href="/""#), "a try-again link");
    assert_eq!(app.count(AsyncOperation).await, 0);
}

#[tokio::test]
async fn callback_never_calls_the_provider() {
    let app = spawn_app_without_worker().await;
    let authorize = app.start_login("mock", "").await;
    let response = app.return_from_provider(&authorize, "abc").await;
    assert_redirect_to(&response, "/auth/preloader");
    assert!(app.provider.token_requests().await.is_empty());
    assert_eq!(app.count(AsyncOperation).await, 1);
}

#[tokio::test]
async fn a_failed_enqueue_ends_the_operation_in_error_with_a_page_saying_so() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    // Break the queue: its table disappears.
    app.db.execute_unprepared("DROP TABLE Jobs").await.unwrap();
    let response = app.return_from_provider(&authorize, "abc").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let error_page = location(&response).to_owned();
    assert!(
        error_page.starts_with("/auth/error?operation="),
        "{error_page}"
    );
    let body: serde_json::Value = app.get_status("").await.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["error"]["code"], "queue_unavailable");
    let text = app.get(&error_page).await.text().await.unwrap();
    assert!(text.contains("could not start your sign-in"), "{text}");
}
