//! Access tokens of the JSON API: short-lived JWTs (`sub`, `sid`, `iat`, `exp`,
//! `iss`) signed with a key derived from `secret_key`. Each use is also checked
//! against the session row, so revoking a session stops its tokens at once.

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use worker::{config::Settings, crypto::Keys};

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The session id.
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

/// Signs and verifies access tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    ttl: chrono::Duration,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// From `tokens.*` and the derived access-token key.
    pub fn new(settings: &Settings, keys: &Keys) -> Self {
        let algorithm = match settings.tokens.algorithm.as_str() {
            "HS384" => Algorithm::HS384,
            "HS512" => Algorithm::HS512,
            _ => Algorithm::HS256,
        };
        Self {
            algorithm,
            encoding: EncodingKey::from_secret(&keys.access_tokens),
            decoding: DecodingKey::from_secret(&keys.access_tokens),
            issuer: settings.public_base().to_owned(),
            ttl: chrono::Duration::from_std(settings.tokens.access_ttl)
                .unwrap_or(chrono::Duration::minutes(15)),
        }
    }

    /// A fresh access token for `user` in `session`, and its lifetime in seconds.
    pub fn issue(&self, user: Uuid, session: Uuid) -> (String, i64) {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            sid: session,
            iat: now,
            exp: now + self.ttl.num_seconds(),
            iss: self.issuer.clone(),
        };
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.encoding)
            .expect("HMAC signing cannot fail");
        (token, self.ttl.num_seconds())
    }

    /// The claims of a valid, unexpired token of ours; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        if token.len() > 2048 {
            return None;
        }
        let mut validation = Validation::new(self.algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }
}
