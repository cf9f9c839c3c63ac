//! `GET /auth/{provider}/callback`.

use std::sync::Arc;

use entity::prelude::{AsyncOperation, UserProfile};
use reqwest::{
    StatusCode,
    cookie::{CookieStore, Jar},
    header::COOKIE,
    redirect::Policy,
};
use sea_orm::ConnectionTrait;

use crate::helpers::{
    Backend, Browser, assert_redirect_to, assert_to_preloader, location, spawn_app, spawn_app_on,
    spawn_app_without_worker,
};

#[tokio::test]
async fn callback_with_missing_state_returns_400_and_records_nothing() {
    let app = spawn_app().await;
    app.start_login("mock", "").await;
    let response = app.get_callback("mock", "code=abc").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("not valid"));
    assert_eq!(app.count(AsyncOperation).await, 0);
}

#[tokio::test]
async fn callback_with_wrong_state_returns_400_and_records_nothing() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    let response = app
        .get_callback("mock", &format!("code=abc&state={}x", authorize.state))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count(AsyncOperation).await, 0);
}

#[tokio::test]
async fn state_from_another_browser_is_refused() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    let attacker = app.new_browser();
    let response = attacker
        .get_callback("mock", &format!("code=abc&state={}", authorize.state))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count(AsyncOperation).await, 0);
}

#[tokio::test]
async fn a_reloaded_callback_follows_its_first_operation_and_queues_nothing() {
    let app = spawn_app_without_worker().await;
    let authorize = app.start_login("mock", "").await;
    let first = assert_to_preloader(&app.return_from_provider(&authorize, "abc").await);
    // The attempt cookie is gone now (a state is good for one callback), so this is
    // the branch that looks the state up on the server.
    let again = assert_to_preloader(&app.return_from_provider(&authorize, "abc").await);
    assert_eq!(again, first);
    assert_eq!(app.count(AsyncOperation).await, 1);
    assert_eq!(queued_jobs(&app).await, 1);
    // Another browser replaying the same URL gets nothing.
    let other = app.new_browser();
    let replay = other.return_from_provider(&authorize, "abc").await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count(AsyncOperation).await, 1);
}

/// Both copies of a double-submitted callback carry the attempt cookie (the first
/// answer's removal has not reached the browser yet): the second loses the claim on
/// the state and follows the first one's operation. The code is exchanged once.
async fn a_double_submitted_callback_makes_one_operation_and_one_exchange(backend: Backend) {
    let Some(app) = spawn_app_on(backend).await else {
        return;
    };
    let jar = Arc::new(Jar::default());
    let browser = Browser {
        address: app.address.clone(),
        client: reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(Policy::none())
            .build()
            .unwrap(),
    };
    let authorize = browser.start_login("mock", "").await;
    app.given_provider_signs_in(&authorize, "code-twice", "twice")
        .await;
    let url = format!(
        "{}/auth/mock/callback?code=code-twice&state={}",
        app.address, authorize.state
    );
    let cookies = jar
        .cookies(&url.parse().unwrap())
        .expect("the attempt cookie is sent to the callback");
    assert!(
        cookies.to_str().unwrap().contains("signin_attempt_"),
        "{cookies:?}"
    );
    let bare = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let submit = || bare.get(&url).header(COOKIE, cookies.clone()).send();
    let first = assert_to_preloader(&submit().await.unwrap());
    let second = assert_to_preloader(&submit().await.unwrap());
    assert_eq!(second, first, "both copies follow one operation");
    // And two copies in flight at once.
    let (a, b) = tokio::join!(submit(), submit());
    assert_eq!(assert_to_preloader(&a.unwrap()), first);
    assert_eq!(assert_to_preloader(&b.unwrap()), first);
    assert_eq!(app.count(AsyncOperation).await, 1);

    let status = browser
        .wait_for_status(&format!("?operation={first}"))
        .await;
    assert_eq!(status["status"], "ok", "{status}");
    assert_eq!(app.provider.token_requests().await.len(), 1, "one exchange");
    assert_eq!(app.count(UserProfile).await, 1);
}

