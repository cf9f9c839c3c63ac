//! `Settings`: every key of SPEC §Configuration, loaded from defaults, then a TOML
//! file, then `SIGNIN_*` environment variables (`__` nests). Invalid configuration
//! stops start-up with a message naming the key.

use std::{collections::BTreeMap, net::SocketAddr, path::Path, time::Duration};

use anyhow::{Context, bail};
use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use url::Url;

mod cors;
mod limits;
mod metrics;
mod providers;
mod redis;
mod retention;
mod secret_files;
mod sizing;
mod tokens;
pub use cors::CorsSettings;
pub use limits::LimitSettings;
pub use metrics::MetricsSettings;
pub use providers::{
    ClaimPointers, FACEBOOK_GRAPH_VERSION, ProviderKind, ProviderSettings, UserinfoMode,
};
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
mod tests;
