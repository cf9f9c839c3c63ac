//! `cors.allowed_origins`: a single-page app on another origin calls the JSON API
//! with its bearer token; other origins get nothing; without the setting no CORS
//! header is sent at all.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, app_client, register, spawn_app_with};

const SPA: &str = "https://app.example.com";

async fn app_with_cors(origins: Value) -> TestApp {
    spawn_app_with(Options {
        overrides: json!({"cors": {"allowed_origins": origins}}),
        ..Options::default()
    })
    .await
    .unwrap()
}

async fn bearer(app: &TestApp, email: &str) -> String {
    let tokens: Value = register(app, email).await.json().await.unwrap();
    tokens["access_token"].as_str().unwrap().to_owned()
}

async fn get_me_from(app: &TestApp, origin: &str, token: &str) -> reqwest::Response {
    app_client()
        .get(format!("{}/api/me", app.address))
        .header("origin", origin)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn an_allowed_origin_calls_the_api_with_credentials() {
    let app = app_with_cors(json!([SPA])).await;
    let token = bearer(&app, "spa@example.com").await;
    let response = get_me_from(&app, SPA, &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(SPA));
    assert_eq!(
        header(&response, "access-control-allow-credentials"),
        Some("true")
    );
    assert!(header(&response, "vary").is_some_and(|v| v.contains("Origin")));
    assert!(
        header(&response, "access-control-expose-headers")
            .is_some_and(|v| v.contains("retry-after"))
    );
}

#[tokio::test]
async fn a_preflight_is_answered_for_an_allowed_origin_only() {
    let app = app_with_cors(json!([SPA])).await;
    let preflight = |origin: &'static str| {
        app_client()
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/auth/login", app.address),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .send()
    };
    let allowed = preflight(SPA).await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(header(&allowed, "access-control-allow-origin"), Some(SPA));
    assert_eq!(
        header(&allowed, "access-control-allow-credentials"),
        Some("true")
    );
    let methods = header(&allowed, "access-control-allow-methods")
        .unwrap()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let headers = header(&allowed, "access-control-allow-headers")
        .unwrap()
        .to_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );

    let refused = preflight("https://evil.example").await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&refused, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn a_refused_origin_gets_no_cors_headers_and_no_answer() {
    let app = app_with_cors(json!([SPA])).await;
    let token = bearer(&app, "refused@example.com").await;
    for origin in [
        "https://evil.example",
        "https://app.example.com.evil.example",
        "null",
    ] {
        let response = get_me_from(&app, origin, &token).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{origin}");
        assert_eq!(header(&response, "access-control-allow-origin"), None);
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    // Our own pages still call it, and apps without an Origin header too.
    let own = get_me_from(
        &app,
        app.settings
            .public_url
            .origin()
            .ascii_serialization()
            .as_str(),
        &token,
    )
    .await;
    assert_eq!(own.status(), StatusCode::OK);
    let plain = crate::helpers::get_with_bearer(&app, "/api/me", &token).await;
    assert_eq!(plain.status(), StatusCode::OK);
}

#[tokio::test]
async fn without_allowed_origins_no_cors_header_is_sent() {
    let app = spawn_app_with(Options::default()).await.unwrap();
    let token = bearer(&app, "nocors@example.com").await;
    let response = get_me_from(&app, SPA, &token).await;
    assert_eq!(header(&response, "access-control-allow-origin"), None);
}
