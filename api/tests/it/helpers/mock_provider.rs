//! A local OpenID Provider over real HTTP (wiremock), answering as a compliant one
//! does (OpenID Connect Discovery 1.0, RFC 6749 §5, Core 5.3): intent-named setup
//! calls for the token and userinfo endpoints, and ID tokens signed with a fixture key.

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_string_contains, header_exists, method, path},
};

pub const CLIENT_ID: &str = "client-123";
pub const CLIENT_SECRET: &str = "secret-456";

pub struct MockProvider {
    pub server: MockServer,
    /// Discovery announces RFC 9207 `iss` in authorization responses.
    sends_iss: bool,
    /// The issuer ends in `/` (as Auth0's does): in discovery and in ID tokens.
    issuer_slash: bool,
}

impl MockProvider {
    /// Starts the server with discovery and the JWKS mounted; `sends_iss` sets
    /// discovery's `authorization_response_iss_parameter_supported`, and
    /// `issuer_slash` makes the issuer end in `/`.
    pub async fn start_with(sends_iss: bool, issuer_slash: bool) -> Self {
        let server = MockServer::start().await;
        let provider = Self {
            server,
            sends_iss,
            issuer_slash,
        };
        provider
            .mount_discovery_and_jwks(include_str!("../fixtures/jwks.json"))
            .await;
        provider
    }

    /// Forgets every mock and publishes `jwks` instead (a key rotation).
    pub async fn rotate_keys(&self, jwks: &str) {
        self.server.reset().await;
        self.mount_discovery_and_jwks(jwks).await;
    }

    async fn mount_discovery_and_jwks(&self, jwks: &str) {
        let server = &self.server;
        let uri = server.uri();
        Mock::given(method("GET"))
            .and(path("/.well-known/openid-configuration"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "issuer": self.issuer(),
                "authorization_endpoint": format!("{uri}/authorize"),
                "token_endpoint": format!("{uri}/token"),
                "userinfo_endpoint": format!("{uri}/userinfo"),
                "jwks_uri": format!("{uri}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "scopes_supported": ["openid", "email", "profile"],
                "authorization_response_iss_parameter_supported": self.sends_iss,
            })))
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(
                ResponseTemplate::new(200).set_body_raw(jwks.to_owned(), "application/json"),
            )
            .mount(server)
            .await;
    }

    /// The issuer URL: the server's base URL, with a trailing slash only when
    /// started with `issuer_slash`.
    pub fn issuer(&self) -> String {
        let slash = if self.issuer_slash { "/" } else { "" };
        format!("{}{slash}", self.server.uri())
    }

    /// Claims of a valid ID token for `sub` carrying `nonce`.
    pub fn claims(&self, sub: &str, nonce: &str) -> Value {
        let now = Utc::now().timestamp();
        json!({
            "iss": self.issuer(),
            "aud": CLIENT_ID,
            "sub": sub,
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            "email": format!("{sub}@example.com"),
            "email_verified": true,
            "given_name": "Grace",
            "family_name": "Hopper",
            "name": "Grace Hopper",
            "picture": "https://example.com/grace.png",
        })
    }

    /// `claims` signed RS256 with the key the JWKS publishes.
    pub fn id_token(&self, claims: &Value) -> String {
        sign(
            claims,
            include_bytes!("../fixtures/rsa_private.pem"),
            "test-key-1",
        )
    }

    /// `claims` signed with a key the provider does not publish, under its key id.
    pub fn id_token_with_wrong_key(&self, claims: &Value) -> String {
        sign(
            claims,
            include_bytes!("../fixtures/rsa_other_private.pem"),
            "test-key-1",
        )
    }

    /// `claims` signed with the second fixture key, under `kid` (or none).
    pub fn id_token_with_second_key(&self, claims: &Value, kid: Option<&str>) -> String {
        sign_with(
            claims,
            include_bytes!("../fixtures/rsa_other_private.pem"),
            kid,
        )
    }

    /// `claims` signed with the published key but no `kid` in the header.
    pub fn id_token_without_kid(&self, claims: &Value) -> String {
        sign_with(claims, include_bytes!("../fixtures/rsa_private.pem"), None)
    }

    /// How many times the JWKS was fetched.
    pub async fn jwks_requests(&self) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == "/jwks")
            .count()
    }

    /// The token endpoint answers requests for `code` with tokens and `id_token`.
    pub async fn given_token_ok(&self, code: &str, id_token: &str) {
        self.given_token_after(code, id_token, Duration::ZERO).await;
    }

    /// As [`Self::given_token_ok`], the answer sent only after `delay`.
    pub async fn given_token_after(&self, code: &str, id_token: &str, delay: Duration) {
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(header_exists("authorization"))
            .and(body_string_contains(format!("code={code}&")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({
                        "access_token": "mock-access-token",
                        "token_type": "Bearer",
                        "expires_in": 3599,
                        "refresh_token": "mock-refresh-token",
                        "scope": "openid email profile",
                        "id_token": id_token,
                    }))
                    .set_delay(delay),
            )
            .mount(&self.server)
            .await;
    }

    /// The token endpoint answers 400 with OAuth error `code`, exactly `times` times.
    pub async fn given_token_error(&self, code: &str, times: u64) {
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "error": code,
                "error_description": "Bad Request",
            })))
            .expect(times)
            .mount(&self.server)
            .await;
    }

    /// The token endpoint answers HTTP `status` with no OAuth body.
    pub async fn given_token_status(&self, status: u16) {
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(ResponseTemplate::new(status).set_body_string("<html>unavailable</html>"))
            .mount(&self.server)
            .await;
    }

    /// The userinfo endpoint answers `profile` to a bearer request.
    pub async fn given_userinfo(&self, profile: Value) {
        Mock::given(method("GET"))
            .and(path("/userinfo"))
            .and(header_exists("authorization"))
            .respond_with(ResponseTemplate::new(200).set_body_json(profile))
            .mount(&self.server)
            .await;
    }

    /// Number of requests the token endpoint received.
    pub async fn token_requests(&self) -> Vec<wiremock::Request> {
        self.requests_to("/token").await
    }

    pub async fn userinfo_requests(&self) -> Vec<wiremock::Request> {
        self.requests_to("/userinfo").await
    }

    async fn requests_to(&self, path: &str) -> Vec<wiremock::Request> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == path)
            .collect()
    }
}

fn sign(claims: &Value, pem: &[u8], kid: &str) -> String {
    sign_with(claims, pem, Some(kid))
}

fn sign_with(claims: &Value, pem: &[u8], kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_rsa_pem(pem).expect("fixture key is a valid RSA PEM");
    jsonwebtoken::encode(&header, claims, &key).expect("signing works")
}

/// Facebook's `appsecret_proof` for `token`: hex HMAC-SHA256 keyed with the app secret.
pub fn appsecret_proof(secret: &str, token: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(token.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
