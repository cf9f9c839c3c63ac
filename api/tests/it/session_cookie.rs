//! The browser session cookie lives as long as its row: when use slides the
//! session's expiry forward, the cookie's `Max-Age` follows.

use entity::prelude::Session;
use reqwest::StatusCode;

use crate::helpers::{rows::set_on_all, spawn_app};

#[tokio::test]
async fn an_active_browser_session_gets_its_cookie_renewed() {
    let app = spawn_app().await;
    app.sign_in(&app.browser, "active-user").await;
    // Used just now: nothing to renew.
    let quiet = app.get_me().await;
    assert_eq!(quiet.status(), StatusCode::OK);
    assert!(quiet.headers().get("set-cookie").is_none(), "{quiet:?}");

    // Last used six minutes ago: the row slides, and so does the cookie.
    set_on_all::<Session>(
        &app.db,
        entity::session::Column::LastSeenAt,
        chrono::Utc::now() - chrono::Duration::minutes(6),
    )
    .await;
    let renewed = app.get_me().await;
    assert_eq!(renewed.status(), StatusCode::OK);
    let cookie = renewed
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("signin_session="))
        .expect("the session cookie is set again")
        .to_owned();
    let lifetime = app.settings.session_lifetime.as_secs();
    assert!(cookie.contains(&format!("Max-Age={lifetime}")), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    // The same session: it still works, and the browser kept one session.
    assert_eq!(app.get_me().await.status(), StatusCode::OK);
    assert_eq!(app.count(Session).await, 1);
}
