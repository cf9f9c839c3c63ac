//! Access tokens of the JSON API: short-lived JWTs (`sub`, `sid`, `iat`, `exp`,
//! `iss`, `aud`, and `kid` in the header) signed with the current key of [`keys`].
//! Each use is also checked against the session row, so revoking a session stops
//! its tokens at once; other services verify them offline with the published keys
//! (`/.well-known/jwks.json`), or ask `POST /api/token/introspect` to see revocation.

mod keys;

use chrono::Utc;
use jsonwebtoken::{Header, Validation, jwk::JwkSet};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use worker::{config::Settings, crypto::Keys};

use keys::SigningKey;

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
    pub aud: String,
}

/// Signs and verifies access tokens.
pub struct TokenIssuer {
    /// The current key first, then the retired ones.
    keys: Vec<SigningKey>,
    issuer: String,
    audience: String,
    /// What `verify` checks besides the signature, made once (every key has the
    /// configured algorithm).
    validation: Validation,
    ttl: chrono::Duration,
    /// The public keys, as served.
    jwks: JwkSet,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("algorithm", &self.keys[0].algorithm)
            .field("kid", &self.keys[0].kid)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// From `tokens.*` and the keys derived from `secret_key`.
    pub fn new(settings: &Settings, keys: &Keys) -> anyhow::Result<Self> {
        let tokens = &settings.tokens;
        let keys = keys::load(tokens, keys)?;
        let jwks = JwkSet {
            keys: keys.iter().filter_map(|k| k.public.clone()).collect(),
        };
        let current = &keys[0];
        tracing::info!(algorithm = ?current.algorithm, kid = %current.kid, previous = keys.len() - 1, "access tokens");
        let issuer = tokens
            .issuer
            .clone()
            .unwrap_or_else(|| settings.public_base().to_owned());
        let audience = tokens
            .audience
            .clone()
            .unwrap_or_else(|| settings.public_base().to_owned());
        let mut validation = Validation::new(current.algorithm);
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[&audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud"]);
        validation.leeway = 5;
        Ok(Self {
            issuer,
            audience,
            validation,
            ttl: chrono::Duration::from_std(tokens.access_ttl)
                .unwrap_or(chrono::Duration::minutes(15)),
            keys,
            jwks,
        })
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
            aud: self.audience.clone(),
        };
        let key = &self.keys[0];
        let mut header = Header::new(key.algorithm);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .expect("signing with a loaded key cannot fail");
        (token, self.ttl.num_seconds())
    }

    /// The claims of a valid, unexpired token of ours, signed by the key its `kid`
    /// names (current or retired); `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        if token.len() > 2048 {
            return None;
        }
        let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
        let key = self.keys.iter().find(|k| k.kid == kid)?;
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }

    /// The public keys other services verify tokens with: the current one and the
    /// retired ones still configured. Empty for HMAC algorithms.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::{Figment, providers::Serialized};
    use secrecy::SecretString;

    fn issuer(secret: &str, previous: &[&str]) -> TokenIssuer {
        let settings = Settings::from_figment(Figment::from(Serialized::defaults(
            serde_json::json!({"database_url": "sqlite::memory:", "secret_key": secret,
                "previous_secret_keys": previous}),
        )))
        .unwrap();
        let previous: Vec<SecretString> = previous.iter().map(|s| SecretString::from(*s)).collect();
        let keys = Keys::derive(&SecretString::from(secret)).with_previous(&previous);
        TokenIssuer::new(&settings, &keys).unwrap()
    }

    const OLD: &str = "old-secret-key-that-is-long-enough-0123456789";
    const NEW: &str = "new-secret-key-that-is-long-enough-9876543210";

    #[test]
    fn rotating_secret_key_keeps_the_old_tokens_verifying_and_published() {
        let before = issuer(OLD, &[]);
        let (token, _) = before.issue(Uuid::new_v4(), Uuid::new_v4());
        let rotated = issuer(NEW, &[OLD]);
        assert!(
            rotated.verify(&token).is_some(),
            "an old token still verifies"
        );
        assert_eq!(rotated.jwks().keys.len(), 2);
        assert_eq!(
            rotated.jwks().keys[1].common.key_id,
            before.jwks().keys[0].common.key_id
        );
        let (fresh, _) = rotated.issue(Uuid::new_v4(), Uuid::new_v4());
        assert!(before.verify(&fresh).is_none(), "signed with the new key");
        assert!(
            issuer(NEW, &[]).verify(&token).is_none(),
            "once retired, gone"
        );
    }
}
