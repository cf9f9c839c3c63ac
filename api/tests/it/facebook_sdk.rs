//! Sign-ins that start in Facebook's SDK (`POST /api/auth/facebook/token`): a user
//! access token checked with Graph's `debug_token` and `/me`, and a Limited Login
//! ID token; and Graph's error object and version in the browser flow. The Graph
//! mock answers with the shapes Facebook documents.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{header, method, path, query_param},
};

use crate::helpers::{
    MockProvider, Options, TestApp, app_client, appsecret_proof, assert_to_preloader,
    mock_provider, poll_operation, spawn_app_with,
};

const VERSION: &str = "v24.0";
const ACCESS_TOKEN: &str = "EAAGm0PX4ZCpsBAKZCg1ZBsZCZB";
const FB_USER: &str = "10158923456789012";
const APP_TOKEN: &str = "Bearer client-123|secret-456";

/// The `facebook` preset with its Graph base at the mock (`graph_url`) and its
/// Limited Login keys at the mock's JWKS.
async fn facebook_app(extra: Value) -> TestApp {
    let mut config = json!({
        "graph_url": "{mock}",
        "jwks_url": "{mock}/jwks",
        "native_client_ids": ["ios-app-id"],
    });
    if let Value::Object(extra) = extra {
        config.as_object_mut().unwrap().extend(extra);
    }
    spawn_app_with(Options {
        mock_name: "facebook",
        mock_config: config,
        ..Options::default()
    })
    .await
    .unwrap()
}

/// `debug_token`'s answer: `data` with `extra` merged in.
fn token_info(extra: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut data = json!({
        "app_id": mock_provider::CLIENT_ID, "type": "USER", "application": "Social Cafe",
        "data_access_expires_at": now + 7_776_000, "expires_at": now + 5_183_944,
        "is_valid": true, "issued_at": now - 60, "scopes": ["email", "public_profile"],
        "user_id": FB_USER,
    });
    if let Value::Object(extra) = extra {
        data.as_object_mut().unwrap().extend(extra);
    }
    json!({ "data": data })
}

async fn given_debug_token(provider: &MockProvider, answer: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(format!("/{VERSION}/debug_token")))
        .and(query_param("input_token", ACCESS_TOKEN))
        .and(header("authorization", APP_TOKEN))
        .respond_with(answer)
        .mount(&provider.server)
        .await;
}

/// Graph calling the token valid (`token_info` with `extra`) and `/me` naming its user.
async fn given_graph_accepts(provider: &MockProvider, extra: Value) {
    given_debug_token(
        provider,
        ResponseTemplate::new(200).set_body_json(token_info(extra)),
    )
    .await;
    given_me(provider, FB_USER).await;
}

async fn given_me(provider: &MockProvider, id: &str) {
    Mock::given(method("GET"))
        .and(path(format!("/{VERSION}/me")))
        .and(query_param(
            "appsecret_proof",
            appsecret_proof(mock_provider::CLIENT_SECRET, ACCESS_TOKEN),
        ))
        .and(header("authorization", format!("Bearer {ACCESS_TOKEN}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": id, "email": "priscilla@example.com", "first_name": "Priscilla",
            "last_name": "Chan", "name": "Priscilla Chan",
            "picture": {"data": {"height": 50, "is_silhouette": false,
                "url": "https://platform-lookaside.example/p.jpg", "width": 50}},
        })))
        .mount(&provider.server)
        .await;
}

/// `POST /api/auth/{provider}/token` with `body`.
async fn post_token(app: &TestApp, provider: &str, body: &Value) -> (StatusCode, Value) {
    let response = app_client()
        .post(format!("{}/api/auth/{provider}/token", app.address))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Starts a sign-in with `body` (202) and polls it until it leaves `pending`.
async fn sign_in(app: &TestApp, body: &Value) -> Value {
    let (status, started) = post_token(app, "facebook", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer: Value = poll_operation(app, &started).await.json().await.unwrap();
        if answer["status"] != "pending" {
            return answer;
        }
        assert!(Instant::now() < deadline, "the operation never finished");
    }
}

/// `/api/me` with the access token of a finished sign-in's answer.
async fn me_with(app: &TestApp, done: &Value) -> Value {
    let token = done["tokens"]["access_token"].as_str().expect("tokens");
    crate::helpers::get_with_bearer(app, "/api/me", token)
        .await
        .json()
        .await
        .unwrap()
}

async fn user_count(app: &TestApp) -> u64 {
    app.count(entity::prelude::UserProfile).await
}

async fn requests_to(provider: &MockProvider, suffix: &str) -> usize {
    let wanted = format!("/{VERSION}/{suffix}");
    provider
        .server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == wanted)
        .count()
}

