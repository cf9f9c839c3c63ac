//! `redis_url` and `redis.*`: the optional Redis that several api instances share
//! for request budgets and a cache of session lookups. The database stays the
//! authority; Redis only makes the instances agree and spares it reads.

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

/// `redis.*` keys (used only when `redis_url` is set).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// How long a session lookup stays cached. Revocation deletes the entry at once;
    /// this bounds only how long a profile-independent session row may be reused
    /// when Redis could not be told of a revocation. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub session_cache_ttl: Duration,
    /// Bound on one Redis command; past it the api falls back (in-process budgets,
    /// the database for sessions). Default `250ms`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Put before every key, so deployments (or tests) can share one Redis.
    /// Default `signin:`.
    pub key_prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            session_cache_ttl: Duration::from_secs(10),
            timeout: Duration::from_millis(250),
            key_prefix: "signin:".to_owned(),
        }
    }
}

impl RedisSettings {
    pub(super) fn validate(&self, url: Option<&str>) -> anyhow::Result<()> {
        if let Some(url) = url
            && !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis+unix://")
                || url.starts_with("unix://"))
        {
            bail!("redis_url: must start with redis://, rediss:// or unix://");
        }
        if self.session_cache_ttl < Duration::from_secs(1)
            || self.session_cache_ttl > Duration::from_secs(300)
        {
            bail!("redis.session_cache_ttl: must be between 1s and 5m");
        }
        if self.timeout < Duration::from_millis(1) || self.timeout > Duration::from_secs(10) {
            bail!("redis.timeout: must be between 1ms and 10s");
        }
        if self.key_prefix.len() > 64 || self.key_prefix.chars().any(char::is_whitespace) {
            bail!("redis.key_prefix: at most 64 characters, no spaces");
        }
        Ok(())
    }
}
