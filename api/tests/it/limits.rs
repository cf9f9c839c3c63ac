//! Bounds that hold whatever a client does with its cookies or addresses: pending
//! operations per client address (IPv6: per /64) and in all, long polls held open
//! at once, and password hashes computed at once. Each test first shows its bound
//! was reached, then what the next request gets, then that nothing was lost.

use std::time::{Duration, Instant};

use entity::{
    async_operation::{self, OperationStatus},
    prelude::AsyncOperation,
};
use reqwest::{StatusCode, header::HeaderValue, redirect::Policy};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, Browser, Options, TEST_PASSWORD, TestApp, app_client, assert_to_preloader,
    openapi::Spec, register, spawn_app_with,
};

/// A browser (own cookie jar) whose requests come through our trusted proxy from
/// `ip`; a fresh one per attempt is a client that drops its cookies.
fn browser_at(app: &TestApp, ip: &str) -> Browser {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-forwarded-for", HeaderValue::from_str(ip).unwrap());
    Browser {
        address: app.address.clone(),
        client: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(Policy::none())
            .default_headers(headers)
            .timeout(Duration::from_secs(40))
            .build()
            .unwrap(),
    }
}

/// The app behind a trusted proxy (the test client, 127.0.0.1) with `limits`, and
/// no worker, so operations stay pending until a test ends them.
async fn app_with_limits(backend: Backend, limits: Value) -> Option<TestApp> {
    spawn_app_with(Options {
        backend,
        embedded_worker: false,
        overrides: json!({"trusted_proxies": ["127.0.0.1"], "limits": limits}),
        ..Options::default()
    })
    .await
}

/// Login, provider and callback in `browser`; the callback's response.
async fn sign_in_attempt(browser: &Browser) -> reqwest::Response {
    let authorize = browser.start_login("mock", "").await;
    browser.return_from_provider(&authorize, "some-code").await
}

/// `POST /api/auth/mock/token` from `ip`.
async fn native_exchange(app: &TestApp, ip: &str) -> reqwest::Response {
    app_client()
        .post(format!("{}/api/auth/mock/token", app.address))
        .header("x-forwarded-for", ip)
        .json(&json!({"id_token": "x.y.z", "nonce": "n-123456"}))
        .send()
        .await
        .unwrap()
}

async fn pending(app: &TestApp) -> Vec<async_operation::Model> {
    AsyncOperation::find()
        .filter(async_operation::Column::Status.eq(OperationStatus::Pending))
        .all(&app.db)
        .await
        .unwrap()
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After on {}", response.status()))
}

async fn assert_json_error(response: reqwest::Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    assert!(retry_after(&response) >= 1);
    let body: Value = response.json().await.expect("a JSON error");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    body
}

#[tokio::test]
async fn a_client_that_drops_its_cookies_is_capped_per_address_on_sqlite() {
    let app = app_with_limits(Backend::Sqlite, json!({"pending_operations_per_ip": 2}));
    a_client_that_drops_its_cookies_is_capped_per_address(app.await.unwrap()).await;
}

#[tokio::test]
async fn a_client_that_drops_its_cookies_is_capped_per_address_on_postgres() {
    let app = app_with_limits(Backend::Postgres, json!({"pending_operations_per_ip": 2}));
    if let Some(app) = app.await {
        a_client_that_drops_its_cookies_is_capped_per_address(app).await;
    }
}

async fn a_client_that_drops_its_cookies_is_capped_per_address(app: TestApp) {
    // Two sign-ins from one address, each in a fresh cookie jar (a fresh browser key).
    for _ in 0..2 {
        assert_to_preloader(&sign_in_attempt(&browser_at(&app, "203.0.113.9")).await);
    }
    let held = pending(&app).await;
    assert_eq!(held.len(), 2);
    assert!(
        held.iter()
            .all(|op| op.client_key.as_deref() == Some("203.0.113.9"))
    );
    assert_ne!(held[0].redeemer_hash, held[1].redeemer_hash, "two browsers");

    // A third fresh browser from that address is refused; so is its native exchange.
    let refused = sign_in_attempt(&browser_at(&app, "203.0.113.9")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&refused) >= 1);
    assert!(
        refused.text().await.unwrap().contains("<html"),
        "an error page"
    );
    let native = native_exchange(&app, "203.0.113.9").await;
    assert_json_error(native, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    assert_eq!(pending(&app).await.len(), 2, "nothing recorded");

    // Another address is not affected, and native exchanges count too.
    assert_to_preloader(&sign_in_attempt(&browser_at(&app, "203.0.113.10")).await);
    assert_eq!(
        native_exchange(&app, "203.0.113.10").await.status(),
        StatusCode::ACCEPTED
    );
    let refused = sign_in_attempt(&browser_at(&app, "203.0.113.10")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);

    // Once an operation ends, the address may start another.
    worker::operations::mark_error(&app.db, held[0].id, "timeout", "x")
        .await
        .unwrap();
    assert_to_preloader(&sign_in_attempt(&browser_at(&app, "203.0.113.9")).await);
}