#[tokio::test]
async fn an_access_token_of_our_app_signs_in_a_new_then_the_same_user() {
    let app = facebook_app(json!({})).await;
    given_graph_accepts(&app.provider, json!({})).await;

    let done = sign_in(&app, &json!({"access_token": ACCESS_TOKEN})).await;
    assert_eq!(done["status"], "ok", "{done}");
    let me = me_with(&app, &done).await;
    assert_eq!(me["first_name"], "Priscilla");
    assert_eq!(me["email"], "priscilla@example.com");
    assert_eq!(
        me["email_verified"], false,
        "a Facebook email is never verified"
    );
    assert_eq!(me["providers"], json!(["facebook"]));

    // The app's token again (a returning user, or the same cached token): the
    // same user, no second account.
    let again = sign_in(&app, &json!({"access_token": ACCESS_TOKEN})).await;
    assert_eq!(again["status"], "ok", "{again}");
    assert_eq!(user_count(&app).await, 1);
    assert_eq!(requests_to(&app.provider, "debug_token").await, 2);
}

#[tokio::test]
async fn an_access_token_of_a_native_app_id_is_accepted() {
    let app = facebook_app(json!({})).await;
    given_graph_accepts(&app.provider, json!({"app_id": "ios-app-id"})).await;
    let done = sign_in(&app, &json!({"access_token": ACCESS_TOKEN})).await;
    assert_eq!(done["status"], "ok", "{done}");
}

#[tokio::test]
async fn refused_access_tokens_end_with_their_own_code_and_no_user() {
    let now = chrono::Utc::now().timestamp();
    let cases = [
        // Issued to another Facebook app: python-social-auth would sign it in.
        (
            token_info(json!({"app_id": "9999999999"})),
            "token_not_for_this_app",
        ),
        (
            token_info(json!({"is_valid": false, "expires_at": now - 3600,
                "error": {"code": 190, "message": "Error validating access token: Session has expired", "subcode": 463}})),
            "access_token_expired",
        ),
        (
            json!({"data": {"error": {"code": 190, "message": "Invalid OAuth access token - Cannot parse access token"},
                "is_valid": false, "scopes": []}}),
            "access_token_invalid",
        ),
        // An app token has no user behind it.
        (
            token_info(json!({"type": "APP", "user_id": null})),
            "access_token_invalid",
        ),
    ];
    for (info, code) in cases {
        let app = facebook_app(json!({})).await;
        given_debug_token(
            &app.provider,
            ResponseTemplate::new(200).set_body_json(info),
        )
        .await;
        given_me(&app.provider, FB_USER).await;
        let done = sign_in(&app, &json!({"access_token": ACCESS_TOKEN})).await;
        assert_eq!(done["status"], "error", "{done}");
        assert_eq!(done["error"]["code"], code, "{done}");
        assert_eq!(user_count(&app).await, 0);
        assert_eq!(
            requests_to(&app.provider, "me").await,
            0,
            "a refused token is not used to read a profile"
        );
    }
}

#[tokio::test]
async fn a_me_that_names_another_user_is_refused() {
    let app = facebook_app(json!({})).await;
    given_debug_token(
        &app.provider,
        ResponseTemplate::new(200).set_body_json(token_info(json!({}))),
    )
    .await;
    given_me(&app.provider, "20000000000000001").await;
    let done = sign_in(&app, &json!({"access_token": ACCESS_TOKEN})).await;
    assert_eq!(done["error"]["code"], "access_token_invalid", "{done}");
    assert_eq!(user_count(&app).await, 0);
}

#[tokio::test]
async fn graph_answering_5xx_then_ok_is_retried() {
    let app = facebook_app(json!({})).await;
    Mock::given(method("GET"))
        .and(path(format!("/{VERSION}/debug_token")))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({"error": {
            "message": "An unexpected error has occurred. Please retry your request later.",
            "type": "OAuthException", "is_transient": true, "code": 2}})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.provider.server)
        .await;
    given_graph_accepts(&app.provider, json!({})).await;
    let done = sign_in(&app, &json!({"access_token": ACCESS_TOKEN})).await;
    assert_eq!(done["status"], "ok", "{done}");
    assert_eq!(requests_to(&app.provider, "debug_token").await, 2);
}

