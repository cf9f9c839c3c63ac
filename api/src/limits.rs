//! Abuse limits: keyed token buckets (governor) per IP address and per account,
//! answered with 429 and `Retry-After`. Kept in memory per api instance.

use std::{net::IpAddr, num::NonZeroU32, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use worker::config::LimitSettings;

use crate::error::ApiError;

/// Every limiter of the api.
pub struct Limits {
    login_per_ip: DefaultKeyedRateLimiter<IpAddr>,
    login_per_account: DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Limits")
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("at least 1")
}

impl Limits {
    /// From `limits.*`.
    pub fn new(settings: &LimitSettings) -> Self {
        Self {
            login_per_ip: RateLimiter::keyed(Quota::per_minute(nonzero(
                settings.login_per_ip_per_minute,
            ))),
            login_per_account: RateLimiter::keyed(Quota::per_hour(nonzero(
                settings.login_per_account_per_hour,
            ))),
        }
    }

    /// One password attempt from `ip` for the account `email`.
    pub fn check_login(&self, ip: Option<IpAddr>, email: &str) -> Result<(), ApiError> {
        if let Some(ip) = ip {
            self.login_per_ip.check_key(&ip).map_err(|not_until| {
                too_many(not_until.wait_time_from(governor::clock::DefaultClock::default().now()))
            })?;
        }
        self.login_per_account
            .check_key(&email.to_lowercase())
            .map_err(|not_until| {
                too_many(not_until.wait_time_from(governor::clock::DefaultClock::default().now()))
            })
    }
}

fn too_many(wait: Duration) -> ApiError {
    ApiError::TooManyRequests {
        retry_after: wait.as_secs().max(1),
    }
}
