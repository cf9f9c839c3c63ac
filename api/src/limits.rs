//! Abuse limits: keyed token buckets (governor) per IP address (IPv6: per /64) and
//! per account, answered with 429 and `Retry-After`, kept in memory per api
//! instance; caps on pending operations (`pending`); and the long-poll slots.

mod address;
mod pending;

use std::{net::IpAddr, num::NonZeroU32};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use tokio::sync::{Semaphore, SemaphorePermit};
use worker::config::LimitSettings;

pub use address::{client_key, client_network};
pub use pending::{PendingCaps, RETRY_AFTER_SECS, Refused};

/// Every limiter of the api.
pub struct Limits {
    login_per_ip: DefaultKeyedRateLimiter<IpAddr>,
    login_per_account: DefaultKeyedRateLimiter<String>,
    sign_in_starts: Option<DefaultKeyedRateLimiter<IpAddr>>,
    callbacks: Option<DefaultKeyedRateLimiter<IpAddr>>,
    status_polls: Option<DefaultKeyedRateLimiter<IpAddr>>,
    registrations: Option<DefaultKeyedRateLimiter<IpAddr>>,
    native_sign_ins: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Caps on pending operations per browser, per client address and in all.
    pub pending: PendingCaps,
    /// `limits.concurrent_long_polls` slots; `None` when uncapped.
    long_polls: Option<Semaphore>,
}

/// How long a status poll that found every long-poll slot taken should wait
/// before asking again (its `Retry-After`).
pub const LONG_POLL_RETRY_AFTER_SECS: u64 = 2;

/// A spent budget: retry after this many seconds. Becomes a 429 JSON error or a
/// 429 page (`crate::error`), both with `Retry-After`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimited {
    pub retry_after: u64,
}

impl RateLimited {
    fn until(not_until: governor::NotUntil<governor::clock::QuantaInstant>) -> Self {
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        Self {
            retry_after: wait.as_secs().max(1),
        }
    }
}

/// A per-IP budget of the browser flow, each `limits.*_per_ip_per_minute`.
#[derive(Debug, Clone, Copy)]
pub enum IpBudget {
    SignInStart,
    Callback,
    StatusPoll,
    Registration,
    NativeSignIn,
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
            sign_in_starts: per_minute(settings.sign_in_starts_per_ip_per_minute),
            callbacks: per_minute(settings.callbacks_per_ip_per_minute),
            status_polls: per_minute(settings.status_polls_per_ip_per_minute),
            registrations: per_minute(settings.registrations_per_ip_per_minute),
            native_sign_ins: per_minute(settings.native_sign_ins_per_ip_per_minute),
            pending: PendingCaps::new(settings),
            long_polls: (settings.concurrent_long_polls > 0)
                .then(|| Semaphore::new(settings.concurrent_long_polls as usize)),
        }
    }

    /// Drops the state of addresses whose budgets are full again, so the maps do not
    /// grow with every address ever seen. Called every minute.
    pub fn forget_idle(&self) {
        self.login_per_ip.retain_recent();
        self.login_per_account.retain_recent();
        for limiter in [
            &self.sign_in_starts,
            &self.callbacks,
            &self.status_polls,
            &self.registrations,
            &self.native_sign_ins,
        ]
        .into_iter()
        .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Spends one request of `budget` for the client of `req`; [`RateLimited`] when
    /// spent. A budget set to 0 costs nothing, not even finding the client address.
    pub fn check(&self, budget: IpBudget, req: &poem::Request) -> Result<(), RateLimited> {
        let limiter = match budget {
            IpBudget::SignInStart => &self.sign_in_starts,
            IpBudget::Callback => &self.callbacks,
            IpBudget::StatusPoll => &self.status_polls,
            IpBudget::Registration => &self.registrations,
            IpBudget::NativeSignIn => &self.native_sign_ins,
        };
        let (Some(limiter), Some(ip)) = (limiter, limiter.as_ref().and(client_ip(req))) else {
            return Ok(());
        };
        limiter.check_key(&client_network(ip)).map_err(|not_until| {
            metrics::counter!("signin_rate_limited_total", "budget" => budget.label()).increment(1);
            RateLimited::until(not_until)
        })
    }

    /// One password attempt from `ip` for the account `email`.
    pub fn check_login(&self, ip: Option<IpAddr>, email: &str) -> Result<(), RateLimited> {
        if let Some(ip) = ip {
            self.login_per_ip
                .check_key(&client_network(ip))
                .map_err(RateLimited::until)?;
        }
        self.login_per_account
            .check_key(&email.to_lowercase())
            .map_err(RateLimited::until)
    }
}

impl Limits {
    /// A slot to hold a status request open while it waits; `None` when all
    /// `limits.concurrent_long_polls` are taken (then answer at once). Freed on drop.
    pub fn hold_long_poll(&self) -> Option<LongPollSlot<'_>> {
        match &self.long_polls {
            None => Some(LongPollSlot(None)),
            Some(slots) => slots.try_acquire().ok().map(|p| LongPollSlot(Some(p))),
        }
    }

    /// How many long-poll slots are free; `None` when uncapped.
    pub fn long_poll_slots_free(&self) -> Option<usize> {
        self.long_polls.as_ref().map(Semaphore::available_permits)
    }
}

/// A held long-poll slot.
#[derive(Debug)]
pub struct LongPollSlot<'a>(
    // Held for its drop, which frees the slot.
    #[allow(dead_code)] Option<SemaphorePermit<'a>>,
);

impl IpBudget {
    fn label(self) -> &'static str {
        match self {
            Self::SignInStart => "sign_in_start",
            Self::Callback => "callback",
            Self::StatusPoll => "status_poll",
            Self::Registration => "registration",
            Self::NativeSignIn => "native_sign_in",
        }
    }
}

/// A per-minute keyed limiter allowing bursts of the whole minute's budget; `None`
/// for 0 (off).
fn per_minute(n: u32) -> Option<DefaultKeyedRateLimiter<IpAddr>> {
    NonZeroU32::new(n).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

/// The client's address: the peer, or, when the peer is one of `trusted_proxies`,
/// the right-most `X-Forwarded-For` entry that is not a trusted proxy (entries to
/// its left are whatever the client claimed).
pub fn client_ip(req: &poem::Request) -> Option<IpAddr> {
    let peer = req.remote_addr().as_socket_addr()?.ip();
    let Some(state) = req.data::<crate::state::AppState>() else {
        return Some(peer);
    };
    if !state.settings.is_trusted_proxy(peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev().take(16) {
        match hop.parse::<IpAddr>() {
            Ok(ip) if state.settings.is_trusted_proxy(ip) => {}
            Ok(ip) => return Some(ip),
            // A malformed entry: trust nothing further left.
            Err(_) => return Some(peer),
        }
    }
    Some(peer)
}
