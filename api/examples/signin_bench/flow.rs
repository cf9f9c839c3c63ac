//! One browser's sign-in, request by request as a browser makes them: login, the
//! provider's authorize page, the callback, the preloader page, its status
//! long-poll (as `preloader.js` sends it), success, the landing page and `/api/me`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use reqwest::{StatusCode, header::LOCATION, redirect::Policy};
use url::Url;

/// How long `preloader.js` asks the status endpoint to hold a poll.
const WAIT_SECONDS: u64 = 25;
/// No flow waits longer than this for its operation.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// What one flow took.
pub struct Timings {
    /// The callback request alone.
    pub callback: Duration,
    /// From the callback's answer to the status poll that said `ok`.
    pub callback_to_ok: Duration,
    /// Login to `/api/me`.
    pub flow: Duration,
    /// The operation the callback started.
    pub operation: String,
}

/// A fresh browser: its own cookie jar (`jar`, or an internal one).
pub fn new_client(jar: Option<Arc<reqwest::cookie::Jar>>) -> anyhow::Result<reqwest::Client> {
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

/// One sign-in through `provider` (`demo` fills the built-in demo provider's form;
/// any other consents at once). With `finish`, it also redeems the operation, loads
/// the landing page and reads `/api/me`, as the browser does.
pub async fn one_flow(
    client: &reqwest::Client,
    base: &Url,
    provider: &str,
    email: &str,
    finish: bool,
) -> anyhow::Result<Timings> {
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
        client.get(authorize).send().await?
    };
    let callback_url = location(&consent)?.to_owned();

    let callback_started = Instant::now();
    let callback = client.get(&callback_url).send().await?;
    let callback_done = Instant::now();
    let preloader = location(&callback)?.to_owned();
    let operation = preloader
        .strip_prefix("/auth/preloader?operation=")
        .ok_or_else(|| anyhow::anyhow!("the callback went to {preloader}"))?
        .to_owned();
    let page = client.get(at(&preloader)).send().await?;
    anyhow::ensure!(
        page.status() == StatusCode::OK,
        "preloader answered {}",
        page.status()
    );
    let page = page.text().await?;
    anyhow::ensure!(
        page.contains(&format!("data-operation=\"{operation}\"")),
        "the preloader is not bound to {operation}"
    );
    wait_for_ok(
        client,
        &at(&format!(
            "/auth/status?wait={WAIT_SECONDS}&operation={operation}"
        )),
        callback_done,
    )
    .await?;
    let callback_to_ok = callback_done.elapsed();
    let timings = |flow| Timings {
        callback: callback_done - callback_started,
        callback_to_ok,
        flow,
        operation: operation.clone(),
    };
    if !finish {
        return Ok(timings(flow_started.elapsed()));
    }
    let success = client
        .get(at(&format!("/auth/success?operation={operation}")))
        .send()
        .await?;
    let landing = location(&success)?.to_owned();
    anyhow::ensure!(landing == "/", "success went to {landing}");
    let index = client.get(at(&landing)).send().await?;
    anyhow::ensure!(
        index.status() == StatusCode::OK,
        "the landing page answered {}",
        index.status()
    );
    index.bytes().await?;
    let me = client.get(at("/api/me")).send().await?;
    anyhow::ensure!(
        me.status() == StatusCode::OK,
        "/api/me answered {}",
        me.status()
    );
    me.bytes().await?;
    Ok(timings(flow_started.elapsed()))
}

/// Long-polls `status` until `ok`; any other end is an error.
async fn wait_for_ok(client: &reqwest::Client, status: &Url, since: Instant) -> anyhow::Result<()> {
    loop {
        anyhow::ensure!(since.elapsed() < MAX_WAIT, "the operation never finished");
        let body: serde_json::Value = client.get(status.clone()).send().await?.json().await?;
        match body["status"].as_str() {
            Some("ok") => return Ok(()),
            Some("pending") => continue,
            _ => anyhow::bail!("status {body}"),
        }
    }
}

pub fn location(response: &reqwest::Response) -> anyhow::Result<&str> {
    response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| anyhow::anyhow!("no Location (HTTP {})", response.status()))
}
