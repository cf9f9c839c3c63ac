//! Sign-in load generator.
//!
//! Each virtual client runs whole browser flows in a loop, each with a fresh cookie
//! jar: login → provider → callback → `/auth/status?wait=30` → success → `/api/me`.
//! It prints sign-ins per second and latency percentiles of the callback request,
//! of callback-response-to-first-`ok`, and of the whole flow.
//!
//! Two modes:
//! - against a running `api` with the built-in demo provider (the default);
//! - `--spawn sqlite|postgres`: starts a mock OpenID Provider with configurable
//!   latency, then `api` (and `--workers N` separate `worker` processes) from
//!   `target/release`, runs the load, and reports their peak RSS too.
//!
//! ```text
//! cargo build --release -p api -p worker --examples
//! target/release/examples/signin_bench --spawn sqlite --clients 64 --seconds 20
//! target/release/examples/signin_bench --spawn postgres --workers 2 --token-latency-ms 50 --userinfo-latency-ms 30
//! ```
//! Only loopback targets are used; every loop is bounded in time and count.

mod mock_oidc;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use clap::Parser;
use reqwest::{StatusCode, header::LOCATION, redirect::Policy};
use url::Url;

/// Sign-in load generator (demo provider).
#[derive(Parser, Debug)]
struct Args {
    /// Base URL of the api (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: Url,
    /// Concurrent virtual browsers.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How long to run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Stop after this many flows in total, whatever the time.
    #[arg(long, default_value_t = 1_000_000)]
    max_flows: usize,
    /// Start the mock provider and `api` (plus workers) instead of using `--url`.
    #[arg(long, value_parser = ["sqlite", "postgres"])]
    spawn: Option<String>,
    /// With `--spawn`: separate `worker` processes (0 = the embedded worker).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// With `--spawn postgres`: a database URL whose server may create `signin_bench`.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    /// Mock provider token-endpoint latency.
    #[arg(long, default_value_t = 0)]
    token_latency_ms: u64,
    /// Mock provider userinfo latency.
    #[arg(long, default_value_t = 0)]
    userinfo_latency_ms: u64,
    /// Instead of sign-ins: sign in once up to `ok`, then let `wrk` (on PATH) poll
    /// `/auth/status` with that browser's cookies, `--clients` connections for
    /// `--seconds`.
    #[arg(long)]
    status_load: bool,
}

