//! `providers.<name>.*` keys: which provider, its endpoints and credentials, and how
//! its profile is read.

use std::{fmt, time::Duration};

use anyhow::bail;
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

/// The kinds of provider the registry knows how to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Google,
    Facebook,
    Github,
    Apple,
    Oidc,
    Oauth2,
    Demo,
}

impl ProviderKind {
    /// The kind a provider name implies when `kind` is not given.
    pub fn preset_for(name: &str) -> Option<Self> {
        match name {
            "google" => Some(Self::Google),
            "facebook" => Some(Self::Facebook),
            "github" => Some(Self::Github),
            "apple" => Some(Self::Apple),
            "demo" => Some(Self::Demo),
            _ => None,
        }
    }

    /// OpenID Connect kinds validate an ID token and send a `nonce`.
    pub fn is_oidc(self) -> bool {
        matches!(self, Self::Google | Self::Apple | Self::Oidc)
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Google => "google",
            Self::Facebook => "facebook",
            Self::Github => "github",
            Self::Apple => "apple",
            Self::Oidc => "oidc",
            Self::Oauth2 => "oauth2",
            Self::Demo => "demo",
        })
    }
}

/// `providers.<name>.*` keys. Everything but the credentials has a preset default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// `google`, `facebook`, `github`, `oidc`, `oauth2`, `demo`; defaults to the name
    /// when the name is a preset.
    pub kind: Option<ProviderKind>,
    /// From the provider's console. Numeric ids (Facebook) are accepted.
    #[serde(default, deserialize_with = "super::string_or_number")]
    pub client_id: Option<String>,
    #[serde(default, deserialize_with = "super::secret_string_or_number")]
    pub client_secret: Option<SecretString>,
    /// A file holding `client_secret`.
    pub client_secret_file: Option<std::path::PathBuf>,
    /// OIDC issuer; discovery at `{issuer}/.well-known/openid-configuration`. Kept
    /// as written (a trailing `/` matters: it is part of the issuer identifier).
    pub issuer: Option<openidconnect::IssuerUrl>,
    /// Requested scopes, as a list or a space-separated string.
    #[serde(default, deserialize_with = "super::scopes")]
    pub scopes: Option<Vec<String>>,
    pub authorize_url: Option<Url>,
    pub token_url: Option<Url>,
    pub userinfo_url: Option<Url>,
    pub jwks_url: Option<Url>,
    /// Button label. Default: the preset's, else the name.
    pub display_name: Option<String>,
    /// Bound on each request to the provider. Default `10s`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Google: only accept accounts of this Google Workspace domain (`hd`).
    pub hd: Option<String>,
    /// Apple: the team id of the developer account.
    pub team_id: Option<String>,
    /// Apple: the id of the Sign in with Apple key.
    pub key_id: Option<String>,
    /// Apple: the `.p8` private key (PEM text)…
    #[serde(default, deserialize_with = "super::secret_string_or_number")]
    pub private_key: Option<SecretString>,
    /// …or the path of the `.p8` file.
    pub private_key_file: Option<std::path::PathBuf>,
    /// `oauth2`: JSON pointers into the userinfo document.
    #[serde(default)]
    pub claims: ClaimPointers,
    /// Native apps: other client ids (iOS, Android) whose ID tokens are accepted by
    /// `POST /api/auth/{provider}/token`.
    #[serde(default)]
    pub native_client_ids: Vec<String>,
    /// Native apps: redirect URIs an app may have used for the code it exchanges.
    #[serde(default)]
    pub native_redirect_uris: Vec<String>,
    /// OpenID Connect kinds: when to read the userinfo endpoint.
    #[serde(default)]
    pub userinfo: UserinfoMode,
    /// Facebook: the Graph API's base URL, for the token endpoint, `/me` and
    /// `debug_token`. Default `https://graph.facebook.com`.
    pub graph_url: Option<Url>,
    /// Facebook: the Graph API version in every Graph and dialog URL (Meta retires
    /// each version about two years after the next one is out). Default
    /// [`FACEBOOK_GRAPH_VERSION`].
    pub graph_version: Option<String>,
    /// Google: show the "Sign in with Google" button and One Tap prompt on the index
    /// page, posting to `/auth/{name}/one-tap`.
    #[serde(default)]
    pub one_tap: bool,
}

/// The Graph API version the Facebook preset uses unless `graph_version` says
/// otherwise: v24.0, released October 2025.
pub const FACEBOOK_GRAPH_VERSION: &str = "v24.0";

