//! Sign in with Apple's client secret: an ES256 JWT signed with the `.p8` key of the
//! developer account (`iss` = team id, `sub` = the Services ID, `aud` = Apple),
//! made on demand and reused while it has more than a day to live.

use std::{
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::ProviderError;

/// Apple accepts client secrets valid for up to six months; we make 30-day ones.
const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
const RENEW_BEFORE: Duration = Duration::from_secs(24 * 3600);
const AUDIENCE: &str = "https://appleid.apple.com";

/// The key material for one Apple provider.
pub struct AppleSecret {
    team_id: String,
    key_id: String,
    key: EncodingKey,
    cached: Mutex<Option<(String, SystemTime)>>,
}

impl std::fmt::Debug for AppleSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppleSecret")
            .field("team_id", &self.team_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
    exp: u64,
    aud: &'a str,
    sub: &'a str,
}

impl AppleSecret {
    /// Loads the `.p8` key (PKCS#8 PEM of a P-256 key) for `team_id`/`key_id`.
    pub fn new(team_id: &str, key_id: &str, pem: &SecretString) -> anyhow::Result<Self> {
        let key = EncodingKey::from_ec_pem(pem.expose_secret().as_bytes())
            .context("private_key: not a PEM-encoded P-256 (.p8) key")?;
        let secret = Self {
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            key,
            cached: Mutex::new(None),
        };
        secret
            .make("check")
            .context("private_key: cannot sign with it")?;
        Ok(secret)
    }

    /// The client secret for `client_id` (the Services ID).
    pub fn client_secret(&self, client_id: &str) -> Result<String, ProviderError> {
        let mut cached = self.cached.lock().expect("apple secret lock");
        if let Some((secret, expires)) = &*cached {
            if expires
                .duration_since(SystemTime::now())
                .is_ok_and(|left| left > RENEW_BEFORE)
            {
                return Ok(secret.clone());
            }
        }
        let secret = self
            .make(client_id)
            .map_err(|e| ProviderError::Rejected(format!("apple client secret: {e}")))?;
        *cached = Some((secret.clone(), SystemTime::now() + LIFETIME));
        Ok(secret)
    }

    fn make(&self, client_id: &str) -> Result<String, jsonwebtoken::errors::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = Claims {
            iss: &self.team_id,
            iat: now,
            exp: now + LIFETIME.as_secs(),
            aud: AUDIENCE,
            sub: client_id,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}
