//! Exactly once on PostgreSQL: two different operations for the same new provider
//! subject, run at once, make one user and one link. The test forces the race it
//! is about (both transactions read "no such account" before either inserts) by
//! holding a lock that blocks inserts into `social_account` until both wait on it,
//! and then reads the conflict counter to show the losing run took the conflict
//! branch instead of the transactions merely happening to serialise.

use std::time::{Duration, Instant};

use entity::prelude::{SocialAccount, UserProfile};
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait, Statement, TransactionTrait};
use worker::{
    accounts::{self, Outcome, SealedTokens},
    operations::{self, NewOperation},
    providers::Profile,
};

use crate::helpers::{Backend, spawn_app_on};

fn profile() -> Profile {
    Profile {
        subject: "racing-subject".into(),
        email: Some("racer@example.com".into()),
        email_verified: true,
        first_name: Some("Ada".into()),
        last_name: None,
        display_name: None,
        avatar_url: None,
    }
}

/// The conflict counter as the process's recorder renders it.
fn conflicts() -> f64 {
    worker::metrics::handle()
        .render()
        .lines()
        .find(|l| l.starts_with("signin_identity_conflicts_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_for_one_new_subject_make_one_user_and_one_link_on_postgres() {
    let Some(app) = spawn_app_on(Backend::Postgres).await else {
        return;
    };
    let mut ids = Vec::new();
    for _ in 0..2 {
        let op = operations::create_pending(
            &app.db,
            NewOperation {
                kind: operations::KIND_BROWSER,
                provider: "mock".into(),
                redeemer_hash: "race".into(),
                next_path: None,
                link: None,
                state_hash: None,
                client_key: None,
            },
        )
        .await
        .unwrap();
        ids.push(op.id);
    }
    let before = conflicts();
    // Reads of social_account go on; its inserts wait for this lock.
    let gate = app.db.begin().await.unwrap();
    gate.execute_unprepared("LOCK TABLE social_account IN SHARE ROW EXCLUSIVE MODE")
        .await
        .unwrap();
    let runs: Vec<_> = ids
        .iter()
        .map(|&id| {
            let db = app.db.clone();
            tokio::spawn(async move {
                accounts::sign_in(
                    &worker::writer::WriteConn::Pool(&db),
                    id,
                    "mock",
                    &profile(),
                    &SealedTokens::default(),
                    accounts::Intent::SignIn,
                )
                .await
                .unwrap()
            })
        })
        .collect();
    // Both runs have read "no account" and wait to insert.
    let started = Instant::now();
    while waiting_on_locks(&app.db).await < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "both runs reach the insert"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gate.commit().await.unwrap();
    let mut users = Vec::new();
    for run in runs {
        match run.await.unwrap() {
            Outcome::SignedIn { user_id, .. } => users.push(user_id),
            other => panic!("ended {other:?}"),
        }
    }
    assert_eq!(
        users[0], users[1],
        "both operations signed in the same user"
    );
    assert_eq!(UserProfile::find().count(&app.db).await.unwrap(), 1);
    assert_eq!(SocialAccount::find().count(&app.db).await.unwrap(), 1);
    assert!(
        conflicts() >= before + 1.0,
        "the losing run took the conflict branch"
    );
}

/// Sessions of this database waiting for a lock.
async fn waiting_on_locks(db: &sea_orm::DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}
