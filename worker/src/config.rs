//! `Settings`: every key of SPEC §Configuration, loaded from defaults, then a TOML
//! file, then `SIGNIN_*` environment variables (`__` nests). Invalid configuration
//! stops start-up with a message naming the key.

use std::{collections::BTreeMap, fmt, net::SocketAddr, path::Path, time::Duration};

use anyhow::{Context, bail};
use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use url::Url;

mod cors;
mod metrics;
mod redis;
mod retention;
mod secret_files;
mod sizing;
mod tokens;
pub use cors::CorsSettings;
pub use metrics::MetricsSettings;
pub use redis::RedisSettings;
pub use retention::RetentionSettings;
pub use sizing::{DEFAULT_CONCURRENCY, DatabaseSettings, Process, WorkerSettings};
pub use tokens::TokenSettings;

/// The whole configuration of `api` and `worker`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the api listens on. Default `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// External base URL; redirect URIs are `{public_url}/auth/{provider}/callback`.
    /// Default `http://127.0.0.1:8080`. A port of 0 follows the port `api` bound (tests).
    #[serde(default = "default_public_url")]
    pub public_url: Url,
    /// `sqlite:` or `postgres:`; the job queue lives in the same database.
    /// Default `sqlite://signin.db?mode=rwc`.
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// Signs and encrypts cookies, encrypts provider tokens, signs access tokens. When
    /// absent a development key is generated and saved beside the SQLite file.
    #[serde(default, deserialize_with = "secret_string_or_number")]
    pub secret_key: Option<SecretString>,
    /// A file holding `secret_key` (container secrets, systemd credentials).
    pub secret_key_file: Option<std::path::PathBuf>,
    /// A file holding the password of `database_url`'s user.
    pub database_password_file: Option<std::path::PathBuf>,
    /// A file holding the password of `redis_url`.
    pub redis_password_file: Option<std::path::PathBuf>,
    /// Redis shared by several api instances (request budgets, session cache), e.g.
    /// `redis://127.0.0.1:6379/0`. Default: none (each instance keeps its own).
    #[serde(default)]
    pub redis_url: Option<SecretString>,
    /// How the api uses `redis_url`.
    #[serde(default)]
    pub redis: RedisSettings,
    /// The job consumer.
    #[serde(default)]
    pub worker: WorkerSettings,
    /// Connection pools.
    #[serde(default)]
    pub database: DatabaseSettings,
    /// Sign-in providers by lower-case name.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSettings>,
    /// An operation not finished by then ends in `error` (`timeout`). Default `60s`.
    #[serde(default = "default_operation_timeout", with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// Retired secret keys, still accepted to decrypt provider tokens stored before a
    /// rotation. Default: none.
    #[serde(default)]
    pub previous_secret_keys: Vec<SecretString>,
    /// Refuse sign-ins whose provider gives no email (`email_required`). Default false.
    #[serde(default)]
    pub require_email: bool,
    /// Access and refresh tokens of the JSON API.
    #[serde(default)]
    pub tokens: TokenSettings,
    /// Abuse limits.
    #[serde(default)]
    pub limits: LimitSettings,
    /// Logging.
    #[serde(default)]
    pub log: LogSettings,
    /// The audit log (`auth_event`).
    #[serde(default)]
    pub audit: AuditSettings,
    /// `api`'s metrics listener.
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// How long finished operations, ended sessions and spent refresh tokens stay.
    #[serde(default)]
    pub retention: RetentionSettings,
    /// Other origins allowed to call the JSON API from the browser.
    #[serde(default)]
    pub cors: CorsSettings,
    /// How long a browser session lasts without use. Default `14d`.
    #[serde(default = "default_session_lifetime", with = "humantime_serde")]
    pub session_lifetime: Duration,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is
    /// believed: the client is the right-most address not in this list. Default:
    /// none (the peer address is the client).
    #[serde(default)]
    pub trusted_proxies: Vec<ProxyNet>,
    /// How long any session (browser or app) lasts at most, however active: then
    /// the user signs in again. Default `90d`.
    #[serde(default = "default_session_max_lifetime", with = "humantime_serde")]
    pub session_max_lifetime: Duration,
}

/// `log.*` keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (default) or `json` (one object per line). The level comes from `RUST_LOG`.
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// One `trusted_proxies` entry: an address (`10.0.0.7`) or a range (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNet(pub ipnet::IpNet);

