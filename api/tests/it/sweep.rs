//! The sweeps that keep `async_operation`, `session` and `refresh_token` bounded:
//! rows on both sides of each boundary, one sweep, exactly the right rows left.
//! The apps run without a worker, so no sweeper of theirs deletes rows first.

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use entity::{
    async_operation::OperationStatus,
    prelude::{AsyncOperation, RefreshToken},
    refresh_token,
};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};
use worker::sweep;

use crate::{
    helpers::{
        Backend, TestApp, app_client, register,
        rows::{
            ago, ahead, create_operation, create_refresh_token, create_session, create_user,
            operation, operation_ids, refresh_token_ids, session_ids,
        },
        spawn_app_without_worker_on,
    },
    metrics::{metrics, sample},
};

async fn spawn(backend: Backend) -> Option<TestApp> {
    spawn_app_without_worker_on(backend).await
}

async fn finished_operations_past_the_retention_are_swept_and_pending_ones_kept(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let db = &app.db;
    let hours_ago = |h: i64| Utc::now() - Duration::hours(h);
    // The default retention is one day.
    let fresh_ok = create_operation(db, OperationStatus::Ok, hours_ago(1), true).await;
    let fresh_error = create_operation(db, OperationStatus::Error, hours_ago(1), false).await;
    let unredeemed_within = create_operation(db, OperationStatus::Ok, hours_ago(23), false).await;
    let old_pending = create_operation(db, OperationStatus::Pending, ago(2), false).await;
    create_operation(db, OperationStatus::Ok, ago(2), true).await;
    create_operation(db, OperationStatus::Ok, ago(2), false).await;
    create_operation(db, OperationStatus::Error, ago(2), false).await;

    let swept = sweep::delete_finished_operations(db, app.settings.retention.operations)
        .await
        .unwrap();

    assert_eq!(swept, 3);
    let kept = BTreeSet::from([fresh_ok, fresh_error, unredeemed_within, old_pending]);
    assert_eq!(operation_ids(db).await, kept);
}

#[tokio::test]
async fn finished_operations_past_the_retention_are_swept_and_pending_ones_kept_on_sqlite() {
    finished_operations_past_the_retention_are_swept_and_pending_ones_kept(Backend::Sqlite).await;
}

#[tokio::test]
async fn finished_operations_past_the_retention_are_swept_and_pending_ones_kept_on_postgres() {
    finished_operations_past_the_retention_are_swept_and_pending_ones_kept(Backend::Postgres).await;
}

#[tokio::test]
async fn a_backlog_larger_than_one_batch_is_swept_in_one_call() {
    let app = spawn(Backend::Sqlite).await.unwrap();
    let rows: Vec<_> = (0..2_001)
        .map(|_| operation(OperationStatus::Error, ago(2), false))
        .collect();
    for chunk in rows.chunks(500) {
        AsyncOperation::insert_many(chunk.to_vec())
            .exec(&app.db)
            .await
            .unwrap();
    }
    let kept = create_operation(&app.db, OperationStatus::Pending, ago(2), false).await;

    let swept = sweep::delete_finished_operations(&app.db, app.settings.retention.operations)
        .await
        .unwrap();

    assert_eq!(swept, 2_001);
    assert_eq!(operation_ids(&app.db).await, BTreeSet::from([kept]));
}

