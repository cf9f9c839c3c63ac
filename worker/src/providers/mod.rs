//! Sign-in providers as data: a [`Provider`] is resolved once from its preset, the
//! configuration overrides and (for OIDC) discovery. The api asks the registry for
//! authorize URLs; the worker exchanges codes and reads profiles through it.

mod apple;
mod discovery;
mod error;
pub mod facebook;
pub mod http;
mod jwk;
mod oidc;
pub mod presets;
pub mod profile;
mod registry;

use std::{future::Future, sync::Arc, time::Duration};

use openidconnect::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, EndpointNotSet, EndpointSet,
    IssuerUrl, OAuth2TokenResponse, PkceCodeVerifier, RedirectUrl, RefreshToken, TokenResponse,
    TokenUrl,
    core::{CoreClient, CoreIdToken, CoreJsonWebKeySet, CoreTokenResponse},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;
use url::Url;

use crate::config::{ClaimPointers, ProviderKind, UserinfoMode};
pub use error::ProviderError;
use error::token_error;
pub use facebook::AccessTokenProblem;
use http::ProviderHttp;
pub use http::TransportError;
pub use profile::Profile;
pub use registry::ProviderRegistry;

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

impl TokenSet {
    fn from_response(response: &CoreTokenResponse) -> Self {
        Self {
            access_token: SecretString::from(response.access_token().secret().to_owned()),
            refresh_token: response
                .refresh_token()
                .map(|t| SecretString::from(t.secret().to_owned())),
            expires_in: response.expires_in(),
            id_token: response.id_token().cloned(),
        }
    }
}

/// Endpoints after overrides and discovery.
#[derive(Debug)]
struct Endpoints {
    /// The discovered issuer as the provider writes it, else the configured one as
    /// the operator wrote it: compared exactly with `iss`.
    issuer: Option<String>,
    authorize_url: Url,
    token_url: Url,
    userinfo_url: Option<Url>,
    jwks_url: Option<Url>,
    /// `client_secret_post` only when the provider does not offer `client_secret_basic`.
    auth_type: AuthType,
    /// Asymmetric algorithms the provider signs ID tokens with.
    signing_algs: Vec<String>,
    /// RFC 9207: every authorization response carries `iss`.
    sends_iss: bool,
}

