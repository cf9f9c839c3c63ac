//! Several api instances sharing one Redis (`redis_url`): request budgets counted
//! once for all of them, a session revoked on one refused by the other at once, and
//! Redis gone → every instance falls back and sign-in keeps working. The tests with
//! a Redis need `SIGNIN_TEST_REDIS_URL` (skipped without, a failure under `CI=true`);
//! each uses its own `redis.key_prefix`, so they can run side by side.

use chrono::{Duration, Utc};
use entity::session::Entity as Session;
use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    Options, TestApp, app_client, get_with_bearer, login, redis_url, register, rows, spawn_app_with,
};
use api::shared::sessions::{CachedSession, Lookup};

/// Two apps on one database and one Redis (the second without a worker), under a
/// fresh key prefix; `None` when no Redis is configured.
async fn two_instances(limits: Value) -> Option<(TestApp, TestApp, String)> {
    let redis = redis_url()?;
    let prefix = format!("signin-test-{}:", Uuid::new_v4().simple());
    let overrides = json!({
        "redis_url": redis,
        "redis": {"key_prefix": prefix},
        "limits": limits,
    });
    let first = spawn_app_with(Options {
        overrides: overrides.clone(),
        ..Options::default()
    })
    .await?;
    // Behind one load balancer both have the same public URL (the tokens' issuer).
    let mut second_overrides = overrides;
    second_overrides["database_url"] = json!(first.settings.database_url);
    second_overrides["public_url"] = json!(first.settings.public_url);
    let second = spawn_app_with(Options {
        overrides: second_overrides,
        embedded_worker: false,
        ..Options::default()
    })
    .await?;
    Some((first, second, prefix))
}

async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("valid Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers")
}

async fn exists(url: &str, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(&mut redis(url).await)
        .await
        .expect("EXISTS")
        == 1
}

#[tokio::test]
async fn a_per_ip_budget_is_one_budget_across_instances() {
    let Some((first, second, prefix)) =
        two_instances(json!({"sign_in_starts_per_ip_per_minute": 4})).await
    else {
        return;
    };
    let (mut passed, mut refused) = ([0; 2], [0; 2]);
    for round in 0..8 {
        let app = [&first, &second][round % 2];
        let status = app.new_browser().get_login("mock").await.status();
        match status {
            StatusCode::SEE_OTHER => passed[round % 2] += 1,
            StatusCode::TOO_MANY_REQUESTS => refused[round % 2] += 1,
            other => panic!("unexpected {other}"),
        }
    }
    // In process, each instance would have let 4 through: 8 in all.
    assert_eq!(
        passed,
        [2, 2],
        "the 4 requests of the budget, spread over both"
    );
    assert_eq!(refused, [2, 2], "both instances refuse once it is spent");
    let key = format!("{prefix}budget:sign_in_start:127.0.0.1");
    assert!(
        exists(&redis_url().unwrap(), &key).await,
        "the budget lives in Redis"
    );
}

#[tokio::test]
async fn a_session_revoked_on_one_instance_is_refused_by_the_other_at_once() {
    let Some((first, second, prefix)) = two_instances(json!({})).await else {
        return;
    };
    let url = redis_url().unwrap();
    let phone: Value = register(&first, "ada@example.com")
        .await
        .json()
        .await
        .unwrap();
    let laptop: Value = login(&first, "ada@example.com").await.json().await.unwrap();
    let laptop_token = laptop["access_token"].as_str().unwrap();
    let laptop_id = laptop["session_id"].as_str().unwrap();

    // The second instance checks the laptop's token: the lookup is now cached.
    let me = get_with_bearer(&second, "/api/me", laptop_token).await;
    assert_eq!(me.status(), StatusCode::OK);
    let entry = format!("{prefix}session:id:{laptop_id}");
    assert!(
        exists(&url, &entry).await,
        "the session check filled the cache"
    );
    assert_eq!(
        get_with_bearer(&second, "/api/me", laptop_token)
            .await
            .status(),
        StatusCode::OK,
        "a cache hit still signs in"
    );

    // The phone revokes the laptop on the first instance…
    let revoked = app_client()
        .delete(format!("{}/api/sessions/{laptop_id}", first.address))
        .bearer_auth(phone["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    // …and the second refuses it at once, its cache entry gone.
    assert!(!exists(&url, &entry).await, "revocation deleted the entry");
    let refused = get_with_bearer(&second, "/api/me", laptop_token).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(
        !exists(&url, &entry).await,
        "a revoked session is never cached again"
    );
    // The phone still works on both.
    let phone_token = phone["access_token"].as_str().unwrap();
    for app in [&first, &second] {
        assert_eq!(
            get_with_bearer(app, "/api/me", phone_token).await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn a_fill_that_read_the_session_before_its_revocation_cannot_cache_it() {
    let Some((first, _second, _)) = two_instances(json!({})).await else {
        return;
    };
    let cache = first
        .state
        .session_cache
        .clone()
        .expect("Redis is configured");
    let user = rows::create_user(&first.db).await;
    let now = Utc::now();
    let mut rows_read = Vec::new();
    for _ in 0..2 {
        let id = rows::create_session(&first.db, user, now, now + Duration::hours(1), None).await;
        rows_read.push(
            Session::find_by_id(id)
                .one(&first.db)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let (revoked, live) = (&rows_read[0], &rows_read[1]);
    // Another instance revokes the first session after this one read it…
    cache.forget(std::slice::from_ref(revoked)).await;
    // …and this one's fill, with what it read before, arrives late.
    for row in [revoked, live] {
        cache
            .put(Lookup::Bearer(row.id), &CachedSession::from(row))
            .await;
    }
    assert!(
        cache.get(Lookup::Bearer(revoked.id)).await.is_none(),
        "the tombstone refused the late fill"
    );
    assert!(
        cache.get(Lookup::Bearer(live.id)).await.is_some(),
        "the same fill of a live session is cached"
    );
}

#[tokio::test]
async fn with_redis_unreachable_limits_and_sessions_fall_back_and_sign_in_works() {
    // Nothing listens on port 1: every command fails at once.
    let app = spawn_app_with(Options {
        overrides: json!({
            "redis_url": "redis://127.0.0.1:1/0",
            "limits": {"sign_in_starts_per_ip_per_minute": 3},
        }),
        ..Options::default()
    })
    .await
    .expect("SQLite needs no configuration");
    let me = app.sign_in(&app.browser, "offline").await;
    assert_eq!(me["providers"], json!(["mock"]), "signed in without Redis");
    assert_eq!(app.get_me().await.status(), StatusCode::OK);
    // The in-process budget still counts: 1 start above, 2 more, then 429.
    for _ in 0..2 {
        assert_eq!(
            app.new_browser().get_login("mock").await.status(),
            StatusCode::SEE_OTHER
        );
    }
    assert_eq!(
        app.new_browser().get_login("mock").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let metrics = crate::metrics::metrics(&app).await;
    for usage in ["budgets", "sessions"] {
        let line = format!("signin_redis_fallbacks_total{{use=\"{usage}\"}}");
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
    }
    assert!(metrics.contains("signin_redis_up 0"), "{metrics}");
}
