//! How much runs at once: `worker.*` (jobs in flight) and `database.*` (the
//! PostgreSQL pool), with the defaults sized for what a sign-in job does: it waits
//! on the provider far longer than it computes or touches the database.

use std::net::SocketAddr;

use anyhow::bail;
use serde::Deserialize;

use super::Settings;

/// Jobs in flight per worker process when `worker.concurrency` is not set.
///
/// A job spends almost all its time waiting on the provider (token request, JWKS,
/// userinfo), so the slots needed are about sign-ins/s × provider latency (Little's
/// law): 200 sign-ins/s through an 80 ms provider need 16, through a 300 ms one 60.
/// A slot costs a few kilobytes while it waits, so the default covers the slow case;
/// the database pool below, not this number, bounds how much touches the database.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// PostgreSQL connections the web tier takes when `database.max_connections` is not
/// set: each request holds one for a query or two.
const WEB_CONNECTIONS: u32 = 16;

/// `worker.*` keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Run a worker inside `api`. Default `true`; operators set `false` and run
    /// `worker` processes.
    #[serde(default = "default_true")]
    pub embedded: bool,
    /// Jobs in flight per worker process. Default [`DEFAULT_CONCURRENCY`] (64),
    /// sized for provider round trips, not CPUs.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Where a `worker` process serves `/metrics`. Unset: the first free port of
    /// `127.0.0.1:9091` to `:9099`, so that several workers on one host each get
    /// one (each logs its address); set, that address or the worker does not start.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            embedded: true,
            concurrency: default_concurrency(),
            metrics_listen: None,
        }
    }
}

impl WorkerSettings {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if self.concurrency == 0 || self.concurrency > 1024 {
            bail!("worker.concurrency: must be between 1 and 1024");
        }
        Ok(())
    }

    /// Where a `worker` process may serve `/metrics`, in order of preference.
    pub fn metrics_addresses(&self) -> Vec<SocketAddr> {
        match self.metrics_listen {
            Some(addr) => vec![addr],
            None => DEFAULT_METRICS_PORTS
                .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
                .collect(),
        }
    }

    /// PostgreSQL connections a worker needs beside its jobs' waiting: a job holds a
    /// connection only for its few short statements, plus the fetch, the LISTEN
    /// connection and the sweeper.
    fn connections(&self) -> u32 {
        (self.concurrency as u32).div_ceil(4) + 4
    }
}

/// `database.*` keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Size of a process's PostgreSQL pool. Default: 16 for the web tier, plus
    /// `worker.concurrency / 4 + 4` for a process that runs a worker (the `worker`
    /// binary, or `api` with `worker.embedded`). SQLite always uses one writer and
    /// eight readers.
    pub max_connections: Option<u32>,
}

impl DatabaseSettings {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if self
            .max_connections
            .is_some_and(|n| !(2..=1000).contains(&n))
        {
            bail!("database.max_connections: must be between 2 and 1000");
        }
        Ok(())
    }
}

/// Which binary a pool is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// `api` (and its admin commands): the web tier, plus the worker when embedded.
    Api,
    /// A `worker` process.
    Worker,
}

impl Settings {
    /// The PostgreSQL pool size of `process`: `database.max_connections`, or the
    /// default derived from what the process runs.
    pub fn pool_size(&self, process: Process) -> u32 {
        if let Some(n) = self.database.max_connections {
            return n;
        }
        match process {
            Process::Api if self.worker.embedded => WEB_CONNECTIONS + self.worker.connections(),
            Process::Api => WEB_CONNECTIONS,
            Process::Worker => self.worker.connections(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_concurrency() -> usize {
    DEFAULT_CONCURRENCY
}

/// The loopback ports a `worker` tries for `/metrics` when none is set.
const DEFAULT_METRICS_PORTS: std::ops::RangeInclusive<u16> = 9091..=9099;

#[cfg(test)]
mod tests {
    use figment::{Figment, providers::Serialized};
    use serde_json::json;

    use super::*;

    fn settings(overrides: serde_json::Value) -> Settings {
        Settings::from_figment(Figment::from(Serialized::defaults(overrides))).unwrap()
    }

    #[test]
    fn defaults_are_sized_for_provider_round_trips_not_cpus() {
        let s = settings(json!({}));
        assert_eq!(s.worker.concurrency, 64);
        // 16 for the web tier + 64/4 + 4 for the embedded worker.
        assert_eq!(s.pool_size(Process::Api), 36);
        assert_eq!(s.pool_size(Process::Worker), 20);
        let separate = settings(json!({"worker": {"embedded": false, "concurrency": 8}}));
        assert_eq!(separate.pool_size(Process::Api), 16);
        assert_eq!(separate.pool_size(Process::Worker), 6);
    }

    #[test]
    fn an_unset_metrics_listen_tries_the_loopback_ports_from_9091() {
        let unset = settings(json!({})).worker.metrics_addresses();
        assert_eq!(unset.len(), 9);
        assert_eq!(unset[0].to_string(), "127.0.0.1:9091");
        assert_eq!(unset[8].to_string(), "127.0.0.1:9099");
        let set = settings(json!({"worker": {"metrics_listen": "10.0.0.7:9300"}}));
        assert_eq!(
            set.worker.metrics_addresses(),
            vec![([10, 0, 0, 7], 9300).into()]
        );
    }

    #[test]
    fn max_connections_overrides_and_is_bounded() {
        let s = settings(json!({"database": {"max_connections": 9}}));
        assert_eq!(s.pool_size(Process::Api), 9);
        assert_eq!(s.pool_size(Process::Worker), 9);
        let error = Settings::from_figment(Figment::from(Serialized::defaults(
            json!({"database": {"max_connections": 1}}),
        )))
        .unwrap_err();
        assert!(format!("{error:#}").contains("database.max_connections"));
    }
}