#[tokio::test]
async fn ipv6_clients_are_limited_per_64_and_ipv4_mapped_as_ipv4() {
    let app = app_with_limits(
        Backend::Sqlite,
        json!({"sign_in_starts_per_ip_per_minute": 1, "pending_operations_per_ip": 1}),
    )
    .await
    .unwrap();
    let login = |ip: &'static str| {
        let browser = browser_at(&app, ip);
        async move { browser.get_login("mock").await.status() }
    };
    // One sign-in start a minute per /64: rotating the low 64 bits earns nothing…
    let first = browser_at(&app, "2001:db8:1:2::1");
    assert_to_preloader(&sign_in_attempt(&first).await);
    assert_eq!(
        login("2001:db8:1:2::2").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login("2001:db8:1:2:ffff:ffff:ffff:ffff").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // …the next /64 is another client.
    assert_eq!(login("2001:db8:1:3::1").await, StatusCode::SEE_OTHER);
    // The pending operation is keyed on the /64 too.
    let held = pending(&app).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].client_key.as_deref(), Some("2001:db8:1:2::/64"));
    let native = native_exchange(&app, "2001:db8:1:2::abcd").await;
    assert_json_error(native, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;

    // IPv4 is keyed on the full address, however it is written.
    assert_eq!(login("203.0.113.5").await, StatusCode::SEE_OTHER);
    assert_eq!(
        login("::ffff:203.0.113.5").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(login("203.0.113.6").await, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_full_queue_refuses_new_sign_ins_at_once_on_sqlite() {
    let app = app_with_limits(Backend::Sqlite, json!({"pending_operations_total": 2}));
    a_full_queue_refuses_new_sign_ins_at_once(app.await.unwrap()).await;
}

#[tokio::test]
async fn a_full_queue_refuses_new_sign_ins_at_once_on_postgres() {
    let app = app_with_limits(Backend::Postgres, json!({"pending_operations_total": 2}));
    if let Some(app) = app.await {
        a_full_queue_refuses_new_sign_ins_at_once(app).await;
    }
}

async fn a_full_queue_refuses_new_sign_ins_at_once(app: TestApp) {
    // Two clients, two addresses: the queue holds its cap.
    assert_to_preloader(&sign_in_attempt(&browser_at(&app, "203.0.113.1")).await);
    assert_eq!(
        native_exchange(&app, "203.0.113.2").await.status(),
        StatusCode::ACCEPTED
    );
    let held = pending(&app).await;
    assert_eq!(held.len(), 2, "the queue is at its cap");

    // Anyone else gets 503 at once: a page in the browser, JSON for apps.
    let started = Instant::now();
    let refused = sign_in_attempt(&browser_at(&app, "203.0.113.3")).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after(&refused) >= 1);
    let page = refused.text().await.unwrap();
    assert!(page.contains("Too many sign-ins right now"), "{page}");
    let native = native_exchange(&app, "203.0.113.4").await;
    assert_json_error(native, StatusCode::SERVICE_UNAVAILABLE, "busy").await;
    assert!(started.elapsed() < Duration::from_secs(5), "fails fast");
    assert_eq!(pending(&app).await.len(), 2, "nothing recorded");

    // When one ends, a new sign-in gets in within about a second (the count is
    // cached that long). Each try is a whole new attempt.
    worker::operations::mark_error(&app.db, held[0].id, "timeout", "x")
        .await
        .unwrap();
    let mut admitted = false;
    for _ in 0..20 {
        let response = sign_in_attempt(&browser_at(&app, "203.0.113.5")).await;
        if response.status() == StatusCode::SEE_OTHER {
            assert_to_preloader(&response);
            admitted = true;
            break;
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(admitted, "a freed slot is used again within 5 s");
}

#[tokio::test]
async fn long_polls_beyond_the_cap_answer_at_once_with_retry_after() {
    let app = app_with_limits(Backend::Sqlite, json!({"concurrent_long_polls": 1}))
        .await
        .unwrap();
    let first = browser_at(&app, "203.0.113.1");
    let first_id = assert_to_preloader(&sign_in_attempt(&first).await);
    let second = browser_at(&app, "203.0.113.2");
    assert_to_preloader(&sign_in_attempt(&second).await);

    // The first browser's long poll takes the only slot.
    let waiting = tokio::spawn(async move { first.get_status("?wait=25").await });
    let mut full = false;
    for _ in 0..100 {
        if app.state.limits.long_poll_slots_free() == Some(0) {
            full = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(full, "the first long poll holds the only slot");

    // The second answers at once, pending, and says when to ask again.
    let started = Instant::now();
    let response = second.get_status("?wait=25").await;
    assert!(started.elapsed() < Duration::from_secs(5), "did not wait");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(retry_after(&response) >= 1);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "pending");

    // So does an app's operation poll.
    let started_op: Value = native_exchange(&app, "203.0.113.3")
        .await
        .json()
        .await
        .unwrap();
    let started = Instant::now();
    let response = app_client()
        .get(format!(
            "{}{}?wait=25",
            app.address,
            started_op["status_url"].as_str().unwrap()
        ))
        .header("x-poll-secret", started_op["poll_secret"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "did not wait");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(retry_after(&response) >= 1);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "pending");

    // Nothing is lost: the first poll still gets its answer, and its slot is free again.
    worker::operations::mark_error(&app.db, first_id, "timeout", "x")
        .await
        .unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the long poll answers")
        .unwrap();
    assert_eq!(answered.json::<Value>().await.unwrap()["status"], "error");
    assert_eq!(app.state.limits.long_poll_slots_free(), Some(1));
    let response = second.get_status("?wait=1").await;
    assert!(response.headers().get("retry-after").is_none(), "it waited");
}

#[tokio::test]
async fn password_hashing_beyond_its_slots_answers_503_busy_and_loses_nothing() {
    let app = app_with_limits(Backend::Sqlite, json!({"password_hashing_concurrency": 1}))
        .await
        .unwrap();
    assert_eq!(
        register(&app, "ada@example.com").await.status(),
        StatusCode::CREATED
    );
    let login = || {
        app_client()
            .post(format!("{}/api/auth/login", app.address))
            .json(&json!({"email": "ada@example.com", "password": TEST_PASSWORD}))
            .send()
    };
    let tokens: Value = login().await.unwrap().json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    // Every hashing slot is taken (as by a flood of logins in flight).
    let held = app.state.hashing.try_hold().expect("the only slot is free");
    assert!(app.state.hashing.try_hold().is_none(), "the pool is full");
    let busy = login().await.unwrap();
    let body = assert_json_error(busy, StatusCode::SERVICE_UNAVAILABLE, "busy").await;
    let spec = Spec(app.get("/api/openapi.json").await.json().await.unwrap());
    spec.assert_response("POST", "/api/auth/login", 503, &body);
    let unknown = app_client()
        .post(format!("{}/api/auth/login", app.address))
        .json(&json!({"email": "nobody@example.com", "password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_json_error(unknown, StatusCode::SERVICE_UNAVAILABLE, "busy").await;
    let busy = register(&app, "grace@example.com").await;
    assert_json_error(busy, StatusCode::SERVICE_UNAVAILABLE, "busy").await;
    let change = app_client()
        .put(format!("{}/api/me/password", app.address))
        .bearer_auth(&access)
        .json(&json!({"current_password": TEST_PASSWORD, "password": "amber-quarry-lighthouse-77"}))
        .send()
        .await
        .unwrap();
    assert_json_error(change, StatusCode::SERVICE_UNAVAILABLE, "busy").await;

    // Nothing was lost: with the slot free again, the same requests succeed.
    drop(held);
    assert_eq!(login().await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        register(&app, "grace@example.com").await.status(),
        StatusCode::CREATED
    );
    let users = entity::prelude::UserProfile::find()
        .count(&app.db)
        .await
        .unwrap();
    assert_eq!(users, 2);
}
