//! Request budgets counted in Redis, so that N api instances allow the budget once,
//! not N times. The same algorithm as the in-process limiter (governor's GCRA: a
//! budget of `burst` requests refilled one every `interval`), run atomically by one
//! script per check on Redis's clock, so instances with skewed clocks agree.

use std::time::Duration;

use governor::Quota;
use redis::Script;

use super::{Redis, Use};

/// KEYS[1]: the budget's key. ARGV[1]: the refill interval in microseconds,
/// ARGV[2]: the burst. Returns 0 when the request may pass (and spends it), else the
/// microseconds until it may.
const GCRA: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then
  return tat - now - tolerance
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
return 0
";

/// The budgets' script on the shared Redis.
pub struct SharedBudgets {
    redis: Redis,
    script: Script,
}

impl SharedBudgets {
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            script: Script::new(GCRA),
        }
    }

    /// Spends one request of budget `name` (with `quota`) for `key`: how long to
    /// wait before it may pass (zero: it passed, and is spent), or `None` when Redis
    /// did not answer (the caller counts in process instead).
    pub async fn spend(&self, name: &str, key: &str, quota: &Quota) -> Option<Duration> {
        let redis_key = self.redis.key(format_args!("budget:{name}:{key}"));
        let interval = quota.replenish_interval().as_micros() as u64;
        let burst = quota.burst_size().get();
        let wait_us: u64 = self
            .redis
            .run(Use::Budgets, |mut conn| async move {
                self.script
                    .key(&redis_key)
                    .arg(interval)
                    .arg(burst)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Some(Duration::from_micros(wait_us))
    }
}