#[derive(Default)]
struct Samples {
    callback: Vec<Duration>,
    callback_to_ok: Vec<Duration>,
    flow: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let host = args.url.host_str().unwrap_or_default();
    anyhow::ensure!(
        host == "127.0.0.1" || host == "localhost" || host == "[::1]",
        "only loopback targets are allowed"
    );
    worker::telemetry::install_crypto_provider();
    let mut children = Vec::new();
    let (base, provider) = match &args.spawn {
        Some(backend) => {
            let issuer = mock_oidc::start(
                Duration::from_millis(args.token_latency_ms),
                Duration::from_millis(args.userinfo_latency_ms),
            )
            .await?;
            let (url, spawned) =
                spawn::start(backend, args.workers, &issuer, &args.postgres_url).await?;
            children = spawned;
            (url, "mock")
        }
        None => (args.url.clone(), "demo"),
    };
    if args.status_load {
        let result = status_load(&base, provider, &args).await;
        print_rss(&children);
        spawn::stop(children);
        return result;
    }
    let samples = Arc::new(Mutex::new(Samples::default()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let budget = Arc::new(std::sync::atomic::AtomicUsize::new(args.max_flows));
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let (samples, budget, base) = (samples.clone(), budget.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < deadline
                && budget
                    .fetch_update(
                        std::sync::atomic::Ordering::SeqCst,
                        std::sync::atomic::Ordering::SeqCst,
                        |b| b.checked_sub(1),
                    )
                    .is_ok()
            {
                n += 1;
                let email = format!("bench-{client}-{n}@example.com");
                let result = match new_client(None) {
                    Ok(client) => one_flow(&client, &base, provider, &email, true).await,
                    Err(e) => Err(e),
                };
                let mut s = samples.lock().unwrap();
                match result {
                    Ok((callback, to_ok, flow)) => {
                        s.callback.push(callback);
                        s.callback_to_ok.push(to_ok);
                        s.flow.push(flow);
                    }
                    Err(e) => {
                        s.errors += 1;
                        s.first_error.get_or_insert(e.to_string());
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    let mut guard = samples.lock().unwrap();
    let s = &mut *guard;
    println!(
        "target {base}  provider {provider}  clients {}  duration {:.1} s  provider latency: token {} ms, userinfo {} ms",
        args.clients,
        elapsed.as_secs_f64(),
        args.token_latency_ms,
        args.userinfo_latency_ms
    );
    println!(
        "sign-ins {}  errors {}  throughput {:.1} sign-ins/s",
        s.flow.len(),
        s.errors,
        s.flow.len() as f64 / elapsed.as_secs_f64()
    );
    if let Some(e) = &s.first_error {
        println!("first error: {e}");
    }
    for (name, values) in [
        ("callback request", &mut s.callback),
        ("callback -> ok (long-poll)", &mut s.callback_to_ok),
        ("whole flow", &mut s.flow),
    ] {
        values.sort();
        println!(
            "{name:<28} p50 {:>8.2} ms  p95 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
            pct(values, 0.50),
            pct(values, 0.95),
            pct(values, 0.99),
            pct(values, 1.0)
        );
    }
    print_rss(&children);
    drop(guard);
    spawn::stop(children);
    Ok(())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn print_rss(children: &[spawn::Spawned]) {
    for child in children {
        println!(
            "peak RSS {:<8} {:>7.1} MB",
            child.role,
            spawn::peak_rss_mb(child.process.id()).unwrap_or(f64::NAN)
        );
    }
}

/// A fresh browser: its own cookie jar (`jar`, or an internal one).
fn new_client(jar: Option<Arc<reqwest::cookie::Jar>>) -> anyhow::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(40))
        // Plain HTTP on loopback: skip loading the system's root certificates for
        // every flow (it cost the generator more CPU than the requests).
        .tls_certs_only(std::iter::empty());
    let builder = match jar {
        Some(jar) => builder.cookie_provider(jar),
        None => builder.cookie_store(true),
    };
    Ok(builder.build()?)
}

/// `--status-load`: one sign-in up to `ok`, then `wrk` on `/auth/status`.
async fn status_load(base: &Url, provider: &str, args: &Args) -> anyhow::Result<()> {
    use reqwest::cookie::CookieStore;
    let jar = Arc::new(reqwest::cookie::Jar::default());
    one_flow(
        &new_client(Some(jar.clone()))?,
        base,
        provider,
        "status@example.com",
        false,
    )
    .await?;
    let cookies = jar
        .cookies(base)
        .ok_or_else(|| anyhow::anyhow!("the sign-in left no cookies"))?;
    let url = base.join("/auth/status")?;
    println!(
        "wrk on {url}: {} connections, {} s",
        args.clients, args.seconds
    );
    let status = tokio::process::Command::new("wrk")
        .args(["-t2", "--latency", "--timeout", "5s"])
        .arg(format!("-c{}", args.clients))
        .arg(format!("-d{}s", args.seconds))
        .arg("-H")
        .arg(format!("Cookie: {}", cookies.to_str()?))
        .arg(url.as_str())
        .status()
        .await
        .map_err(|e| anyhow::anyhow!("running wrk (apt-get install wrk): {e}"))?;
    anyhow::ensure!(status.success(), "wrk failed: {status}");
    Ok(())
}

/// One browser's sign-in; returns (callback, callback→ok, whole flow). With
/// `finish`, also redeems it (`/auth/success`) and reads `/api/me`.
async fn one_flow(
    client: &reqwest::Client,
    base: &Url,
    provider: &str,
    email: &str,
    finish: bool,
) -> anyhow::Result<(Duration, Duration, Duration)> {
    let at = |path: &str| base.join(path).expect("valid path");
    let flow_started = Instant::now();
    let login = client
        .get(at(&format!("/auth/{provider}/login")))
        .send()
        .await?;
    let authorize = Url::parse(location(&login)?)?;
    let consent = if provider == "demo" {
        let mut form: Vec<(String, String)> = authorize
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        form.push(("name".into(), "Bench User".into()));
        form.push(("email".into(), email.into()));
        form.push(("action".into(), "allow".into()));
        client
            .post(at("/demo-provider/authorize"))
            .form(&form)
            .send()
            .await?
    } else {
        // The mock provider consents at once.
        client.get(authorize).send().await?
    };
    let callback_url = location(&consent)?.to_owned();

    let callback_started = Instant::now();
    let callback = client.get(&callback_url).send().await?;
    let callback_done = Instant::now();
    anyhow::ensure!(
        location(&callback)? == "/auth/preloader",
        "callback went to {}",
        location(&callback)?
    );
    loop {
        anyhow::ensure!(
            callback_done.elapsed() < Duration::from_secs(60),
            "operation never finished"
        );
        let status: serde_json::Value = client
            .get(at("/auth/status?wait=30"))
            .send()
            .await?
            .json()
            .await?;
        match status["status"].as_str() {
            Some("ok") => break,
            Some("pending") => continue,
            _ => anyhow::bail!("status {status}"),
        }
    }
    let to_ok = callback_done.elapsed();
    if !finish {
        return Ok((
            callback_done - callback_started,
            to_ok,
            flow_started.elapsed(),
        ));
    }
    let success = client.get(at("/auth/success")).send().await?;
    anyhow::ensure!(
        location(&success)? == "/",
        "success went to {}",
        location(&success)?
    );
    let me = client.get(at("/api/me")).send().await?;
    anyhow::ensure!(me.status() == StatusCode::OK, "me answered {}", me.status());
    Ok((
        callback_done - callback_started,
        to_ok,
        flow_started.elapsed(),
    ))
}

fn location(response: &reqwest::Response) -> anyhow::Result<&str> {
    response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| anyhow::anyhow!("no Location (HTTP {})", response.status()))
}

/// Starting and stopping the processes of `--spawn`.
mod spawn {
    use std::{
        path::PathBuf,
        process::{Child, Command, Stdio},
        time::{Duration, Instant},
    };

    use sea_orm::ConnectionTrait;
    use url::Url;

    /// A started process and what it is.
    pub struct Spawned {
        pub role: String,
        pub process: Child,
    }

    fn binary(name: &str) -> anyhow::Result<PathBuf> {
        let exe = std::env::current_exe()?;
        let dir = exe
            .parent()
            .and_then(|p| p.parent())
            .ok_or_else(|| anyhow::anyhow!("no target dir"))?;
        let path = dir.join(name);
        anyhow::ensure!(
            path.exists(),
            "{} is missing: cargo build --release -p api -p worker",
            path.display()
        );
        Ok(path)
    }

    fn free_port() -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    }

    /// Starts `api` (embedded worker when `workers` is 0) and `workers` workers.
    pub async fn start(
        backend: &str,
        workers: usize,
        issuer: &str,
        postgres_url: &str,
    ) -> anyhow::Result<(Url, Vec<Spawned>)> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("signin-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let database_url = match backend {
            "sqlite" => format!("sqlite://{}?mode=rwc", dir.join("signin.db").display()),
            _ => {
                let admin = sea_orm::Database::connect(postgres_url).await?;
                admin
                    .execute_unprepared("DROP DATABASE IF EXISTS signin_bench WITH (FORCE)")
                    .await?;
                admin
                    .execute_unprepared("CREATE DATABASE signin_bench")
                    .await?;
                let mut url = Url::parse(postgres_url)?;
                url.set_path("signin_bench");
                url.to_string()
            }
        };
        let env: Vec<(String, String)> = vec![
            ("SIGNIN_LISTEN".into(), format!("127.0.0.1:{port}")),
            (
                "SIGNIN_PUBLIC_URL".into(),
                format!("http://127.0.0.1:{port}"),
            ),
            ("SIGNIN_DATABASE_URL".into(), database_url),
            (
                "SIGNIN_SECRET_KEY".into(),
                "bench-secret-key-0123456789-abcdefghijkl".into(),
            ),
            ("SIGNIN_WORKER__EMBEDDED".into(), (workers == 0).to_string()),
            ("SIGNIN_PROVIDERS__MOCK__KIND".into(), "oidc".into()),
            ("SIGNIN_PROVIDERS__MOCK__ISSUER".into(), issuer.into()),
            (
                "SIGNIN_PROVIDERS__MOCK__CLIENT_ID".into(),
                super::mock_oidc::CLIENT_ID.into(),
            ),
            (
                "SIGNIN_PROVIDERS__MOCK__CLIENT_SECRET".into(),
                super::mock_oidc::CLIENT_SECRET.into(),
            ),
            ("RUST_LOG".into(), "warn".into()),
            // Every virtual browser shares 127.0.0.1: per-IP budgets off.
            (
                "SIGNIN_LIMITS__SIGN_IN_STARTS_PER_IP_PER_MINUTE".into(),
                "0".into(),
            ),
            (
                "SIGNIN_LIMITS__CALLBACKS_PER_IP_PER_MINUTE".into(),
                "0".into(),
            ),
            (
                "SIGNIN_LIMITS__STATUS_POLLS_PER_IP_PER_MINUTE".into(),
                "0".into(),
            ),
        ];
        let launch =
            |role: String, exe: PathBuf, extra: Vec<(String, String)>| -> anyhow::Result<Spawned> {
                let process = Command::new(exe)
                    .current_dir(&dir)
                    .envs(env.iter().cloned())
                    .envs(extra)
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()?;
                Ok(Spawned { role, process })
            };
        let mut children = vec![launch("api".into(), binary("api")?, vec![])?];
        let base = Url::parse(&format!("http://127.0.0.1:{port}"))?;
        wait_ready(&base).await?;
        for n in 0..workers {
            let metrics = (
                "SIGNIN_WORKER__METRICS_LISTEN".to_owned(),
                format!("127.0.0.1:{}", free_port()?),
            );
            children.push(launch(
                format!("worker-{n}"),
                binary("worker")?,
                vec![metrics],
            )?);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok((base, children))
    }

    async fn wait_ready(base: &Url) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(r) = reqwest::get(base.join("/readyz")?).await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("api did not become ready")
    }

    /// Peak resident set size (VmHWM) of a live process, in MB.
    pub fn peak_rss_mb(pid: u32) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kb: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }

    /// Stops every process (SIGKILL: the benchmark's data is thrown away).
    pub fn stop(children: Vec<Spawned>) {
        for mut child in children {
            let _ = child.process.kill();
            let _ = child.process.wait();
        }
    }
}