impl<'de> Deserialize<'de> for ProxyNet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let text = text.trim();
        text.parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map(ProxyNet)
            .map_err(|_| {
                serde::de::Error::custom(format!("`{text}` is not an IP address or CIDR range"))
            })
    }
}

/// `audit.*` keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// How long audit events are kept. Default `90d`.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// `limits.*` keys: per-client request budgets answered with 429 and `Retry-After`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Password sign-in attempts per IP address per minute. Default 20.
    pub login_per_ip_per_minute: u32,
    /// Password sign-in attempts per account per hour. Default 20.
    pub login_per_account_per_hour: u32,
    /// Browser sign-ins started (`/auth/{provider}/login`) per IP address per
    /// minute. Default 60; 0 turns the limit off.
    pub sign_in_starts_per_ip_per_minute: u32,
    /// Provider callbacks per IP address per minute. Default 60; 0 turns it off.
    pub callbacks_per_ip_per_minute: u32,
    /// Status polls (`/auth/status`, `/api/operations/{id}`) per IP address per
    /// minute. Default 600; 0 turns it off.
    pub status_polls_per_ip_per_minute: u32,
    /// Operations one browser may have pending at once. Default 5.
    pub pending_operations_per_browser: u32,
    /// Password accounts created per IP address per minute. Default 10; 0 turns
    /// the limit off.
    pub registrations_per_ip_per_minute: u32,
    /// Native token exchanges (`POST /api/auth/{provider}/token`) per IP address
    /// per minute. Default 60; 0 turns the limit off.
    pub native_sign_ins_per_ip_per_minute: u32,
    /// Operations one client address (IPv6: its /64) may have pending at once, from
    /// browser callbacks and native token exchanges together, whatever its cookies.
    /// Default 20 (an office behind one NAT); 0 turns the cap off.
    pub pending_operations_per_ip: u32,
    /// Operations pending at once in the whole queue; past it, new sign-ins get 503
    /// with `Retry-After` at once. Default 10000; 0 turns the cap off.
    pub pending_operations_total: u32,
    /// Status long polls (`?wait=N`) held open at once per api process; past it, a
    /// poll answers at once with `Retry-After`. Default 10000; 0 turns the cap off.
    pub concurrent_long_polls: u32,
    /// Argon2 hashes computed at once per api process (each takes a core and 19 MiB);
    /// a request that cannot start one within about a second gets 503 `busy`.
    /// Default: the number of CPU cores.
    pub password_hashing_concurrency: Option<u32>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            login_per_ip_per_minute: 20,
            login_per_account_per_hour: 20,
            sign_in_starts_per_ip_per_minute: 60,
            callbacks_per_ip_per_minute: 60,
            status_polls_per_ip_per_minute: 600,
            pending_operations_per_browser: 5,
            registrations_per_ip_per_minute: 10,
            native_sign_ins_per_ip_per_minute: 60,
            pending_operations_per_ip: 20,
            pending_operations_total: 10_000,
            concurrent_long_polls: 10_000,
            password_hashing_concurrency: None,
        }
    }
}

