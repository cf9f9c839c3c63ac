//! One email, one password user: the unique index on the password users' emails
//! holds under concurrent registrations on SQLite and PostgreSQL, and its
//! violation is a 409 `email_in_use`, never a 500. Social users may still share an
//! unverified address; only one of them can add a password.

use std::sync::Arc;

use chrono::Utc;
use entity::{prelude::UserProfile, user_profile};
use futures::future::join_all;
use reqwest::StatusCode;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
};
use serde_json::{Value, json};
use tokio::sync::Barrier;
use uuid::Uuid;
use worker::accounts::{self, Registered};

use crate::helpers::{
    Backend, Browser, Options, TestApp, assert_to_preloader, register, spawn_app, spawn_app_with,
};

const MIGRATION: &str = "m20261129_000012_unique_password_email";

async fn app_on(backend: Backend) -> Option<TestApp> {
    spawn_app_with(Options {
        backend,
        // Every registration here comes from one address.
        overrides: json!({"limits": {"registrations_per_ip_per_minute": 0}}),
        ..Options::default()
    })
    .await
}

/// Users whose email is `email` in any case.
async fn users_with_email(app: &TestApp, email: &str) -> usize {
    let users = UserProfile::find().all(&app.db).await.unwrap();
    users
        .iter()
        .filter(|u| u.email.as_deref().map(str::to_lowercase).as_deref() == Some(email))
        .count()
}

