//! What the fault tests share: a database and queue as `api` would have them, the
//! configuration every spawned `worker` reads, a mock OpenID Provider whose codes are
//! single-use, and waits bounded in time.

use std::{
    collections::HashMap,
    future::Future,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::Utc;
use entity::{async_operation::Model as Operation, prelude::*};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;
use tempfile::TempDir;
use uuid::Uuid;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers};
use worker::{
    config::{Process, Settings},
    db::Database,
    jobs::{JobQueue, SignInJob},
    operations::{self, NewOperation},
};

pub const CLIENT_ID: &str = "fault-client";
/// As long as a test could need: "held until the test kills the worker".
pub const HOLD: Duration = Duration::from_secs(3600);

/// An ID token for `sub`, signed with the fixture key the mock's JWKS publishes.
pub fn id_token(issuer: &str, sub: &str, nonce: &str) -> String {
    let now = Utc::now().timestamp();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".to_owned());
    let claims = json!({"iss": issuer, "aud": CLIENT_ID, "sub": sub, "iat": now, "exp": now + 600, "nonce": nonce,
                        "email": format!("{sub}@example.com"), "email_verified": true});
    let key = EncodingKey::from_rsa_pem(include_bytes!("../fixtures/rsa_private.pem")).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

pub fn discovery_document(uri: &str) -> serde_json::Value {
    json!({
        "issuer": uri, "authorization_endpoint": format!("{uri}/authorize"), "token_endpoint": format!("{uri}/token"),
        "userinfo_endpoint": format!("{uri}/userinfo"), "jwks_uri": format!("{uri}/jwks"),
        "response_types_supported": ["code"], "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    })
}

pub async fn mount_jwks(server: &MockServer) {
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/jwks"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(include_str!("../fixtures/jwks.json"), "application/json"),
        )
        .mount(server)
        .await;
}

/// The person a code signs in: `code-X` and `code-X.N` (a later sign-in of the same
/// person) are `X`.
pub fn person_of(code: &str) -> &str {
    let person = code.strip_prefix("code-").unwrap_or(code);
    person.split('.').next().unwrap_or(person)
}

/// A token endpoint as real providers run it: each code is accepted once, and a
/// second presentation is `invalid_grant`. Code `code-X[.N]` signs in `person-X`
/// with nonce `nonce-X`. The first presentation of `hold` is answered only after
/// [`HOLD`], so the worker is killed while it waits.
#[derive(Clone)]
pub struct SingleUseTokens {
    issuer: String,
    hold: Option<String>,
    /// How long every other answer takes.
    delay: Duration,
    presented: Arc<Mutex<HashMap<String, usize>>>,
}

impl SingleUseTokens {
    pub async fn mount(server: &MockServer, hold: Option<&str>, delay: Duration) -> Self {
        let tokens = Self {
            issuer: server.uri(),
            hold: hold.map(str::to_owned),
            delay,
            presented: Arc::default(),
        };
        Mock::given(matchers::method("POST"))
            .and(matchers::path("/token"))
            .respond_with(tokens.clone())
            .mount(server)
            .await;
        tokens
    }

    /// How many times `code` reached the token endpoint.
    pub fn presentations(&self, code: &str) -> usize {
        self.presented
            .lock()
            .unwrap()
            .get(code)
            .copied()
            .unwrap_or(0)
    }
}

impl Respond for SingleUseTokens {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let code = url::form_urlencoded::parse(&request.body)
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let times = {
            let mut presented = self.presented.lock().unwrap();
            let n = presented.entry(code.clone()).or_default();
            *n += 1;
            *n
        };
        if times > 1 {
            return ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"}));
        }
        let person = person_of(&code);
        let response = ResponseTemplate::new(200).set_body_json(json!({
            "access_token": format!("at-{person}"), "token_type": "Bearer", "expires_in": 600,
            "id_token": id_token(&self.issuer, &format!("person-{person}"), &format!("nonce-{person}")),
        }));
        if self.hold.as_deref() == Some(code.as_str()) {
            response.set_delay(HOLD)
        } else {
            response.set_delay(self.delay)
        }
    }
}

/// Answers the `n`th request (from 1) by `answer(n)`.
pub struct Counted<F>(pub std::sync::atomic::AtomicUsize, pub F);

impl<F: Fn(usize) -> ResponseTemplate + Send + Sync> Respond for Counted<F> {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        (self.1)(n)
    }
}

