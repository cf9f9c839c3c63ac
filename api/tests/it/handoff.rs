//! With the embedded worker, on SQLite and on PostgreSQL, a job the callback queues
//! runs in the same process at once (`worker::jobs` hand-over): its row is written
//! locked by the process's in-process holder. When every slot is busy it waits in
//! the queue, and when the process dies holding it, another process's worker runs
//! it again.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use serde_json::Value;
use worker::{
    jobs::SignInJob,
    operations::{self, NewOperation},
};

use crate::helpers::{
    Backend, Browser, MockProvider, Storage, TestApp, assert_to_preloader, mock_provider,
    preloader_operation_of, spawn_app, spawn_app_on,
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

/// A real `api` process with the embedded worker on `database_url`.
struct Api {
    child: Child,
    address: String,
}

impl Api {
    fn spawn(database_url: &str, provider: &MockProvider) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_api"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("SIGNIN_LOG__FORMAT", "json")
            .env("SIGNIN_LISTEN", "127.0.0.1:0")
            .env("SIGNIN_PUBLIC_URL", "http://127.0.0.1:1")
            .env("SIGNIN_METRICS__LISTEN", "127.0.0.1:0")
            .env("SIGNIN_DATABASE_URL", database_url)
            .env(
                "SIGNIN_SECRET_KEY",
                "handoff-test-secret-key-0123456789-abcdef",
            )
            .env("SIGNIN_WORKER__CONCURRENCY", "2")
            .env("SIGNIN_PROVIDERS__MOCK__KIND", "oidc")
            .env("SIGNIN_PROVIDERS__MOCK__ISSUER", provider.issuer())
            .env(
                "SIGNIN_PROVIDERS__MOCK__CLIENT_ID",
                mock_provider::CLIENT_ID,
            )
            .env(
                "SIGNIN_PROVIDERS__MOCK__CLIENT_SECRET",
                mock_provider::CLIENT_SECRET,
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the api binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the log until the listening line, then drains it for the process's life.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if entry["fields"]["message"] == "api listening" {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(entry["fields"]["address"].as_str().map(str::to_owned));
                    }
                }
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(60))
            .ok()
            .flatten()
            .expect("the api logs its address");
        Self {
            child,
            address: format!("http://{address}"),
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The process holding a handed-over job is killed during its token request; the
/// next process re-runs the job once the holder's heartbeat is stale (about 15 s),
/// and the sign-in ends `exchange_interrupted` (the preloader restarts it) with the
/// code presented once.
async fn killed_holder_runs_again_elsewhere(backend: Backend) {
    let Some(storage) = Storage::create(backend).await else {
        return;
    };
    let database_url = storage.url();
    let provider = MockProvider::start_with(false, false).await;
    let mut first = Api::spawn(&database_url, &provider);
    let db = Database::connect(&database_url).await.unwrap();
    holder_registered(&db).await;
    let browser = Browser::new(&first.address);
    let operation = start(&browser, &provider, "killed", HOLD).await;
    wait_for(
        "the token request is in flight",
        Duration::from_secs(10),
        || async { (provider.token_requests().await.len() == 1).then_some(()) },
    )
    .await;
    // Precondition: the killed process held the job, mid-exchange.
    let (status, holder) = job_row(&db, &operation).await.unwrap();
    assert_eq!(status, "Running");
    assert!(is_in_process(holder.as_deref()), "{holder:?}");
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let second = Api::spawn(&database_url, &provider);
    let browser = Browser {
        address: second.address.clone(),
        ..browser
    };
    let body = wait_for("the operation ended", Duration::from_secs(60), || async {
        let response = browser.get_status("?wait=5").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        (body["status"] != "pending").then_some(body)
    })
    .await;
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error"]["code"], "exchange_interrupted", "{body}");
    assert_eq!(
        provider.token_requests().await.len(),
        1,
        "the code went once"
    );
    for table in ["user_profile", "social_account"] {
        let rows = count(&db, table).await;
        assert_eq!(rows, 0, "{table}: the interrupted sign-in made nothing");
    }
    db.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_held_by_a_killed_process_runs_again_elsewhere() {
    killed_holder_runs_again_elsewhere(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_held_by_a_killed_process_runs_again_elsewhere_on_postgres() {
    killed_holder_runs_again_elsewhere(Backend::Postgres).await;
}

/// A callback whose request is dropped while its write waits for the writer (the
/// browser went away): the write still commits, and its job still runs, instead of
/// a row held by this process that nothing runs until the operation times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_callback_still_runs_its_job() {
    let app = spawn_app().await;
    let claims = app.provider.claims("dropped", "nonce-dropped");
    app.provider
        .given_token_ok("code-dropped", &app.provider.id_token(&claims))
        .await;
    // Precondition: the job will be held by the process (both slots are free),
    // not queued for the worker's fetch.
    holder_registered(&app.db).await;
    // Hold the writer, so the callback's write waits in its queue.
    let (entered, writer_busy) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let writer = app.state.writer.clone();
    let blocker = tokio::spawn(async move {
        writer
            .run(move |_| {
                Box::pin(async move {
                    let _ = entered.send(());
                    let _ = released.await;
                    Ok(())
                })
            })
            .await
    });
    writer_busy.await.unwrap();
    let new = NewOperation {
        kind: operations::KIND_BROWSER,
        provider: "mock".into(),
        redeemer_hash: "dropped-browser".into(),
        next_path: None,
        link: None,
        state_hash: None,
        client_key: None,
    };
    let job = SignInJob {
        operation_id: uuid::Uuid::nil(),
        provider: "mock".into(),
        code: "code-dropped".into(),
        pkce_verifier: "verifier".into(),
        nonce: Some("nonce-dropped".into()),
        form_user: None,
        redirect_uri: None,
        id_token: None,
        access_token: None,
        one_tap: false,
        client: Default::default(),
    };
    let start = app.state.jobs.start(&app.state.writer, new, job);
    // Precondition: the start was dropped unfinished, its write still queued.
    let dropped = tokio::time::timeout(Duration::from_millis(300), start).await;
    assert!(
        dropped.is_err(),
        "the start finished while the writer was held"
    );
    release.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    // Well inside the test app's 30 s operation timeout.
    let status = wait_for(
        "the operation finished",
        Duration::from_secs(10),
        || async {
            let row = app
                .db
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT status FROM async_operation WHERE redeemer_hash = 'dropped-browser'",
                ))
                .await
                .unwrap()?;
            let status: String = row.try_get("", "status").unwrap();
            (status != "pending").then_some(status)
        },
    )
    .await;
    assert_eq!(status, "ok");
}
