//! A cache of session lookups in Redis, for cookie and bearer checks on every
//! instance. The database stays the authority: an entry is only ever a copy of a
//! live row, read there moments before, and lives `redis.session_cache_ttl` at most.
//! Revocation writes the database first and then deletes the entries and leaves a
//! tombstone, which a concurrent fill (read from the database just before the
//! revocation committed) checks atomically, so it cannot put a revoked session back.
//! The user is never cached: a check reads it by id, so profile changes show at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::session;
use redis::Script;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Redis, Use};

/// How long a tombstone outlives the longest cache entry: room for a fill that
/// read the database before the revocation to arrive after it.
const TOMBSTONE_MARGIN: Duration = Duration::from_secs(60);
/// How often a revocation Redis did not take is tried again (until an entry it
/// should delete would have expired anyway).
const FORGET_RETRY: Duration = Duration::from_millis(200);

/// KEYS[1]: the entry, KEYS[2]: the session's tombstone. ARGV[1]: the entry,
/// ARGV[2]: its lifetime in milliseconds. Sets the entry unless the session was
/// revoked meanwhile.
const FILL: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// What a check needs of a live session row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedSession {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl From<&session::Model> for CachedSession {
    fn from(row: &session::Model) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            kind: row.kind.clone(),
            created_at: row.created_at,
            last_seen_at: row.last_seen_at,
            expires_at: row.expires_at,
        }
    }
}

/// How a request names its session.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    /// A browser's cookie, by the SHA-256 of its token (as the row stores it).
    Cookie(&'a str),
    /// An access token's `sid`.
    Bearer(Uuid),
}

impl Redis {
    fn entry_key(&self, lookup: Lookup<'_>) -> String {
        match lookup {
            Lookup::Cookie(token_hash) => self.key(format_args!("session:cookie:{token_hash}")),
            Lookup::Bearer(id) => self.key(format_args!("session:id:{id}")),
        }
    }

    fn tombstone_key(&self, id: Uuid) -> String {
        self.key(format_args!("session:revoked:{id}"))
    }
}

/// The session cache on the shared Redis.
#[derive(Debug, Clone)]
pub struct SessionCache {
    redis: Redis,
    fill: std::sync::Arc<Script>,
}

impl SessionCache {
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            fill: std::sync::Arc::new(Script::new(FILL)),
        }
    }

    /// The cached session of `lookup`, if any (none also when Redis fails: then the
    /// database answers).
    pub async fn get(&self, lookup: Lookup<'_>) -> Option<CachedSession> {
        let key = self.redis.entry_key(lookup);
        let entry: Option<String> = self
            .redis
            .run(Use::Sessions, |mut conn| async move {
                redis::cmd("GET").arg(&key).query_async(&mut conn).await
            })
            .await?;
        serde_json::from_str(&entry?).ok()
    }

    /// Caches `session`, just read live from the database, under `lookup`.
    pub async fn put(&self, lookup: Lookup<'_>, session: &CachedSession) {
        let left = (session.expires_at - Utc::now())
            .to_std()
            .unwrap_or_default();
        let ttl = self.redis.session_ttl().min(left).as_millis() as u64;
        if ttl == 0 {
            return;
        }
        let Ok(entry) = serde_json::to_string(session) else {
            return;
        };
        let (key, dead) = (
            self.redis.entry_key(lookup),
            self.redis.tombstone_key(session.id),
        );
        let fill = &self.fill;
        let _: Option<i64> = self
            .redis
            .run(Use::Sessions, |mut conn| async move {
                fill.key(&key)
                    .key(&dead)
                    .arg(&entry)
                    .arg(ttl)
                    .invoke_async(&mut conn)
                    .await
            })
            .await;
    }

    /// Forgets `revoked` sessions (already revoked in the database) on every
    /// instance. When Redis does not take it now, it is tried again in the
    /// background until any entry it should delete has expired by itself.
    pub async fn forget(&self, revoked: &[session::Model]) {
        if revoked.is_empty() {
            return;
        }
        let sessions: Vec<(Uuid, String)> = revoked
            .iter()
            .map(|row| (row.id, row.token_hash.clone()))
            .collect();
        if self.forget_now(&sessions).await {
            return;
        }
        let cache = self.clone();
        let tries = (self.redis.session_ttl().as_millis() / FORGET_RETRY.as_millis()).max(1);
        tokio::spawn(async move {
            for _ in 0..tries {
                tokio::time::sleep(FORGET_RETRY).await;
                if cache.forget_now(&sessions).await {
                    return;
                }
            }
            tracing::warn!(
                sessions = sessions.len(),
                "Redis never took a revocation; its cache entries expired by themselves"
            );
        });
    }

    async fn forget_now(&self, sessions: &[(Uuid, String)]) -> bool {
        let tombstone_ms = (self.redis.session_ttl() + TOMBSTONE_MARGIN).as_millis() as u64;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (id, token_hash) in sessions {
            pipe.cmd("SET")
                .arg(self.redis.tombstone_key(*id))
                .arg(1)
                .arg("PX")
                .arg(tombstone_ms)
                .ignore();
            pipe.del(self.redis.entry_key(Lookup::Bearer(*id))).ignore();
            pipe.del(self.redis.entry_key(Lookup::Cookie(token_hash)))
                .ignore();
        }
        self.redis
            .run(Use::Sessions, |mut conn| async move {
                pipe.query_async::<()>(&mut conn).await
            })
            .await
            .is_some()
    }
}
