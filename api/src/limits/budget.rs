//! One keyed budget: counted in Redis when the instances share one (`redis_url`),
//! else, or when Redis does not answer, in this instance's own limiter.

use std::{hash::Hash, num::NonZeroU32};

use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};

use super::RateLimited;
use crate::shared::budgets::SharedBudgets;

/// A budget of `quota` per key, named `name` in Redis.
pub struct Budget<K: Hash + Eq + Clone> {
    name: &'static str,
    quota: Quota,
    local: DefaultKeyedRateLimiter<K>,
}

impl<K: Hash + Eq + Clone> Budget<K> {
    pub fn new(name: &'static str, quota: Quota) -> Self {
        Self {
            name,
            quota,
            local: RateLimiter::keyed(quota),
        }
    }

    /// A per-minute budget allowing bursts of the whole minute's; `None` for 0 (off).
    pub fn per_minute(name: &'static str, n: u32) -> Option<Self> {
        NonZeroU32::new(n).map(|n| Self::new(name, Quota::per_minute(n)))
    }

    /// Spends one request for `key` (`shared_key` is its name in Redis).
    pub async fn spend(
        &self,
        shared: Option<&SharedBudgets>,
        key: &K,
        shared_key: impl FnOnce() -> String,
    ) -> Result<(), RateLimited> {
        if let Some(shared) = shared
            && let Some(wait) = shared.spend(self.name, &shared_key(), &self.quota).await
        {
            return if wait.is_zero() {
                Ok(())
            } else {
                Err(RateLimited::after(wait))
            };
        }
        self.local.check_key(key).map_err(|not_until| {
            RateLimited::after(not_until.wait_time_from(DefaultClock::default().now()))
        })
    }

    /// Drops the in-process state of keys whose budgets are full again.
    pub fn forget_idle(&self) {
        self.local.retain_recent();
        self.local.shrink_to_fit();
    }
}
