//! Access tokens other services verify: the published keys (`/.well-known/jwks.json`)
//! checked by `examples/verify_token.rs` against a live app, each algorithm and key
//! source, `iss` and `aud`, and `POST /api/token/introspect`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, app_client, register, spawn_app_with};

#[path = "../../examples/verify_token.rs"]
#[allow(dead_code)]
mod verify_token;

async fn app_with_tokens(tokens: Value) -> TestApp {
    spawn_app_with(Options {
        overrides: json!({ "tokens": tokens }),
        ..Options::default()
    })
    .await
    .unwrap()
}

/// A signed-up user's access token.
async fn access_token(app: &TestApp, email: &str) -> String {
    let tokens: Value = register(app, email).await.json().await.unwrap();
    tokens["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

async fn jwks(app: &TestApp) -> Value {
    let response = app_client()
        .get(format!("{}/.well-known/jwks.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    response.json().await.unwrap()
}

/// A PKCS#8 PEM file of a fresh key: Ed25519 as `openssl genpkey -algorithm
/// ed25519` writes it, or P-256.
fn key_file(dir: &tempfile::TempDir, name: &str, ed25519: bool) -> std::path::PathBuf {
    use ring::{rand::SystemRandom, signature};
    let rng = SystemRandom::new();
    let der = if ed25519 {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&rng, &mut seed).unwrap();
        let prefix = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        [prefix.as_slice(), seed.as_slice()].concat()
    } else {
        signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec()
    };
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    let path = dir.path().join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

#[tokio::test]
async fn by_default_tokens_are_eddsa_and_verify_offline_with_the_published_key() {
    let app = app_with_tokens(json!({})).await;
    let token = access_token(&app, "offline@example.com").await;
    let header = header_of(&token);
    assert_eq!(header["alg"], "EdDSA");
    let keys = jwks(&app).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "{keys}");
    let key = &keys["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["kid"], header["kid"]);
    assert!(key.get("d").is_none(), "a private part is published: {key}");

    let base = app.settings.public_base();
    let verifier = verify_token::Verifier::new(&app.address, base, base)
        .await
        .unwrap();
    let claims = verifier.verify(&token).await.unwrap();
    assert_eq!(claims.iss, base);
    assert_eq!(claims.aud, base);
    let me: Value = crate::helpers::get_with_bearer(&app, "/api/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(claims.sub, me["id"].as_str().unwrap());

    // A token signed by another instance's key, or tampered with, does not verify.
    let other = app_with_tokens(json!({})).await;
    let foreign = access_token(&other, "offline@example.com").await;
    assert!(verifier.verify(&foreign).await.is_err());
    let (head, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.rsplit_once('.').unwrap();
    let forged_claims = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(
            &json!({"sub": claims.sub, "sid": claims.sid, "iat": claims.iat,
            "exp": claims.exp + 3600, "iss": claims.iss, "aud": claims.aud}),
        )
        .unwrap(),
    );
    assert!(
        verifier
            .verify(&format!("{head}.{forged_claims}.{signature}"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn es256_from_a_key_file_with_its_issuer_and_audience() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(&dir, "es256.pem", false);
    let app = app_with_tokens(json!({
        "algorithm": "ES256", "signing_key_file": key,
        "issuer": "https://signin.example.com", "audience": "posts-service",
    }))
    .await;
    let token = access_token(&app, "es@example.com").await;
    assert_eq!(header_of(&token)["alg"], "ES256");
    let keys = jwks(&app).await;
    assert_eq!(keys["keys"][0]["kty"], "EC");
    assert_eq!(keys["keys"][0]["crv"], "P-256");
    let verifier =
        verify_token::Verifier::new(&app.address, "https://signin.example.com", "posts-service")
            .await
            .unwrap();
    let claims = verifier.verify(&token).await.unwrap();
    assert_eq!(claims.aud, "posts-service");
    // The app itself accepts it, and a service expecting another audience does not.
    let me = crate::helpers::get_with_bearer(&app, "/api/me", &token).await;
    assert_eq!(me.status(), StatusCode::OK);
    let elsewhere =
        verify_token::Verifier::new(&app.address, "https://signin.example.com", "feed-service")
            .await
            .unwrap();
    assert!(elsewhere.verify(&token).await.is_err());
}

#[tokio::test]
async fn retired_keys_are_still_published_and_hmac_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (current, previous) = (
        key_file(&dir, "new.pem", true),
        key_file(&dir, "old.pem", true),
    );
    let app = app_with_tokens(json!({
        "signing_key_file": current, "previous_signing_key_files": [previous],
    }))
    .await;
    let token = access_token(&app, "rotate@example.com").await;
    let keys = jwks(&app).await;
    let kids: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2, "{keys}");
    assert_eq!(kids[0], header_of(&token)["kid"]);

    let hmac = app_with_tokens(json!({"algorithm": "HS256"})).await;
    let token = access_token(&hmac, "hmac@example.com").await;
    assert_eq!(header_of(&token)["alg"], "HS256");
    assert!(header_of(&token)["kid"].is_string());
    assert_eq!(jwks(&hmac).await, json!({"keys": []}));
}

#[tokio::test]
async fn bad_token_settings_stop_start_up_with_a_clear_message() {
    for (tokens, expected) in [
        (
            json!({"algorithm": "ES256"}),
            "tokens.signing_key_file: required for ES256",
        ),
        (
            json!({"algorithm": "RS256"}),
            "tokens.algorithm: must be one of",
        ),
        (
            json!({"algorithm": "HS256", "signing_key_file": "/x.pem"}),
            "only for EdDSA and ES256",
        ),
    ] {
        let settings = json!({"database_url": "sqlite::memory:", "tokens": tokens});
        let error = worker::config::Settings::from_figment(figment::Figment::from(
            figment::providers::Serialized::defaults(settings),
        ))
        .unwrap_err();
        assert!(format!("{error:#}").contains(expected), "{error:#}");
    }
}

// ---- introspection ----------------------------------------------------------------

const SERVICE_SECRET: &str = "posts-service-secret-0123456789abcdef";

async fn introspect(app: &TestApp, token: &str, auth: Option<(&str, &str)>) -> reqwest::Response {
    let mut request = app_client()
        .post(format!("{}/api/token/introspect", app.address))
        .form(&[("token", token), ("token_type_hint", "access_token")]);
    if let Some((id, secret)) = auth {
        request = request.basic_auth(id, Some(secret));
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn introspection_answers_services_and_sees_revocation() {
    let app = app_with_tokens(json!({"introspection_clients": {"posts": SERVICE_SECRET}})).await;
    let token = access_token(&app, "introspect@example.com").await;
    for auth in [
        None,
        Some(("posts", "wrong-secret")),
        Some(("feed", SERVICE_SECRET)),
    ] {
        let refused = introspect(&app, &token, auth).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(
            refused.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_client");
    }
    let auth = Some(("posts", SERVICE_SECRET));
    let active: Value = introspect(&app, &token, auth).await.json().await.unwrap();
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["token_type"], "Bearer");
    assert!(active["sub"].is_string() && active["exp"].is_i64());

    for garbage in ["", "not-a-token", &format!("{token}x")] {
        let answer: Value = introspect(&app, garbage, auth).await.json().await.unwrap();
        assert_eq!(answer, json!({"active": false}), "{garbage}");
    }
    // The token is still unexpired, but its session ends: introspection says so.
    let logout = app_client()
        .post(format!("{}/api/auth/logout", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let revoked: Value = introspect(&app, &token, auth).await.json().await.unwrap();
    assert_eq!(revoked, json!({"active": false}));
}
