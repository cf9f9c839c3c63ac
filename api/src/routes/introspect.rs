//! `POST /api/token/introspect` (RFC 7662): for services that must see a revoked
//! session before its access token expires. The caller authenticates with a client
//! id and secret from `tokens.introspection_clients` (HTTP Basic); the answer is
//! `{"active": false}` for anything but a valid token of a live session.

use base64::{Engine, engine::general_purpose::STANDARD};
use poem::{Request, http::header, web::Data};
use poem_openapi::{Object, OpenApi, payload::Form, payload::Json};
use secrecy::ExposeSecret;
use worker::crypto::constant_time_eq;

use crate::{error::ApiError, session, state::AppState};

/// RFC 7662 §2.1.
#[derive(Debug, Object, serde::Deserialize)]
pub struct IntrospectionRequest {
    /// The access token to check (one longer than 2048 characters is not ours).
    pub token: String,
    /// Ignored: only access tokens are introspected.
    #[oai(nullable)]
    pub token_type_hint: Option<String>,
}

/// RFC 7662 §2.2: `active` and, for an active token, its claims.
#[derive(Debug, Default, Object)]
pub struct Introspection {
    pub active: bool,
    /// The user id.
    #[oai(skip_serializing_if_is_none)]
    pub sub: Option<String>,
    /// The session id.
    #[oai(skip_serializing_if_is_none)]
    pub sid: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub exp: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub iat: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub iss: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub aud: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub token_type: Option<String>,
}

/// Token introspection for other services.
#[derive(Default)]
pub struct IntrospectApi;

#[OpenApi]
impl IntrospectApi {
    /// Whether an access token is active (valid, unexpired, its session not revoked),
    /// and its claims. Authenticate with HTTP Basic as one of
    /// `tokens.introspection_clients`; 401 `invalid_client` otherwise.
    #[oai(
        path = "/api/token/introspect",
        method = "post",
        tag = "crate::routes::Tag::Auth"
    )]
    async fn introspect(
        &self,
        Data(state): Data<&AppState>,
        req: &Request,
        body: Form<IntrospectionRequest>,
    ) -> Result<Json<Introspection>, ApiError> {
        let client = authenticated_client(state, req).ok_or(ApiError::InvalidClient)?;
        let Some(claims) = session::live_token_claims(state, &body.0.token).await? else {
            tracing::info!(%client, active = false, "token introspected");
            return Ok(Json(Introspection::default()));
        };
        tracing::info!(%client, active = true, session.id = %claims.sid, "token introspected");
        Ok(Json(Introspection {
            active: true,
            sub: Some(claims.sub.to_string()),
            sid: Some(claims.sid.to_string()),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            iss: Some(claims.iss),
            aud: Some(claims.aud),
            token_type: Some("Bearer".to_owned()),
        }))
    }
}

/// The client id of a request whose HTTP Basic credentials match one of
/// `tokens.introspection_clients`.
fn authenticated_client(state: &AppState, req: &Request) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let expected = state.settings.tokens.introspection_clients.get(id)?;
    constant_time_eq(expected.expose_secret().as_bytes(), secret.as_bytes()).then(|| id.to_owned())
}
