//! The [`ProviderRegistry`]: every configured provider resolved once at start, from
//! its preset and the configuration's overrides.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::Context;
use secrecy::SecretString;
use tokio::sync::OnceCell;

use super::{Overrides, Provider, apple, http::ProviderHttp, is_loopback, presets};
use crate::config::{ProviderKind, ProviderSettings, Settings};

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
            let preset = presets::preset(kind, settings.public_base(), &config);
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
            let apple = match kind {
                ProviderKind::Apple => Some(apple_secret(&name, &config)?),
                _ => None,
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
                configured_issuer: config.issuer.clone().or(preset.issuer),
                scopes: config
                    .scopes
                    .clone()
                    .unwrap_or_else(|| preset.scopes.iter().map(|s| (*s).to_owned()).collect()),
                redirect_uri: settings.redirect_uri(&name),
                hd: config.hd.clone().filter(|_| kind == ProviderKind::Google),
                overrides: Overrides {
                    authorize_url: config.authorize_url.clone().or(preset.authorize_url),
                    token_url: config.token_url.clone().or(preset.token_url),
                    userinfo_url: config.userinfo_url.clone().or(preset.userinfo_url),
                    jwks_url: config.jwks_url.clone().or(preset.jwks_url),
                },
                apple,
                claims: config.claims.clone(),
                native_client_ids: config.native_client_ids.clone(),
                native_redirect_uris: config.native_redirect_uris.clone(),
                graph_base: preset.graph_base,
                one_tap: config.one_tap,
                userinfo: config.userinfo,
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

/// Loads Apple's signing key from `private_key` or `private_key_file`.
fn apple_secret(name: &str, config: &ProviderSettings) -> anyhow::Result<apple::AppleSecret> {
    let pem = match (&config.private_key, &config.private_key_file) {
        (Some(pem), _) => pem.clone(),
        (None, Some(path)) => {
            SecretString::from(std::fs::read_to_string(path).with_context(|| {
                format!(
                    "providers.{name}.private_key_file: cannot read {}",
                    path.display()
                )
            })?)
        }
        (None, None) => anyhow::bail!("providers.{name}.private_key: required for kind apple"),
    };
    apple::AppleSecret::new(
        config.team_id.as_deref().unwrap_or_default(),
        config.key_id.as_deref().unwrap_or_default(),
        &pem,
    )
    .with_context(|| format!("providers.{name}"))
}