/// Userinfo for `person-X` behind access token `at-X`.
pub fn userinfo(request: &Request) -> ResponseTemplate {
    let person = request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer at-"))
        .unwrap_or_default()
        .to_owned();
    ResponseTemplate::new(200).set_body_json(json!({
        "sub": format!("person-{person}"), "email": format!("person-{person}@example.com"),
        "email_verified": true,
    }))
}

/// A database as `api` keeps it, and the environment of every worker spawned on it.
pub struct Harness {
    _dir: TempDir,
    pub env: Vec<(&'static str, String)>,
    pub db: Database,
    pub queue: JobQueue,
}

impl Harness {
    pub async fn new(provider: &MockServer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database_url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("signin.db").display()
        );
        let secret_key = "fault-test-secret-key-0123456789-abcdef".to_owned();
        let env = vec![
            ("SIGNIN_DATABASE_URL", database_url.clone()),
            ("SIGNIN_SECRET_KEY", secret_key.clone()),
            ("SIGNIN_OPERATION_TIMEOUT", "90s".to_owned()),
            ("SIGNIN_PROVIDERS__CORP__KIND", "oidc".to_owned()),
            ("SIGNIN_PROVIDERS__CORP__ISSUER", provider.uri()),
            ("SIGNIN_PROVIDERS__CORP__CLIENT_ID", CLIENT_ID.to_owned()),
            ("SIGNIN_PROVIDERS__CORP__CLIENT_SECRET", "s".to_owned()),
            // Held requests must outlast the test's kill, not time out first.
            ("SIGNIN_PROVIDERS__CORP__TIMEOUT", "20s".to_owned()),
            // The crash tests hold the job in its userinfo call: always make it.
            ("SIGNIN_PROVIDERS__CORP__USERINFO", "always".to_owned()),
        ];
        let figment = figment::Figment::from(figment::providers::Serialized::defaults(json!({
            "database_url": database_url, "secret_key": secret_key,
        })));
        let settings = Settings::from_figment(figment).unwrap();
        let db = Database::connect(&settings, Process::Api).await.unwrap();
        db.migrate().await.unwrap();
        let keys = Arc::new(worker::crypto::Keys::load(&settings).unwrap());
        let queue = JobQueue::new(&db, 4, keys);
        Self {
            _dir: dir,
            env,
            db,
            queue,
        }
    }

    /// A real `worker` process on this database.
    pub fn spawn_worker(&self, concurrency: usize) -> Worker {
        let mut command = Command::new(env!("CARGO_BIN_EXE_worker"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env(
                "SIGNIN_WORKER__METRICS_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("SIGNIN_WORKER__CONCURRENCY", concurrency.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        Worker(command.spawn().expect("the worker binary starts"))
    }

    /// Records a pending operation and queues its job for `code`, as a callback
    /// would.
    pub async fn start_sign_in(&self, code: &str) -> Uuid {
        let op = operations::create_pending(
            &self.db.conn,
            NewOperation {
                kind: operations::KIND_BROWSER,
                provider: "corp".into(),
                redeemer_hash: "fault-test".into(),
                next_path: None,
                link: None,
                state_hash: None,
                client_key: None,
            },
        )
        .await
        .unwrap();
        self.queue.push(job(op.id, code)).await.unwrap();
        op.id
    }

    pub async fn operation(&self, id: Uuid) -> Operation {
        operations::find(&self.db.conn, id).await.unwrap().unwrap()
    }

    /// (users, provider links) in the database.
    pub async fn users_and_links(&self) -> (u64, u64) {
        (
            UserProfile::find().count(&self.db.conn).await.unwrap(),
            SocialAccount::find().count(&self.db.conn).await.unwrap(),
        )
    }
}

/// The job a callback with `code` queues.
pub fn job(operation_id: Uuid, code: &str) -> SignInJob {
    SignInJob {
        operation_id,
        provider: "corp".into(),
        code: code.to_owned(),
        pkce_verifier: "v".repeat(43),
        nonce: Some(format!("nonce-{}", person_of(code))),
        ..Default::default()
    }
}

/// A spawned worker, killed (SIGKILL) on drop if the test has not.
pub struct Worker(Child);

impl Worker {
    /// SIGKILL: no drain, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 50 ms until it holds; panics naming `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many requests `server` received for `path`.
pub async fn requests_to(server: &MockServer, path: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == path)
        .count()
}
