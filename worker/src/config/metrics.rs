//! `metrics.*`: where `api` serves its Prometheus metrics, on a listener of its own
//! rather than the public one, so that only operators' scrapers reach them (and the
//! database reads behind the queue gauges). A `worker` process has its own,
//! `worker.metrics_listen`.

use std::net::SocketAddr;

use serde::Deserialize;

/// `metrics.*` keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Where `api` serves `GET /metrics`. Default `127.0.0.1:9090`; keep it off the
    /// public network.
    pub listen: SocketAddr,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

#[cfg(test)]
mod tests {
    use figment::{Figment, providers::Serialized};
    use serde_json::json;

    use crate::config::Settings;

    fn load(config: serde_json::Value) -> anyhow::Result<Settings> {
        Settings::from_figment(Figment::from(Serialized::defaults(config)))
    }

    #[test]
    fn metrics_listen_defaults_to_a_loopback_port_of_its_own() {
        let settings = load(json!({})).unwrap();
        assert_eq!(settings.metrics.listen.to_string(), "127.0.0.1:9090");
        assert_ne!(settings.metrics.listen, settings.listen);
        let settings = load(json!({"metrics": {"listen": "127.0.0.1:0"}})).unwrap();
        assert_eq!(settings.metrics.listen.port(), 0);
        let err = load(json!({"metrics": {"listen": "nowhere"}})).unwrap_err();
        assert!(format!("{err:#}").contains("metrics"), "{err:#}");
    }
}
