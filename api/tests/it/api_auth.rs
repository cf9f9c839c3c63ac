//! The JSON API for apps: password accounts, bearer tokens with rotating refresh
//! tokens, sessions across devices, native social sign-in through the queue, and
//! the OpenAPI document every JSON response is checked against.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    APP_REDIRECT, Options, TEST_PASSWORD, TestApp, app_client, get_with_bearer, openapi::Spec,
    spawn_app, spawn_app_with,
};

const PASSWORD: &str = TEST_PASSWORD;

async fn spec(app: &TestApp) -> Spec {
    let response = app.get("/api/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    Spec(response.json().await.unwrap())
}

/// Sends, checks the answer against the OpenAPI document, returns status and body.
async fn call(
    spec: &Spec,
    method: &str,
    path_template: &str,
    response: Response,
) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    spec.assert_response(method, path_template, status.as_u16(), &body);
    (status, body)
}

async fn register(app: &TestApp, spec: &Spec, email: &str) -> Value {
    let response = app_client()
        .post(format!("{}/api/auth/register", app.address))
        .json(&json!({"email": email, "password": PASSWORD, "first_name": "Ada", "last_name": "Lovelace", "device": "Ada's phone"}))
        .send()
        .await
        .unwrap();
    let (status, body) = call(spec, "POST", "/api/auth/register", response).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn login(app: &TestApp, email: &str, password: &str) -> Response {
    app_client()
        .post(format!("{}/api/auth/login", app.address))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn register_login_me_refresh_and_logout() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    let tokens = register(&app, &spec, "Ada@Example.com").await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].as_i64().unwrap() > 0);

    let (status, me) = call(
        &spec,
        "GET",
        "/api/me",
        get_with_bearer(&app, "/api/me", tokens["access_token"].as_str().unwrap()).await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(
        me["email_verified"], false,
        "registration does not verify the address"
    );
    assert_eq!(me["has_password"], true);

    let (status, again) = call(
        &spec,
        "POST",
        "/api/auth/login",
        login(&app, "ada@example.com", PASSWORD).await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(
        again["session_id"], tokens["session_id"],
        "each login is its own session"
    );

    // Refresh rotates: the new pair works, and the old refresh token is spent.
    let refresh = |token: Value| {
        let address = app.address.clone();
        async move {
            app_client()
                .post(format!("{address}/api/auth/refresh"))
                .json(&json!({"refresh_token": token}))
                .send()
                .await
                .unwrap()
        }
    };
    let (status, rotated) = call(
        &spec,
        "POST",
        "/api/auth/refresh",
        refresh(again["refresh_token"].clone()).await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(rotated["refresh_token"], again["refresh_token"]);
    assert_eq!(rotated["session_id"], again["session_id"]);
    assert_eq!(
        get_with_bearer(&app, "/api/me", rotated["access_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK
    );

    // Reusing the old refresh token after the grace period means it leaked: the
    // whole session ends.
    crate::helpers::rows::set_on_all::<entity::prelude::RefreshToken>(
        &app.db,
        entity::refresh_token::Column::UsedAt,
        chrono::Utc::now() - chrono::Duration::minutes(1),
    )
    .await;
    let (status, reused) = call(
        &spec,
        "POST",
        "/api/auth/refresh",
        refresh(again["refresh_token"].clone()).await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(reused["error"]["code"], "refresh_token_reused");
    let revoked = get_with_bearer(&app, "/api/me", rotated["access_token"].as_str().unwrap()).await;
    assert_eq!(
        revoked.status(),
        StatusCode::UNAUTHORIZED,
        "the session's access tokens stop at once"
    );
    assert_eq!(
        revoked.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    let (status, _) = call(
        &spec,
        "POST",
        "/api/auth/refresh",
        refresh(rotated["refresh_token"].clone()).await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Logout ends only this session.
    let first = tokens["access_token"].as_str().unwrap();
    let response = app_client()
        .post(format!("{}/api/auth/logout", app.address))
        .bearer_auth(first)
        .send()
        .await
        .unwrap();
    let (status, _) = call(&spec, "POST", "/api/auth/logout", response).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        get_with_bearer(&app, "/api/me", first).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_across_devices() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    // A browser session (social) and two app sessions (password) for one user.
    let browser_me = app.sign_in(&app.browser, "multi").await;
    let put = app
        .client
        .put(format!("{}/api/me/password", app.address))
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let (status, _) = call(&spec, "PUT", "/api/me/password", put).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "a social user can set a password"
    );
    let email = browser_me["email"].as_str().unwrap();
    let phone: Value = login(&app, email, PASSWORD).await.json().await.unwrap();
    let laptop: Value = login(&app, email, PASSWORD).await.json().await.unwrap();

    let phone_token = phone["access_token"].as_str().unwrap();
    let (status, sessions) = call(
        &spec,
        "GET",
        "/api/sessions",
        get_with_bearer(&app, "/api/sessions", phone_token).await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    assert_eq!(
        sessions.iter().filter(|s| s["kind"] == "browser").count(),
        1
    );
    let current = sessions.iter().find(|s| s["current"] == true).unwrap();
    assert_eq!(current["id"], phone["session_id"]);

    // Revoke the laptop from the phone.
    let laptop_id = laptop["session_id"].as_str().unwrap();
    let response = app_client()
        .delete(format!("{}/api/sessions/{laptop_id}", app.address))
        .bearer_auth(phone_token)
        .send()
        .await
        .unwrap();
    let (status, _) = call(&spec, "DELETE", "/api/sessions/{id}", response).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        get_with_bearer(&app, "/api/me", laptop["access_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let again = app_client()
        .delete(format!("{}/api/sessions/{laptop_id}", app.address))
        .bearer_auth(phone_token)
        .send()
        .await
        .unwrap();
    let (status, _) = call(&spec, "DELETE", "/api/sessions/{id}", again).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Logout everywhere ends the browser session too.
    let response = app_client()
        .post(format!("{}/api/auth/logout?all=1", app.address))
        .bearer_auth(phone_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get_me().await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        get_with_bearer(&app, "/api/me", phone_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_unknown_email_and_a_wrong_password_look_the_same() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    register(&app, &spec, "grace@example.com").await;
    let timed = |email: &'static str, password: &'static str| {
        let app = &app;
        async move {
            let started = std::time::Instant::now();
            let response = login(app, email, password).await;
            let elapsed = started.elapsed();
            (response.status(), response.text().await.unwrap(), elapsed)
        }
    };
    let (s1, b1, t1) = timed("grace@example.com", "wrong-password-entirely").await;
    let (s2, b2, t2) = timed("nobody@example.com", "wrong-password-entirely").await;
    assert_eq!((s1, &b1), (s2, &b2), "same status and body");
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert!(b1.contains("invalid_credentials"));
    // Both paths run one Argon2id verification; neither answers much faster.
    let (fast, slow) = if t1 < t2 { (t1, t2) } else { (t2, t1) };
    assert!(
        fast.as_secs_f64() > slow.as_secs_f64() * 0.25,
        "{t1:?} vs {t2:?}"
    );
}

#[tokio::test]
async fn login_attempts_are_rate_limited_per_account() {
    let app = spawn_app_with(Options {
        overrides: json!({"limits": {"login_per_ip_per_minute": 100, "login_per_account_per_hour": 3}}),
        ..Options::default()
    })
    .await
    .unwrap();
    let spec = spec(&app).await;
    for _ in 0..3 {
        assert_eq!(
            login(&app, "target@example.com", "guess-guess-guess")
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, body) = call(
        &spec,
        "POST",
        "/api/auth/login",
        login(&app, "Target@Example.com", "guess").await,
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["code"], "too_many_requests");
    let limited = login(&app, "target@example.com", "guess").await;
    assert!(
        limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // Another account is not affected.
    assert_eq!(
        login(&app, "other@example.com", "guess-guess-guess")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn login_attempts_are_rate_limited_per_ip() {
    let app = spawn_app_with(Options {
        overrides: json!({"limits": {"login_per_ip_per_minute": 2, "login_per_account_per_hour": 100}}),
        ..Options::default()
    })
    .await
    .unwrap();
    for n in 0..2 {
        assert_eq!(
            login(&app, &format!("u{n}@example.com"), "x")
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(&app, "u9@example.com", "x").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn weak_passwords_and_bad_requests_are_refused_clearly() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    for (body, code) in [
        (
            json!({"email": "a@example.com", "password": "short"}),
            "weak_password",
        ),
        (
            json!({"email": "a@example.com", "password": "password1234"}),
            "weak_password",
        ),
        (
            json!({"email": "not-an-email", "password": PASSWORD}),
            "invalid_email",
        ),
    ] {
        let response = app_client()
            .post(format!("{}/api/auth/register", app.address))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, error) = call(&spec, "POST", "/api/auth/register", response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error["error"]["code"], code);
    }
    register(&app, &spec, "taken@example.com").await;
    let response = app_client()
        .post(format!("{}/api/auth/register", app.address))
        .json(&json!({"email": "TAKEN@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let (status, error) = call(&spec, "POST", "/api/auth/register", response).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["error"]["code"], "email_in_use");
    // A body that is not JSON still gets the JSON error shape.
    let garbage = app_client()
        .post(format!("{}/api/auth/login", app.address))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
    let body: Value = garbage.json().await.unwrap();
    assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string());
    // So does an unknown API path.
    let missing = app.get("/api/nope").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.json::<Value>().await.unwrap()["error"]["code"].is_string());
}

#[tokio::test]
async fn bearer_tokens_that_are_forged_or_malformed_get_401_json() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    for token in ["forged", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."] {
        let (status, body) = call(
            &spec,
            "GET",
            "/api/me",
            get_with_bearer(&app, "/api/me", token).await,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "invalid_token");
    }
    let weird = app_client()
        .get(format!("{}/api/me", app.address))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(weird.status(), StatusCode::UNAUTHORIZED);
    assert!(weird.headers().contains_key("www-authenticate"));
}

// ---- Native social sign-in ---------------------------------------------------

async fn native_app() -> TestApp {
    spawn_app_with(Options::native()).await.unwrap()
}

async fn start_native(app: &TestApp, body: &Value) -> (StatusCode, Value, Option<String>) {
    let response = app_client()
        .post(format!("{}/api/auth/mock/token", app.address))
        .json(body)
        .send()
        .await
        .unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body, location)
}

async fn poll(app: &TestApp, spec: &Spec, id: &str, secret: Option<&str>) -> (StatusCode, Value) {
    let mut request = app_client().get(format!("{}/api/operations/{id}?wait=5", app.address));
    if let Some(secret) = secret {
        request = request.header("x-poll-secret", secret);
    }
    call(
        spec,
        "GET",
        "/api/operations/{id}",
        request.send().await.unwrap(),
    )
    .await
}

async fn poll_until_done(app: &TestApp, spec: &Spec, id: &str, secret: &str) -> Value {
    for _ in 0..6 {
        let (status, body) = poll(app, spec, id, Some(secret)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] != "pending" {
            return body;
        }
    }
    panic!("native operation still pending");
}

#[tokio::test]
async fn native_code_exchange_goes_through_the_queue_and_delivers_tokens_once() {
    let app = native_app().await;
    let spec = spec(&app).await;
    // The app did the authorize step itself (PKCE, its own redirect URI and nonce).
    let nonce = "app-nonce-123";
    let claims = app.provider.claims("native-1", nonce);
    app.provider
        .given_token_ok("app-code", &app.provider.id_token(&claims))
        .await;
    app.provider
        .given_userinfo(
            json!({"sub": "native-1", "email": "native-1@example.com", "email_verified": true}),
        )
        .await;
    let verifier = "v".repeat(50);
    let request = json!({"code": "app-code", "code_verifier": verifier, "redirect_uri": APP_REDIRECT, "nonce": nonce});
    let (status, started, location) = start_native(&app, &request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    spec.assert_response("POST", "/api/auth/{provider}/token", 202, &started);
    let id = started["operation_id"].as_str().unwrap();
    assert_eq!(
        location.as_deref(),
        Some(format!("/api/operations/{id}").as_str())
    );
    let secret = started["poll_secret"].as_str().unwrap();

    // Without the secret, or with another, the operation does not exist.
    assert_eq!(poll(&app, &spec, id, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        poll(&app, &spec, id, Some("guess")).await.0,
        StatusCode::NOT_FOUND
    );

    let done = poll_until_done(&app, &spec, id, secret).await;
    assert_eq!(done["status"], "ok", "{done}");
    let access = done["tokens"]["access_token"].as_str().unwrap();
    let me: Value = get_with_bearer(&app, "/api/me", access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "native-1@example.com");
    let token_request = &app.provider.token_requests().await[0];
    let body = String::from_utf8_lossy(&token_request.body).into_owned();
    assert!(
        body.contains(&format!("code_verifier={verifier}")),
        "{body}"
    );
    assert!(body.contains("redirect_uri=com.example.app"), "{body}");

    let (status, gone) = poll(&app, &spec, id, Some(secret)).await;
    assert_eq!(
        status,
        StatusCode::GONE,
        "tokens are delivered exactly once"
    );
    assert_eq!(gone["error"]["code"], "already_redeemed");
}

#[tokio::test]
async fn native_id_token_sign_in_accepts_the_apps_client_id() {
    let app = native_app().await;
    let spec = spec(&app).await;
    let mut claims = app.provider.claims("native-2", "sdk-nonce");
    claims["aud"] = json!("ios-client-id");
    let id_token = app.provider.id_token(&claims);
    let (status, started, _) =
        start_native(&app, &json!({"id_token": id_token, "nonce": "sdk-nonce"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let done = poll_until_done(
        &app,
        &spec,
        started["operation_id"].as_str().unwrap(),
        started["poll_secret"].as_str().unwrap(),
    )
    .await;
    assert_eq!(done["status"], "ok", "{done}");
    assert!(
        app.provider.token_requests().await.is_empty(),
        "no code to exchange"
    );

    // The same token again (leaked, replayed by someone else): refused.
    let (status, replay, _) =
        start_native(&app, &json!({"id_token": id_token, "nonce": "sdk-nonce"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let done = poll_until_done(
        &app,
        &spec,
        replay["operation_id"].as_str().unwrap(),
        replay["poll_secret"].as_str().unwrap(),
    )
    .await;
    assert_eq!(done["status"], "error", "{done}");
    assert_eq!(done["error"]["code"], "id_token_invalid");

    // A token for some other client, or with another nonce, ends in error.
    for (aud, nonce) in [
        ("someone-else", "sdk-nonce"),
        ("ios-client-id", "other-nonce"),
    ] {
        let mut claims = app.provider.claims("native-3", "sdk-nonce");
        claims["aud"] = json!(aud);
        let (_, started, _) = start_native(
            &app,
            &json!({"id_token": app.provider.id_token(&claims), "nonce": nonce}),
        )
        .await;
        let done = poll_until_done(
            &app,
            &spec,
            started["operation_id"].as_str().unwrap(),
            started["poll_secret"].as_str().unwrap(),
        )
        .await;
        assert_eq!(done["status"], "error");
        assert_eq!(done["error"]["code"], "id_token_invalid");
    }
}

/// `token` with the last character of its signature changed in bits the base64url
/// decoding ignores: other bytes on the wire, the same signature once decoded.
fn with_other_signature_encoding(token: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let unused_bits = signature.len() * 6 % 8;
    assert!(unused_bits > 0, "an RS256 signature leaves unused bits");
    let last = signature.as_bytes()[signature.len() - 1];
    let value = ALPHABET.iter().position(|&c| c == last).unwrap();
    let other = ALPHABET[value ^ 1] as char;
    format!("{signed}.{}{other}", &signature[..signature.len() - 1])
}

#[tokio::test]
async fn a_native_id_token_cannot_be_replayed_in_another_encoding() {
    let app = native_app().await;
    let spec = spec(&app).await;
    let id_token = app
        .provider
        .id_token(&app.provider.claims("native-replay", "sdk-nonce"));
    let variant = with_other_signature_encoding(&id_token);
    assert_ne!(variant, id_token);
    let sign_in = |token: String| {
        let (app, spec) = (&app, &spec);
        async move {
            let (status, started, _) =
                start_native(app, &json!({"id_token": token, "nonce": "sdk-nonce"})).await;
            assert_eq!(status, StatusCode::ACCEPTED);
            poll_until_done(
                app,
                spec,
                started["operation_id"].as_str().unwrap(),
                started["poll_secret"].as_str().unwrap(),
            )
            .await
        }
    };
    // The variant verifies: it signs in (so the decoder does accept it)…
    let first = sign_in(variant).await;
    assert_eq!(first["status"], "ok", "{first}");
    // …and the token as issued is then a replay of the same signed claims.
    let replay = sign_in(id_token).await;
    assert_eq!(replay["status"], "error", "{replay}");
    assert_eq!(replay["error"]["code"], "id_token_invalid");
    assert_eq!(app.count(entity::prelude::Session).await, 1);
}

#[tokio::test]
async fn a_password_user_links_a_provider_through_the_native_exchange() {
    let app = native_app().await;
    let spec = spec(&app).await;
    let tokens = register(&app, &spec, "linker@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    let mut claims = app.provider.claims("linked-sub", "n-1");
    claims["aud"] = json!("ios-client-id");
    let body = json!({"id_token": app.provider.id_token(&claims), "nonce": "n-1", "link": true});
    let anonymous = app_client()
        .post(format!("{}/api/auth/mock/token", app.address))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous.status(),
        StatusCode::UNAUTHORIZED,
        "linking needs the bearer token"
    );
    let response = app_client()
        .post(format!("{}/api/auth/mock/token", app.address))
        .bearer_auth(access)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let started: Value = response.json().await.unwrap();
    let done = poll_until_done(
        &app,
        &spec,
        started["operation_id"].as_str().unwrap(),
        started["poll_secret"].as_str().unwrap(),
    )
    .await;
    assert_eq!(done["status"], "ok", "{done}");
    let me: Value = get_with_bearer(&app, "/api/me", access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["providers"], json!(["mock"]));
    assert_eq!(
        me["email"], "linker@example.com",
        "the password user, not a new one"
    );
    assert_eq!(app.count(entity::prelude::UserProfile).await, 1);
}

#[tokio::test]
async fn native_requests_of_the_wrong_shape_are_400() {
    let app = native_app().await;
    let verifier = "v".repeat(50);
    for body in [
        json!({}),
        json!({"code": "c", "code_verifier": verifier}),
        json!({"code": "c", "code_verifier": verifier, "redirect_uri": "https://evil.example/cb"}),
        json!({"code": "c", "code_verifier": verifier, "redirect_uri": APP_REDIRECT, "id_token": "x", "nonce": "n"}),
        json!({"id_token": "x"}),
        json!({"code": "c", "code_verifier": "short", "redirect_uri": APP_REDIRECT}),
    ] {
        let (status, error, _) = start_native(&app, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(error["error"]["code"].is_string(), "{error}");
    }
    let response = app_client()
        .post(format!("{}/api/auth/nope/token", app.address))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.count(entity::prelude::AsyncOperation).await, 0);
}

#[tokio::test]
async fn every_json_route_is_in_the_openapi_document() {
    let app = spawn_app().await;
    let spec = spec(&app).await;
    for (method, path) in [
        ("get", "/api/providers"),
        ("get", "/api/me"),
        ("patch", "/api/me"),
        ("put", "/api/me/password"),
        ("delete", "/api/me/providers/{provider}"),
        ("post", "/api/auth/register"),
        ("post", "/api/auth/login"),
        ("post", "/api/auth/refresh"),
        ("post", "/api/auth/logout"),
        ("post", "/api/auth/{provider}/token"),
        ("get", "/api/sessions"),
        ("delete", "/api/sessions/{id}"),
        ("get", "/api/operations/{id}"),
        ("get", "/auth/status"),
    ] {
        assert!(
            spec.0["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    let (status, providers) = call(
        &spec,
        "GET",
        "/api/providers",
        app.get("/api/providers").await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(providers[0]["name"], "mock");
    let (status, _) = call(&spec, "GET", "/auth/status", app.get_status("").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let docs = app.get("/api/docs").await;
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(
        docs.text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("swagger")
    );
}

/// The native exchange starts its operation through the same queue path as the
/// browser callback: when the job cannot be queued, the app gets 503
/// `queue_unavailable` and the operation is ended, not left pending.
#[tokio::test]
async fn a_native_exchange_whose_job_cannot_be_queued_gets_503_and_ends_its_operation() {
    use sea_orm::{ConnectionTrait, EntityTrait};
    let app = native_app().await;
    app.db.execute_unprepared("DROP TABLE Jobs").await.unwrap();
    let request = json!({"code": "app-code", "code_verifier": "v".repeat(50), "redirect_uri": APP_REDIRECT, "nonce": "n"});
    let (status, body, _) = start_native(&app, &request).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "queue_unavailable", "{body}");
    let operations = entity::prelude::AsyncOperation::find()
        .all(&app.db)
        .await
        .unwrap();
    assert_eq!(operations.len(), 1);
    assert_eq!(
        operations[0].error_code.as_deref(),
        Some("queue_unavailable")
    );
}

#[tokio::test]
async fn a_native_code_exchange_without_a_nonce_is_400_and_queues_nothing() {
    let app = native_app().await;
    // The precondition: the same request with its nonce is accepted.
    let with_nonce = json!({"code": "c-1", "code_verifier": "v".repeat(50), "redirect_uri": APP_REDIRECT, "nonce": "n-1"});
    let (status, _, _) = start_native(&app, &with_nonce).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(app.count(entity::prelude::AsyncOperation).await, 1);

    let without =
        json!({"code": "c-2", "code_verifier": "v".repeat(50), "redirect_uri": APP_REDIRECT});
    let (status, body, location) = start_native(&app, &without).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "nonce_required", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(location.is_none());
    assert_eq!(app.count(entity::prelude::AsyncOperation).await, 1);
}
