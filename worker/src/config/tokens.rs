//! `tokens.*` keys: how the JSON API's access tokens are signed, for whom, and for
//! how long; and the services allowed to introspect them.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::bail;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Access-token signature algorithms: asymmetric ones other services verify with
/// the published keys (`/.well-known/jwks.json`), HMAC ones only we can.
pub const ALGORITHMS: &[&str] = &["EdDSA", "ES256", "HS256", "HS384", "HS512"];

/// `tokens.*` keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    /// One of [`ALGORITHMS`]. Default `EdDSA` (Ed25519): other services can verify a
    /// token offline with the published public key, and signatures are small and fast.
    pub algorithm: String,
    /// The private key (PKCS#8 PEM) for `EdDSA` or `ES256`. Without it, `EdDSA`
    /// derives its key from `secret_key`; `ES256` needs it.
    pub signing_key_file: Option<PathBuf>,
    /// Retired signing keys still published and accepted while tokens they signed
    /// may live (one `access_ttl` after the rotation).
    #[serde(default)]
    pub previous_signing_key_files: Vec<PathBuf>,
    /// `iss` of every token. Default `public_url`.
    pub issuer: Option<String>,
    /// `aud` of every token, the services that accept it. Default `public_url`.
    pub audience: Option<String>,
    /// Access-token lifetime. Default `15m`.
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    /// Refresh-token lifetime (each refresh issues a new one). Default `30d`.
    #[serde(with = "humantime_serde")]
    pub refresh_ttl: Duration,
    /// Services allowed to call `POST /api/token/introspect`, by client id, each
    /// with its secret (HTTP Basic). None by default: the endpoint refuses everyone.
    #[serde(default)]
    pub introspection_clients: BTreeMap<String, SecretString>,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            algorithm: "EdDSA".to_owned(),
            signing_key_file: None,
            previous_signing_key_files: Vec::new(),
            issuer: None,
            audience: None,
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            introspection_clients: BTreeMap::new(),
        }
    }
}

impl TokenSettings {
    /// Whether tokens are signed with a key pair (published as a JWKS).
    pub fn is_asymmetric(&self) -> bool {
        matches!(self.algorithm.as_str(), "EdDSA" | "ES256")
    }

    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if !ALGORITHMS.contains(&self.algorithm.as_str()) {
            bail!("tokens.algorithm: must be one of {}", ALGORITHMS.join(", "));
        }
        if self.algorithm == "ES256" && self.signing_key_file.is_none() {
            bail!("tokens.signing_key_file: required for ES256 (a P-256 private key, PKCS#8 PEM)");
        }
        if !self.is_asymmetric()
            && (self.signing_key_file.is_some() || !self.previous_signing_key_files.is_empty())
        {
            bail!(
                "tokens.signing_key_file: only for EdDSA and ES256 (HMAC keys come from secret_key)"
            );
        }
        for (key, value) in [("issuer", &self.issuer), ("audience", &self.audience)] {
            if value
                .as_deref()
                .is_some_and(|v| v.is_empty() || v.len() > 512)
            {
                bail!("tokens.{key}: 1 to 512 characters");
            }
        }
        if self.access_ttl < Duration::from_secs(30)
            || self.access_ttl > Duration::from_secs(24 * 3600)
        {
            bail!("tokens.access_ttl: must be between 30s and 24h");
        }
        if self.refresh_ttl < self.access_ttl {
            bail!("tokens.refresh_ttl: must be at least tokens.access_ttl");
        }
        for (id, secret) in &self.introspection_clients {
            if id.is_empty() || id.contains(':') || secret.expose_secret().len() < 32 {
                bail!(
                    "tokens.introspection_clients.{id}: a client id without `:` and a secret of at least 32 characters"
                );
            }
        }
        Ok(())
    }
}
