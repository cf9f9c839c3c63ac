//! `GET /demo-provider/userinfo`: the person behind a demo access token, as OIDC
//! standard claims.

use chrono::Utc;
use poem::{
    IntoResponse, Response, handler,
    http::{HeaderMap, StatusCode, header},
    web::{Data, Json},
};
use serde_json::json;

use super::{AccessClaims, subject_for};
use crate::state::AppState;

/// `GET /demo-provider/userinfo` — 200 claims; 401 for a missing or invalid token.
#[handler]
pub async fn userinfo(Data(state): Data<&AppState>, headers: &HeaderMap) -> Response {
    let claims: Option<AccessClaims> = state.demo.as_ref().and_then(|demo| {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let token = value.strip_prefix("Bearer ")?;
        demo.open::<AccessClaims>(token.trim())
    });
    let Some(claims) = claims.filter(|c| c.exp >= Utc::now().timestamp()) else {
        return StatusCode::UNAUTHORIZED
            .with_header(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")
            .into_response();
    };
    let (given, family) = match claims.name.split_once(' ') {
        Some((g, f)) => (g.to_owned(), Some(f.trim().to_owned())),
        None => (claims.name.clone(), None),
    };
    Json(json!({
        "sub": subject_for(&claims.email),
        "name": claims.name,
        "given_name": given,
        "family_name": family,
        "email": claims.email,
        "email_verified": true,
    }))
    .with_header(header::CACHE_CONTROL, "no-store")
    .into_response()
}
