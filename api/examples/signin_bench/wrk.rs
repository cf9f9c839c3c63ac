//! `--status-load` and `--session-load`: one sign-in up to `ok` (or through to a
//! session), then `wrk` (on PATH) on one route with that browser's cookies,
//! `--clients` connections for `--seconds`. The status is asked for by operation
//! id, as `preloader.js` does.

use std::sync::Arc;

use reqwest::cookie::CookieStore;
use url::Url;

use crate::{
    Args,
    flow::{new_client, one_flow},
};

pub async fn after_one_sign_in(
    base: &Url,
    provider: &str,
    path: &str,
    args: &Args,
) -> anyhow::Result<()> {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = new_client(Some(jar.clone()))?;
    // The status route needs the operation unredeemed; a session check, the session.
    let through_success = path != "/auth/status";
    let flow = one_flow(&client, base, provider, "load@example.com", through_success).await?;
    let cookies = jar
        .cookies(base)
        .ok_or_else(|| anyhow::anyhow!("the sign-in left no cookies"))?;
    // The status of the operation by id, as `preloader.js` asks for it.
    let url = if through_success {
        base.join(path)?
    } else {
        base.join(&format!("{path}?operation={}", flow.operation))?
    };
    let check = client.get(url.clone()).send().await?.status();
    anyhow::ensure!(check.is_success(), "{path} answers {check} before the load");
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
