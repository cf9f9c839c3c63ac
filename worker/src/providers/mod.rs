//! Sign-in providers as data: a [`Provider`] is resolved once from its preset, the
//! configuration overrides and (for OIDC) discovery. The api asks the registry for
//! authorize URLs; the worker exchanges codes and reads profiles through it.

mod discovery;
pub mod http;
mod oidc;
pub mod presets;
pub mod profile;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::Context;
use openidconnect::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, IssuerUrl, OAuth2TokenResponse,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, TokenResponse, TokenUrl,
    core::{CoreClient, CoreErrorResponseType, CoreIdToken, CoreJsonWebKeySet},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;
use url::Url;

use crate::config::{ProviderKind, Settings};
use http::ProviderHttp;
pub use http::TransportError;
pub use profile::Profile;

/// What can go wrong talking to a provider.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Connection refused before sending, 5xx or 429: the provider is unwell.
    #[error("provider unavailable: {0}")]
    Unavailable(#[source] TransportError),
    /// The request went out and no answer came back (timeout or broken connection).
    #[error("provider did not answer: {0}")]
    NoAnswer(#[source] TransportError),
    /// `invalid_grant`: the code is expired, used, or was issued to someone else.
    #[error("authorization code rejected (invalid_grant)")]
    InvalidGrant,
    /// Any other OAuth error response (`invalid_client`, …): usually misconfiguration.
    #[error("provider refused the request: {0}")]
    Rejected(String),
    /// The ID token failed validation.
    #[error("invalid ID token: {0}")]
    InvalidIdToken(String),
    /// The profile could not be read or lacks a subject.
    #[error("invalid profile: {0}")]
    Profile(String),
    /// Discovery or JWKS could not be used.
    #[error("discovery failed: {0}")]
    Discovery(String),
}

impl ProviderError {
    /// Whether a retry can help. `idempotent` steps (profile, discovery) may also
    /// retry when the answer was lost; the code exchange may not (the code may be spent).
    pub fn is_retryable(&self, idempotent: bool) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::NoAnswer(_) => idempotent,
            _ => false,
        }
    }
}

impl From<TransportError> for ProviderError {
    fn from(error: TransportError) -> Self {
        match error {
            TransportError::NotSent(_) | TransportError::Unavailable(_) => Self::Unavailable(error),
            TransportError::Timeout | TransportError::Broken(_) => Self::NoAnswer(error),
            TransportError::TooLarge => Self::Profile("response larger than 1 MiB".to_owned()),
            TransportError::Invalid(e) => Self::Rejected(e),
        }
    }
}

/// What the token endpoint gave us.
pub struct TokenSet {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_in: Option<Duration>,
    pub id_token: Option<CoreIdToken>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("has_id_token", &self.id_token.is_some())
            .finish_non_exhaustive()
    }
}

/// Endpoints after overrides and discovery.
#[derive(Debug)]
struct Endpoints {
    issuer: Option<Url>,
    authorize_url: Url,
    token_url: Url,
    userinfo_url: Option<Url>,
    jwks_url: Option<Url>,
    /// `client_secret_post` only when the provider does not offer `client_secret_basic`.
    auth_type: AuthType,
    /// Asymmetric algorithms the provider signs ID tokens with.
    signing_algs: Vec<String>,
}

/// One configured provider.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub display_name: String,
    pub client_id: String,
    client_secret: Option<SecretString>,
    pub issuer: Option<Url>,
    pub scopes: Vec<String>,
    pub redirect_uri: String,
    overrides: Overrides,
    http: ProviderHttp,
    endpoints: OnceCell<Arc<Endpoints>>,
    jwks: discovery::JwksCache,
}

#[derive(Debug, Default)]
struct Overrides {
    authorize_url: Option<Url>,
    token_url: Option<Url>,
    userinfo_url: Option<Url>,
    jwks_url: Option<Url>,
}

impl Provider {
    /// Whether sign-in validates an ID token and sends a nonce.
    pub fn is_oidc(&self) -> bool {
        self.kind.is_oidc()
    }

    /// The provider's authorize URL for one attempt.
    pub async fn authorize_url(
        &self,
        state: &str,
        code_challenge: &str,
        nonce: Option<&str>,
    ) -> Result<Url, ProviderError> {
        let endpoints = self.endpoints().await?;
        let mut url = endpoints.authorize_url.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("scope", &self.scopes.join(" "))
                .append_pair("state", state)
                .append_pair("code_challenge", code_challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(nonce) = nonce {
                query.append_pair("nonce", nonce);
            }
        }
        Ok(url)
    }