/// A password user stored as the pre-check of registration does not see it: with
/// an address in mixed case, as rows from before emails were normalised are.
async fn insert_password_user(app: &TestApp, email: &str) -> Uuid {
    let now = Utc::now();
    let id = Uuid::new_v4();
    UserProfile::insert(user_profile::ActiveModel {
        id: Set(id),
        email: Set(Some(email.to_owned())),
        email_verified: Set(false),
        first_name: Set(None),
        last_name: Set(None),
        display_name: Set(None),
        avatar_url: Set(None),
        locked_fields: Set(String::new()),
        password_hash: Set(Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into())),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec(&app.db)
    .await
    .unwrap();
    id
}

async fn concurrent_registrations_of_one_email_make_one_user(backend: Backend) {
    let Some(app) = app_on(backend).await else {
        return;
    };
    // Through the route: one account, the others 409 (the hashing before the
    // insert spreads these out)…
    let email = "race@example.com";
    let answers = join_all((0..4).map(|_| register(&app, email))).await;
    let mut created = 0;
    for answer in answers {
        match answer.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                let body: Value = answer.json().await.unwrap();
                assert_eq!(body["error"]["code"], "email_in_use", "{body}");
            }
            other => panic!("a registration answered {other}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(users_with_email(&app, email).await, 1);
    // …and the registration step itself, lined up so that the checks and inserts
    // overlap: exactly one user, every other one `EmailInUse`, no error.
    let email = "lined-up@example.com";
    let barrier = Arc::new(Barrier::new(16));
    let runs = (0..16).map(|_| {
        let (db, barrier) = (app.db.clone(), barrier.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            accounts::register_password_user(&db, email, "hash".into(), None, None).await
        })
    });
    let outcomes: Vec<_> = join_all(runs)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Registered::Created(_))))
        .count();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(Registered::Created(_) | Registered::EmailInUse))),
        "{outcomes:?}"
    );
    assert_eq!(created, 1, "{outcomes:?}");
    assert_eq!(users_with_email(&app, email).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_email_make_one_user_on_sqlite() {
    concurrent_registrations_of_one_email_make_one_user(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_email_make_one_user_on_postgres() {
    concurrent_registrations_of_one_email_make_one_user(Backend::Postgres).await;
}

async fn a_registration_refused_by_the_unique_index_is_409(backend: Backend) {
    let Some(app) = app_on(backend).await else {
        return;
    };
    insert_password_user(&app, "Ada@Example.com").await;
    let answer = register(&app, "ada@example.com").await;
    assert_eq!(answer.status(), StatusCode::CONFLICT);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "email_in_use", "{body}");
    assert_eq!(users_with_email(&app, "ada@example.com").await, 1);
    // Another address still registers.
    assert_eq!(
        register(&app, "grace@example.com").await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_registration_refused_by_the_unique_index_is_409_on_sqlite() {
    a_registration_refused_by_the_unique_index_is_409(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_registration_refused_by_the_unique_index_is_409_on_postgres() {
    a_registration_refused_by_the_unique_index_is_409(Backend::Postgres).await;
}

/// A social sign-in in `browser` whose provider shares `email` unverified.
async fn sign_in_unverified(app: &TestApp, browser: &Browser, sub: &str, email: &str) {
    let authorize = browser.start_login("mock", "").await;
    let code = format!("code-{sub}");
    let mut claims = app
        .provider
        .claims(sub, authorize.nonce.as_deref().unwrap());
    claims["email"] = json!(email);
    claims["email_verified"] = json!(false);
    app.provider
        .given_token_ok(&code, &app.provider.id_token(&claims))
        .await;
    app.provider
        .given_userinfo(json!({"sub": sub, "email": email, "email_verified": false, "name": "Sam"}))
        .await;
    assert_to_preloader(
        &browser
            .get_callback("mock", &format!("code={code}&state={}", authorize.state))
            .await,
    );
    assert_eq!(browser.wait_for_status("").await["status"], "ok");
    assert_eq!(
        browser.get_success("").await.status(),
        StatusCode::SEE_OTHER
    );
}

async fn add_password(browser: &Browser) -> reqwest::Response {
    browser
        .client
        .put(format!("{}/api/me/password", browser.address))
        .json(&json!({"password": "violet-lantern-harbor-42"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn two_social_users_may_share_an_email_but_only_one_adds_a_password() {
    let app = spawn_app().await;
    let (first, second) = (app.new_browser(), app.new_browser());
    sign_in_unverified(&app, &first, "shared-1", "shared@example.com").await;
    // The mock forgets the first person's token and userinfo answers.
    app.provider
        .rotate_keys(include_str!("fixtures/jwks.json"))
        .await;
    sign_in_unverified(&app, &second, "shared-2", "shared@example.com").await;
    assert_eq!(users_with_email(&app, "shared@example.com").await, 2);

    assert_eq!(add_password(&first).await.status(), StatusCode::NO_CONTENT);
    let refused = add_password(&second).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "email_in_use", "{body}");
    let with_password = UserProfile::find()
        .filter(user_profile::Column::PasswordHash.is_not_null())
        .count(&app.db)
        .await
        .unwrap();
    assert_eq!(with_password, 1);
}

async fn the_migration_names_existing_duplicates(backend: Backend) {
    let Some(app) = app_on(backend).await else {
        return;
    };
    // Back to the schema before the index, with two password users of one address.
    app.db
        .execute_unprepared("DROP INDEX idx_user_profile_password_email")
        .await
        .unwrap();
    app.db
        .execute_unprepared(&format!(
            "DELETE FROM seaql_migrations WHERE version = '{MIGRATION}'"
        ))
        .await
        .unwrap();
    let first = insert_password_user(&app, "dup@example.com").await;
    let second = insert_password_user(&app, "Dup@Example.com").await;
    insert_password_user(&app, "single@example.com").await;

    let error = <migration::Migrator as migration::MigratorTrait>::up(&app.db, None)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&first.to_string()), "{message}");
    assert!(message.contains(&second.to_string()), "{message}");
    assert!(message.contains("password_hash = NULL"), "{message}");
    assert!(
        !message.contains("dup@example.com"),
        "no emails in the message"
    );

    // Resolved as the message says, the migration runs and the index holds.
    UserProfile::update_many()
        .col_expr(
            user_profile::Column::PasswordHash,
            sea_orm::sea_query::Expr::value(Option::<String>::None),
        )
        .filter(user_profile::Column::Id.eq(second))
        .exec(&app.db)
        .await
        .unwrap();
    <migration::Migrator as migration::MigratorTrait>::up(&app.db, None)
        .await
        .unwrap();
    let now = Utc::now();
    let again = UserProfile::insert(user_profile::ActiveModel {
        id: Set(Uuid::new_v4()),
        email: Set(Some("DUP@example.com".into())),
        email_verified: Set(false),
        first_name: Set(None),
        last_name: Set(None),
        display_name: Set(None),
        avatar_url: Set(None),
        locked_fields: Set(String::new()),
        password_hash: Set(Some("x".into())),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec(&app.db)
    .await;
    assert!(again.is_err(), "the index refuses a second password user");
}

#[tokio::test]
async fn the_migration_names_existing_duplicates_on_sqlite() {
    the_migration_names_existing_duplicates(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_migration_names_existing_duplicates_on_postgres() {
    the_migration_names_existing_duplicates(Backend::Postgres).await;
}