async fn sessions_ended_longer_than_the_retention_ago_are_swept_with_their_tokens(
    backend: Backend,
) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let db = &app.db;
    let user = create_user(db).await;
    // Default retention 7 days, session_max_lifetime 90 days.
    let live = create_session(db, user, ago(1), ahead(13), None).await;
    let recently_expired = create_session(db, user, ago(20), ago(1), None).await;
    let recently_revoked = create_session(db, user, ago(5), ahead(25), Some(ago(1))).await;
    let recently_past_max = create_session(db, user, ago(91), ahead(10), None).await;
    create_session(db, user, ago(30), ago(8), None).await;
    let long_revoked = create_session(db, user, ago(10), ahead(20), Some(ago(8))).await;
    create_session(db, user, ago(100), ahead(10), None).await;
    let live_token = create_refresh_token(db, live, ahead(13), None).await;
    create_refresh_token(db, long_revoked, ahead(20), None).await;

    let swept = sweep::delete_ended_sessions(
        db,
        app.settings.retention.sessions,
        app.settings.session_max_lifetime,
    )
    .await
    .unwrap();

    assert_eq!(swept, 3);
    let kept = BTreeSet::from([live, recently_expired, recently_revoked, recently_past_max]);
    assert_eq!(session_ids(db).await, kept);
    assert_eq!(
        refresh_token_ids(db).await,
        BTreeSet::from([live_token]),
        "a swept session's tokens go with it"
    );
}

#[tokio::test]
async fn sessions_ended_longer_than_the_retention_ago_are_swept_with_their_tokens_on_sqlite() {
    sessions_ended_longer_than_the_retention_ago_are_swept_with_their_tokens(Backend::Sqlite).await;
}

#[tokio::test]
async fn sessions_ended_longer_than_the_retention_ago_are_swept_with_their_tokens_on_postgres() {
    sessions_ended_longer_than_the_retention_ago_are_swept_with_their_tokens(Backend::Postgres)
        .await;
}

async fn refresh_tokens_are_swept_only_once_they_cannot_reveal_a_reuse(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let db = &app.db;
    let user = create_user(db).await;
    let live = create_session(db, user, ago(40), ahead(20), None).await;
    let revoked = create_session(db, user, ago(20), ahead(10), Some(ago(2))).await;
    let expired = create_session(db, user, ago(40), ago(1), None).await;
    let past_max = create_session(db, user, ago(91), ahead(20), None).await;
    let mut kept = BTreeSet::new();
    // A live session's used token is the reuse tripwire until it expires.
    kept.insert(create_refresh_token(db, live, ahead(20), Some(ago(10))).await);
    kept.insert(create_refresh_token(db, live, ahead(20), None).await);
    kept.insert(create_refresh_token(db, live, ago(1), None).await);
    create_refresh_token(db, live, ago(8), Some(ago(30))).await;
    create_refresh_token(db, live, ago(8), None).await;
    // Once the session has ended, a used token is kept for the retention only.
    kept.insert(create_refresh_token(db, revoked, ahead(10), Some(ago(1))).await);
    kept.insert(create_refresh_token(db, revoked, ahead(10), None).await);
    create_refresh_token(db, revoked, ahead(10), Some(ago(10))).await;
    create_refresh_token(db, expired, ago(1), Some(ago(10))).await;
    create_refresh_token(db, past_max, ahead(20), Some(ago(10))).await;

    let swept = sweep::delete_spent_refresh_tokens(
        db,
        app.settings.retention.refresh_tokens,
        app.settings.session_max_lifetime,
    )
    .await
    .unwrap();

    assert_eq!(swept, 5);
    assert_eq!(refresh_token_ids(db).await, kept);
    assert_eq!(session_ids(db).await.len(), 4, "sessions are not touched");
}

#[tokio::test]
async fn refresh_tokens_are_swept_only_once_they_cannot_reveal_a_reuse_on_sqlite() {
    refresh_tokens_are_swept_only_once_they_cannot_reveal_a_reuse(Backend::Sqlite).await;
}

#[tokio::test]
async fn refresh_tokens_are_swept_only_once_they_cannot_reveal_a_reuse_on_postgres() {
    refresh_tokens_are_swept_only_once_they_cannot_reveal_a_reuse(Backend::Postgres).await;
}