#[tokio::test]
async fn access_tokens_are_only_for_facebook_and_alone() {
    let app = spawn_app_with(Options::default()).await.unwrap();
    let (status, body) = post_token(&app, "mock", &json!({"access_token": "t"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "unsupported_grant");
    let (status, body) = post_token(
        &app,
        "mock",
        &json!({"access_token": "t", "id_token": "x", "nonce": "n"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_request");
    let (status, _) = post_token(&app, "mock", &json!({"access_token": ""})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

// ---- Limited Login --------------------------------------------------------------

#[tokio::test]
async fn a_limited_login_id_token_signs_in_with_an_unverified_email() {
    let app = facebook_app(json!({})).await;
    let mut claims = app.provider.claims("fb-limited-1", "app-nonce");
    // Limited Login tokens carry no email_verified; an extra `true` changes nothing.
    claims["email_verified"] = json!(true);
    let done = sign_in(
        &app,
        &json!({"id_token": app.provider.id_token(&claims), "nonce": "app-nonce"}),
    )
    .await;
    assert_eq!(done["status"], "ok", "{done}");
    let me = me_with(&app, &done).await;
    assert_eq!(me["email_verified"], false);
    assert_eq!(me["providers"], json!(["facebook"]));
}

#[tokio::test]
async fn limited_login_tokens_are_checked() {
    let app = facebook_app(json!({})).await;
    let now = chrono::Utc::now().timestamp();
    let mut other_app = app.provider.claims("fb-limited-2", "n");
    other_app["aud"] = json!("9999999999");
    let mut expired = app.provider.claims("fb-limited-3", "n");
    expired["iat"] = json!(now - 240);
    expired["exp"] = json!(now - 120);
    let mut other_issuer = app.provider.claims("fb-limited-4", "n");
    other_issuer["iss"] = json!("https://www.facebook.example");
    for (claims, nonce) in [
        (other_app, "n"),
        (expired, "n"),
        (other_issuer, "n"),
        (app.provider.claims("fb-limited-5", "n"), "another-nonce"),
    ] {
        let done = sign_in(
            &app,
            &json!({"id_token": app.provider.id_token(&claims), "nonce": nonce}),
        )
        .await;
        assert_eq!(done["error"]["code"], "id_token_invalid", "{claims} {done}");
    }
    assert_eq!(user_count(&app).await, 0);
}

// ---- the browser flow: Graph's errors and version --------------------------------

#[tokio::test]
async fn a_spent_facebook_code_is_invalid_grant_and_the_version_is_a_setting() {
    let app = facebook_app(json!({"graph_version": "v25.0"})).await;
    let authorize = app.start_login("facebook", "").await;
    assert!(
        authorize.url.path().starts_with("/v25.0/dialog/oauth"),
        "{}",
        authorize.url
    );
    Mock::given(method("POST"))
        .and(path("/v25.0/oauth/access_token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "This authorization code has expired.", "type": "OAuthException",
            "code": 100, "error_subcode": 36007, "fbtrace_id": "AbCdEf"}})))
        .expect(1)
        .mount(&app.provider.server)
        .await;
    let callback = app
        .browser
        .get_callback("facebook", &format!("code=spent&state={}", authorize.state))
        .await;
    assert_to_preloader(&callback);
    let status = app.browser.wait_for_status("").await;
    assert_eq!(status["error"]["code"], "invalid_grant", "{status}");
}

/// The README's two Facebook requests, as written there, with real token values in
/// place of the elided ones.
#[tokio::test]
async fn the_readme_examples_sign_in() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("### Sign-ins that start in a provider's SDK")
        .nth(1)
        .expect("the README section")
        .split("**Google One Tap")
        .next()
        .unwrap();
    let bodies: Vec<Value> = section
        .lines()
        .filter_map(|line| line.trim().strip_prefix("-d '"))
        .map(|json| serde_json::from_str(json.trim_end_matches('\'')).expect("JSON body"))
        .collect();
    assert_eq!(
        bodies.len(),
        2,
        "an access-token and a Limited Login example"
    );
    let app = facebook_app(json!({})).await;
    given_graph_accepts(&app.provider, json!({})).await;
    for mut body in bodies {
        let fields = body.as_object_mut().unwrap();
        if fields.contains_key("access_token") {
            assert_eq!(fields.len(), 1, "{body}");
            fields.insert("access_token".into(), json!(ACCESS_TOKEN));
        } else {
            let nonce = fields["nonce"].as_str().unwrap().to_owned();
            let claims = app.provider.claims("fb-readme", &nonce);
            fields.insert("id_token".into(), json!(app.provider.id_token(&claims)));
        }
        let done = sign_in(&app, &body).await;
        assert_eq!(done["status"], "ok", "{done}");
    }
}
