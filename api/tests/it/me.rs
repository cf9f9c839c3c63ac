//! `GET /api/me`.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn me_without_a_session_is_401_json() {
    let app = spawn_app().await;
    let response = app.get_me().await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("www-authenticate").is_some());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn the_browser_session_cookie_is_not_a_bearer_token() {
    let app = spawn_app().await;
    app.sign_in(&app.browser, "cookie").await;
    let token = session_cookie(&app).await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/me", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "bearer tokens are JWT access tokens"
    );
}

/// Signs in with a fresh browser whose Set-Cookie we read ourselves.
async fn session_cookie(app: &crate::helpers::TestApp) -> String {
    let browser = app.new_browser();
    let authorize = browser.start_login("mock", "").await;
    app.given_provider_signs_in(&authorize, "code-cookie-2", "cookie")
        .await;
    browser
        .return_from_provider(&authorize, "code-cookie-2")
        .await;
    assert_eq!(browser.wait_for_status("").await["status"], "ok");
    let success = browser.get_success("").await;
    let set_cookie: Vec<String> = success
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = set_cookie
        .iter()
        .find(|c| c.starts_with("signin_session="))
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && session.contains("Path=/")
    );
    assert!(!session.contains("Secure"), "plain http public_url");
    session
        .trim_start_matches("signin_session=")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}
