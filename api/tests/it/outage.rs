//! The database going away: routes answer 503 with a clear message (not 500, not a
//! panic) and everything recovers by itself when it returns. PostgreSQL is reached
//! through a TCP proxy the test can cut.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::Notify};

use crate::helpers::{Backend, spawn_app_on};

/// Forwards 127.0.0.1:<port> to `target`; while down it refuses to forward and
/// drops every open connection.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<Notify>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(Notify::new());
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    break;
                };
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let cut = cut2.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.notified() => {}
                    }
                });
            }
        });
        Self { addr, up, cut }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn the_database_going_away_gives_503_and_recovers_without_a_restart() {
    let Some(base) = crate::helpers::postgres_url() else {
        return;
    };
    let mut url = url::Url::parse(&base).unwrap();
    let target: SocketAddr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
        .parse()
        .unwrap();
    let proxy = Proxy::start(target).await;
    // The app gets its own database (created directly), reached through the proxy.
    let app = spawn_app_on(Backend::Postgres).await.unwrap();
    let direct = url::Url::parse(&app.settings.database_url).unwrap();
    url.set_path(direct.path());
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    let settings_json = json!({
        "listen": "127.0.0.1:0", "public_url": "http://127.0.0.1:0", "database_url": url.to_string(),
        "metrics": {"listen": "127.0.0.1:0"},
        "secret_key": "test-secret-key-that-is-long-enough-0123456789",
        "providers": {"mock": {"kind": "oidc", "issuer": app.provider.issuer(), "client_id": "client-123", "client_secret": "secret-456"}},
    });
    let settings = worker::config::Settings::from_figment(figment::Figment::from(
        figment::providers::Serialized::defaults(settings_json),
    ))
    .unwrap();
    let proxied = api::startup::Application::build(settings).await.unwrap();
    let address = format!("http://127.0.0.1:{}", proxied.port);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(proxied.run(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let register = |email: &'static str| {
        let client = client.clone();
        let address = address.clone();
        async move {
            client
                .post(format!("{address}/api/auth/register"))
                .json(&json!({"email": email, "password": "violet-lantern-harbor-42"}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        register("before@example.com").await.status(),
        StatusCode::CREATED
    );

    proxy.down();
    let during = register("during@example.com").await;
    assert_eq!(during.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = during.json().await.unwrap();
    assert_eq!(body["error"]["code"], "database_unavailable");
    let ready = client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = client
        .get(format!("{address}/auth/preloader"))
        .header("cookie", "x=y")
        .send()
        .await
        .unwrap();
    assert!(page.status() != StatusCode::INTERNAL_SERVER_ERROR);

    proxy.up();
    let mut recovered = false;
    for _ in 0..40 {
        if client
            .get(format!("{address}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == StatusCode::OK
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(recovered, "ready again without a restart");
    assert_eq!(
        register("after@example.com").await.status(),
        StatusCode::CREATED
    );
    assert!(
        !server.is_finished(),
        "the api (and its embedded worker) kept running"
    );
    let _ = stop.send(());
}

/// The server ending pooled connections while they sit idle (a restart, an idle
/// timeout, an operator) costs no request once they have been idle longer than
/// `liveness::ALIVE_BYPASS`: such a connection is pinged before the pool hands it
/// out, and a dead one replaced (one used within the window is handed out without
/// that round trip: see `worker::db::liveness`).
#[tokio::test]
async fn pooled_connections_ended_while_idle_are_replaced_once_past_the_window() {
    use sea_orm::sqlx::{self, Connection, postgres::PgPoolOptions};
    let Some(url) = crate::helpers::postgres_url() else {
        return;
    };
    let pool = worker::db::liveness::ping_when_idle(PgPoolOptions::new().max_connections(3))
        .connect(&url)
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.acquire().await.unwrap());
    }
    let mut pids = Vec::new();
    for conn in &mut held {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        pids.push(pid);
    }
    drop(held);
    // Released connections are checked on their way back; wait until all are idle.
    for _ in 0..100 {
        if pool.num_idle() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        pool.num_idle(),
        3,
        "the three connections are idle in the pool"
    );
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    for pid in &pids {
        let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(ended, "backend {pid} ended");
    }
    tokio::time::sleep(worker::db::liveness::ALIVE_BYPASS + Duration::from_millis(200)).await;
    for i in 0..3 {
        let row: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|error| panic!("statement {i} after the window: {error}"));
        assert_eq!(row, 1);
    }
}
