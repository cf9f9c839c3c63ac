//! `spawn_app`: the real application on a random port with fresh storage (a SQLite
//! file in a temp dir, or a new PostgreSQL database when asked and configured), a
//! mock OpenID Provider, and a cookie-keeping HTTP client acting as one browser.

pub mod mock_provider;
pub mod openapi;
pub mod rows;
pub mod workers;

use std::{ops::Deref, sync::Arc, time::Duration};

use api::{startup::Application, state::AppState};
use figment::{Figment, providers::Serialized};
use reqwest::{Response, StatusCode, header::LOCATION, redirect::Policy};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, EntityTrait, PaginatorTrait};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use url::Url;
use uuid::Uuid;
use worker::config::Settings;

pub use mock_provider::{MockProvider, appsecret_proof};

/// Where a test app keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Knobs a test may turn before the app starts.
#[derive(Clone, Debug)]
pub struct Options {
    pub backend: Backend,
    pub embedded_worker: bool,
    /// Extra configuration merged last (JSON object of settings keys).
    pub overrides: Value,
    /// The provider name the mock OpenID Provider is configured under…
    pub mock_name: &'static str,
    /// …and extra keys for it (`{"hd": …}`, Apple's keys, endpoint overrides);
    /// `{mock}` in a string stands for the mock's base URL.
    pub mock_config: Value,
    /// The mock's discovery promises `iss` in authorization responses (RFC 9207).
    pub mock_sends_iss: bool,
    /// The mock's issuer ends in `/`, as Auth0's does.
    pub mock_issuer_slash: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backend: Backend::Sqlite,
            embedded_worker: true,
            overrides: json!({}),
            mock_name: "mock",
            mock_config: json!({"kind": "oidc", "display_name": "Mock ID"}),
            mock_sends_iss: false,
            mock_issuer_slash: false,
        }
    }
}

/// The redirect URI an app registers for native sign-in.
pub const APP_REDIRECT: &str = "com.example.app:/oauth2redirect";

impl Options {
    /// The mock provider set up for native sign-in: an app client id and
    /// [`APP_REDIRECT`].
    pub fn native() -> Self {
        Self {
            mock_config: json!({
                "kind": "oidc", "display_name": "Mock ID",
                "native_client_ids": ["ios-client-id"],
                "native_redirect_uris": [APP_REDIRECT],
            }),
            ..Self::default()
        }
    }
}

/// One browser: a cookie jar and no automatic redirects, so every 303 is visible.
pub struct Browser {
    pub address: String,
    pub client: reqwest::Client,
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    /// `http://` and the metrics listener's address (`metrics.listen`).
    pub metrics_address: String,
    pub db: DatabaseConnection,
    pub state: AppState,
    pub settings: Arc<Settings>,
    pub provider: MockProvider,
    pub browser: Browser,
    _storage: Storage,
    _shutdown: oneshot::Sender<()>,
}

impl Deref for TestApp {
    type Target = Browser;
    fn deref(&self) -> &Browser {
        &self.browser
    }
}

/// The app on SQLite with the embedded worker and a mock OIDC provider `mock`.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default())
        .await
        .expect("SQLite needs no configuration")
}

/// The app on SQLite with no worker at all: operations stay pending until a test
/// (or a worker it starts) finishes them.
pub async fn spawn_app_without_worker() -> TestApp {
    spawn_app_with(Options {
        embedded_worker: false,
        ..Options::default()
    })
    .await
    .expect("SQLite needs no configuration")
}

/// The app on `backend` with everything else as in [`spawn_app`]; `None` when
/// PostgreSQL is asked for but not configured.
pub async fn spawn_app_on(backend: Backend) -> Option<TestApp> {
    spawn_app_with(Options {
        backend,
        ..Options::default()
    })
    .await
}

/// The app on `backend` with `worker.embedded = false` (nothing runs its jobs until
/// a test starts workers); `None` when PostgreSQL is asked for but not configured.
pub async fn spawn_app_without_worker_on(backend: Backend) -> Option<TestApp> {
    spawn_app_with(Options {
        backend,
        embedded_worker: false,
        ..Options::default()
    })
    .await
}

