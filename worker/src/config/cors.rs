//! `cors.*` keys: which other origins' single-page apps may call the JSON API from
//! the browser.

use anyhow::bail;
use serde::Deserialize;
use url::Url;

/// `cors.*` keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsSettings {
    /// Exact origins (`https://app.example.com`, no path) whose pages may call the
    /// JSON API with credentials. None by default: no cross-origin calls.
    pub allowed_origins: Vec<String>,
}

impl CorsSettings {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        for origin in &self.allowed_origins {
            let parsed = Url::parse(origin).ok();
            let exact = parsed.as_ref().is_some_and(|url| {
                matches!(url.scheme(), "http" | "https")
                    && !origin.contains('*')
                    && url.origin().ascii_serialization() == *origin
            });
            if !exact {
                bail!(
                    "cors.allowed_origins: `{origin}` is not an origin; write scheme, host and port only, like https://app.example.com"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_origins_are_accepted() {
        let check = |origin: &str| {
            CorsSettings {
                allowed_origins: vec![origin.to_owned()],
            }
            .validate()
            .is_ok()
        };
        assert!(check("https://app.example.com"));
        assert!(check("http://localhost:5173"));
        for bad in [
            "https://app.example.com/",
            "https://app.example.com/path",
            "*",
            "https://*.example.com",
            "app.example.com",
            "ftp://x.example",
            "https://APP.example.com",
        ] {
            assert!(!check(bad), "{bad}");
        }
    }
}
