//! OpenID Connect discovery (`{issuer}/.well-known/openid-configuration`) and the
//! JWKS cache: keys are kept for an hour, and an unknown `kid` triggers at most one
//! refresh per 30 seconds so a flood of forged tokens cannot hammer the provider.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use openidconnect::{JsonWebKeySetUrl, core::CoreJsonWebKeySet};
use serde::Deserialize;
use tokio::sync::RwLock;
use url::Url;

use super::{ProviderError, http::ProviderHttp};

/// The parts of the discovery document we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: Url,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub userinfo_endpoint: Option<Url>,
    pub jwks_uri: Url,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// Fetches and checks the discovery document: its `issuer` must be ours exactly.
pub async fn discover(http: &ProviderHttp, issuer: &Url) -> Result<Metadata, ProviderError> {
    let base = issuer.as_str().trim_end_matches('/');
    let url = Url::parse(&format!("{base}/.well-known/openid-configuration"))
        .map_err(|e| ProviderError::Discovery(e.to_string()))?;
    let response = http.get_json(&url, None).await?;
    if response.status() != 200 {
        return Err(ProviderError::Discovery(format!(
            "discovery answered HTTP {}",
            response.status()
        )));
    }
    let metadata: Metadata = serde_json::from_slice(response.body())
        .map_err(|e| ProviderError::Discovery(format!("invalid discovery document: {e}")))?;
    if metadata.issuer.as_str().trim_end_matches('/') != base {
        return Err(ProviderError::Discovery(format!(
            "discovery document names issuer {} instead of {base}",
            metadata.issuer
        )));
    }
    Ok(metadata)
}

const JWKS_TTL: Duration = Duration::from_secs(3600);
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);

/// A provider's signing keys, fetched lazily.
#[derive(Debug, Default)]
pub struct JwksCache {
    keys: RwLock<Option<(Arc<CoreJsonWebKeySet>, Instant)>>,
}

impl JwksCache {
    /// The cached keys, fetched when absent or older than an hour.
    pub async fn get(
        &self,
        http: &ProviderHttp,
        url: &Url,
    ) -> Result<Arc<CoreJsonWebKeySet>, ProviderError> {
        if let Some((keys, fetched)) = &*self.keys.read().await {
            if fetched.elapsed() < JWKS_TTL {
                return Ok(keys.clone());
            }
        }
        self.fetch(http, url).await
    }

    /// Fetches again after a key was not found, unless it was fetched moments ago.
    /// Returns `None` when throttled.
    pub async fn refresh(
        &self,
        http: &ProviderHttp,
        url: &Url,
    ) -> Result<Option<Arc<CoreJsonWebKeySet>>, ProviderError> {
        if let Some((_, fetched)) = &*self.keys.read().await {
            if fetched.elapsed() < JWKS_MIN_REFRESH {
                return Ok(None);
            }
        }
        self.fetch(http, url).await.map(Some)
    }

    async fn fetch(
        &self,
        http: &ProviderHttp,
        url: &Url,
    ) -> Result<Arc<CoreJsonWebKeySet>, ProviderError> {
        let url = JsonWebKeySetUrl::from_url(url.clone());
        let keys = CoreJsonWebKeySet::fetch_async(&url, http)
            .await
            .map_err(|e| match e {
                openidconnect::DiscoveryError::Request(transport) => ProviderError::from(transport),
                other => ProviderError::Discovery(format!("cannot read the JWKS: {other}")),
            })?;
        let keys = Arc::new(keys);
        *self.keys.write().await = Some((keys.clone(), Instant::now()));
        Ok(keys)
    }
}