#[tokio::test]
async fn a_double_submitted_callback_makes_one_operation_and_one_exchange_on_sqlite() {
    a_double_submitted_callback_makes_one_operation_and_one_exchange(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_double_submitted_callback_makes_one_operation_and_one_exchange_on_postgres() {
    a_double_submitted_callback_makes_one_operation_and_one_exchange(Backend::Postgres).await;
}

/// Jobs in the queue table (the worker is not running, so none has been taken).
async fn queued_jobs(app: &crate::helpers::TestApp) -> i64 {
    let row = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM Jobs",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

#[tokio::test]
async fn provider_error_goes_to_the_error_page() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    let response = app
        .get_callback(
            "mock",
            &format!(
                "error=access_denied&error_description=User+said+no&state={}",
                authorize.state
            ),
        )
        .await;
    assert_redirect_to(&response, "/auth/error?reason=access_denied");
    let page = app.get(location(&response)).await;
    assert_eq!(page.status(), StatusCode::OK);
    let text = page.text().await.unwrap();
    assert!(text.contains("cancelled the sign-in"), "{text}");
    assert!(text.contains(r#"href="/""#), "a try-again link");
    assert_eq!(app.count(AsyncOperation).await, 0);
}

#[tokio::test]
async fn callback_never_calls_the_provider() {
    let app = spawn_app_without_worker().await;
    let authorize = app.start_login("mock", "").await;
    let response = app.return_from_provider(&authorize, "abc").await;
    assert_to_preloader(&response);
    assert!(app.provider.token_requests().await.is_empty());
    assert_eq!(app.count(AsyncOperation).await, 1);
}

#[tokio::test]
async fn a_failed_enqueue_ends_the_operation_in_error_with_a_page_saying_so() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    // Break the queue: its table disappears.
    app.db.execute_unprepared("DROP TABLE Jobs").await.unwrap();
    let response = app.return_from_provider(&authorize, "abc").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let error_page = location(&response).to_owned();
    assert!(
        error_page.starts_with("/auth/error?operation="),
        "{error_page}"
    );
    let body: serde_json::Value = app.get_status("").await.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["error"]["code"], "queue_unavailable");
    let text = app.get(&error_page).await.text().await.unwrap();
    assert!(text.contains("could not start your sign-in"), "{text}");
}

/// The callback writes its job row itself, in the operation's write
/// (`JobQueue::push_in`): the row must be the one apalis' own push writes, or no
/// worker would take it (every sign-in in these tests, and
/// `flow::separate_workers_complete_the_flow_on_*`, show a worker taking it).
#[tokio::test]
async fn push_in_writes_what_apalis_reads() {
    let app = spawn_app_without_worker().await;
    compare_with_apalis_push(
        &app,
        sea_orm::DbBackend::Sqlite,
        "SELECT job_type, status, attempts, max_attempts, priority, metadata, \
         lock_by IS NULL AS unlocked, length(id) AS id_length, \
         abs(run_at - strftime('%s', 'now')) < 60 AS run_now, \
         json_extract(job, '$.operation_id') = idempotency_key AS keyed, \
         json_extract(job, '$.provider') AS provider \
         FROM Jobs ORDER BY rowid",
    )
    .await;
}

/// The same on PostgreSQL, where the row goes into apalis' table in the
/// operation's transaction: an api killed after the commit leaves a queued job.
#[tokio::test]
async fn push_in_writes_what_apalis_reads_on_postgres() {
    let Some(app) =
        crate::helpers::spawn_app_without_worker_on(crate::helpers::Backend::Postgres).await
    else {
        return;
    };
    compare_with_apalis_push(&app, sea_orm::DbBackend::Postgres, "SELECT job_type, status, attempts::bigint AS attempts, \
         max_attempts::bigint AS max_attempts, priority::bigint AS priority, metadata::text AS metadata, \
         (lock_by IS NULL)::int::int8 AS unlocked, length(id)::bigint AS id_length, \
         (abs(extract(epoch FROM run_at - now())) < 60)::int::int8 AS run_now, \
         (convert_from(job, 'UTF8')::json->>'operation_id' = idempotency_key)::int::int8 AS keyed, \
         convert_from(job, 'UTF8')::json->>'provider' AS provider \
         FROM apalis.jobs ORDER BY (idempotency_key = (SELECT id::text FROM async_operation LIMIT 1)) DESC").await;
}

/// Lets `app`'s callback write its job, pushes one through apalis, and compares
/// the two rows as `select` reads them (our row first).
async fn compare_with_apalis_push(
    app: &crate::helpers::TestApp,
    backend: sea_orm::DbBackend,
    select: &str,
) {
    let authorize = app.start_login("mock", "").await;
    assert_to_preloader(&app.return_from_provider(&authorize, "abc").await);
    // The same kind of job through apalis' push, for comparison.
    let job = crate::helpers::code_job(uuid::Uuid::new_v4(), "c", "v", None);
    app.state.jobs.push(job).await.unwrap();
    let rows = app
        .db
        .query_all_raw(sea_orm::Statement::from_string(backend, select))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let columns = |row: &sea_orm::QueryResult| {
        row.column_names()
            .into_iter()
            .map(|name| {
                let value = row
                    .try_get::<Option<String>>("", &name)
                    .map(|v| v.unwrap_or_default())
                    .or_else(|_| row.try_get::<i64>("", &name).map(|v| v.to_string()))
                    .unwrap();
                (name, value)
            })
            .collect::<Vec<_>>()
    };
    let (ours, apalis) = (columns(&rows[0]), columns(&rows[1]));
    assert_eq!(ours, apalis);
    assert!(
        ours.contains(&("status".into(), "Pending".into())),
        "{ours:?}"
    );
    assert!(ours.contains(&("keyed".into(), "1".into())), "{ours:?}");
    assert!(ours.contains(&("run_now".into(), "1".into())), "{ours:?}");
}
