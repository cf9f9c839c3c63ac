//! Caps on pending operations, counted from the database so they hold across api
//! processes and whatever cookies a client keeps: per browser, per client address
//! (`async_operation.client_key`) and for the whole queue. Each pending operation
//! is a job, a worker slot and calls to a provider in our client's name.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use sea_orm::DbErr;
use worker::{config::LimitSettings, operations, reader::Reader};

/// How long a refused client should wait: pending operations end within seconds
/// (at most `operation_timeout`).
pub const RETRY_AFTER_SECS: u64 = 5;

/// How stale the queue-wide count may be.
const TOTAL_REFRESH: Duration = Duration::from_secs(1);

/// Why a new operation may not start.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// This browser holds `limits.pending_operations_per_browser` pending operations.
    #[error("too many pending sign-ins in this browser")]
    Browser,
    /// This client address holds `limits.pending_operations_per_ip`.
    #[error("too many pending sign-ins from this address")]
    Client,
    /// The queue holds `limits.pending_operations_total`.
    #[error("the sign-in queue is full")]
    Full,
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// `limits.pending_operations_*`, and the queue-wide count.
#[derive(Debug)]
pub struct PendingCaps {
    per_browser: u64,
    /// 0: off.
    per_client: u64,
    /// 0: off.
    total: u64,
    gauge: TotalGauge,
}

impl PendingCaps {
    pub fn new(settings: &LimitSettings) -> Self {
        Self {
            per_browser: u64::from(settings.pending_operations_per_browser),
            per_client: u64::from(settings.pending_operations_per_ip),
            total: u64::from(settings.pending_operations_total),
            gauge: TotalGauge::default(),
        }
    }

    /// Whether one more operation may start for the client of `req`, from the
    /// browser `redeemer_hash` (none for a native exchange: its poll secret is new
    /// each time). Returns the client's address key, which the new operation stores
    /// so that the per-address cap can count it. The queue-wide cap is checked
    /// first: it costs no query most of the time, so a flood is shed before it
    /// reaches the database. An admitted operation counts towards that cap at once;
    /// one that then does not start (a repeated callback) is forgotten at the next
    /// refresh, within a second.
    pub async fn admit(
        &self,
        reader: &Reader,
        req: &poem::Request,
        redeemer_hash: Option<&str>,
    ) -> Result<Option<String>, Refused> {
        let client_key = super::client_ip(req).map(super::client_key);
        if self.total > 0 && self.gauge.count(reader, self.total).await? >= self.total {
            metrics::counter!("signin_pending_cap_total", "cap" => "total").increment(1);
            return Err(Refused::Full);
        }
        if let Some(redeemer_hash) = redeemer_hash {
            let pending = operations::count_pending_for(reader, redeemer_hash).await?;
            if pending >= self.per_browser {
                return Err(Refused::Browser);
            }
        }
        if let (true, Some(client_key)) = (self.per_client > 0, &client_key) {
            let pending = operations::count_pending_from(reader, client_key).await?;
            if pending >= self.per_client {
                metrics::counter!("signin_pending_cap_total", "cap" => "client").increment(1);
                return Err(Refused::Client);
            }
        }
        self.gauge.add_one();
        Ok(client_key)
    }
}

/// The number of pending operations in all, read from the database at most once a
/// second per api process and counted up locally in between.
///
/// Why cached: the callback is the hot path, and an exact `COUNT(*)` per callback
/// would cost as much as the queue is long, exactly when the queue is long. So one
/// request a second refreshes the count (the others go by the last one, never
/// waiting for the refresh), and that count is itself bounded (`LIMIT` the cap over
/// the status index, `operations::count_pending_up_to`), so even the refresh costs
/// at most `limits.pending_operations_total` index entries. The cap may be
/// overshot by what other api processes start within a second, which is fine for
/// shedding load: it is a bound, not a quota.
#[derive(Debug, Default)]
struct TotalGauge {
    last: Mutex<Reading>,
    /// Held by the one request refreshing the count.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Reading {
    count: u64,
    at: Option<Instant>,
}

impl TotalGauge {
    async fn count(&self, reader: &Reader, cap: u64) -> Result<u64, DbErr> {
        let last = self.reading();
        if last.at.is_some_and(|at| at.elapsed() < TOTAL_REFRESH) {
            return Ok(last.count);
        }
        let Ok(_refreshing) = self.refreshing.try_lock() else {
            return Ok(last.count);
        };
        let count = operations::count_pending_up_to(reader, cap).await?;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        *last = Reading {
            count,
            at: Some(Instant::now()),
        };
        Ok(count)
    }

    fn add_one(&self) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.count += 1;
    }

    fn reading(&self) -> Reading {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}
