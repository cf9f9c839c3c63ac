//! Operator endpoints: `/metrics` (on its own listener) moves by the right amounts,
//! `/healthz`, `/readyz`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, spawn_app, spawn_app_with};

/// The value of the sample `name{labels}` (labels as written by the exporter), or 0.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The exposition from the metrics listener.
pub async fn metrics(app: &TestApp) -> String {
    let response = reqwest::get(format!("{}/metrics", app.metrics_address))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_sign_ins_jobs_and_requests() {
    // A provider name no other test uses, so the global counters are ours alone.
    let app = spawn_app_with(Options {
        mock_name: "metered",
        // Every provider call, userinfo included, is what is metered here.
        mock_config: serde_json::json!({"kind": "oidc", "display_name": "Mock ID", "userinfo": "always"}),
        ..Options::default()
    })
    .await
    .unwrap();
    let before = metrics(&app).await;
    for n in 0..2 {
        let browser = app.new_browser();
        let authorize = browser.start_login("metered", "").await;
        let code = format!("metered-{n}");
        app.given_provider_signs_in(&authorize, &code, "metered-user")
            .await;
        browser
            .get_callback("metered", &format!("code={code}&state={}", authorize.state))
            .await;
        assert_eq!(browser.wait_for_status("").await["status"], "ok");
    }
    // One failure with a stable code.
    let authorize = app.start_login("metered", "").await;
    app.provider.given_token_error("invalid_grant", 1).await;
    app.get_callback("metered", &format!("code=spent&state={}", authorize.state))
        .await;
    assert_eq!(app.wait_for_status("").await["status"], "error");

    let after = metrics(&app).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    assert_eq!(
        delta("signin_jobs_started_total", &[("provider", "metered")]),
        3.0
    );
    assert_eq!(
        delta(
            "signin_jobs_finished_total",
            &[("provider", "metered"), ("outcome", "ok")]
        ),
        2.0
    );
    assert_eq!(
        delta(
            "signin_jobs_finished_total",
            &[
                ("provider", "metered"),
                ("outcome", "error"),
                ("code", "invalid_grant")
            ]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "signin_operation_duration_seconds_count",
            &[("provider", "metered"), ("outcome", "ok")]
        ),
        2.0
    );
    assert_eq!(
        delta(
            "signin_provider_request_duration_seconds_count",
            &[("provider", "metered"), ("endpoint", "token")]
        ),
        3.0
    );
    assert_eq!(
        delta(
            "signin_provider_request_duration_seconds_count",
            &[("provider", "metered"), ("endpoint", "userinfo")]
        ),
        2.0
    );
    assert!(
        delta(
            "signin_http_requests_total",
            &[("route", "/auth/{provider}/callback"), ("status", "303")]
        ) >= 3.0
    );
    assert!(after.contains("signin_queue_depth"));
    assert!(after.contains("signin_pending_operations"));
    // Codes and tokens never appear in the exposition.
    assert!(!after.contains("metered-0") && !after.contains("mock-access-token"));
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_and_not_on_the_public_one() {
    let app = spawn_app().await;
    // The precondition: the two listeners are distinct.
    assert_ne!(app.metrics_address, app.address);
    let scraped = reqwest::get(format!("{}/metrics", app.metrics_address))
        .await
        .unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(
        scraped.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = scraped.text().await.unwrap();
    assert!(text.contains("signin_queue_depth"), "{text}");
    assert!(text.contains("signin_pending_operations"), "{text}");
    // Nothing else there, and no metrics on the public listener.
    let other = reqwest::get(format!("{}/readyz", app.metrics_address))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.get("/metrics").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn readyz_with_a_broken_database_gives_a_generic_reason() {
    use sea_orm::ConnectionTrait;
    let app = spawn_app().await;
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    // The applied-migrations table can no longer be read: the database answers
    // `SELECT 1` but errors on the migration check, with its own error text.
    app.db
        .execute_unprepared("ALTER TABLE seaql_migrations RENAME COLUMN version TO renamed")
        .await
        .unwrap();
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "unavailable", "reason": "database unavailable"})
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"status": "ready"})
    );
}

#[tokio::test]
async fn a_provider_that_hangs_is_cut_off_within_the_bound() {
    use wiremock::{
        Mock, ResponseTemplate,
        matchers::{method, path},
    };
    let app = spawn_app_with(Options {
        mock_config: json!({"kind": "oidc", "timeout": "500ms"}),
        ..Options::default()
    })
    .await
    .unwrap();
    // Discovery answers; the token endpoint takes far longer than the timeout.
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(30)))
        .mount(&app.provider.server)
        .await;
    let authorize = app.start_login("mock", "").await;
    let started = std::time::Instant::now();
    app.return_from_provider(&authorize, "slow").await;
    let status = app.wait_for_status("").await;
    assert_eq!(status["error"]["code"], "provider_unavailable");
    // A timeout after sending is not retried (the code may be spent): about one timeout.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Route labels are the patterns poem matched, whatever the route: no table to
/// keep in step with the routes.
#[tokio::test]
async fn request_metrics_are_labelled_with_the_matched_route() {
    let app = spawn_app().await;
    let before = metrics(&app).await;
    let count = |text: &str, route: &str, status: &str| {
        sample(
            text,
            "signin_http_requests_total",
            &[("route", route), ("status", status)],
        )
    };
    let client = crate::helpers::app_client();
    let id = uuid::Uuid::new_v4();
    for path in [
        "/.well-known/jwks.json".to_owned(),
        format!("/api/sessions/{id}"),
        "/no/such/page".to_owned(),
        "/auth/status".to_owned(),
    ] {
        client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
    }
    app.browser.get_login("mock").await;
    let after = metrics(&app).await;
    for (route, status) in [
        ("/.well-known/jwks.json", "200"),
        ("/auth/{provider}/login", "303"),
        // poem-openapi names path parameters by position.
        ("/api/sessions/{param0}", "405"),
        ("/auth/status", "404"),
        ("other", "404"),
    ] {
        assert!(
            count(&after, route, status) - count(&before, route, status) >= 1.0,
            "{route} {status}:\n{}",
            after
                .lines()
                .filter(|l| l.starts_with("signin_http_requests_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
