//! Issuers are compared as written: one whose identifier ends in `/` (Auth0's do)
//! signs in, and an `iss` that differs from it by that slash is refused, in the ID
//! token and in the authorization response (RFC 9207) alike.

use entity::prelude::UserProfile;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, assert_to_preloader, spawn_app_with};

/// An app whose mock provider's issuer ends in `/` and who names itself in
/// authorization responses (RFC 9207).
async fn app_with_slashed_issuer() -> TestApp {
    let app = spawn_app_with(Options {
        mock_issuer_slash: true,
        mock_sends_iss: true,
        ..Options::default()
    })
    .await
    .unwrap();
    // The precondition: the issuer, as configured and discovered, ends in `/`.
    assert!(app.provider.issuer().ends_with('/'));
    app
}

/// Signs `sub` in with an ID token whose `iss` is `iss`, returning from the provider
/// with `iss` in the response; the operation's final status.
async fn sign_in_with_iss(app: &TestApp, sub: &str, iss: &str) -> Value {
    let authorize = app.start_login("mock", "").await;
    let mut claims = app
        .provider
        .claims(sub, authorize.nonce.as_deref().unwrap());
    claims["iss"] = json!(iss);
    let code = format!("code-{sub}");
    app.provider
        .given_token_ok(&code, &app.provider.id_token(&claims))
        .await;
    app.provider
        .given_userinfo(
            json!({"sub": sub, "email": format!("{sub}@example.com"), "email_verified": true}),
        )
        .await;
    let issuer = app.provider.issuer();
    let callback = app
        .get_callback(
            "mock",
            &format!("code={code}&state={}&iss={issuer}", authorize.state),
        )
        .await;
    assert_to_preloader(&callback);
    app.wait_for_status("").await
}

#[tokio::test]
async fn an_issuer_ending_in_a_slash_signs_in() {
    let app = app_with_slashed_issuer().await;
    let issuer = app.provider.issuer();
    let status = sign_in_with_iss(&app, "auth0-user", &issuer).await;
    assert_eq!(status["status"], "ok", "{status}");
    assert_eq!(app.count(UserProfile).await, 1);
}

#[tokio::test]
async fn an_id_token_whose_iss_lacks_the_issuers_trailing_slash_is_refused() {
    let app = app_with_slashed_issuer().await;
    let without_slash = app.provider.issuer().trim_end_matches('/').to_owned();
    let status = sign_in_with_iss(&app, "auth0-user", &without_slash).await;
    assert_eq!(status["status"], "error", "{status}");
    assert_eq!(status["error"]["code"], "id_token_invalid");
    assert_eq!(app.count(UserProfile).await, 0);
}

#[tokio::test]
async fn an_authorization_response_iss_without_the_trailing_slash_is_refused() {
    let app = app_with_slashed_issuer().await;
    let without_slash = app.provider.issuer().trim_end_matches('/').to_owned();
    let authorize = app.start_login("mock", "").await;
    let response = app
        .get_callback(
            "mock",
            &format!("code=x&state={}&iss={without_slash}", authorize.state),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count(entity::prelude::AsyncOperation).await, 0);
}