async fn refresh(app: &TestApp, token: &Value) -> reqwest::Response {
    app_client()
        .post(format!("{}/api/auth/refresh", app.address))
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_token_used_long_ago_still_revokes_its_live_session_after_a_sweep() {
    let app = spawn(Backend::Sqlite).await.unwrap();
    let first: Value = register(&app, "swept@example.com")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        refresh(&app, &first["refresh_token"]).await.status(),
        StatusCode::OK
    );
    // The rotated-out token was used a month ago, as far as the sweep can tell.
    RefreshToken::update_many()
        .col_expr(refresh_token::Column::UsedAt, Expr::value(ago(30)))
        .filter(refresh_token::Column::UsedAt.is_not_null())
        .exec(&app.db)
        .await
        .unwrap();
    let sweep_tokens = || {
        sweep::delete_spent_refresh_tokens(
            &app.db,
            app.settings.retention.refresh_tokens,
            app.settings.session_max_lifetime,
        )
    };
    assert_eq!(sweep_tokens().await.unwrap(), 0);

    let reused = refresh(&app, &first["refresh_token"]).await;
    assert_eq!(reused.status(), StatusCode::UNAUTHORIZED);
    let body: Value = reused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "refresh_token_reused");

    // The session is revoked now, so the old token has nothing left to guard.
    assert_eq!(sweep_tokens().await.unwrap(), 1);
    assert_eq!(refresh_token_ids(&app.db).await.len(), 1);
}

#[tokio::test]
async fn a_sweep_round_counts_the_rows_it_removed_by_table() {
    let app = spawn(Backend::Sqlite).await.unwrap();
    let db = &app.db;
    let user = create_user(db).await;
    create_operation(db, OperationStatus::Error, ago(2), false).await;
    create_session(db, user, ago(40), ago(20), None).await;
    let live = create_session(db, user, ago(1), ahead(20), None).await;
    create_refresh_token(db, live, ago(8), None).await;
    let before = metrics(&app).await;

    sweep::run(db, &app.settings).await;

    let after = metrics(&app).await;
    for table in ["async_operation", "session", "refresh_token"] {
        let count = |text: &str| sample(text, "signin_rows_swept_total", &[("table", table)]);
        // At least: the counter is process-wide, and other tests' apps sweep too.
        assert!(count(&after) - count(&before) >= 1.0, "{table}: {after}");
    }
    assert!(operation_ids(db).await.is_empty());
    assert_eq!(session_ids(db).await, BTreeSet::from([live]));
    assert!(refresh_token_ids(db).await.is_empty());
}

/// Finished jobs: done ones at once; killed ones (aborted, never run again) and
/// failed ones out of attempts after the keep time; failed ones with attempts left,
/// running and pending ones never. SQLite's queue table (PostgreSQL's shares the
/// statement's shape).
#[tokio::test]
async fn finished_jobs_are_deleted_and_the_rest_kept() {
    let app = spawn(Backend::Sqlite).await.unwrap();
    let rows = [
        ("done", "Done", 1, -1),
        ("killed-old", "Killed", 1, -7200),
        ("killed-new", "Killed", 1, -60),
        ("failed-spent-old", "Failed", 3, -7200),
        ("failed-retry-old", "Failed", 1, -7200),
        ("running", "Running", 0, 0),
        ("pending", "Pending", 0, 0),
    ];
    for (key, status, attempts, done) in rows {
        app.db
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Sqlite,
                "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, \
                 priority, metadata, idempotency_key, done_at) \
                 VALUES ('{}', ?1, 'signin', ?2, ?3, 3, strftime('%s', 'now'), 0, '{}', ?1, \
                         CASE WHEN ?4 = 0 THEN NULL ELSE strftime('%s', 'now') + ?4 END)",
                [key.into(), status.into(), attempts.into(), done.into()],
            ))
            .await
            .unwrap();
    }
    let deleted = app
        .state
        .jobs
        .delete_finished(std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    let left: BTreeSet<String> = app
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT id FROM Jobs",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get("", "id").unwrap())
        .collect();
    let expected: BTreeSet<String> = ["killed-new", "failed-retry-old", "running", "pending"]
        .map(String::from)
        .into();
    assert_eq!(left, expected);
    assert_eq!(deleted, 3);
}
