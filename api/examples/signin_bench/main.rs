//! Sign-in load generator.
//!
//! Each virtual browser runs whole sign-ins in a loop, each with a fresh cookie jar
//! and a fresh user, making every request a browser makes (`flow.rs`): login, the
//! provider's authorize page, the callback, the preloader page, the status long-poll
//! `preloader.js` sends, success, the landing page and `/api/me`. It prints
//! sign-ins per second, latency percentiles (callback request, callback → `ok`, the
//! whole flow) and the CPU milliseconds one sign-in cost each process, read from
//! `/proc`: api, each worker, PostgreSQL (its whole process tree) and the
//! benchmark itself (driver and mock provider).
//!
//! Two modes:
//! - against a running `api` with the built-in demo provider (the default; name
//!   its processes with `--watch api=PID` to get their CPU);
//! - `--spawn sqlite|postgres`: starts a mock OpenID Provider with configurable
//!   latency, then `api` (and `--workers N` separate `worker` processes) from the
//!   benchmark's own target directory on the product's defaults and default log
//!   level (`--log` overrides it; `SIGNIN_*` variables in the environment override
//!   settings), runs the load, and reports their peak RSS too. With
//!   `--count-statements` it also logs every SQL statement and prints how many a
//!   sign-in cost, in total and on the SQLite writer, by kind (`statements.rs`).
//!
//! ```text
//! cargo build --release -p api -p worker --examples
//! target/release/examples/signin_bench --spawn sqlite --clients 64 --seconds 20
//! target/release/examples/signin_bench --spawn postgres --workers 2 --token-latency-ms 50 --userinfo-latency-ms 30
//! ```
//! It exits non-zero when any flow failed. Only loopback targets are used; every
//! loop is bounded in time and count.

mod cpu;
mod flow;
mod load;
mod mock_oidc;
mod spawn;
mod statements;
mod wrk;

use std::time::Duration;

use clap::Parser;
use url::Url;

use crate::cpu::Watched;

/// Sign-in load generator.
#[derive(Parser, Debug)]
struct Args {
    /// Base URL of the api (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: Url,
    /// Concurrent virtual browsers.
    #[arg(long, default_value_t = 64)]
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
    /// With `--spawn`: `RUST_LOG` for the processes (default: the product's, `info`).
    #[arg(long)]
    log: Option<String>,
    /// With `--spawn`: also log every SQL statement and print the statements per
    /// sign-in (in total, on the SQLite writer, by kind). The logging costs CPU, so
    /// take CPU figures from a run without it.
    #[arg(long, requires = "spawn")]
    count_statements: bool,
    /// Also report the CPU of this process tree, `name=PID` (repeatable).
    #[arg(long = "watch", value_parser = parse_watch)]
    watch: Vec<Watched>,
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
    /// Instead of sign-ins: sign in once, then let `wrk` call `/api/me` with that
    /// browser's session cookie (a session check per request).
    #[arg(long, conflicts_with = "status_load")]
    session_load: bool,
    /// With `--spawn`: the api's `redis_url` (shared budgets, session cache).
    #[arg(long, requires = "spawn")]
    redis_url: Option<String>,
}

fn parse_watch(value: &str) -> Result<Watched, String> {
    let (name, pid) = value
        .split_once('=')
        .ok_or_else(|| "expected name=PID".to_owned())?;
    let pid = pid
        .parse()
        .map_err(|_| format!("not a process id: {pid}"))?;
    Ok(Watched::tree(name, pid))
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
    let (base, provider, deployment) = match &args.spawn {
        Some(backend) => {
            let issuer = mock_oidc::start(
                Duration::from_millis(args.token_latency_ms),
                Duration::from_millis(args.userinfo_latency_ms),
            )
            .await?;
            let counting_log = args
                .count_statements
                .then(|| statements::log_filter(args.log.as_deref()));
            let deployment = spawn::start(&spawn::Plan {
                backend,
                workers: args.workers,
                issuer: &issuer,
                postgres_url: &args.postgres_url,
                redis_url: args.redis_url.as_deref(),
                log: counting_log.as_deref().or(args.log.as_deref()),
            })
            .await?;
            (deployment.base.clone(), "mock", Some(deployment))
        }
        None => (args.url.clone(), "demo", None),
    };
    let mut watched: Vec<Watched> = deployment
        .as_ref()
        .map(|d| d.watched.clone())
        .unwrap_or_default();
    watched.extend(args.watch.iter().cloned());
    watched.push(Watched::process("benchmark", std::process::id()));
    let mark = match (&deployment, args.count_statements) {
        (Some(deployment), true) => Some(statements::Mark::now(&deployment.logs)?),
        _ => None,
    };
    let result = if args.status_load {
        wrk::after_one_sign_in(&base, provider, "/auth/status", &args).await
    } else if args.session_load {
        wrk::after_one_sign_in(&base, provider, "/api/me", &args).await
    } else {
        load::sign_ins(&base, provider, &args, &watched)
            .await
            .and_then(|sign_ins| match &mark {
                Some(mark) => mark.report(sign_ins),
                None => Ok(()),
            })
    };
    if let Some(deployment) = deployment {
        for child in &deployment.children {
            println!(
                "peak RSS {:<10} {:>7.1} MB",
                child.role,
                spawn::peak_rss_mb(child.process.id()).unwrap_or(f64::NAN)
            );
        }
        println!("logs in {}", deployment.logs.display());
        spawn::stop(deployment.children);
    }
    result
}
