//! The leak scan: after a browser sign-in and a native one, no authorization code,
//! provider token, ID token, session cookie, refresh token or poll secret appears in
//! a log line, in a URL the browser is sent to after the callback, or in a response
//! body that has no business carrying it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Options, location, set_cookie_value, spawn_app_with};

/// Asserts none of `secrets` is in `haystack`.
fn assert_no_secret(place: &str, haystack: &str, secrets: &[(&str, &str)]) {
    for (name, secret) in secrets {
        assert!(
            secret.len() >= 8,
            "{name} is too short to scan for: {secret:?}"
        );
        assert!(
            !haystack.contains(secret),
            "the {name} leaked into {place}: …{}…",
            haystack
                .find(secret)
                .map(|i| &haystack[i.saturating_sub(80)..(i + secret.len()).min(haystack.len())])
                .unwrap_or_default()
        );
    }
}

#[tokio::test]
async fn no_secret_reaches_logs_redirects_or_bodies() {
    let app = spawn_app_with(Options {
        mock_config: json!({"kind": "oidc", "display_name": "Mock ID",
                            "native_redirect_uris": ["com.example.app:/callback"]}),
        ..Options::default()
    })
    .await
    .unwrap();
    let browser = &app.browser;
    let authorize = browser.start_login("mock", "?next=/settings").await;
    let code = format!("code-leakscan-{}", Uuid::new_v4().simple());
    let nonce = authorize.nonce.clone().unwrap();
    let id_token = app
        .provider
        .id_token(&app.provider.claims("leak-user", &nonce));
    app.provider.given_token_ok(&code, &id_token).await;
    app.provider
        .given_userinfo(
            json!({"sub": "leak-user", "email": "leak@example.com", "email_verified": true}),
        )
        .await;

    let mut redirects = Vec::new();
    let mut bodies = Vec::new();
    let callback = browser.return_from_provider(&authorize, &code).await;
    redirects.push(location(&callback).to_owned());
    let preloader = browser.get("/auth/preloader").await;
    bodies.push(("preloader", preloader.text().await.unwrap()));
    let status = browser.wait_for_status("").await;
    assert_eq!(status["status"], "ok");
    bodies.push(("status", status.to_string()));
    let success = browser.get_success("").await;
    assert_eq!(success.status(), StatusCode::SEE_OTHER);
    redirects.push(location(&success).to_owned());
    let session_cookie = set_cookie_value(&success, "signin_session").expect("a session cookie");
    for path in ["/api/me", "/", "/api/me/events", "/api/sessions"] {
        let response = browser.get(path).await;
        assert!(response.status().is_success(), "{path}");
        bodies.push((path, response.text().await.unwrap()));
    }

    // A native sign-in: its poll secret and tokens must stay out of the logs too.
    let client = reqwest::Client::new();
    let native_code = format!("native-code-{}", Uuid::new_v4().simple());
    app.provider
        .given_token_ok(
            &native_code,
            &app.provider
                .id_token(&app.provider.claims("leak-user", "native-nonce-123")),
        )
        .await;
    let started: Value = client
        .post(format!("{}/api/auth/mock/token", app.address))
        .json(&json!({"code": native_code, "code_verifier": "v".repeat(43), "redirect_uri": "com.example.app:/callback", "nonce": "native-nonce-123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let poll_secret = started["poll_secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no poll secret: {started}"))
        .to_owned();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let secrets = [
        ("authorization code", code.as_str()),
        ("ID token", id_token.as_str()),
        ("provider access token", "mock-access-token"),
        ("provider refresh token", "mock-refresh-token"),
        ("session cookie", session_cookie.as_str()),
        ("state", authorize.state.as_str()),
        ("nonce", nonce.as_str()),
        ("native code", native_code.as_str()),
        ("poll secret", poll_secret.as_str()),
    ];
    for url in &redirects {
        assert_no_secret(&format!("the redirect to {url}"), url, &secrets);
    }
    for (place, body) in &bodies {
        assert_no_secret(&format!("the body of {place}"), body, &secrets);
    }
    let logs = worker::telemetry::captured_test_logs();
    assert!(
        logs.contains("sign-in queued"),
        "the scan must see this test's log lines"
    );
    assert_no_secret("the logs", &logs, &secrets);
}
