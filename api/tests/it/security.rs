//! Browser protections: security headers, the same-origin check on cookie-authenticated
//! changes (CSRF), per-IP budgets and the pending-operation cap. Each test fails if
//! its protection is removed (`docs/security.md` names them).

use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    Options, TEST_PASSWORD, TestApp, assert_redirect_to, assert_to_preloader, get_with_bearer,
    register, set_cookie_value, spawn_app, spawn_app_with,
};

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app
        .browser
        .client
        .request(method, format!("{}{path}", app.address));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request sent")
}

#[tokio::test]
async fn pages_carry_a_strict_csp_and_cannot_be_framed() {
    let app = spawn_app().await;
    for path in ["/", "/auth/preloader", "/auth/error?reason=access_denied"] {
        let response = app.get(path).await;
        let csp = header(&response, "content-security-policy");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(header(&response, "x-frame-options"), "DENY", "{path}");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        // Plain http: no HSTS.
        assert!(
            response
                .headers()
                .get("strict-transport-security")
                .is_none()
        );
    }
    // Browsers ask every site for a favicon; a 404 would be a console error.
    let icon = app.get("/favicon.ico").await;
    assert_eq!(icon.status(), StatusCode::OK);
    assert_eq!(header(&icon, "content-type"), "image/svg+xml");
    // No page we serve runs inline script (the CSP would block it).
    for file in ["/", "/auth/preloader", "/static/example.html"] {
        let body = app.get(file).await.text().await.unwrap();
        assert!(
            !body.contains("<script>") && !body.contains(" onclick="),
            "{file} has inline script"
        );
    }
}

#[tokio::test]
async fn callback_and_preloader_send_no_referrer_and_are_never_cached() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    let code = format!("code-{}", Uuid::new_v4().simple());
    app.given_provider_signs_in(&authorize, &code, "ref-user")
        .await;
    let callback = app.return_from_provider(&authorize, &code).await;
    assert_to_preloader(&callback);
    let preloader = app.get("/auth/preloader").await;
    let status = app.get_status("").await;
    let login = app.get_login("mock").await;
    for (name, response) in [
        ("callback", &callback),
        ("preloader", &preloader),
        ("login", &login),
    ] {
        assert_eq!(header(response, "referrer-policy"), "no-referrer", "{name}");
        assert_eq!(header(response, "cache-control"), "no-store", "{name}");
    }
    assert_eq!(header(&status, "cache-control"), "no-store");
    // The signed-in page names the user: not cached either.
    assert_eq!(header(&app.get("/").await, "cache-control"), "no-store");
}

#[tokio::test]
async fn hsts_is_sent_when_public_url_is_https() {
    let app = spawn_app_with(Options {
        overrides: json!({"public_url": "https://signin.example.com"}),
        ..Options::default()
    })
    .await
    .unwrap();
    let response = app.get("/").await;
    assert!(
        header(&response, "strict-transport-security").starts_with("max-age="),
        "{:?}",
        response.headers()
    );
}

#[tokio::test]
async fn cookies_are_secure_and_prefixed_on_https() {
    let app = spawn_app_with(Options {
        overrides: json!({"public_url": "https://signin.example.com"}),
        ..Options::default()
    })
    .await
    .unwrap();
    let login = app.get_login("mock").await;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let cookies: Vec<&str> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let browser = cookies
        .iter()
        .find(|c| c.starts_with("__Host-signin_browser="))
        .unwrap_or_else(|| panic!("{cookies:?}"));
    let attempt = cookies
        .iter()
        .find(|c| c.starts_with("__Secure-signin_attempt_"))
        .unwrap_or_else(|| panic!("{cookies:?}"));
    for cookie in [browser, attempt] {
        for flag in ["Secure", "HttpOnly", "SameSite=Lax"] {
            assert!(cookie.contains(flag), "{cookie}");
        }
        assert!(!cookie.to_lowercase().contains("domain="), "{cookie}");
    }
    assert!(
        browser.contains("Path=/;") || browser.ends_with("Path=/"),
        "{browser}"
    );
}

