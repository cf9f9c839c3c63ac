//! How long finished rows stay: `retention.*` keys for the periodic sweeps of
//! `async_operation`, `session` and `refresh_token` (see [`crate::sweep`]). The
//! audit log has its own `audit.retention`.

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

/// No retention may be shorter: the sweeps must never race a flow still in use.
const MINIMUM: Duration = Duration::from_secs(3600);

const DAY: u64 = 24 * 3600;

/// `retention.*` keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// How long a finished (`ok` or `error`) operation is kept after its last
    /// change, redeemed or not. Default `1d`.
    #[serde(with = "humantime_serde")]
    pub operations: Duration,
    /// How long a session is kept after it expired, reached `session_max_lifetime`
    /// or was revoked, for the user's session history. Default `7d`.
    #[serde(with = "humantime_serde")]
    pub sessions: Duration,
    /// How long a used or expired refresh token is kept once it can no longer
    /// reveal a reuse. Default `7d`.
    #[serde(with = "humantime_serde")]
    pub refresh_tokens: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            operations: Duration::from_secs(DAY),
            sessions: Duration::from_secs(7 * DAY),
            refresh_tokens: Duration::from_secs(7 * DAY),
        }
    }
}

impl RetentionSettings {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        for (key, value) in [
            ("operations", self.operations),
            ("sessions", self.sessions),
            ("refresh_tokens", self.refresh_tokens),
        ] {
            if value < MINIMUM {
                bail!("retention.{key}: must be at least 1h");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use figment::{Figment, providers::Serialized};
    use serde_json::json;

    use super::*;
    use crate::config::Settings;

    fn load(overrides: serde_json::Value) -> anyhow::Result<Settings> {
        Settings::from_figment(Figment::from(Serialized::defaults(overrides)))
    }

    #[test]
    fn retention_defaults_keep_operations_a_day_and_sessions_and_tokens_a_week() {
        let s = load(json!({})).unwrap();
        assert_eq!(s.retention.operations, Duration::from_secs(DAY));
        assert_eq!(s.retention.sessions, Duration::from_secs(7 * DAY));
        assert_eq!(s.retention.refresh_tokens, Duration::from_secs(7 * DAY));
    }

    #[test]
    fn retention_takes_humantime_durations() {
        let s = load(json!({"retention": {"operations": "2h", "sessions": "30d"}})).unwrap();
        assert_eq!(s.retention.operations, Duration::from_secs(2 * 3600));
        assert_eq!(s.retention.sessions, Duration::from_secs(30 * DAY));
        assert_eq!(s.retention.refresh_tokens, Duration::from_secs(7 * DAY));
    }

    #[test]
    fn retention_shorter_than_an_hour_names_the_key() {
        for key in ["operations", "sessions", "refresh_tokens"] {
            let error = load(json!({"retention": {key: "59m"}})).unwrap_err();
            assert_eq!(
                format!("{error:#}"),
                format!("retention.{key}: must be at least 1h")
            );
        }
    }

    #[test]
    fn unknown_retention_key_is_refused() {
        let error = load(json!({"retention": {"audit": "1d"}})).unwrap_err();
        assert!(format!("{error:#}").contains("retention"), "{error:#}");
    }
}