    /// Exchanges `code` with the PKCE verifier and client credentials. One attempt;
    /// the caller decides on retries with [`ProviderError::is_retryable`].
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &str,
    ) -> Result<TokenSet, ProviderError> {
        let endpoints = self.endpoints().await?;
        let issuer = endpoints
            .issuer
            .clone()
            .unwrap_or_else(|| endpoints.authorize_url.clone());
        let mut client = CoreClient::new(
            ClientId::new(self.client_id.clone()),
            IssuerUrl::from_url(issuer),
            CoreJsonWebKeySet::default(),
        )
        .set_auth_uri(AuthUrl::from_url(endpoints.authorize_url.clone()))
        .set_token_uri(TokenUrl::from_url(endpoints.token_url.clone()))
        .set_redirect_uri(
            RedirectUrl::new(self.redirect_uri.clone())
                .map_err(|e| ProviderError::Rejected(e.to_string()))?,
        )
        .set_auth_type(endpoints.auth_type.clone());
        if let Some(secret) = &self.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()));
        }
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(err) => match err.error() {
                    CoreErrorResponseType::InvalidGrant => ProviderError::InvalidGrant,
                    other => ProviderError::Rejected(other.to_string()),
                },
                RequestTokenError::Request(transport) => ProviderError::from(transport),
                RequestTokenError::Parse(e, _) => {
                    ProviderError::Rejected(format!("unreadable token response: {e}"))
                }
                RequestTokenError::Other(e) => ProviderError::Rejected(e),
            })?;
        Ok(TokenSet {
            access_token: SecretString::from(response.access_token().secret().to_owned()),
            refresh_token: response
                .refresh_token()
                .map(|t| SecretString::from(t.secret().to_owned())),
            expires_in: response.expires_in(),
            id_token: response.id_token().cloned(),
        })
    }

    /// Validates the ID token of an OIDC sign-in (OpenID Connect Core 3.1.3.7).
    pub async fn verify_id_token(
        &self,
        id_token: Option<&CoreIdToken>,
        nonce: Option<&str>,
    ) -> Result<Profile, ProviderError> {
        let id_token = id_token.ok_or_else(|| {
            ProviderError::InvalidIdToken("the token response has no id_token".into())
        })?;
        let nonce =
            nonce.ok_or_else(|| ProviderError::InvalidIdToken("no nonce was sent".into()))?;
        let endpoints = self.endpoints().await?;
        oidc::verify(self, &endpoints, id_token, nonce).await
    }

    /// Reads the profile with the access token and merges it over `from_id_token`.
    /// Safe to retry.
    pub async fn fetch_profile(
        &self,
        tokens: &TokenSet,
        from_id_token: Option<&Profile>,
    ) -> Result<Profile, ProviderError> {
        let endpoints = self.endpoints().await?;
        let Some(url) = &endpoints.userinfo_url else {
            return from_id_token.cloned().ok_or_else(|| {
                ProviderError::Profile("no userinfo endpoint and no ID token".into())
            });
        };
        let response = self
            .http
            .get_json(url, Some(tokens.access_token.expose_secret()))
            .await?;
        if response.status() != 200 {
            return Err(ProviderError::Profile(format!(
                "userinfo answered HTTP {}",
                response.status()
            )));
        }
        let json: serde_json::Value = serde_json::from_slice(response.body())
            .map_err(|e| ProviderError::Profile(format!("userinfo is not JSON: {e}")))?;
        profile::from_userinfo(self.kind, &json, from_id_token)
    }

    /// Overrides, then discovery for OIDC kinds. Cached after the first success.
    async fn endpoints(&self) -> Result<Arc<Endpoints>, ProviderError> {
        self.endpoints
            .get_or_try_init(|| async { self.resolve_endpoints().await.map(Arc::new) })
            .await
            .cloned()
    }

    async fn resolve_endpoints(&self) -> Result<Endpoints, ProviderError> {
        let o = &self.overrides;
        let metadata = match (&self.issuer, self.is_oidc()) {
            (Some(issuer), true)
                if o.authorize_url.is_none() || o.token_url.is_none() || o.jwks_url.is_none() =>
            {
                Some(discovery::discover(&self.http, issuer).await?)
            }
            _ => None,
        };
        let pick =
            |over: &Option<Url>, found: Option<&Url>| over.clone().or_else(|| found.cloned());
        let missing =
            |what: &str| ProviderError::Discovery(format!("no {what} configured or discovered"));
        let methods = metadata
            .as_ref()
            .map(|m| m.token_endpoint_auth_methods_supported.clone())
            .unwrap_or_default();
        let auth_type = if !methods.is_empty()
            && !methods.iter().any(|m| m == "client_secret_basic")
            && methods.iter().any(|m| m == "client_secret_post")
        {
            AuthType::RequestBody
        } else {
            AuthType::BasicAuth
        };
        Ok(Endpoints {
            issuer: self.issuer.clone(),
            authorize_url: pick(
                &o.authorize_url,
                metadata.as_ref().map(|m| &m.authorization_endpoint),
            )
            .ok_or_else(|| missing("authorize_url"))?,
            token_url: pick(&o.token_url, metadata.as_ref().map(|m| &m.token_endpoint))
                .ok_or_else(|| missing("token_url"))?,
            userinfo_url: pick(
                &o.userinfo_url,
                metadata.as_ref().and_then(|m| m.userinfo_endpoint.as_ref()),
            ),
            jwks_url: pick(&o.jwks_url, metadata.as_ref().map(|m| &m.jwks_uri)),
            auth_type,
            signing_algs: metadata
                .map(|m| m.id_token_signing_alg_values_supported)
                .unwrap_or_default(),
        })
    }
}

