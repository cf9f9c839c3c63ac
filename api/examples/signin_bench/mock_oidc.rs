//! A minimal OpenID Provider for the benchmark, on loopback: discovery, JWKS, an
//! authorize endpoint that consents at once, and token and userinfo endpoints that
//! answer after a configurable delay (to model a real provider's latency).

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use poem::{
    EndpointExt, IntoResponse, Response, Route, Server, get, handler,
    http::{StatusCode, Uri},
    listener::{Acceptor, Listener, TcpListener},
    post,
    web::{Data, Form, Json, Redirect},
};
use ring::{
    rand::SystemRandom,
    signature::{RSA_PKCS1_SHA256, RsaKeyPair},
};
use serde::Deserialize;
use serde_json::json;

pub const CLIENT_ID: &str = "bench-client";
pub const CLIENT_SECRET: &str = "bench-secret";

#[derive(Clone)]
struct Mock {
    issuer: String,
    token_delay: Duration,
    userinfo_delay: Duration,
    /// ring, not jsonwebtoken's pure-Rust RSA: signing is the mock's main cost, and
    /// the mock shares the machine's cores with the api under test.
    key: std::sync::Arc<RsaKeyPair>,
}

/// Starts the provider; returns its issuer URL.
pub async fn start(token_delay: Duration, userinfo_delay: Duration) -> anyhow::Result<String> {
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
    let port = acceptor.local_addr()[0]
        .as_socket_addr()
        .expect("tcp")
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let mock = Mock {
        issuer: issuer.clone(),
        token_delay,
        userinfo_delay,
        key: std::sync::Arc::new(signing_key()?),
    };
    let app = Route::new()
        .at("/.well-known/openid-configuration", get(discovery))
        .at("/jwks", get(jwks))
        .at("/authorize", get(authorize))
        .at("/token", post(token))
        .at("/userinfo", get(userinfo))
        .data(mock);
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    Ok(issuer)
}

#[handler]
fn discovery(Data(mock): Data<&Mock>) -> Json<serde_json::Value> {
    let uri = &mock.issuer;
    Json(json!({
        "issuer": uri, "authorization_endpoint": format!("{uri}/authorize"), "token_endpoint": format!("{uri}/token"),
        "userinfo_endpoint": format!("{uri}/userinfo"), "jwks_uri": format!("{uri}/jwks"),
        "response_types_supported": ["code"], "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"], "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }))
}

#[handler]
fn jwks() -> Response {
    include_str!("../../tests/it/fixtures/jwks.json")
        .with_content_type("application/json")
        .into_response()
}

/// Consents at once: the code carries the nonce and a subject for the token step.
#[handler]
fn authorize(uri: &Uri) -> Response {
    let params: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let (Some(redirect), Some(state)) = (params.get("redirect_uri"), params.get("state")) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let sub = params
        .get("login_hint")
        .cloned()
        .unwrap_or_else(|| format!("user-{}", &state[..8.min(state.len())]));
    let code = URL_SAFE_NO_PAD.encode(format!(
        "{}|{sub}",
        params.get("nonce").cloned().unwrap_or_default()
    ));
    Redirect::see_other(format!("{redirect}?code={code}&state={state}")).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    code: String,
}

#[handler]
async fn token(Data(mock): Data<&Mock>, Form(form): Form<TokenForm>) -> Response {
    tokio::time::sleep(mock.token_delay).await;
    let decoded = URL_SAFE_NO_PAD
        .decode(&form.code)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let (nonce, sub) = decoded.split_once('|').unwrap_or(("", "nobody"));
    let now = Utc::now().timestamp();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "test-key-1"});
    let claims = json!({"iss": mock.issuer, "aud": CLIENT_ID, "sub": sub, "iat": now, "exp": now + 300, "nonce": nonce,
                        "email": format!("{sub}@bench.example"), "email_verified": true, "given_name": "Bench"});
    let Some(id_token) = sign_jwt(&mock.key, &header, &claims) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    Json(json!({"access_token": sub, "token_type": "Bearer", "expires_in": 600, "id_token": id_token})).into_response()
}

#[handler]
async fn userinfo(Data(mock): Data<&Mock>, req: &poem::Request) -> Response {
    tokio::time::sleep(mock.userinfo_delay).await;
    let sub = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("nobody")
        .to_owned();
    Json(json!({"sub": sub, "email": format!("{sub}@bench.example"), "email_verified": true, "given_name": "Bench"})).into_response()
}

/// The fixture's PKCS#8 PEM key, for ring.
fn signing_key() -> anyhow::Result<RsaKeyPair> {
    let pem = include_str!("../../tests/it/fixtures/rsa_private.pem");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body)?;
    RsaKeyPair::from_pkcs8(&der).map_err(|e| anyhow::anyhow!("the bench RSA key: {e}"))
}

/// A compact RS256 JWS of `claims`.
fn sign_jwt(
    key: &RsaKeyPair,
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> Option<String> {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .ok()?;
    Some(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}