/// The app with `options`; `None` when PostgreSQL is asked for but
/// `SIGNIN_TEST_POSTGRES_URL` is not set.
pub async fn spawn_app_with(options: Options) -> Option<TestApp> {
    worker::telemetry::init_for_test();
    let provider =
        MockProvider::start_with(options.mock_sends_iss, options.mock_issuer_slash).await;
    let storage = Storage::create(options.backend).await?;
    let mut config = json!({
        "listen": "127.0.0.1:0",
        "public_url": "http://127.0.0.1:0",
        "database_url": storage.url(),
        "secret_key": "test-secret-key-that-is-long-enough-0123456789",
        "operation_timeout": "30s",
        "worker": {"embedded": options.embedded_worker, "concurrency": 2},
        "metrics": {"listen": "127.0.0.1:0"},
        "providers": {},
    });
    let mut mock = json!({
        "issuer": provider.issuer(),
        "client_id": mock_provider::CLIENT_ID,
        "client_secret": mock_provider::CLIENT_SECRET,
    });
    let mock_config = options
        .mock_config
        .to_string()
        .replace("{mock}", &provider.server.uri());
    merge(
        &mut mock,
        serde_json::from_str(&mock_config).expect("mock_config is JSON"),
    );
    config["providers"][options.mock_name] = mock;
    if let Value::Object(overrides) = options.overrides {
        for (key, value) in overrides {
            merge(&mut config[key.as_str()], value);
        }
    }
    let settings = Settings::from_figment(Figment::from(Serialized::defaults(config)))
        .expect("valid test settings");
    let app = Application::build(settings).await.expect("the app builds");
    let port = app.port;
    let metrics_address = format!("http://{}", app.metrics_addr);
    let state = app.state.clone();
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    let address = format!("http://127.0.0.1:{port}");
    Some(TestApp {
        browser: Browser::new(&address),
        address,
        port,
        metrics_address,
        db: state.db.clone(),
        settings: state.settings.clone(),
        state,
        provider,
        _storage: storage,
        _shutdown: shutdown,
    })
}

/// Deep-merges JSON objects: `extra` wins; an empty object replaces (clears) one.
pub fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) if !extra.is_empty() => {
            for (k, v) in extra {
                merge(base.entry(k).or_insert(Value::Null), v);
            }
        }
        (base, extra) => *base = extra,
    }
}

/// What `start_login` read off the redirect to the provider.
#[derive(Debug)]
pub struct Authorize {
    pub url: Url,
    pub state: String,
    pub nonce: Option<String>,
    pub code_challenge: String,
}

impl Authorize {
    pub fn param(&self, key: &str) -> Option<String> {
        self.url
            .query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    }
}

impl Browser {
    pub fn new(address: &str) -> Self {
        worker::telemetry::install_crypto_provider();
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(Policy::none())
            .timeout(Duration::from_secs(40))
            .build()
            .expect("client builds");
        Self {
            address: address.to_owned(),
            client,
        }
    }

    pub async fn get(&self, path_and_query: &str) -> Response {
        self.client
            .get(format!("{}{path_and_query}", self.address))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_login(&self, provider: &str) -> Response {
        self.get(&format!("/auth/{provider}/login")).await
    }

    /// `GET /auth/{provider}/login`, asserting the 303 to the provider.
    pub async fn start_login(&self, provider: &str, query: &str) -> Authorize {
        let response = self.get(&format!("/auth/{provider}/login{query}")).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "login redirects");
        let url = Url::parse(location(&response)).expect("absolute authorize URL");
        let find = |k: &str| {
            url.query_pairs()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.into_owned())
        };
        Authorize {
            state: find("state").expect("state"),
            nonce: find("nonce"),
            code_challenge: find("code_challenge").expect("code_challenge"),
            url,
        }
    }

    /// The provider's redirect back for `authorize`, carrying `code`.
    pub async fn return_from_provider(&self, authorize: &Authorize, code: &str) -> Response {
        self.get_callback("mock", &format!("code={code}&state={}", authorize.state))
            .await
    }

    /// The operation id the preloader page is bound to.
    pub async fn preloader_operation(&self) -> String {
        self.preloader_operation_at("/auth/preloader").await
    }

    /// The operation id the preloader page at `path` (a callback's `Location`) is
    /// bound to.
    pub async fn preloader_operation_at(&self, path: &str) -> String {
        let page = self.get(path).await.text().await.expect("preloader page");
        page.split("data-operation=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the preloader names its operation")
            .to_owned()
    }

    pub async fn get_callback(&self, provider: &str, query: &str) -> Response {
        self.get(&format!("/auth/{provider}/callback?{query}"))
            .await
    }

    pub async fn get_status(&self, query: &str) -> Response {
        self.get(&format!("/auth/status{query}")).await
    }

    /// Long-polls `/auth/status` until it leaves `pending` (at most ~30 s).
    pub async fn wait_for_status(&self, query: &str) -> Value {
        for _ in 0..6 {
            let sep = if query.is_empty() { "?" } else { "&" };
            let response = self.get_status(&format!("{query}{sep}wait=5")).await;
            assert_eq!(response.status(), StatusCode::OK);
            let body: Value = response.json().await.expect("status is JSON");
            if body["status"] != "pending" {
                return body;
            }
        }
        panic!("operation still pending after 30 s");
    }

    pub async fn get_success(&self, query: &str) -> Response {
        self.get(&format!("/auth/success{query}")).await
    }

    pub async fn get_me(&self) -> Response {
        self.get("/api/me").await
    }

    pub async fn post_logout(&self) -> Response {
        self.client
            .post(format!("{}/auth/logout", self.address))
            .send()
            .await
            .expect("request sent")
    }
}

