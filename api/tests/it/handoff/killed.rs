//! The process holding a handed-over job dies: another process runs the job again.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use reqwest::StatusCode;
use sea_orm::Database;
use serde_json::Value;

use super::{HOLD, count, holder_registered, is_in_process, job_row, start, wait_for};
use crate::helpers::{Backend, Browser, MockProvider, Storage, mock_provider};

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
