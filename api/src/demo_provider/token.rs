//! `POST /demo-provider/token`: the authorization-code grant with PKCE S256 and
//! client authentication (HTTP Basic or body), answering as RFC 6749 §5 says.

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::Utc;
use poem::{
    IntoResponse, Response, handler,
    http::{HeaderMap, StatusCode, header},
    web::{Data, Form, Json},
};
use serde::Deserialize;
use serde_json::json;
use worker::crypto;

use super::{AccessClaims, CodeClaims, DemoProvider, TOKEN_TTL};
use crate::state::AppState;

/// The token request body.
#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    code_verifier: String,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /demo-provider/token` — 200 tokens; 400 `invalid_grant`,
/// `invalid_request` or `unsupported_grant_type`; 401 `invalid_client`.
#[handler]
pub async fn token(
    Data(state): Data<&AppState>,
    headers: &HeaderMap,
    Form(request): Form<TokenRequest>,
) -> Response {
    let Some(demo) = &state.demo else {
        return oauth_error(StatusCode::NOT_FOUND, "invalid_request");
    };
    match exchange(demo, headers, &request) {
        Ok(body) => Json(body)
            .with_header(header::CACHE_CONTROL, "no-store")
            .into_response(),
        Err((status, code)) => oauth_error(status, code),
    }
}

fn exchange(
    demo: &DemoProvider,
    headers: &HeaderMap,
    request: &TokenRequest,
) -> Result<serde_json::Value, (StatusCode, &'static str)> {
    let (client_id, client_secret) =
        client_credentials(headers, request).ok_or((StatusCode::UNAUTHORIZED, "invalid_client"))?;
    let client_ok = crypto::constant_time_eq(client_id.as_bytes(), demo.client_id.as_bytes())
        && crypto::constant_time_eq(client_secret.as_bytes(), demo.client_secret.as_bytes());
    if !client_ok {
        return Err((StatusCode::UNAUTHORIZED, "invalid_client"));
    }
    if request.grant_type != "authorization_code" {
        return Err((StatusCode::BAD_REQUEST, "unsupported_grant_type"));
    }
    if request.code.is_empty() || !(43..=128).contains(&request.code_verifier.len()) {
        return Err((StatusCode::BAD_REQUEST, "invalid_request"));
    }
    let invalid_grant = (StatusCode::BAD_REQUEST, "invalid_grant");
    let claims: CodeClaims = demo.open(&request.code).ok_or(invalid_grant)?;
    let valid = claims.exp >= Utc::now().timestamp()
        && claims.client_id == client_id
        && claims.redirect_uri == request.redirect_uri
        && crypto::constant_time_eq(
            crypto::sha256_b64url(&request.code_verifier).as_bytes(),
            claims.code_challenge.as_bytes(),
        );
    if !valid || !demo.spend(&request.code, claims.exp) {
        return Err(invalid_grant);
    }
    let access_token = demo.seal(&AccessClaims {
        name: claims.name,
        email: claims.email,
        exp: Utc::now().timestamp() + TOKEN_TTL,
    });
    Ok(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": TOKEN_TTL,
        "scope": claims.scope,
    }))
}

/// HTTP Basic (form-urlencoded id and secret, RFC 6749 §2.3.1) or body parameters.
fn client_credentials(headers: &HeaderMap, request: &TokenRequest) -> Option<(String, String)> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let encoded = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))?;
        let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let unescape = |s: &str| {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return Some((unescape(id)?, unescape(secret)?));
    }
    Some((request.client_id.clone()?, request.client_secret.clone()?))
}

fn oauth_error(status: StatusCode, code: &'static str) -> Response {
    Json(json!({"error": code}))
        .with_status(status)
        .with_header(header::CACHE_CONTROL, "no-store")
        .into_response()
}