/// When an OpenID Connect sign-in reads the userinfo endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserinfoMode {
    /// Only when the verified ID token lacks what the user record needs: an email
    /// the provider marks verified, and a name. Saves a provider round trip per
    /// sign-in with providers (Google among them) whose ID tokens carry both.
    #[default]
    WhenNeeded,
    /// Always, for providers whose userinfo says more than their ID token (a
    /// picture, an up-to-date name).
    Always,
}

/// Where the generic `oauth2` kind finds each profile field in the userinfo JSON
/// (RFC 6901 pointers). Defaults fit most providers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimPointers {
    pub subject: String,
    pub email: String,
    pub email_verified: String,
    pub first_name: String,
    pub last_name: String,
    pub display_name: String,
    pub avatar_url: String,
}

impl Default for ClaimPointers {
    fn default() -> Self {
        Self {
            subject: "/id".to_owned(),
            email: "/email".to_owned(),
            email_verified: "/email_verified".to_owned(),
            first_name: "/given_name".to_owned(),
            last_name: "/family_name".to_owned(),
            display_name: "/name".to_owned(),
            avatar_url: "/picture".to_owned(),
        }
    }
}

impl ClaimPointers {
    /// Every pointer with its key, for validation.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("subject", self.subject.as_str()),
            ("email", self.email.as_str()),
            ("email_verified", self.email_verified.as_str()),
            ("first_name", self.first_name.as_str()),
            ("last_name", self.last_name.as_str()),
            ("display_name", self.display_name.as_str()),
            ("avatar_url", self.avatar_url.as_str()),
        ]
        .into_iter()
    }
}

/// `v{major}.{minor}`, as Graph API versions are written.
fn is_graph_version(version: &str) -> bool {
    version.strip_prefix('v').is_some_and(|rest| {
        rest.split_once('.').is_some_and(|(major, minor)| {
            [major, minor]
                .iter()
                .all(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
        })
    })
}

impl ProviderSettings {
    /// The resolved kind: explicit, or implied by a preset name.
    pub fn resolved_kind(&self, name: &str) -> Option<ProviderKind> {
        self.kind.or_else(|| ProviderKind::preset_for(name))
    }

    pub(super) fn validate(&self, name: &str) -> anyhow::Result<()> {
        let valid_name = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid_name {
            bail!("providers.{name}: names are 1-32 lower-case letters, digits, `-` or `_`");
        }
        let Some(kind) = self.resolved_kind(name) else {
            bail!(
                "providers.{name}.kind: required (google, facebook, github, apple, oidc, oauth2 or demo)"
            );
        };
        match kind {
            ProviderKind::Oidc if self.issuer.is_none() => {
                bail!("providers.{name}.issuer: required for kind oidc")
            }
            ProviderKind::Oauth2 => {
                for (key, value) in [
                    ("authorize_url", &self.authorize_url),
                    ("token_url", &self.token_url),
                    ("userinfo_url", &self.userinfo_url),
                ] {
                    if value.is_none() {
                        bail!("providers.{name}.{key}: required for kind oauth2");
                    }
                }
                for (key, pointer) in self.claims.iter() {
                    if !pointer.is_empty() && !pointer.starts_with('/') {
                        bail!("providers.{name}.claims.{key}: a JSON pointer starts with `/`");
                    }
                }
            }
            ProviderKind::Apple => {
                for (key, value) in [("team_id", &self.team_id), ("key_id", &self.key_id)] {
                    if value.as_deref().is_none_or(str::is_empty) {
                        bail!("providers.{name}.{key}: required for kind apple");
                    }
                }
                if self.private_key.is_none() && self.private_key_file.is_none() {
                    bail!(
                        "providers.{name}.private_key: required for kind apple (or private_key_file)"
                    );
                }
            }
            _ => {}
        }
        if kind != ProviderKind::Demo {
            if self.client_id.as_deref().is_none_or(str::is_empty) {
                bail!("providers.{name}.client_id: required");
            }
            // Apple's secret is a JWT made from the private key.
            if self.client_secret.is_none() && kind != ProviderKind::Apple {
                bail!("providers.{name}.client_secret: required");
            }
        }
        if (self.graph_url.is_some() || self.graph_version.is_some())
            && kind != ProviderKind::Facebook
        {
            bail!("providers.{name}.graph_url, .graph_version: only for kind facebook");
        }
        if let Some(version) = &self.graph_version
            && !is_graph_version(version)
        {
            bail!("providers.{name}.graph_version: a version like {FACEBOOK_GRAPH_VERSION}");
        }
        if self.one_tap && kind != ProviderKind::Google {
            bail!("providers.{name}.one_tap: only for kind google");
        }
        if let Some(timeout) = self.timeout {
            if timeout.is_zero() || timeout > Duration::from_secs(120) {
                bail!("providers.{name}.timeout: must be between 1ms and 120s");
            }
        }
        Ok(())
    }
}
