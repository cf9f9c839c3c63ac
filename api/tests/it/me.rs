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
async fn me_accepts_the_session_as_a_bearer_token() {
    let app = spawn_app().await;
    app.sign_in(&app.browser, "bearer").await;
    let token = session_token(&app).await;
    let api_client = reqwest::Client::new();
    let response = api_client
        .get(format!("{}/api/me", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["email"], "bearer@example.com");
    let forged = api_client
        .get(format!("{}/api/me", app.address))
        .bearer_auth("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
}

/// Signs in once more with a browser whose Set-Cookie we read ourselves.
async fn session_token(app: &crate::helpers::TestApp) -> String {
    let browser = app.new_browser();
    let authorize = browser.start_login("mock", "").await;
    app.given_provider_signs_in(&authorize, "code-bearer-2", "bearer")
        .await;
    browser
        .get_callback(
            "mock",
            &format!("code=code-bearer-2&state={}", authorize.state),
        )
        .await;
    assert_eq!(browser.wait_for_status("").await["status"], "ok");
    let success = browser.get_success("").await;
    let set_cookie = success
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>();
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
