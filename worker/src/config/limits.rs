//! `limits.*` keys: per-client request budgets, caps on pending sign-ins and long
//! polls, and how many passwords are hashed at once.

use serde::Deserialize;

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