impl LimitSettings {
    /// `password_hashing_concurrency`, or the number of CPU cores.
    pub fn password_hashing_concurrency(&self) -> usize {
        self.password_hashing_concurrency
            .map(|n| n as usize)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

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
    #[serde(default, deserialize_with = "string_or_number")]
    pub client_id: Option<String>,
    #[serde(default, deserialize_with = "secret_string_or_number")]
    pub client_secret: Option<SecretString>,
    /// A file holding `client_secret`.
    pub client_secret_file: Option<std::path::PathBuf>,
    /// OIDC issuer; discovery at `{issuer}/.well-known/openid-configuration`. Kept
    /// as written (a trailing `/` matters: it is part of the issuer identifier).
    pub issuer: Option<openidconnect::IssuerUrl>,
    /// Requested scopes, as a list or a space-separated string.
    #[serde(default, deserialize_with = "scopes")]
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
    #[serde(default, deserialize_with = "secret_string_or_number")]
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

impl Settings {
    /// Layers defaults, the TOML file (`path`, else `signin.toml` when present) and
    /// `SIGNIN_*` variables, then validates.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
        match path {
            Some(path) => {
                if !path.exists() {
                    bail!("configuration file {} does not exist", path.display());
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new("signin.toml").exists() => {
                figment = figment.merge(Toml::file_exact("signin.toml"));
            }
            None => {}
        }
        Self::from_figment(figment.merge(signin_env()))
    }

    /// Settings from one figment (tests build their own), then validated.
    pub fn from_figment(figment: Figment) -> anyhow::Result<Self> {
        let mut settings: Self = figment
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {}", describe_figment_error(e)))?;
        settings.read_secret_files()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what serde cannot: names, URLs and kind-specific requirements.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !matches!(self.public_url.scheme(), "http" | "https") {
            bail!("public_url: must be an http or https URL");
        }
        // Over plain http, session cookies and authorization codes travel in clear.
        if self.public_url.scheme() == "http" && !crate::providers::is_loopback(&self.public_url) {
            bail!(
                "public_url: must be https (plain http is only allowed on loopback, for development); got {}",
                self.public_url
            );
        }
        if !(self.database_url.starts_with("sqlite:") || self.database_url.starts_with("postgres"))
        {
            bail!("database_url: must start with sqlite: or postgres:");
        }
        self.redis
            .validate(self.redis_url.as_ref().map(|url| url.expose_secret()))?;
        if let Some(key) = &self.secret_key {
            if key.expose_secret().len() < 32 {
                bail!("secret_key: must be at least 32 characters");
            }
        }
        if self
            .previous_secret_keys
            .iter()
            .any(|k| k.expose_secret().len() < 32)
        {
            bail!("previous_secret_keys: every key must be at least 32 characters");
        }
        self.tokens.validate()?;
        if self.limits.login_per_ip_per_minute == 0 || self.limits.login_per_account_per_hour == 0 {
            bail!("limits: login limits must be at least 1");
        }
        if self.limits.pending_operations_per_browser == 0 {
            bail!("limits.pending_operations_per_browser: must be at least 1");
        }
        if self.limits.password_hashing_concurrency == Some(0) {
            bail!("limits.password_hashing_concurrency: must be at least 1");
        }
        self.worker.validate()?;
        self.database.validate()?;
        if self.operation_timeout < Duration::from_secs(5)
            || self.operation_timeout > Duration::from_secs(3600)
        {
            bail!("operation_timeout: must be between 5s and 1h");
        }
        if self.session_max_lifetime < Duration::from_secs(3600) {
            bail!("session_max_lifetime: must be at least 1h");
        }
        if self.audit.retention < Duration::from_secs(3600) {
            bail!("audit.retention: must be at least 1h");
        }
        self.retention.validate()?;
        self.cors.validate()?;
        for (name, provider) in &self.providers {
            provider
                .validate(name)
                .with_context(|| format!("invalid provider `{name}`"))?;
        }
        Ok(())
    }

    /// The redirect URI registered with provider `name`.
    pub fn redirect_uri(&self, name: &str) -> String {
        format!("{}/auth/{name}/callback", self.public_base())
    }

    /// Whether `ip` is one of `trusted_proxies`.
    pub fn is_trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.0.contains(&ip))
    }

    /// `public_url` without a trailing slash.
    pub fn public_base(&self) -> &str {
        self.public_url.as_str().trim_end_matches('/')
    }

    /// Whether browser cookies must carry `Secure`.
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// Whether `database_url` names PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres")
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

    fn validate(&self, name: &str) -> anyhow::Result<()> {
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

/// `SIGNIN_*` variables, split on `__`, minus the ones meant for tests and the CLI.
fn signin_env() -> Env {
    Env::prefixed("SIGNIN_").split("__").filter(|key| {
        let key = key.as_str().to_ascii_lowercase();
        !key.starts_with("test_") && key != "config"
    })
}

/// Rewrites figment's error into `key: problem` form.
fn describe_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".").to_lowercase();
            let kind = e.kind.to_string();
            if key.is_empty() {
                kind
            } else {
                format!("{key}: {kind}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_public_url() -> Url {
    Url::parse("http://127.0.0.1:8080").expect("static URL")
}

fn default_database_url() -> String {
    "sqlite://signin.db?mode=rwc".to_owned()
}

fn default_operation_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_session_lifetime() -> Duration {
    Duration::from_secs(14 * 24 * 3600)
}

fn default_session_max_lifetime() -> Duration {
    Duration::from_secs(90 * 24 * 3600)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Unsigned(u64),
    Signed(i64),
}

impl StringOrNumber {
    fn into_string(self) -> String {
        match self {
            Self::String(s) => s,
            Self::Unsigned(n) => n.to_string(),
            Self::Signed(n) => n.to_string(),
        }
    }
}

/// figment parses `SIGNIN_..._CLIENT_ID=1234` as a number; Facebook app ids are numeric.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<StringOrNumber>::deserialize(d)?.map(StringOrNumber::into_string))
}

fn secret_string_or_number<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SecretString>, D::Error> {
    Ok(string_or_number(d)?.map(SecretString::from))
}

fn scopes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scopes {
        List(Vec<String>),
        Spaced(String),
    }
    Ok(Option::<Scopes>::deserialize(d)?.map(|s| match s {
        Scopes::List(list) => list,
        Scopes::Spaced(s) => s
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Serialized;

    fn load(toml: &str) -> anyhow::Result<Settings> {
        Settings::from_figment(Figment::new().merge(Toml::string(toml)))
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = load("").unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.public_base(), "http://127.0.0.1:8080");
        assert_eq!(s.database_url, "sqlite://signin.db?mode=rwc");
        assert!(s.worker.embedded);
        assert!(s.worker.concurrency >= 1);
        assert_eq!(s.operation_timeout, Duration::from_secs(60));
        assert!(s.providers.is_empty());
    }

    #[test]
    fn numeric_client_id_from_env_is_a_string() {
        let figment = Figment::new().merge(Serialized::default(
            "providers.corp",
            serde_json::json!({"kind": "oidc", "issuer": "https://id.example.com", "client_id": 1234567890u64, "client_secret": "s"}),
        ));
        let s = Settings::from_figment(figment).unwrap();
        assert_eq!(s.providers["corp"].client_id.as_deref(), Some("1234567890"));
    }

    #[test]
    fn oidc_without_issuer_names_the_key() {
        let err = load("[providers.corp]\nkind = 'oidc'\nclient_id = 'a'\nclient_secret = 'b'\n")
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("providers.corp.issuer"),
            "{err:#}"
        );
    }

    #[test]
    fn unknown_kind_names_the_key() {
        let err = load("[providers.corp]\nkind = 'ldap'\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("providers.corp.kind"),
            "{err:#}"
        );
    }

    #[test]
    fn plain_http_public_url_is_refused_unless_loopback() {
        let err = load("public_url = 'http://signin.example.com'\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("public_url: must be https"),
            "{err:#}"
        );
        for ok in [
            "https://signin.example.com",
            "http://127.0.0.1:8080",
            "http://localhost:3000",
        ] {
            load(&format!(
                "public_url = '{ok}'\nsecret_key = '{}'\n",
                "k".repeat(32)
            ))
            .unwrap_or_else(|e| panic!("{ok}: {e:#}"));
        }
    }

    #[test]
    fn bad_duration_names_the_key() {
        let err = load("operation_timeout = 'soon'\n").unwrap_err();
        assert!(format!("{err:#}").contains("operation_timeout"), "{err:#}");
    }

    #[test]
    fn scopes_accept_a_spaced_string() {
        let s = load("[providers.corp]\nkind='oidc'\nissuer='https://id.example.com'\nclient_id='a'\nclient_secret='b'\nscopes='openid email'\n").unwrap();
        assert_eq!(
            s.providers["corp"].scopes.as_deref().unwrap(),
            ["openid", "email"]
        );
    }

    #[test]
    fn test_and_cli_variables_are_not_configuration() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SIGNIN_TEST_POSTGRES_URL", "postgres://x");
            jail.set_env("SIGNIN_CONFIG", "other.toml");
            jail.set_env("SIGNIN_WORKER__CONCURRENCY", "3");
            let s = Settings::from_figment(Figment::new().merge(signin_env()))
                .map_err(|e| e.to_string())?;
            assert_eq!(s.worker.concurrency, 3);
            Ok(())
        });
    }

    #[test]
    fn short_secret_key_is_refused() {
        let err = load("secret_key = 'short'\n").unwrap_err();
        assert!(err.to_string().contains("secret_key"));
    }
}