/// One configured provider.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub display_name: String,
    pub client_id: String,
    client_secret: Option<SecretString>,
    /// As configured (or the preset's); see [`Provider::issuer`] for the one `iss`
    /// is compared with.
    pub configured_issuer: Option<IssuerUrl>,
    pub scopes: Vec<String>,
    pub redirect_uri: String,
    /// Google: the only Workspace domain accepted.
    pub hd: Option<String>,
    overrides: Overrides,
    /// Apple: makes the client secret.
    apple: Option<apple::AppleSecret>,
    /// `oauth2`: where the profile fields are.
    claims: ClaimPointers,
    /// Audiences accepted for ID tokens native apps send.
    native_client_ids: Vec<String>,
    /// Redirect URIs native apps may exchange codes for.
    native_redirect_uris: Vec<String>,
    /// Facebook: `{graph_url}/{graph_version}`.
    graph_base: Option<Url>,
    /// Google: the index page offers One Tap and the Sign in with Google button.
    pub one_tap: bool,
    /// OIDC kinds: when the userinfo endpoint is read.
    userinfo: UserinfoMode,
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

    /// Whether an app may sign in with an ID token it got from the provider's SDK:
    /// OpenID Connect kinds, and Facebook (Limited Login).
    pub fn takes_id_tokens(&self) -> bool {
        self.is_oidc() || self.kind == ProviderKind::Facebook
    }

    /// Whether the provider returns to the callback with a cross-site POST
    /// (`response_mode=form_post`): Apple, when it is asked for name or email.
    pub fn uses_form_post(&self) -> bool {
        self.kind == ProviderKind::Apple
    }

    /// The issuer `iss` must equal, character for character (RFC 9207 §2.4, OIDC
    /// Core 3.1.3.7): the discovered one as the provider writes it, else the
    /// configured one as written.
    pub async fn issuer(&self) -> Option<String> {
        match self.endpoints().await {
            Ok(endpoints) => endpoints.issuer.clone(),
            Err(_) => self
                .configured_issuer
                .as_ref()
                .map(|i| i.as_str().to_owned()),
        }
    }

    /// Whether the provider announced (RFC 9207) that every authorization response
    /// carries `iss`, so a response without it is not from this provider.
    pub async fn sends_iss(&self) -> bool {
        self.endpoints().await.is_ok_and(|e| e.sends_iss)
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
            if let Some(hd) = &self.hd {
                query.append_pair("hd", hd);
            }
            if self.uses_form_post() {
                query.append_pair("response_mode", "form_post");
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
        redirect_uri: Option<&str>,
    ) -> Result<TokenSet, ProviderError> {
        let client = self.oauth_client().await?;
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()));
        if let Some(uri) = redirect_uri {
            // A native app's own redirect URI, checked against the allowed list.
            let uri = RedirectUrl::new(uri.to_owned())
                .map_err(|e| ProviderError::Rejected(e.to_string()))?;
            request = request.set_redirect_uri(std::borrow::Cow::Owned(uri));
        }
        let response = self
            .timed("token", request.request_async(&self.http))
            .await
            .map_err(token_error)?;
        Ok(TokenSet::from_response(&response))
    }

    /// Runs a provider call, recording its latency by provider and endpoint.
    async fn timed<T>(&self, endpoint: &'static str, call: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let result = call.await;
        metrics::histogram!("signin_provider_request_duration_seconds", "provider" => self.name.clone(), "endpoint" => endpoint)
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// Trades a refresh token for a new access token (and perhaps a new refresh token).
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, ProviderError> {
        let client = self.oauth_client().await?;
        let token = RefreshToken::new(refresh_token.to_owned());
        let response = self
            .timed(
                "token",
                client
                    .exchange_refresh_token(&token)
                    .request_async(&self.http),
            )
            .await
            .map_err(token_error)?;
        Ok(TokenSet::from_response(&response))
    }

    /// An OAuth client for the token endpoint with this provider's credentials.
    async fn oauth_client(
        &self,
    ) -> Result<
        CoreClient<
            EndpointSet,
            EndpointNotSet,
            EndpointNotSet,
            EndpointNotSet,
            EndpointSet,
            EndpointNotSet,
        >,
        ProviderError,
    > {
        let endpoints = self.endpoints().await?;
        let issuer = match &endpoints.issuer {
            Some(issuer) => IssuerUrl::new(issuer.clone())
                .map_err(|e| ProviderError::Discovery(format!("invalid issuer: {e}")))?,
            None => IssuerUrl::from_url(endpoints.authorize_url.clone()),
        };
        let mut client = CoreClient::new(
            ClientId::new(self.client_id.clone()),
            issuer,
            CoreJsonWebKeySet::default(),
        )
        .set_auth_uri(AuthUrl::from_url(endpoints.authorize_url.clone()))
        .set_token_uri(TokenUrl::from_url(endpoints.token_url.clone()))
        .set_redirect_uri(
            RedirectUrl::new(self.redirect_uri.clone())
                .map_err(|e| ProviderError::Rejected(e.to_string()))?,
        )
        .set_auth_type(endpoints.auth_type.clone());
        if let Some(apple) = &self.apple {
            client =
                client.set_client_secret(ClientSecret::new(apple.client_secret(&self.client_id)?));
        } else if let Some(secret) = &self.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()));
        }
        Ok(client)
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
        let expected = oidc::Expected {
            client_id: &self.client_id,
            nonce,
            accept_hashed_nonce: false,
            other_azp: &[],
        };
        self.verify_with(id_token, &expected).await
    }

    /// Validates an ID token an app obtained itself (Google and Apple SDKs,
    /// Facebook's Limited Login, Google's One Tap on our page): its audience may be
    /// one of `native_client_ids` unless `web_only`, and Apple's SDK puts the
    /// SHA-256 of the app's nonce in it. Facebook says nothing of whether an email
    /// is verified, so it never is.
    pub async fn verify_native_id_token(
        &self,
        raw: &str,
        nonce: &str,
        web_only: bool,
    ) -> Result<Profile, ProviderError> {
        if !self.takes_id_tokens() {
            return Err(ProviderError::InvalidIdToken(format!(
                "{} issues no ID tokens",
                self.name
            )));
        }
        let id_token: CoreIdToken = raw
            .parse()
            .map_err(|_| ProviderError::InvalidIdToken("not a JWT".into()))?;
        // Pick the audience to check against before the signature is verified; the
        // verifier then checks everything, that audience included.
        let claimed = oidc::raw_claims(&id_token);
        let audiences: Vec<&str> = match &claimed["aud"] {
            serde_json::Value::String(aud) => vec![aud.as_str()],
            serde_json::Value::Array(list) => list.iter().filter_map(|a| a.as_str()).collect(),
            _ => vec![],
        };
        let others: &[String] = if web_only {
            &[]
        } else {
            &self.native_client_ids
        };
        let client_id = std::iter::once(&self.client_id)
            .chain(others)
            .find(|allowed| audiences.contains(&allowed.as_str()))
            .ok_or_else(|| {
                ProviderError::InvalidIdToken("the ID token is for another client".into())
            })?;
        let expected = oidc::Expected {
            client_id,
            nonce,
            accept_hashed_nonce: self.kind == ProviderKind::Apple,
            other_azp: others,
        };
        let mut profile = self.verify_with(&id_token, &expected).await?;
        if self.kind == ProviderKind::Facebook {
            profile.email_verified = false;
        }
        Ok(profile)
    }

    async fn verify_with(
        &self,
        id_token: &CoreIdToken,
        expected: &oidc::Expected<'_>,
    ) -> Result<Profile, ProviderError> {
        let endpoints = self.endpoints().await?;
        let (profile, extra) = oidc::verify(self, &endpoints, id_token, expected).await?;
        if let Some(hd) = &self.hd {
            // Core checks passed; the hosted-domain claim is Google's addition.
            if extra.get("hd").and_then(|v| v.as_str()) != Some(hd.as_str()) {
                return Err(ProviderError::DomainNotAllowed);
            }
        }
        Ok(profile)
    }

    /// Whether `uri` is a redirect URI a native app may have used for a code.
    pub fn is_allowed_native_redirect(&self, uri: &str) -> bool {
        uri == self.redirect_uri
            || self
                .native_redirect_uris
                .iter()
                .any(|allowed| allowed == uri)
    }

    /// Reads the profile with the access token, per kind, merged over what the ID
    /// token said. `form_user` is Apple's first-sign-in `user` field. Safe to retry.
    pub async fn fetch_profile(
        &self,
        tokens: &TokenSet,
        from_id_token: Option<&Profile>,
        form_user: Option<&str>,
    ) -> Result<Profile, ProviderError> {
        let endpoints = self.endpoints().await?;
        let access_token = tokens.access_token.expose_secret();
        match self.kind {
            ProviderKind::Apple => {
                let id = from_id_token
                    .ok_or_else(|| ProviderError::Profile("Apple sent no ID token".into()))?;
                Ok(profile::from_apple(id, form_user))
            }
            ProviderKind::Facebook => self.facebook_me(access_token).await,
            ProviderKind::Github => {
                let url = self.userinfo_url(&endpoints)?;
                let user = self.get_json(url, access_token).await?;
                let emails_url =
                    Url::parse(&format!("{}/emails", url.as_str().trim_end_matches('/')))
                        .map_err(|e| ProviderError::Profile(e.to_string()))?;
                // Without the user:email scope this is 404; fall back to the public email.
                let emails = self.get_json(&emails_url, access_token).await.ok();
                profile::from_github(&user, emails.as_ref())
            }
            ProviderKind::Oauth2 => {
                let json = self
                    .get_json(self.userinfo_url(&endpoints)?, access_token)
                    .await?;
                profile::from_pointers(&json, &self.claims)
            }
            ProviderKind::Google | ProviderKind::Oidc | ProviderKind::Demo => {
                if let Some(profile) = from_id_token
                    && self.userinfo == UserinfoMode::WhenNeeded
                    && profile.is_enough_for_a_user()
                {
                    return Ok(profile.clone());
                }
                let Some(url) = &endpoints.userinfo_url else {
                    return from_id_token.cloned().ok_or_else(|| {
                        ProviderError::Profile("no userinfo endpoint and no ID token".into())
                    });
                };
                let json = self.get_json(url, access_token).await?;
                profile::from_userinfo(self.kind, &json, from_id_token)
            }
        }
    }

    fn userinfo_url<'a>(&self, endpoints: &'a Endpoints) -> Result<&'a Url, ProviderError> {
        endpoints
            .userinfo_url
            .as_ref()
            .ok_or_else(|| ProviderError::Discovery("no userinfo_url configured".into()))
    }

    /// GET a JSON document with the access token; non-200 is a profile error.
    async fn get_json(
        &self,
        url: &Url,
        access_token: &str,
    ) -> Result<serde_json::Value, ProviderError> {
        self.get_json_as("userinfo", url, access_token, |_| None)
            .await
    }

    /// GET a JSON document with `token`, timed as `endpoint`; a non-200 answer is
    /// the error `error_of` reads from its body, else a profile error.
    async fn get_json_as(
        &self,
        endpoint: &'static str,
        url: &Url,
        token: &str,
        error_of: impl FnOnce(&[u8]) -> Option<ProviderError>,
    ) -> Result<serde_json::Value, ProviderError> {
        let response = self
            .timed(endpoint, self.http.get_json(url, Some(token)))
            .await?;
        if response.status() != 200 {
            return Err(error_of(response.body()).unwrap_or_else(|| {
                ProviderError::Profile(format!(
                    "{} answered HTTP {}",
                    url.path(),
                    response.status()
                ))
            }));
        }
        serde_json::from_slice(response.body())
            .map_err(|e| ProviderError::Profile(format!("{} is not JSON: {e}", url.path())))
    }

    /// How long one request to this provider may take at most (`timeout`).
    pub fn request_timeout(&self) -> Duration {
        self.http.timeout()
    }

    /// Resolves the endpoints now (discovery, once), so that the next provider call
    /// sends nothing but its own request.
    pub async fn prepare(&self) -> Result<(), ProviderError> {
        self.endpoints().await.map(drop)
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
        let metadata = match (&self.configured_issuer, self.is_oidc()) {
            (Some(issuer), true)
                if o.authorize_url.is_none() || o.token_url.is_none() || o.jwks_url.is_none() =>
            {
                Some(
                    self.timed("discovery", discovery::discover(&self.http, issuer))
                        .await?,
                )
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
        let auth_type = if matches!(
            self.kind,
            ProviderKind::Apple | ProviderKind::Facebook | ProviderKind::Github
        ) {
            // These expect client_id and client_secret in the form body.
            AuthType::RequestBody
        } else if !methods.is_empty()
            && !methods.iter().any(|m| m == "client_secret_basic")
            && methods.iter().any(|m| m == "client_secret_post")
        {
            AuthType::RequestBody
        } else {
            AuthType::BasicAuth
        };
        Ok(Endpoints {
            issuer: match &metadata {
                Some(m) => Some(m.issuer.clone()),
                None => self
                    .configured_issuer
                    .as_ref()
                    .map(|i| i.as_str().to_owned()),
            },
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
            sends_iss: metadata
                .as_ref()
                .is_some_and(|m| m.authorization_response_iss_parameter_supported),
            signing_algs: metadata
                .map(|m| m.id_token_signing_alg_values_supported)
                .unwrap_or_default(),
        })
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
