//! What several api instances share through Redis (`redis_url`): request budgets
//! ([`budgets`]) and a cache of session lookups ([`sessions`]). Redis is optional and
//! never the authority: when it does not answer in `redis.timeout`, budgets fall back
//! to the instance's own counters and session checks to the database, the log says
//! so once, and `signin_redis_fallbacks_total` counts every request that fell back.

pub mod budgets;
pub mod sessions;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::ExposeSecret;
use worker::config::Settings;

/// After a failed command, Redis is not asked again for this long: a dead or
/// black-holed server costs one timeout per second, not one per request.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// What a Redis command was for, as the metric's `use` label.
#[derive(Debug, Clone, Copy)]
pub enum Use {
    Budgets,
    Sessions,
}

impl Use {
    fn label(self) -> &'static str {
        match self {
            Use::Budgets => "budgets",
            Use::Sessions => "sessions",
        }
    }
}

/// The shared Redis, cheap to clone. `None` in [`crate::state::AppState`] when
/// `redis_url` is not set.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    timeout: Duration,
    session_ttl: Duration,
    key_prefix: String,
    started: Instant,
    /// Milliseconds since `started` before which Redis is not asked.
    paused_until: AtomicU64,
    /// Whether the last command failed (to log changes, not every request).
    failing: AtomicBool,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redis")
    }
}

impl Redis {
    /// The shared Redis of `settings`, if `redis_url` is set. Connects lazily and
    /// reconnects by itself, so an api starts (and serves) while Redis is down.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Option<Self>> {
        let Some(url) = &settings.redis_url else {
            return Ok(None);
        };
        let client = redis::Client::open(url.expose_secret())
            .map_err(|e| anyhow::anyhow!("redis_url: {e}"))?;
        let timeout = settings.redis.timeout;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| anyhow::anyhow!("redis_url: {e}"))?;
        tracing::info!(
            session_cache_ttl = ?settings.redis.session_cache_ttl,
            timeout = ?timeout,
            "shared budgets and session cache in Redis"
        );
        Ok(Some(Self {
            inner: Arc::new(Inner {
                conn,
                timeout,
                session_ttl: settings.redis.session_cache_ttl,
                key_prefix: settings.redis.key_prefix.clone(),
                started: Instant::now(),
                paused_until: AtomicU64::new(0),
                failing: AtomicBool::new(false),
            }),
        }))
    }

    /// How long a session lookup stays cached (`redis.session_cache_ttl`).
    pub fn session_ttl(&self) -> Duration {
        self.inner.session_ttl
    }

    /// `name` under `redis.key_prefix`.
    pub fn key(&self, name: std::fmt::Arguments<'_>) -> String {
        format!("{}{name}", self.inner.key_prefix)
    }

    /// Runs one command (or script) on the connection, bounded by `redis.timeout`;
    /// `None` when Redis is paused after a failure or fails now (then the caller
    /// falls back and the fallback is counted).
    pub async fn run<T, F, Fut>(&self, why: Use, command: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let inner = &self.inner;
        if self.elapsed_ms() < inner.paused_until.load(Ordering::Relaxed) {
            fell_back(why);
            return None;
        }
        let outcome = tokio::time::timeout(inner.timeout, command(inner.conn.clone())).await;
        match outcome {
            Ok(Ok(value)) => {
                if inner.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("Redis answers again: shared budgets and session cache back on");
                    metrics::gauge!("signin_redis_up").set(1.0);
                }
                Some(value)
            }
            Ok(Err(error)) => {
                self.failed(why, &error.to_string());
                None
            }
            Err(_) => {
                self.failed(why, "timed out");
                None
            }
        }
    }

    fn failed(&self, why: Use, error: &str) {
        let inner = &self.inner;
        let resume = self.elapsed_ms() + PAUSE_AFTER_FAILURE.as_millis() as u64;
        inner.paused_until.store(resume, Ordering::Relaxed);
        if !inner.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error,
                "Redis unreachable: budgets fall back to this instance's counters and session checks to the database"
            );
            metrics::gauge!("signin_redis_up").set(0.0);
        }
        fell_back(why);
    }

    fn elapsed_ms(&self) -> u64 {
        self.inner.started.elapsed().as_millis() as u64
    }
}

fn fell_back(why: Use) {
    metrics::counter!("signin_redis_fallbacks_total", "use" => why.label()).increment(1);
}