/// Every configured provider, by name, in configuration order.
#[derive(Debug)]
pub struct ProviderRegistry {
    providers: BTreeMap<String, Arc<Provider>>,
}

impl ProviderRegistry {
    /// Resolves every provider of `settings`; adds the demo provider when none is
    /// configured and `public_url` is loopback.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let client = ProviderHttp::build_client().context("building the HTTP client")?;
        let mut configured = settings.providers.clone();
        if configured.is_empty() && is_loopback(&settings.public_url) {
            tracing::info!(
                "no provider configured: the demo provider is on at {}/demo-provider/",
                settings.public_base()
            );
            configured.insert("demo".to_owned(), Default::default());
        }
        let mut providers = BTreeMap::new();
        for (name, config) in configured {
            let kind = config
                .resolved_kind(&name)
                .with_context(|| format!("providers.{name}.kind: required"))?;
            if kind == ProviderKind::Demo && !is_loopback(&settings.public_url) {
                anyhow::bail!(
                    "providers.{name}.kind: the demo provider needs a loopback public_url"
                );
            }
            let preset = presets::preset(kind, settings.public_base());
            let (client_id, client_secret) = match kind {
                ProviderKind::Demo => (
                    presets::DEMO_CLIENT_ID.to_owned(),
                    Some(SecretString::from(presets::DEMO_CLIENT_SECRET)),
                ),
                _ => (
                    config.client_id.clone().unwrap_or_default(),
                    config.client_secret.clone(),
                ),
            };
            let provider = Provider {
                display_name: config
                    .display_name
                    .clone()
                    .or_else(|| preset.display_name.map(str::to_owned))
                    .unwrap_or_else(|| name.clone()),
                kind,
                client_id,
                client_secret,
                issuer: config.issuer.clone().or(preset.issuer),
                scopes: config
                    .scopes
                    .clone()
                    .unwrap_or_else(|| preset.scopes.iter().map(|s| (*s).to_owned()).collect()),
                redirect_uri: settings.redirect_uri(&name),
                overrides: Overrides {
                    authorize_url: config.authorize_url.clone().or(preset.authorize_url),
                    token_url: config.token_url.clone().or(preset.token_url),
                    userinfo_url: config.userinfo_url.clone().or(preset.userinfo_url),
                    jwks_url: config.jwks_url.clone(),
                },
                http: ProviderHttp::new(
                    client.clone(),
                    config.timeout.unwrap_or(Duration::from_secs(10)),
                ),
                endpoints: OnceCell::new(),
                jwks: Default::default(),
                name: name.clone(),
            };
            providers.insert(name, Arc::new(provider));
        }
        if providers.is_empty() {
            tracing::warn!("no sign-in provider is configured");
        }
        Ok(Self { providers })
    }

    /// The provider called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.get(name)
    }

    /// All providers, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.values()
    }

    /// Whether the built-in demo provider is among them (the api then serves it).
    pub fn has_demo(&self) -> bool {
        self.providers
            .values()
            .any(|p| p.kind == ProviderKind::Demo)
    }

    /// Resolves discovery for every provider in the background, logging failures, so
    /// the first sign-in does not pay for it and misconfiguration shows up at start.
    pub fn warm_up(self: &Arc<Self>) {
        for provider in self.providers.values().cloned() {
            tokio::spawn(async move {
                if let Err(error) = provider.endpoints().await {
                    tracing::warn!(provider = %provider.name, %error, "provider discovery failed; will retry on first use");
                }
            });
        }
    }
}

/// Whether `url`'s host is a loopback address or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
