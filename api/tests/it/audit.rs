//! The audit log: `auth_event` rows and `GET /api/me/events`, and its retention.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Browser, TEST_PASSWORD, TestApp, get_with_bearer, register, spawn_app};

const PASSWORD: &str = TEST_PASSWORD;

async fn events(browser: &Browser) -> Vec<Value> {
    let response = browser.get("/api/me/events").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The browser's events once one of `kind` is there (the worker writes its events
/// just after finishing the operation).
async fn wait_for_event(browser: &Browser, kind: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = events(browser).await;
        if events.iter().any(|e| e["kind"] == kind) {
            return events;
        }
        assert!(Instant::now() < deadline, "no {kind} event in {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["kind"].as_str()).collect()
}

#[tokio::test]
async fn a_user_sees_their_sign_ins_and_revoked_sessions() {
    let app = spawn_app().await;
    let first = app.new_browser();
    app.sign_in(&first, "audited").await;
    let seen = wait_for_event(&first, "sign_in_succeeded").await;
    let success = seen
        .iter()
        .find(|e| e["kind"] == "sign_in_succeeded")
        .unwrap();
    assert_eq!(success["provider"], "mock");
    assert_eq!(success["ip"], "127.0.0.1");

    // Logging out revokes the session; the user sees it from another browser.
    assert_eq!(first.post_logout().await.status(), StatusCode::SEE_OTHER);
    app.sign_in(&app.browser, "audited").await;
    let seen = wait_for_event(&app.browser, "session_revoked").await;
    assert!(
        kinds(&seen)
            .iter()
            .filter(|k| **k == "sign_in_succeeded")
            .count()
            >= 2
    );
    // Newest first.
    let times: Vec<&str> = seen
        .iter()
        .filter_map(|e| e["created_at"].as_str())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);
    // Nothing secret in there.
    let text = serde_json::to_string(&seen).unwrap();
    assert!(!text.contains("code-"), "{text}");

    // Another user sees none of it.
    let other: Value = register(&app, "other@example.com")
        .await
        .json()
        .await
        .unwrap();
    // Their registration is written in the background: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let theirs = loop {
        let theirs: Vec<Value> = get_with_bearer(
            &app,
            "/api/me/events",
            other["access_token"].as_str().unwrap(),
        )
        .await
        .json()
        .await
        .unwrap();
        if !theirs.is_empty() || Instant::now() >= deadline {
            break theirs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Only their own registration, nothing of the first user's.
    assert_eq!(kinds(&theirs), ["sign_in_succeeded"], "{theirs:?}");
    assert_eq!(theirs[0]["provider"], "password");

    // Paging and bad input.
    let page = app.get("/api/me/events?limit=1").await;
    assert_eq!(page.json::<Vec<Value>>().await.unwrap().len(), 1);
    assert_eq!(
        app.get("/api/me/events?limit=0").await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.new_browser().get("/api/me/events").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn password_failures_and_refresh_token_reuse_are_recorded() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{}{path}", app.address))
            .json(&body)
            .send()
    };
    let registered: Value = register(&app, "audit@example.com")
        .await
        .json()
        .await
        .unwrap();
    let wrong = post(
        "/api/auth/login",
        json!({"email": "audit@example.com", "password": "not-the-password-at-all"}),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // Use the refresh token twice, the second time after the grace period: reuse.
    let refresh = json!({"refresh_token": registered["refresh_token"]});
    assert_eq!(
        post("/api/auth/refresh", refresh.clone())
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    crate::helpers::rows::set_on_all::<entity::prelude::RefreshToken>(
        &app.db,
        entity::refresh_token::Column::UsedAt,
        chrono::Utc::now() - chrono::Duration::minutes(1),
    )
    .await;
    assert_eq!(
        post("/api/auth/refresh", refresh).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    let tokens: Value = post(
        "/api/auth/login",
        json!({"email": "audit@example.com", "password": PASSWORD}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    // Rows are written in the background: wait for all three.
    let access = tokens["access_token"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let events: Vec<Value> = get_with_bearer(&app, "/api/me/events", access)
            .await
            .json()
            .await
            .unwrap();
        let seen = kinds(&events);
        if [
            "password_failure",
            "refresh_token_reuse",
            "session_revoked",
            "sign_in_succeeded",
        ]
        .iter()
        .all(|k| seen.contains(k))
        {
            break events;
        }
        assert!(Instant::now() < deadline, "{seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !text.contains(PASSWORD) && !text.contains(registered["refresh_token"].as_str().unwrap())
    );
}

#[tokio::test]
async fn failed_and_started_sign_ins_are_in_the_table() {
    use entity::{auth_event, prelude::AuthEvent};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    let denied = app
        .get_callback(
            "mock",
            &format!("error=access_denied&state={}", authorize.state),
        )
        .await;
    assert_eq!(denied.status(), StatusCode::SEE_OTHER);
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = AuthEvent::find()
            .filter(auth_event::Column::Provider.eq("mock"))
            .all(&app.db)
            .await
            .unwrap();
        if rows.len() >= 2 {
            break rows;
        }
        assert!(Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let started = rows.iter().find(|e| e.kind == "sign_in_started").unwrap();
    assert_eq!(started.ip.as_deref(), Some("127.0.0.1"));
    let failed = rows.iter().find(|e| e.kind == "sign_in_failed").unwrap();
    assert_eq!(failed.code.as_deref(), Some("access_denied"));
}

#[tokio::test]
async fn old_events_are_deleted_after_the_retention() {
    use entity::{auth_event, prelude::AuthEvent};
    use sea_orm::{ActiveValue::Set, EntityTrait, PaginatorTrait};
    let app: TestApp = spawn_app().await;
    let old = |days: i64| auth_event::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(None),
        kind: Set("sign_in_started".into()),
        provider: Set(None),
        code: Set(None),
        operation_id: Set(None),
        session_id: Set(None),
        ip: Set(None),
        user_agent: Set(None),
        created_at: Set(chrono::Utc::now() - chrono::Duration::days(days)),
    };
    AuthEvent::insert_many([old(100), old(1)])
        .exec(&app.db)
        .await
        .unwrap();
    let deleted = worker::audit::delete_older_than(&app.db, app.settings.audit.retention)
        .await
        .unwrap();
    assert_eq!(deleted, 1, "the default retention is 90 days");
    assert_eq!(AuthEvent::find().count(&app.db).await.unwrap(), 1);
}
