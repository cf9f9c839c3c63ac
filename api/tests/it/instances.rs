//! Several api instances and a separate worker on one PostgreSQL database behave as
//! one system: a browser whose callback lands on instance A, whose status long poll
//! lands on instance B and whose job runs on worker C is answered by B within
//! moments of C's commit (`NOTIFY`), not at B's 5 s re-read.

use std::time::Duration;

use chrono::Utc;
use entity::async_operation;
use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, Browser, Options, assert_redirect_to, spawn_app_with, workers::InProcessWorker,
};

#[tokio::test]
async fn a_long_poll_on_another_instance_hears_of_a_finish_at_once_on_postgres() {
    let separate = |overrides: Value| Options {
        backend: Backend::Postgres,
        embedded_worker: false,
        overrides,
        ..Options::default()
    };
    let Some(a) = spawn_app_with(separate(json!({}))).await else {
        return;
    };
    // B shares A's database and public URL, as behind one load balancer.
    let b = spawn_app_with(separate(json!({
        "database_url": a.settings.database_url,
        "public_url": a.settings.public_url,
    })))
    .await
    .expect("PostgreSQL is configured");
    // One browser: cookies are per host, not per port, so both instances see them.
    let browser_at_b = Browser {
        address: b.address.clone(),
        client: a.browser.client.clone(),
    };

    let authorize = a.start_login("mock", "?next=/dash").await;
    // The provider takes its time, so B's long poll is waiting before C commits.
    let id_token = a.provider.id_token(
        &a.provider
            .claims("across", &authorize.param("nonce").unwrap()),
    );
    a.provider
        .given_token_after("code-across", &id_token, Duration::from_millis(700))
        .await;
    a.provider
        .given_userinfo(
            json!({"sub": "across", "email": "across@example.com", "email_verified": true}),
        )
        .await;
    let callback = a.return_from_provider(&authorize, "code-across").await;
    assert_eq!(callback.status(), StatusCode::SEE_OTHER);
    let _worker_c = InProcessWorker::start(&a.settings);

    let asked_at = Utc::now();
    let polled = browser_at_b.get_status("?wait=20").await;
    let answered_at = Utc::now();
    let status: Value = polled.json().await.unwrap();
    assert_eq!(status["status"], "ok", "{status}");
    let finished = async_operation::Entity::find()
        .one(&a.db)
        .await
        .unwrap()
        .expect("the operation");
    assert!(
        finished.updated_at > asked_at,
        "B's poll was waiting when C committed"
    );
    let after_commit = answered_at - finished.updated_at;
    assert!(
        after_commit < chrono::Duration::milliseconds(2500),
        "B answered {after_commit} after C's commit (its re-read backstop is 5 s)"
    );
    eprintln!(
        "B answered {} ms after C's commit",
        after_commit.num_milliseconds()
    );
    // The browser goes back to A, which redeems the operation B reported.
    assert_redirect_to(&a.get_success("").await, "/dash");
    assert_eq!(browser_at_b.get_me().await.status(), StatusCode::OK);
}