impl TestApp {
    /// A second browser with its own cookie jar.
    pub fn new_browser(&self) -> Browser {
        Browser::new(&self.address)
    }

    /// Sets up the mock for a successful OIDC sign-in of `sub` whose ID token
    /// echoes the nonce of `authorize`.
    pub async fn given_provider_signs_in(&self, authorize: &Authorize, code: &str, sub: &str) {
        let claims = self
            .provider
            .claims(sub, authorize.nonce.as_deref().expect("OIDC sends a nonce"));
        self.provider
            .given_token_ok(code, &self.provider.id_token(&claims))
            .await;
        self.provider
            .given_userinfo(json!({
                "sub": sub,
                "email": format!("{sub}@example.com"),
                "email_verified": true,
                "given_name": "Grace",
                "family_name": "Hopper",
                "name": "Grace Hopper",
            }))
            .await;
    }

    /// The whole browser flow for `sub` in `browser`; returns `/api/me`.
    pub async fn sign_in(&self, browser: &Browser, sub: &str) -> Value {
        let authorize = browser.start_login("mock", "").await;
        let code = format!("code-{}", Uuid::new_v4().simple());
        self.given_provider_signs_in(&authorize, &code, sub).await;
        let callback = browser
            .get_callback("mock", &format!("code={code}&state={}", authorize.state))
            .await;
        assert_to_preloader(&callback);
        assert_eq!(browser.wait_for_status("").await["status"], "ok");
        assert_redirect_to(&browser.get_success("").await, "/");
        let me = browser.get_me().await;
        assert_eq!(me.status(), StatusCode::OK);
        me.json().await.expect("me is JSON")
    }

    pub async fn count<E: EntityTrait>(&self, _entity: E) -> u64
    where
        E::Model: Sync,
    {
        E::find().count(&self.db).await.expect("count")
    }
}

pub fn location(response: &Response) -> &str {
    response
        .headers()
        .get(LOCATION)
        .expect("a Location header")
        .to_str()
        .expect("ASCII location")
}

pub fn assert_redirect_to(response: &Response, expected: &str) {
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "expected a 303 to {expected}"
    );
    assert_eq!(location(response), expected);
}

/// Asserts a 303 to the preloader page of one operation and returns its id.
pub fn assert_to_preloader(response: &Response) -> uuid::Uuid {
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "expected a 303 to the preloader"
    );
    let to = location(response);
    preloader_operation_of(&to).unwrap_or_else(|| panic!("expected the preloader, got {to}"))
}

/// The operation a `/auth/preloader?operation=ID` location names.
pub fn preloader_operation_of(location: &str) -> Option<uuid::Uuid> {
    location
        .strip_prefix("/auth/preloader?operation=")
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
}

/// `SIGNIN_TEST_POSTGRES_URL`. Unset, a PostgreSQL test is skipped and says so, except
/// under `CI=true`, where a PostgreSQL test that cannot run is a failure: CI must not go
/// green without them. (`.ci/run` sets the variable once the server answers.)
pub fn postgres_url() -> Option<String> {
    test_server_url("SIGNIN_TEST_POSTGRES_URL", "PostgreSQL")
}

/// `SIGNIN_TEST_REDIS_URL`, with the same rules as [`postgres_url`].
pub fn redis_url() -> Option<String> {
    test_server_url("SIGNIN_TEST_REDIS_URL", "Redis")
}

