//! Starting and stopping the processes of `--spawn`: `api` (with the embedded
//! worker, or beside `--workers N` separate `worker` processes) on the product's
//! defaults, from the same target directory as the benchmark.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sea_orm::ConnectionTrait;
use url::Url;

use crate::cpu::{self, Watched};

/// A started process and what it is.
pub struct Spawned {
    pub role: String,
    pub process: Child,
}

/// What `start` brought up.
pub struct Deployment {
    pub base: Url,
    pub children: Vec<Spawned>,
    /// The processes to account CPU to: api, workers and, on PostgreSQL, the server.
    pub watched: Vec<Watched>,
    /// Where the processes' logs go.
    pub logs: PathBuf,
}

/// How to start it.
pub struct Plan<'a> {
    pub backend: &'a str,
    pub workers: usize,
    pub issuer: &'a str,
    pub postgres_url: &'a str,
    /// `redis_url` for the api (shared budgets, session cache), if any.
    pub redis_url: Option<&'a str>,
    /// `RUST_LOG` for the processes; `None` leaves the product's default (`info`).
    pub log: Option<&'a str>,
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

/// Starts the deployment `plan` describes, on an empty database.
pub async fn start(plan: &Plan<'_>) -> anyhow::Result<Deployment> {
    let dir = std::env::temp_dir().join(format!("signin-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut watched = Vec::new();
    let database_url = match plan.backend {
        "sqlite" => format!("sqlite://{}?mode=rwc", dir.join("signin.db").display()),
        _ => {
            let (url, postmaster) = fresh_postgres(plan.postgres_url).await?;
            if let Some(pid) = postmaster {
                watched.push(Watched::tree("postgres", pid));
            }
            url
        }
    };
    let mut env: Vec<(String, String)> = vec![
        // Port 0: the api binds a free port itself and logs it (no port race).
        ("SIGNIN_LISTEN".into(), "127.0.0.1:0".into()),
        // The api's metrics listener too (workers use worker.metrics_listen).
        ("SIGNIN_METRICS__LISTEN".into(), "127.0.0.1:0".into()),
        ("SIGNIN_PUBLIC_URL".into(), "http://127.0.0.1:0".into()),
        ("SIGNIN_DATABASE_URL".into(), database_url),
        (
            "SIGNIN_SECRET_KEY".into(),
            "bench-secret-key-0123456789-abcdefghijkl".into(),
        ),
        (
            "SIGNIN_WORKER__EMBEDDED".into(),
            (plan.workers == 0).to_string(),
        ),
        ("SIGNIN_PROVIDERS__MOCK__KIND".into(), "oidc".into()),
        ("SIGNIN_PROVIDERS__MOCK__ISSUER".into(), plan.issuer.into()),
        (
            "SIGNIN_PROVIDERS__MOCK__CLIENT_ID".into(),
            super::mock_oidc::CLIENT_ID.into(),
        ),
        (
            "SIGNIN_PROVIDERS__MOCK__CLIENT_SECRET".into(),
            super::mock_oidc::CLIENT_SECRET.into(),
        ),
        // Every virtual browser comes from 127.0.0.1, so the per-IP budgets (the one
        // departure from the defaults) are off, as in `../shared/perf`.
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
        // Each virtual browser keeps a sign-in pending: more than 20 of them from
        // one address would meet the per-address cap.
        (
            "SIGNIN_LIMITS__PENDING_OPERATIONS_PER_IP".into(),
            "0".into(),
        ),
    ];
    if let Some(redis_url) = plan.redis_url {
        env.push(("SIGNIN_REDIS_URL".into(), redis_url.into()));
    }
    let launch = |role: String, exe: PathBuf, extra: Vec<(String, String)>| {
        launch(&dir, &role, exe, &env, extra, plan.log).map(|process| Spawned { role, process })
    };
    let mut children = vec![launch("api".into(), binary("api")?, vec![])?];
    let base = wait_ready(&dir.join("api.log")).await?;
    for n in 0..plan.workers {
        let metrics = (
            "SIGNIN_WORKER__METRICS_LISTEN".to_owned(),
            "127.0.0.1:0".to_owned(),
        );
        children.push(launch(
            format!("worker-{n}"),
            binary("worker")?,
            vec![metrics],
        )?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut processes: Vec<Watched> = children
        .iter()
        .map(|c| Watched::process(c.role.clone(), c.process.id()))
        .collect();
    processes.extend(watched);
    Ok(Deployment {
        base,
        children,
        watched: processes,
        logs: dir,
    })
}

/// One process, its output appended to `<role>.log` in `dir` as an operator's would be.
fn launch(
    dir: &Path,
    role: &str,
    exe: PathBuf,
    env: &[(String, String)],
    extra: Vec<(String, String)>,
    log: Option<&str>,
) -> anyhow::Result<Child> {
    let out = std::fs::File::create(dir.join(format!("{role}.log")))?;
    let mut command = Command::new(exe);
    command
        .current_dir(dir)
        .envs(env.iter().cloned())
        .envs(extra)
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out));
    match log {
        Some(filter) => command.env("RUST_LOG", filter),
        None => command.env_remove("RUST_LOG"),
    };
    Ok(command.spawn()?)
}

/// Recreates the `signin_bench` database; returns its URL and the server's
/// postmaster (the parent of our backend), whose process tree is PostgreSQL's CPU.
async fn fresh_postgres(admin_url: &str) -> anyhow::Result<(String, Option<u32>)> {
    let admin = sea_orm::Database::connect(admin_url).await?;
    admin
        .execute_unprepared("DROP DATABASE IF EXISTS signin_bench WITH (FORCE)")
        .await?;
    admin
        .execute_unprepared("CREATE DATABASE signin_bench")
        .await?;
    let backend = admin
        .query_one_raw(sea_orm::Statement::from_string(
            admin.get_database_backend(),
            "SELECT pg_backend_pid() AS pid",
        ))
        .await?
        .and_then(|row| row.try_get::<i32>("", "pid").ok())
        .and_then(|pid| u32::try_from(pid).ok());
    // A server on another machine (or in a container) has no postmaster here.
    let postmaster = backend.and_then(cpu::parent);
    let mut url = Url::parse(admin_url)?;
    url.set_path("signin_bench");
    Ok((url.to_string(), postmaster))
}

/// The api's address, from its `api listening` log line, once `/readyz` answers.
async fn wait_ready(log: &Path) -> anyhow::Result<Url> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let address = std::fs::read_to_string(log).ok().and_then(|text| {
            let line = text.lines().find(|l| l.contains("api listening"))?;
            let at = line.split("address=").nth(1)?;
            Some(at.split_whitespace().next()?.to_owned())
        });
        if let Some(address) = address {
            let base = Url::parse(&format!("http://{address}"))?;
            if let Ok(r) = reqwest::get(base.join("/readyz")?).await
                && r.status().is_success()
            {
                return Ok(base);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("api did not become ready (see {})", log.display())
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
