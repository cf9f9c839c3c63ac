//! OpenID Connect discovery (`{issuer}/.well-known/openid-configuration`) and the
//! JWKS cache: keys are kept as long as the provider's `Cache-Control` allows (an
//! hour if it says nothing), and an unknown `kid` triggers at most one refresh per
//! 30 seconds, so key rotation works and a flood of forged tokens cannot hammer the
//! provider.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Deserialize;
use tokio::sync::RwLock;
use url::Url;

use super::{ProviderError, http::ProviderHttp, jwk::ProviderKeys};

/// The parts of the discovery document we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    /// As the provider writes it: ID tokens and RFC 9207 `iss` must equal it exactly.
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub userinfo_endpoint: Option<Url>,
    pub jwks_uri: Url,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// RFC 9207: the provider puts `iss` in every authorization response.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// Fetches and checks the discovery document: its `issuer` must be ours, give or take
/// a trailing `/` (operators write `https://tenant.auth0.com` for Auth0's
/// `https://tenant.auth0.com/`). From then on the issuer is the discovered one, as
/// written, and compared exactly.
pub async fn discover(
    http: &ProviderHttp,
    issuer: &openidconnect::IssuerUrl,
) -> Result<Metadata, ProviderError> {
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
    if metadata.issuer.trim_end_matches('/') != base {
        return Err(ProviderError::Discovery(format!(
            "discovery document names issuer {} instead of {base}",
            metadata.issuer
        )));
    }
    Ok(metadata)
}

/// Keys are kept this long when the JWKS response sets no `max-age`…
const JWKS_DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// …and `max-age` is clamped to this range.
const JWKS_MIN_TTL: Duration = Duration::from_secs(300);
const JWKS_MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// At most one refresh for an unknown `kid` per this interval.
const JWKS_FORCED_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct CachedKeys {
    keys: Arc<ProviderKeys>,
    fetched: Instant,
    ttl: Duration,
}

/// A provider's signing keys, fetched lazily and kept as the response's
/// `Cache-Control: max-age` says.
#[derive(Debug, Default)]
pub struct JwksCache {
    cached: RwLock<Option<CachedKeys>>,
    last_forced: std::sync::Mutex<Option<Instant>>,
}

impl JwksCache {
    /// The cached keys, fetched when absent or expired.
    pub async fn get(
        &self,
        http: &ProviderHttp,
        url: &Url,
    ) -> Result<Arc<ProviderKeys>, ProviderError> {
        if let Some(cached) = &*self.cached.read().await {
            if cached.fetched.elapsed() < cached.ttl {
                return Ok(cached.keys.clone());
            }
        }
        self.fetch(http, url).await
    }

    /// Fetches again because a token named a key we do not have (the provider may
    /// have rotated). `None` when another forced refresh happened moments ago.
    pub async fn refresh(
        &self,
        http: &ProviderHttp,
        url: &Url,
    ) -> Result<Option<Arc<ProviderKeys>>, ProviderError> {
        {
            let mut last = self.last_forced.lock().expect("jwks lock");
            if last.is_some_and(|at| at.elapsed() < JWKS_FORCED_REFRESH_INTERVAL) {
                return Ok(None);
            }
            *last = Some(Instant::now());
        }
        self.fetch(http, url).await.map(Some)
    }

    async fn fetch(
        &self,
        http: &ProviderHttp,
        url: &Url,
    ) -> Result<Arc<ProviderKeys>, ProviderError> {
        let response = http.get_json(url, None).await?;
        if response.status() != 200 {
            return Err(ProviderError::Discovery(format!(
                "the JWKS answered HTTP {}",
                response.status()
            )));
        }
        let keys: ProviderKeys = serde_json::from_slice(response.body())
            .map_err(|e| ProviderError::Discovery(format!("invalid JWKS: {e}")))?;
        let ttl = max_age(response.headers()).map_or(JWKS_DEFAULT_TTL, |age| {
            age.clamp(JWKS_MIN_TTL, JWKS_MAX_TTL)
        });
        let keys = Arc::new(keys);
        *self.cached.write().await = Some(CachedKeys {
            keys: keys.clone(),
            fetched: Instant::now(),
            ttl,
        });
        Ok(keys)
    }
}

/// `max-age` of a `Cache-Control` header; `no-store`/`no-cache` count as zero.
fn max_age(headers: &openidconnect::http::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(openidconnect::http::header::CACHE_CONTROL)?
        .to_str()
        .ok()?;
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache")
        {
            return Some(Duration::ZERO);
        }
        if let Some(seconds) = directive.strip_prefix("max-age=") {
            age = seconds
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;
    use openidconnect::http::{HeaderMap, HeaderValue, header::CACHE_CONTROL};

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age(&headers("public, max-age=21600, must-revalidate")),
            Some(Duration::from_secs(21600))
        );
        assert_eq!(max_age(&headers("no-store")), Some(Duration::ZERO));
        assert_eq!(max_age(&headers("public")), None);
        assert_eq!(max_age(&HeaderMap::new()), None);
    }
}
