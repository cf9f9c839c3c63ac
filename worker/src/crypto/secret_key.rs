//! Where `secret_key` comes from: the configuration, or, only when `public_url` is
//! plain http, a development key generated once and saved beside the SQLite file
//! (with a warning). A generated key behind https stops start-up.

use std::path::PathBuf;

use anyhow::{Context, bail};
use secrecy::SecretString;

use super::{Keys, random_token};
use crate::config::Settings;

impl Keys {
    /// The configured secret, or the saved development one (generated on first use).
    pub fn load(settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self::load_current(settings)?.with_previous(&settings.previous_secret_keys))
    }

    fn load_current(settings: &Settings) -> anyhow::Result<Self> {
        if let Some(secret) = &settings.secret_key {
            return Ok(Self::derive(secret));
        }
        // A generated key is for trying it out on this machine: one left in a file
        // beside the database (or committed with it) signs every session.
        if settings.is_https() {
            bail!(
                "secret_key: required when public_url is https; a generated development key is \
                 only for local http. Set secret_key (or SIGNIN_SECRET_KEY) to at least 32 \
                 random characters, shared by api and every worker"
            );
        }
        let Some(path) = dev_key_path(&settings.database_url) else {
            if settings.is_postgres() {
                bail!("secret_key: required when database_url is postgres (set SIGNIN_SECRET_KEY)");
            }
            tracing::warn!(
                "no secret_key configured and the database is in memory: using a random key; sessions end at restart"
            );
            return Ok(Self::derive(&SecretString::from(random_token(32))));
        };
        let secret = match std::fs::read_to_string(&path) {
            Ok(saved) => saved.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let fresh = random_token(48);
                match write_private(&path, &fresh) {
                    Ok(()) => fresh,
                    // Another process (a worker starting beside the api) won the race.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        std::fs::read_to_string(&path)
                            .with_context(|| format!("reading {}", path.display()))?
                            .trim()
                            .to_owned()
                    }
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("saving a development secret_key to {}", path.display())
                        });
                    }
                }
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if secret.len() < 32 {
            bail!(
                "secret_key: the saved development key in {} is too short",
                path.display()
            );
        }
        tracing::warn!(
            path = %path.display(),
            "no secret_key configured: using a generated development key; set secret_key in production"
        );
        Ok(Self::derive(&SecretString::from(secret)))
    }
}

/// Where the development secret lives for a SQLite URL: `<db file>.secret`.
fn dev_key_path(database_url: &str) -> Option<PathBuf> {
    let rest = database_url.strip_prefix("sqlite:")?;
    let path = rest.trim_start_matches("//").split('?').next()?;
    if path.is_empty() || path == ":memory:" || path.starts_with(":memory") {
        return None;
    }
    Some(PathBuf::from(format!("{path}.secret")))
}

fn write_private(path: &PathBuf, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_refused_when_public_url_is_https() {
        use figment::{Figment, providers::Serialized};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("signin.db");
        let settings = |public_url: &str| {
            Settings::from_figment(Figment::from(Serialized::defaults(serde_json::json!({
                "public_url": public_url,
                "database_url": format!("sqlite://{}?mode=rwc", db.display()),
            }))))
            .unwrap()
        };
        let secret_file = dir.path().join("signin.db.secret");
        // The precondition: on loopback http a development key is generated and saved.
        Keys::load(&settings("http://127.0.0.1:8080")).unwrap();
        assert!(secret_file.exists());
        std::fs::remove_file(&secret_file).unwrap();
        let err = Keys::load(&settings("https://signin.example.com")).unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("secret_key") && message.contains("SIGNIN_SECRET_KEY"),
            "{message}"
        );
        assert!(!secret_file.exists(), "nothing is generated");
        // A key saved earlier is refused as well.
        std::fs::write(&secret_file, "s".repeat(48)).unwrap();
        assert!(Keys::load(&settings("https://signin.example.com")).is_err());
        // A configured key is what https needs.
        let mut configured = settings("https://signin.example.com");
        configured.secret_key = Some(SecretString::from("k".repeat(40)));
        Keys::load(&configured).unwrap();
    }

    #[test]
    fn dev_key_sits_beside_the_sqlite_file() {
        assert_eq!(
            dev_key_path("sqlite://data/signin.db?mode=rwc").unwrap(),
            PathBuf::from("data/signin.db.secret")
        );
        assert!(dev_key_path("sqlite::memory:").is_none());
        assert!(dev_key_path("postgres://localhost/x").is_none());
    }
}