#[tokio::test]
async fn cross_site_logout_is_refused_and_the_session_survives() {
    let app = spawn_app().await;
    app.sign_in(&app.browser, "csrf-user").await;
    for headers in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("sec-fetch-site", "same-site")][..],
        &[("origin", "https://evil.example")][..],
    ] {
        let response = send(&app, Method::POST, "/auth/logout", headers).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert_eq!(app.get_me().await.status(), StatusCode::OK, "{headers:?}");
    }
    // From our own page it works.
    let response = send(
        &app,
        Method::POST,
        "/auth/logout",
        &[("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_redirect_to(&response, "/");
    assert_eq!(app.get_me().await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cookie_authenticated_api_changes_need_our_origin() {
    let app = spawn_app().await;
    app.sign_in(&app.browser, "csrf-api-user").await;
    let cross = [("sec-fetch-site", "cross-site")];
    // Unlink, profile edit, API logout: all refused cross-site with the cookie.
    for (method, path) in [
        (Method::DELETE, "/api/me/providers/mock"),
        (Method::PATCH, "/api/me"),
        (Method::POST, "/api/auth/logout"),
    ] {
        let response = send(&app, method.clone(), path, &cross).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "cross_site_request");
    }
    assert_eq!(app.get_me().await.status(), StatusCode::OK);
    // Reads stay allowed cross-site (CORS decides who may read them).
    let me = send(&app, Method::GET, "/api/me", &cross).await;
    assert_eq!(me.status(), StatusCode::OK);
}

#[tokio::test]
async fn linking_cannot_be_started_from_another_site() {
    let app = spawn_app().await;
    app.sign_in(&app.browser, "link-csrf-user").await;
    let response = send(
        &app,
        Method::GET,
        "/auth/mock/login?link=1",
        &[("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = send(
        &app,
        Method::GET,
        "/auth/mock/login?link=1",
        &[("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

fn limited(limits: serde_json::Value) -> Options {
    Options {
        overrides: json!({ "limits": limits }),
        ..Options::default()
    }
}

#[tokio::test]
async fn sign_in_starts_are_limited_per_ip() {
    let app = spawn_app_with(limited(json!({"sign_in_starts_per_ip_per_minute": 2})))
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(app.get_login("mock").await.status(), StatusCode::SEE_OTHER);
    }
    // Another browser on the same address shares the budget.
    let response = app.new_browser().get_login("mock").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&response, "retry-after").parse::<u64>().unwrap() >= 1);
}

#[tokio::test]
async fn callbacks_and_status_polls_are_limited_per_ip() {
    let app = spawn_app_with(limited(json!({
        "callbacks_per_ip_per_minute": 1,
        "status_polls_per_ip_per_minute": 2,
    })))
    .await
    .unwrap();
    assert_eq!(
        app.get_callback("mock", "state=x&code=y").await.status(),
        StatusCode::BAD_REQUEST
    );
    let response = app.get_callback("mock", "state=x&code=y").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(!header(&response, "retry-after").is_empty());

    for _ in 0..2 {
        assert_eq!(app.get_status("").await.status(), StatusCode::NOT_FOUND);
    }
    let response = app.get_status("").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");
    let response = app
        .get(&format!("/api/operations/{}", Uuid::new_v4()))
        .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn one_browser_cannot_pile_up_pending_operations() {
    let app = spawn_app_with(Options {
        embedded_worker: false,
        ..limited(json!({"pending_operations_per_browser": 2}))
    })
    .await
    .unwrap();
    for _ in 0..2 {
        let authorize = app.start_login("mock", "").await;
        let response = app.return_from_provider(&authorize, "some-code").await;
        assert_to_preloader(&response);
    }
    let authorize = app.start_login("mock", "").await;
    let response = app.return_from_provider(&authorize, "some-code").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another browser is not affected.
    let other = app.new_browser();
    let authorize = other.start_login("mock", "").await;
    let response = other.return_from_provider(&authorize, "some-code").await;
    assert_to_preloader(&response);
}

const PASSWORD: &str = TEST_PASSWORD;
const NEW_PASSWORD: &str = "amber-quarry-lighthouse-77";

async fn put_password(
    app: &TestApp,
    access_token: &str,
    body: serde_json::Value,
) -> reqwest::Response {
    reqwest::Client::new()
        .put(format!("{}/api/me/password", app.address))
        .bearer_auth(access_token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn me_with(app: &TestApp, access_token: &str) -> StatusCode {
    get_with_bearer(app, "/api/me", access_token).await.status()
}

#[tokio::test]
async fn registrations_and_native_sign_ins_are_limited_per_ip() {
    let app = spawn_app_with(limited(json!({
        "registrations_per_ip_per_minute": 1,
        "native_sign_ins_per_ip_per_minute": 1,
    })))
    .await
    .unwrap();
    assert_eq!(
        register(&app, "one@example.com").await.status(),
        StatusCode::CREATED
    );
    let second = register(&app, "two@example.com").await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(!header(&second, "retry-after").is_empty());

    let native = |body: serde_json::Value| {
        reqwest::Client::new()
            .post(format!("{}/api/auth/mock/token", app.address))
            .json(&body)
            .send()
    };
    let first = native(json!({"id_token": "x.y.z", "nonce": "n-123456"}))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let second = native(json!({"id_token": "x.y.z", "nonce": "n-123456"}))
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn current_password_guesses_are_limited_per_account() {
    let app = spawn_app_with(limited(json!({"login_per_account_per_hour": 2})))
        .await
        .unwrap();
    let tokens: serde_json::Value = register(&app, "guess@example.com")
        .await
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    for _ in 0..2 {
        let wrong = put_password(
            &app,
            access,
            json!({"current_password": "not-it-at-all-000", "password": NEW_PASSWORD}),
        )
        .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = put_password(
        &app,
        access,
        json!({"current_password": PASSWORD, "password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions() {
    let app = spawn_app().await;
    let first: serde_json::Value = register(&app, "change@example.com")
        .await
        .json()
        .await
        .unwrap();
    let second: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/api/auth/login", app.address))
        .json(&json!({"email": "change@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (this, other) = (
        first["access_token"].as_str().unwrap(),
        second["access_token"].as_str().unwrap(),
    );
    assert_eq!(me_with(&app, other).await, StatusCode::OK);
    let changed = put_password(
        &app,
        this,
        json!({"current_password": PASSWORD, "password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        me_with(&app, this).await,
        StatusCode::OK,
        "this session stays"
    );
    assert_eq!(me_with(&app, other).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_first_password_needs_a_recent_sign_in() {
    use entity::session;
    let app = spawn_app().await;
    app.sign_in(&app.browser, "old-session-user").await;
    // The session began an hour ago.
    crate::helpers::rows::set_on_all::<entity::prelude::Session>(
        &app.db,
        session::Column::CreatedAt,
        chrono::Utc::now() - chrono::Duration::hours(1),
    )
    .await;
    let response = send_json(
        &app,
        Method::PUT,
        "/api/me/password",
        json!({"password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "reauthentication_required");

    // A fresh sign-in may.
    let fresh = app.new_browser();
    app.sign_in(&fresh, "old-session-user").await;
    let response = fresh
        .client
        .put(format!("{}/api/me/password", app.address))
        .json(&json!({"password": NEW_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

async fn send_json(
    app: &TestApp,
    method: Method,
    path: &str,
    body: serde_json::Value,
) -> reqwest::Response {
    app.browser
        .client
        .request(method, format!("{}{path}", app.address))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn sessions_end_at_their_maximum_lifetime_however_active() {
    use entity::session;
    let app = spawn_app().await;
    app.sign_in(&app.browser, "long-lived").await;
    let tokens: serde_json::Value = register(&app, "long@example.com")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(app.get_me().await.status(), StatusCode::OK);
    // Both sessions began 91 days ago (the default maximum is 90 days), though
    // they were used just now.
    crate::helpers::rows::set_on_all::<entity::prelude::Session>(
        &app.db,
        session::Column::CreatedAt,
        chrono::Utc::now() - chrono::Duration::days(91),
    )
    .await;
    assert_eq!(app.get_me().await.status(), StatusCode::UNAUTHORIZED);
    let refreshed = reqwest::Client::new()
        .post(format!("{}/api/auth/refresh", app.address))
        .json(&json!({"refresh_token": tokens["refresh_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        me_with(&app, tokens["access_token"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn per_ip_budgets_use_x_forwarded_for_only_from_trusted_proxies() {
    let login = |app: &TestApp, forwarded: &'static str| {
        let app_address = app.address.clone();
        async move {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .get(format!("{app_address}/auth/mock/login"))
                .header("x-forwarded-for", forwarded)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Behind a trusted proxy (the test client is 127.0.0.1): one budget per client.
    let app = spawn_app_with(Options {
        overrides: json!({"trusted_proxies": ["127.0.0.1", "10.0.0.0/8"],
                          "limits": {"sign_in_starts_per_ip_per_minute": 1}}),
        ..Options::default()
    })
    .await
    .unwrap();
    assert_eq!(login(&app, "203.0.113.5").await, StatusCode::SEE_OTHER);
    assert_eq!(
        login(&app, "203.0.113.5, 10.1.2.3").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // What the client claims left of the last untrusted hop does not matter.
    assert_eq!(
        login(&app, "198.51.100.1, 203.0.113.6").await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        login(&app, "1.2.3.4, 203.0.113.6").await,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Without trusted proxies the header is ignored: everyone here is 127.0.0.1.
    let app = spawn_app_with(limited(json!({"sign_in_starts_per_ip_per_minute": 1})))
        .await
        .unwrap();
    assert_eq!(login(&app, "203.0.113.5").await, StatusCode::SEE_OTHER);
    assert_eq!(
        login(&app, "203.0.113.6").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_session_cookie_present_at_sign_in_is_replaced_and_revoked() {
    let app = spawn_app().await;
    app.sign_in(&app.browser, "fixation-a").await;
    // The browser signs in again while still holding its session (e.g. one an
    // attacker planted): the old token is revoked, a new one issued.
    let old = {
        use entity::{prelude::Session, session};
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        Session::find()
            .filter(session::Column::RevokedAt.is_null())
            .one(&app.db)
            .await
            .unwrap()
            .unwrap()
    };
    let authorize = app.start_login("mock", "?link=1").await;
    let code = format!("code-{}", Uuid::new_v4().simple());
    app.given_provider_signs_in(&authorize, &code, "fixation-a")
        .await;
    app.return_from_provider(&authorize, &code).await;
    app.wait_for_status("").await;
    let success = app.get_success("").await;
    let new_token = set_cookie_value(&success, "signin_session").expect("a new session cookie");
    assert_ne!(worker::crypto::sha256_hex(&new_token), old.token_hash);
    let old_now = {
        use entity::prelude::Session;
        use sea_orm::EntityTrait;
        Session::find_by_id(old.id)
            .one(&app.db)
            .await
            .unwrap()
            .unwrap()
    };
    assert!(
        old_now.revoked_at.is_some(),
        "the earlier session is revoked"
    );
    assert_eq!(app.get_me().await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_idle_session_expires() {
    use entity::session;
    let app = spawn_app().await;
    app.sign_in(&app.browser, "idle-user").await;
    crate::helpers::rows::set_on_all::<entity::prelude::Session>(
        &app.db,
        session::Column::ExpiresAt,
        chrono::Utc::now() - chrono::Duration::seconds(1),
    )
    .await;
    assert_eq!(app.get_me().await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn session_refresh_and_poll_secrets_are_stored_hashed() {
    use entity::prelude::{AsyncOperation, RefreshToken, Session};
    use sea_orm::EntityTrait;
    let app = spawn_app().await;
    let tokens: serde_json::Value = register(&app, "hashed@example.com")
        .await
        .json()
        .await
        .unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let started: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/api/auth/mock/token", app.address))
        .json(&json!({"id_token": "a.b.c", "nonce": "nonce-1234"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let poll_secret = started["poll_secret"].as_str().unwrap();
    app.sign_in(&app.browser, "hashed-browser").await;

    let mut stored = String::new();
    for s in Session::find().all(&app.db).await.unwrap() {
        stored.push_str(&format!("{s:?}"));
    }
    for r in RefreshToken::find().all(&app.db).await.unwrap() {
        stored.push_str(&format!("{r:?}"));
    }
    for o in AsyncOperation::find().all(&app.db).await.unwrap() {
        stored.push_str(&format!("{o:?}"));
    }
    assert!(!stored.contains(refresh), "refresh token stored in clear");
    assert!(!stored.contains(poll_secret), "poll secret stored in clear");
    assert!(stored.contains(&worker::crypto::sha256_hex(refresh)));
    assert!(stored.contains(&worker::crypto::sha256_hex(poll_secret)));
}

#[tokio::test]
async fn expired_or_foreign_access_tokens_are_refused() {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let app = spawn_app().await;
    let tokens: serde_json::Value = register(&app, "jwt@example.com")
        .await
        .json()
        .await
        .unwrap();
    let genuine = tokens["access_token"].as_str().unwrap();
    assert_eq!(me_with(&app, genuine).await, StatusCode::OK);
    let claims: serde_json::Value = {
        use base64::Engine;
        let payload = genuine.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    let key = EncodingKey::from_secret(&app.state.keys.access_tokens);
    let now = chrono::Utc::now().timestamp();
    let mut expired = claims.clone();
    expired["iat"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let mut foreign = claims.clone();
    foreign["iss"] = json!("https://elsewhere.example");
    for (name, forged) in [("expired", expired), ("foreign issuer", foreign)] {
        let token = encode(&Header::default(), &forged, &key).unwrap();
        assert_eq!(
            me_with(&app, &token).await,
            StatusCode::UNAUTHORIZED,
            "{name}"
        );
    }
    // Signed with another key.
    let other = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(b"another-key-entirely-0123456789ab"),
    )
    .unwrap();
    assert_eq!(me_with(&app, &other).await, StatusCode::UNAUTHORIZED);
}

/// `docs/security.md` names, for each row, the test that proves it: every name must
/// be a test function that exists, so the checklist cannot drift from the code.
#[test]
fn the_security_checklist_names_only_tests_that_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/security.md")).unwrap();
    let mut checked = 0;
    for cell in doc.split('`') {
        let Some((file, rest)) = cell.split_once(".rs::") else {
            continue;
        };
        let is_test_path = file.starts_with("api/tests/")
            || file.ends_with("/tests")
            || rest.starts_with("tests::");
        if !is_test_path || file.contains('<') {
            continue;
        }
        let function = rest.rsplit("::").next().unwrap();
        let source = std::fs::read_to_string(root.join(format!("{file}.rs")))
            .unwrap_or_else(|_| panic!("docs/security.md names a missing file: {file}.rs"));
        assert!(
            source.contains(&format!("fn {function}(")),
            "docs/security.md names {file}.rs::{rest}, which does not exist"
        );
        checked += 1;
    }
    assert!(checked >= 50, "only {checked} test names found");
}

#[tokio::test]
async fn queued_jobs_hold_no_plaintext_secrets() {
    use sea_orm::{ConnectionTrait, Statement};
    // No worker: the job stays in the table to be looked at.
    let app = crate::helpers::spawn_app_without_worker().await;
    let authorize = app.start_login("mock", "").await;
    let code = format!("code-SECRET-{}", Uuid::new_v4().simple());
    let callback = app.return_from_provider(&authorize, &code).await;
    assert_to_preloader(&callback);
    let rows = app
        .db
        .query_all_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT job FROM Jobs",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let stored: Vec<u8> = rows[0].try_get("", "job").unwrap();
    let stored = String::from_utf8_lossy(&stored);
    assert!(stored.contains("\"provider\":\"mock\""), "{stored}");
    assert!(
        !stored.contains(&code),
        "the code is stored in clear: {stored}"
    );
    assert!(
        !stored.contains(authorize.nonce.as_deref().unwrap()),
        "{stored}"
    );
    assert!(
        !stored.contains("127.0.0.1"),
        "the client address is stored in clear"
    );
}
