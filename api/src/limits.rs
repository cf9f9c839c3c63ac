//! Abuse limits: keyed token buckets (governor) per IP address (IPv6: per /64) and
//! per account, answered with 429 and `Retry-After`, kept in memory per api
//! instance, or in Redis when the instances share one (`redis_url`); caps on pending
//! operations (`pending`); and the long-poll slots.

mod address;
mod budget;
mod pending;

use std::net::IpAddr;

use governor::Quota;
use tokio::sync::{Semaphore, SemaphorePermit};
use worker::config::LimitSettings;

pub use address::{client_key, client_network};
use budget::Budget;
pub use pending::{PendingCaps, RETRY_AFTER_SECS, Refused};

use crate::shared::{Redis, budgets::SharedBudgets};

/// Every limiter of the api.
pub struct Limits {
    login_per_ip: Budget<IpAddr>,
    login_per_account: Budget<String>,
    sign_in_starts: Option<Budget<IpAddr>>,
    callbacks: Option<Budget<IpAddr>>,
    status_polls: Option<Budget<IpAddr>>,
    registrations: Option<Budget<IpAddr>>,
    native_sign_ins: Option<Budget<IpAddr>>,
    /// The budgets in Redis, shared with the other api instances (`redis_url`).
    shared: Option<SharedBudgets>,
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
    /// Spent until `wait` has passed: whole seconds, rounded up (a client that
    /// retries after a rounded-down wait is refused again), at least 1.
    fn after(wait: std::time::Duration) -> Self {
        Self {
            retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
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

impl Limits {
    /// From `limits.*`; counted in `redis` when there is one.
    pub fn new(settings: &LimitSettings, redis: Option<Redis>) -> Self {
        let at_least_one = |n: u32| std::num::NonZeroU32::new(n.max(1)).expect("at least 1");
        let per_minute = |budget: IpBudget, n| Budget::per_minute(budget.label(), n);
        Self {
            login_per_ip: Budget::new(
                "login_per_ip",
                Quota::per_minute(at_least_one(settings.login_per_ip_per_minute)),
            ),
            login_per_account: Budget::new(
                "login_per_account",
                Quota::per_hour(at_least_one(settings.login_per_account_per_hour)),
            ),
            sign_in_starts: per_minute(
                IpBudget::SignInStart,
                settings.sign_in_starts_per_ip_per_minute,
            ),
            callbacks: per_minute(IpBudget::Callback, settings.callbacks_per_ip_per_minute),
            status_polls: per_minute(
                IpBudget::StatusPoll,
                settings.status_polls_per_ip_per_minute,
            ),
            registrations: per_minute(
                IpBudget::Registration,
                settings.registrations_per_ip_per_minute,
            ),
            native_sign_ins: per_minute(
                IpBudget::NativeSignIn,
                settings.native_sign_ins_per_ip_per_minute,
            ),
            shared: redis.map(SharedBudgets::new),
            pending: PendingCaps::new(settings),
            long_polls: (settings.concurrent_long_polls > 0)
                .then(|| Semaphore::new(settings.concurrent_long_polls as usize)),
        }
    }

    /// Drops the in-process state of addresses whose budgets are full again, so the
    /// maps do not grow with every address ever seen. Called every minute.
    pub fn forget_idle(&self) {
        self.login_per_ip.forget_idle();
        self.login_per_account.forget_idle();
        for budget in [
            &self.sign_in_starts,
            &self.callbacks,
            &self.status_polls,
            &self.registrations,
            &self.native_sign_ins,
        ]
        .into_iter()
        .flatten()
        {
            budget.forget_idle();
        }
    }

    /// Spends one request of `budget` for the client of `req`; [`RateLimited`] when
    /// spent. A budget set to 0 costs nothing, not even finding the client address.
    pub async fn check(&self, budget: IpBudget, req: &poem::Request) -> Result<(), RateLimited> {
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
        let network = client_network(ip);
        limiter
            .spend(self.shared.as_ref(), &network, || network.to_string())
            .await
            .inspect_err(|_| {
                metrics::counter!("signin_rate_limited_total", "budget" => budget.label())
                    .increment(1);
            })
    }

    /// One password attempt from `ip` for the account `email`.
    pub async fn check_login(&self, ip: Option<IpAddr>, email: &str) -> Result<(), RateLimited> {
        let shared = self.shared.as_ref();
        if let Some(ip) = ip {
            let network = client_network(ip);
            self.login_per_ip
                .spend(shared, &network, || network.to_string())
                .await?;
        }
        let account = email.to_lowercase();
        // Redis sees a digest of the account, never the address itself.
        self.login_per_account
            .spend(shared, &account, || worker::crypto::sha256_hex(&account))
            .await
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
