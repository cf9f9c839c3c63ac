//! Sign-in load generator against a running `api` with the built-in demo provider.
//!
//! Each virtual client runs whole browser flows in a loop, each with a fresh cookie
//! jar: login → demo authorize form → callback → `/auth/status?wait=30` → success →
//! `/api/me`. It prints sign-ins per second and latency percentiles of the callback
//! request, of callback-response-to-first-`ok`, and of the whole flow.
//!
//! ```text
//! cargo run --release -p api                      # in one shell (demo provider on)
//! cargo run --release -p api --example signin_bench -- --clients 16 --seconds 20
//! ```
//! Only loopback targets are accepted; every loop is bounded in time and count.

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
    let samples = Arc::new(Mutex::new(Samples::default()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let budget = Arc::new(std::sync::atomic::AtomicUsize::new(args.max_flows));
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let (samples, budget, base) = (samples.clone(), budget.clone(), args.url.clone());
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
                let result = one_flow(&base, &email).await;
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
        "target {}  clients {}  duration {:.1} s",
        args.url,
        args.clients,
        elapsed.as_secs_f64()
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
    Ok(())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// One browser's whole sign-in; returns (callback, callback→ok, whole flow).
async fn one_flow(base: &Url, email: &str) -> anyhow::Result<(Duration, Duration, Duration)> {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .timeout(Duration::from_secs(40))
        .build()?;
    let at = |path: &str| base.join(path).expect("valid path");
    let flow_started = Instant::now();
    let login = client.get(at("/auth/demo/login")).send().await?;
    let authorize = Url::parse(location(&login)?)?;
    let mut form: Vec<(String, String)> = authorize
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.push(("name".into(), "Bench User".into()));
    form.push(("email".into(), email.into()));
    form.push(("action".into(), "allow".into()));
    let consent = client
        .post(at("/demo-provider/authorize"))
        .form(&form)
        .send()
        .await?;
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
