//! `GET /auth/success` and logout.

use entity::prelude::Session;
use reqwest::StatusCode;

use crate::helpers::{Backend, TestApp, assert_redirect_to, location, spawn_app, spawn_app_on};

#[tokio::test]
async fn success_redeems_once_on_sqlite() {
    success_redeems_once(spawn_app().await).await;
}

/// On PostgreSQL the redemption and the new session are one statement.
#[tokio::test]
async fn success_redeems_once_on_postgres() {
    let Some(app) = spawn_app_on(Backend::Postgres).await else {
        return;
    };
    success_redeems_once(app).await;
}

async fn success_redeems_once(app: TestApp) {
    app.sign_in(&app.browser, "once").await;
    let again = app.get_success("").await;
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert!(
        location(&again).starts_with("/auth/error"),
        "{}",
        location(&again)
    );
    assert_eq!(app.count(Session).await, 1, "no second session");
}

#[tokio::test]
async fn another_browser_cannot_redeem_the_operation_on_sqlite() {
    another_browser_cannot_redeem_the_operation(spawn_app().await).await;
}

#[tokio::test]
async fn another_browser_cannot_redeem_the_operation_on_postgres() {
    let Some(app) = spawn_app_on(Backend::Postgres).await else {
        return;
    };
    another_browser_cannot_redeem_the_operation(app).await;
}

async fn another_browser_cannot_redeem_the_operation(app: TestApp) {
    let authorize = app.start_login("mock", "?next=/welcome").await;
    app.given_provider_signs_in(&authorize, "code-victim", "victim")
        .await;
    app.get_callback(
        "mock",
        &format!("code=code-victim&state={}", authorize.state),
    )
    .await;
    assert_eq!(app.wait_for_status("").await["status"], "ok");
    let id = app.preloader_operation().await;

    let attacker = app.new_browser();
    attacker.start_login("mock", "").await; // has a browser key of its own
    let stolen = attacker.get_success(&format!("?operation={id}")).await;
    assert!(location(&stolen).starts_with("/auth/error"));
    assert!(
        stolen.headers().get("set-cookie").is_none_or(|c| !c
            .to_str()
            .unwrap()
            .contains("signin_session=")
            || c.to_str().unwrap().contains("signin_session=;"))
    );
    assert_eq!(attacker.get_me().await.status(), StatusCode::UNAUTHORIZED);

    // The rightful browser still can.
    assert_redirect_to(
        &app.get_success(&format!("?operation={id}")).await,
        "/welcome",
    );
    assert_eq!(app.get_me().await.status(), StatusCode::OK);
}

#[tokio::test]
async fn success_before_the_operation_is_ok_goes_to_the_error_page() {
    let app = spawn_app().await;
    assert!(location(&app.get_success("").await).starts_with("/auth/error"));
    let authorize = app.start_login("mock", "").await;
    app.provider.given_token_error("invalid_grant", 1).await;
    app.return_from_provider(&authorize, "bad").await;
    // Pending (or already failed): no session either way.
    assert!(location(&app.get_success("").await).starts_with("/auth/error"));
    assert_eq!(app.wait_for_status("").await["status"], "error");
    assert!(location(&app.get_success("").await).starts_with("/auth/error"));
    assert_eq!(app.count(Session).await, 0);
}

#[tokio::test]
async fn each_sign_in_starts_a_fresh_session() {
    let app = spawn_app().await;
    app.sign_in(&app.browser, "fresh").await;
    let first = session_cookie(&app).await;
    app.post_logout().await;
    app.sign_in(&app.browser, "fresh").await;
    let second = session_cookie(&app).await;
    assert_ne!(first, second);
}

async fn session_cookie(app: &crate::helpers::TestApp) -> String {
    use sea_orm::{EntityTrait, QueryOrder};
    entity::session::Entity::find()
        .order_by_desc(entity::session::Column::CreatedAt)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap()
        .token_hash
}

#[tokio::test]
async fn logout_ends_the_session_server_side() {
    let app = spawn_app().await;
    app.sign_in(&app.browser, "bye").await;
    let response = app.post_logout().await;
    assert_redirect_to(&response, "/");
    let cleared = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("signin_session="))
        .expect("the session cookie is cleared");
    assert!(
        cleared.contains("signin_session=;") && cleared.contains("Path=/"),
        "{cleared}"
    );
    assert_eq!(app.get_me().await.status(), StatusCode::UNAUTHORIZED);
    let session = <Session as sea_orm::EntityTrait>::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert!(session.revoked_at.is_some());
}

#[tokio::test]
async fn an_unsafe_next_lands_on_the_home_page() {
    let app = crate::helpers::spawn_app().await;
    for next in [
        "//evil.example/x",
        "https://evil.example",
        "/\\evil.example",
    ] {
        let browser = app.new_browser();
        let query = format!(
            "?next={}",
            url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        );
        let authorize = browser.start_login("mock", &query).await;
        let code = format!("code-{}", uuid::Uuid::new_v4().simple());
        app.given_provider_signs_in(&authorize, &code, "next-user")
            .await;
        browser.return_from_provider(&authorize, &code).await;
        assert_eq!(browser.wait_for_status("").await["status"], "ok");
        crate::helpers::assert_redirect_to(&browser.get_success("").await, "/");
    }
}
