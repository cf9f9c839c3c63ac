//! Refresh-token rotation: a second use is a theft and ends the session, except
//! inside a short grace period after the exchange, where two tabs refreshing at
//! once or an app retrying a lost answer get the same new pair.

use entity::prelude::RefreshToken;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, app_client, get_with_bearer, register, rows::set_on_all, spawn_app};

async fn refresh(app: &TestApp, token: &Value) -> (StatusCode, Value) {
    let response = app_client()
        .post(format!("{}/api/auth/refresh", app.address))
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn registered(app: &TestApp, email: &str) -> Value {
    let response = register(app, email).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_refresh_repeated_within_the_grace_period_gets_the_same_new_pair() {
    let app = spawn_app().await;
    let tokens = registered(&app, "twotabs@example.com").await;
    let old = &tokens["refresh_token"];
    // Two tabs at once…
    let ((first_status, first), (second_status, second)) =
        tokio::join!(refresh(&app, old), refresh(&app, old));
    assert_eq!(
        (first_status, second_status),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(first["refresh_token"], second["refresh_token"]);
    assert_ne!(first["refresh_token"], *old);
    // …and an app retrying after a lost answer.
    let (status, retried) = refresh(&app, old).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(retried["refresh_token"], first["refresh_token"]);
    assert_eq!(
        get_with_bearer(&app, "/api/me", retried["access_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK,
        "the session lives on"
    );
    // The new token rotates as usual; the old one's grace ends with it.
    let (status, next) = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, reused) = refresh(&app, old).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "its successor moved on");
    assert_eq!(reused["error"]["code"], "refresh_token_reused");
    assert_eq!(
        get_with_bearer(&app, "/api/me", next["access_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_refresh_token_reused_after_the_grace_period_ends_the_session() {
    let app = spawn_app().await;
    let tokens = registered(&app, "stolen@example.com").await;
    let (status, rotated) = refresh(&app, &tokens["refresh_token"]).await;
    assert_eq!(status, StatusCode::OK);
    // The exchange was a minute ago.
    set_on_all::<RefreshToken>(
        &app.db,
        entity::refresh_token::Column::UsedAt,
        chrono::Utc::now() - chrono::Duration::minutes(1),
    )
    .await;
    let (status, reused) = refresh(&app, &tokens["refresh_token"]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(reused["error"]["code"], "refresh_token_reused");
    assert_eq!(
        get_with_bearer(&app, "/api/me", rotated["access_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}
