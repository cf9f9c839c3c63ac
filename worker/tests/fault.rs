//! Fault survival with real `worker` processes: SIGKILL one in the middle of a burst
//! of sign-ins, start another, and every operation still ends `ok`, with one user
//! per person. The job re-runs on the new worker after the dead one's heartbeats
//! lapse, and the identity step is idempotent.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use chrono::Utc;
use entity::{async_operation::OperationStatus, prelude::*};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_string_contains, method, path},
};
use worker::{
    config::Settings,
    db::Database,
    jobs::{JobQueue, SignInJob},
    operations::{self, NewOperation},
};

const CLIENT_ID: &str = "fault-client";
const SIGN_INS: usize = 12;

fn id_token(issuer: &str, sub: &str, nonce: &str) -> String {
    let now = Utc::now().timestamp();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".to_owned());
    let claims = json!({"iss": issuer, "aud": CLIENT_ID, "sub": sub, "iat": now, "exp": now + 600, "nonce": nonce,
                        "email": format!("{sub}@example.com"), "email_verified": true});
    let key = EncodingKey::from_rsa_pem(include_bytes!("fixtures/rsa_private.pem")).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

async fn mock_provider() -> MockServer {
    let server = MockServer::start().await;
    let uri = server.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": uri, "authorization_endpoint": format!("{uri}/authorize"), "token_endpoint": format!("{uri}/token"),
            "userinfo_endpoint": format!("{uri}/userinfo"), "jwks_uri": format!("{uri}/jwks"),
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(include_str!("fixtures/jwks.json"), "application/json"),
        )
        .mount(&server)
        .await;
    for n in 0..SIGN_INS {
        let sub = format!("person-{n}");
        // Slow enough that jobs are in flight when the worker dies.
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(body_string_contains(format!("code=code-{n}&")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_delay(Duration::from_millis(400))
                    .set_body_json(json!({"access_token": format!("at-{n}"), "token_type": "Bearer", "expires_in": 600,
                                          "id_token": id_token(&uri, &sub, &format!("nonce-{n}"))})),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/userinfo"))
            .and(wiremock::matchers::header(
                "authorization",
                format!("Bearer at-{n}").as_str(),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"sub": sub, "email": format!("{sub}@example.com"), "email_verified": true}),
            ))
            .mount(&server)
            .await;
    }
    server
}

fn spawn_worker(env: &[(&str, String)], metrics_port: u16) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_worker"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env(
            "SIGNIN_WORKER__METRICS_LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        )
        .env("SIGNIN_WORKER__CONCURRENCY", "4")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("the worker binary starts")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_worker_killed_mid_burst_loses_no_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let provider = mock_provider().await;
    let env = vec![
        (
            "SIGNIN_DATABASE_URL",
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("signin.db").display()
            ),
        ),
        (
            "SIGNIN_SECRET_KEY",
            "fault-test-secret-key-0123456789-abcdef".to_owned(),
        ),
        ("SIGNIN_OPERATION_TIMEOUT", "90s".to_owned()),
        ("SIGNIN_PROVIDERS__CORP__KIND", "oidc".to_owned()),
        ("SIGNIN_PROVIDERS__CORP__ISSUER", provider.uri()),
        ("SIGNIN_PROVIDERS__CORP__CLIENT_ID", CLIENT_ID.to_owned()),
        ("SIGNIN_PROVIDERS__CORP__CLIENT_SECRET", "s".to_owned()),
    ];
    // The same configuration the worker processes read from their environment.
    let figment = figment::Figment::from(figment::providers::Serialized::defaults(
        serde_json::json!({
            "database_url": env[0].1,
            "secret_key": env[1].1,
        }),
    ));
    let settings = Settings::from_figment(figment).unwrap();
    let db = Database::connect(&settings, worker::config::Process::Worker)
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let keys = std::sync::Arc::new(worker::crypto::Keys::load(&settings).unwrap());
    let queue = JobQueue::new(&db, 4, keys);

    let mut first = spawn_worker(&env, free_port());
    // A burst of sign-ins, as callbacks would record and enqueue them.
    let mut ids = Vec::new();
    for n in 0..SIGN_INS {
        let op = operations::create_pending(
            &db.conn,
            NewOperation {
                kind: operations::KIND_BROWSER,
                provider: "corp",
                redeemer_hash: "fault-test",
                next_path: None,
                link_user_id: None,
            },
        )
        .await
        .unwrap();
        queue
            .push(SignInJob {
                operation_id: op.id,
                provider: "corp".into(),
                code: format!("code-{n}"),
                pkce_verifier: "v".repeat(43),
                nonce: Some(format!("nonce-{n}")),
                form_user: None,
                redirect_uri: None,
                id_token: None,
                client: Default::default(),
            })
            .await
            .unwrap();
        ids.push(op.id);
    }
    // Let the first worker pick jobs up, then kill it without warning.
    tokio::time::sleep(Duration::from_millis(900)).await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let mut second = spawn_worker(&env, free_port());

    let started = Instant::now();
    let pending = loop {
        let pending = AsyncOperation::find()
            .all(&db.conn)
            .await
            .unwrap()
            .into_iter()
            .filter(|op| op.status == OperationStatus::Pending)
            .count();
        if pending == 0 || started.elapsed() > Duration::from_secs(75) {
            break pending;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(pending, 0, "every operation left pending within the bound");
    let operations = AsyncOperation::find().all(&db.conn).await.unwrap();
    let failed: Vec<_> = operations
        .iter()
        .filter(|op| op.status != OperationStatus::Ok)
        .map(|op| op.error_code.clone())
        .collect();
    assert!(failed.is_empty(), "all ok, got {failed:?}");
    assert_eq!(
        UserProfile::find().count(&db.conn).await.unwrap(),
        SIGN_INS as u64,
        "one user per person"
    );
    assert_eq!(
        SocialAccount::find().count(&db.conn).await.unwrap(),
        SIGN_INS as u64,
        "one link per person"
    );
}
