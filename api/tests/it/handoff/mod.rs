//! With the embedded worker, on SQLite and on PostgreSQL, a job the callback queues
//! runs in the same process at once (`worker::jobs` hand-over): its row is written
//! locked by the process's in-process holder. When every slot is busy it waits in
//! the queue, and when the process dies holding it, another process's worker runs
//! it again (`killed`); a job it cannot hold after all is queued (`fallbacks`).

mod fallbacks;
mod killed;

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::Value;

use crate::helpers::{
    Backend, Browser, MockProvider, TestApp, assert_to_preloader, preloader_operation_of,
    spawn_app, spawn_app_on,
};

/// "Held until the test is done with it."
const HOLD: Duration = Duration::from_secs(3600);

/// The job row of `operation`: (status, holder) while it exists.
async fn job_row(db: &DatabaseConnection, operation: &str) -> Option<(String, Option<String>)> {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => "SELECT status, lock_by FROM apalis.jobs WHERE idempotency_key = $1",
        _ => "SELECT status, lock_by FROM Jobs WHERE idempotency_key = ?",
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            [operation.into()],
        ))
        .await
        .unwrap()?;
    Some((
        row.try_get("", "status").unwrap(),
        row.try_get("", "lock_by").unwrap(),
    ))
}

/// `SELECT count(*) AS n FROM {table}` on `db`.
async fn count(db: &DatabaseConnection, from: &str) -> i64 {
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        format!("SELECT count(*) AS n FROM {from}"),
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get::<i64>("", "n")
    .unwrap()
}

/// Polls `check` every 20 ms until it returns `Some`; panics naming `what` after `limit`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the app's in-process holder is registered: from then on its
/// callbacks' jobs are held by the process while a slot is free.
async fn holder_registered(db: &DatabaseConnection) {
    let workers = match db.get_database_backend() {
        DbBackend::Postgres => "apalis.workers",
        _ => "Workers",
    };
    let from = format!("{workers} WHERE id LIKE '%-in-process'");
    wait_for(
        "the in-process holder is registered",
        Duration::from_secs(10),
        || async { (count(db, &from).await == 1).then_some(()) },
    )
    .await;
}

fn is_in_process(holder: Option<&str>) -> bool {
    holder.is_some_and(|h| h.ends_with("-in-process"))
}

/// Starts a sign-in of `sub` whose token answer comes after `delay`; returns the
/// operation id.
async fn start(browser: &Browser, provider: &MockProvider, sub: &str, delay: Duration) -> String {
    let authorize = browser.start_login("mock", "").await;
    let claims = provider.claims(sub, authorize.nonce.as_deref().unwrap());
    let code = format!("code-{sub}");
    provider
        .given_token_after(&code, &provider.id_token(&claims), delay)
        .await;
    let callback = browser.return_from_provider(&authorize, &code).await;
    assert_to_preloader(&callback);
    preloader_operation_of(crate::helpers::location(&callback))
        .expect("the preloader names the operation")
        .to_string()
}

async fn runs_here_and_leaves_no_row(app: TestApp) {
    holder_registered(&app.db).await;
    let operation = start(&app, &app.provider, "held", Duration::from_secs(2)).await;
    // While its token request is answered, the job is held by this process, not
    // fetched from the queue.
    let (status, holder) = wait_for("the job row is visible", Duration::from_secs(10), || {
        job_row(&app.db, &operation)
    })
    .await;
    assert!(is_in_process(holder.as_deref()), "{holder:?}");
    assert_eq!(status, "Running");
    assert_eq!(app.wait_for_status("").await["status"], "ok");
    // Acknowledged by deleting it, not left for the sweeper.
    wait_for("the job row is gone", Duration::from_secs(10), || async {
        job_row(&app.db, &operation).await.is_none().then_some(())
    })
    .await;
}

async fn with_every_slot_busy_waits_in_the_queue(app: TestApp) {
    // The test app runs 2 jobs at once: hold two, and a third has no slot.
    holder_registered(&app.db).await;
    let mut held = Vec::new();
    for sub in ["first", "second"] {
        let browser = app.new_browser();
        held.push(start(&browser, &app.provider, sub, HOLD).await);
    }
    wait_for(
        "both held jobs asked for tokens",
        Duration::from_secs(10),
        || async { (app.provider.token_requests().await.len() == 2).then_some(()) },
    )
    .await;
    for operation in &held {
        let (_, holder) = job_row(&app.db, operation).await.unwrap();
        assert!(is_in_process(holder.as_deref()), "{holder:?}");
    }
    let third = start(&app, &app.provider, "third", Duration::ZERO).await;
    let (status, holder) = job_row(&app.db, &third).await.unwrap();
    assert!(
        !is_in_process(holder.as_deref()),
        "queued, not held: {status} {holder:?}"
    );
    assert_eq!(
        app.get_status("").await.json::<Value>().await.unwrap()["status"],
        "pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_queued_here_runs_here_and_leaves_no_row() {
    runs_here_and_leaves_no_row(spawn_app().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_queued_here_runs_here_and_leaves_no_row_on_postgres() {
    if let Some(app) = spawn_app_on(Backend::Postgres).await {
        runs_here_and_leaves_no_row(app).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_slot_busy_the_job_waits_in_the_queue() {
    with_every_slot_busy_waits_in_the_queue(spawn_app().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_slot_busy_the_job_waits_in_the_queue_on_postgres() {
    if let Some(app) = spawn_app_on(Backend::Postgres).await {
        with_every_slot_busy_waits_in_the_queue(app).await;
    }
}