fn test_server_url(variable: &str, server: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("CI=true but {variable} is not set: {server} tests cannot run")
        }
        _ => {
            // Straight to stderr: the test harness captures `eprintln!`.
            use std::io::Write;
            let test = std::thread::current().name().unwrap_or("?").to_owned();
            let _ = writeln!(
                std::io::stderr(),
                "skipped {test}: {variable} is not set (no {server})"
            );
            None
        }
    }
}

/// A SQLite file in a temp dir, or a PostgreSQL database dropped afterwards.
pub enum Storage {
    Sqlite(TempDir),
    Postgres { base_url: String, name: String },
}

impl Storage {
    pub async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::Sqlite(TempDir::new().expect("temp dir"))),
            Backend::Postgres => {
                let base_url = postgres_url()?;
                let name = format!("signin_test_{}", Uuid::new_v4().simple());
                let admin = Database::connect(&base_url)
                    .await
                    .expect("connect to SIGNIN_TEST_POSTGRES_URL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                Some(Self::Postgres { base_url, name })
            }
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Sqlite(dir) => format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("signin.db").display()
            ),
            Self::Postgres { base_url, name } => {
                let mut url = Url::parse(base_url).expect("valid postgres URL");
                url.set_path(name);
                url.to_string()
            }
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Self::Postgres { base_url, name } = self {
            let (base_url, name) = (base_url.clone(), name.clone());
            // Drop runs inside the test's runtime; use a thread with its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                runtime.block_on(async {
                    let admin = Database::connect(&base_url).await.ok()?;
                    admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await
                        .ok()
                })
            })
            .join();
        }
    }
}

/// The password every test account uses (strong enough for the policy).
pub const TEST_PASSWORD: &str = "violet-lantern-harbor-42";

/// A client without cookies or redirects: an app.
pub fn app_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client builds")
}

/// `POST /api/auth/register` from an app, with [`TEST_PASSWORD`].
pub async fn register(app: &TestApp, email: &str) -> Response {
    app_client()
        .post(format!("{}/api/auth/register", app.address))
        .json(&json!({"email": email, "password": TEST_PASSWORD}))
        .send()
        .await
        .expect("request sent")
}

/// `POST /api/auth/login` from an app, with [`TEST_PASSWORD`]: a new API session.
pub async fn login(app: &TestApp, email: &str) -> Response {
    app_client()
        .post(format!("{}/api/auth/login", app.address))
        .json(&json!({"email": email, "password": TEST_PASSWORD}))
        .send()
        .await
        .expect("request sent")
}

/// `GET /api/operations/{id}?wait=5` for the operation `started` (the answer of a
/// native exchange), with its poll secret.
pub async fn poll_operation(app: &TestApp, started: &Value) -> Response {
    app_client()
        .get(format!(
            "{}/api/operations/{}?wait=5",
            app.address,
            started["operation_id"].as_str().expect("an operation id")
        ))
        .header(
            "x-poll-secret",
            started["poll_secret"].as_str().expect("a poll secret"),
        )
        .send()
        .await
        .expect("request sent")
}

/// The status of the operation `started` (a native exchange's answer), read from
/// the database: nothing is redeemed.
pub async fn operation_status(app: &TestApp, started: &Value) -> String {
    let id: Uuid = started["operation_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("an operation id");
    entity::prelude::AsyncOperation::find_by_id(id)
        .one(&app.db)
        .await
        .expect("read")
        .expect("the operation exists")
        .status
        .as_str()
        .to_owned()
}

/// Waits (at most 20 s) until the operation `started` leaves `pending`, without
/// redeeming it; returns its status.
pub async fn wait_until_finished(app: &TestApp, started: &Value) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status = operation_status(app, started).await;
        if status != "pending" {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the operation never finished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `GET path` with a bearer token.
pub async fn get_with_bearer(app: &TestApp, path: &str, access_token: &str) -> Response {
    app_client()
        .get(format!("{}{path}", app.address))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("request sent")
}

/// The value `response` sets for cookie `name`, if any.
pub fn set_cookie_value(response: &Response, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(prefix.as_str()))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
}

/// A browser sign-in job for `operation_id` with the mock provider: the code to
/// exchange, its PKCE verifier and the ID token's expected nonce.
pub fn code_job(
    operation_id: Uuid,
    code: &str,
    pkce_verifier: &str,
    nonce: Option<String>,
) -> worker::jobs::SignInJob {
    worker::jobs::SignInJob {
        operation_id,
        provider: "mock".into(),
        code: code.into(),
        pkce_verifier: pkce_verifier.into(),
        nonce,
        ..Default::default()
    }
}
