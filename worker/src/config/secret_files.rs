//! Secrets read from files, as container secrets (`/run/secrets/…`) and systemd
//! credentials (`$CREDENTIALS_DIRECTORY/…`, `%d/…` in a unit) deliver them:
//! `secret_key_file`, `providers.<name>.client_secret_file`,
//! `database_password_file` and `redis_password_file`. Each is read once at start,
//! one trailing newline dropped, and then checked like the value it stands for.

use std::path::Path;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::Settings;

impl Settings {
    /// Fills each secret from its `*_file` key; setting both is an error.
    pub(super) fn read_secret_files(&mut self) -> anyhow::Result<()> {
        if let Some(path) = &self.secret_key_file {
            if self.secret_key.is_some() {
                bail!("secret_key, secret_key_file: set one, not both");
            }
            self.secret_key = Some(read("secret_key_file", path)?);
        }
        for (name, provider) in &mut self.providers {
            if let Some(path) = &provider.client_secret_file {
                if provider.client_secret.is_some() {
                    bail!("providers.{name}.client_secret, .client_secret_file: set one, not both");
                }
                let key = format!("providers.{name}.client_secret_file");
                provider.client_secret = Some(read(&key, path)?);
            }
        }
        if let Some(path) = &self.database_password_file {
            let password = read("database_password_file", path)?;
            self.database_url = with_password("database_url", &self.database_url, &password)?;
        }
        if let Some(path) = &self.redis_password_file {
            let Some(url) = &self.redis_url else {
                bail!("redis_password_file: set redis_url too");
            };
            let password = read("redis_password_file", path)?;
            let url = with_password("redis_url", url.expose_secret(), &password)?;
            self.redis_url = Some(SecretString::from(url));
        }
        Ok(())
    }
}

/// The file's text without one trailing newline (editors and `echo` add one).
fn read(key: &str, path: &Path) -> anyhow::Result<SecretString> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{key}: cannot read {}", path.display()))?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    Ok(SecretString::from(text.to_owned()))
}

/// `url` with `password` (percent-encoded as the URL needs) in its user info.
fn with_password(key: &str, url: &str, password: &SecretString) -> anyhow::Result<String> {
    let mut parsed = Url::parse(url).with_context(|| format!("{key}: not a URL"))?;
    if parsed.password().is_some() {
        bail!("{key} has a password and {key}'s password file is set too: set one, not both");
    }
    if parsed.host().is_none() {
        bail!("{key}: a password file needs a server URL (postgres://user@host/db)");
    }
    parsed
        .set_password(Some(password.expose_secret()))
        .map_err(|()| anyhow::anyhow!("{key}: cannot carry a password"))?;
    Ok(parsed.into())
}

#[cfg(test)]
mod tests {
    use figment::{Figment, providers::Format, providers::Toml};

    use super::*;

    fn load(toml: &str) -> anyhow::Result<Settings> {
        Settings::from_figment(Figment::new().merge(Toml::string(toml)))
    }

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    #[test]
    fn secrets_come_from_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = file(&dir, "key", "0123456789abcdef0123456789abcdef\n");
        let client = file(&dir, "client", "gh-secret\r\n");
        let db = file(&dir, "db", "p@ss\n");
        let redis = file(&dir, "redis", "r3dis");
        let settings = load(&format!(
            "database_url = 'postgres://signin@db.internal/signin'\n\
             redis_url = 'redis://127.0.0.1:6379/0'\n\
             secret_key_file = '{key}'\ndatabase_password_file = '{db}'\nredis_password_file = '{redis}'\n\
             [providers.github]\nclient_id = 'Iv1.x'\nclient_secret_file = '{client}'\n"
        ))
        .unwrap();
        assert_eq!(
            settings.secret_key.unwrap().expose_secret(),
            "0123456789abcdef0123456789abcdef"
        );
        assert_eq!(
            settings.providers["github"]
                .client_secret
                .as_ref()
                .unwrap()
                .expose_secret(),
            "gh-secret"
        );
        assert_eq!(
            settings.database_url,
            "postgres://signin:p%40ss@db.internal/signin"
        );
        assert_eq!(
            settings.redis_url.unwrap().expose_secret(),
            "redis://:r3dis@127.0.0.1:6379/0"
        );
    }

    #[test]
    fn a_secret_from_a_file_is_checked_like_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let short = file(&dir, "short", "too-short\n");
        let error = load(&format!("secret_key_file = '{short}'")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "secret_key: must be at least 32 characters"
        );
        let error = load(&format!(
            "secret_key = '{}'\nsecret_key_file = '{short}'",
            "k".repeat(40)
        ))
        .unwrap_err();
        assert!(error.to_string().contains("set one, not both"), "{error}");
        let error = load("secret_key_file = '/nonexistent/secret'").unwrap_err();
        assert!(
            format!("{error:#}").starts_with("secret_key_file: cannot read /nonexistent/secret"),
            "{error:#}"
        );
        let error = load("redis_password_file = '/x'").unwrap_err();
        assert!(error.to_string().contains("set redis_url too"), "{error}");
    }

    #[test]
    fn passwords_are_percent_encoded_into_the_url() {
        let url = with_password(
            "database_url",
            "postgres://signin@db.internal:5432/signin",
            &SecretString::from("p@ss:w/rd"),
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://signin:p%40ss%3Aw%2Frd@db.internal:5432/signin"
        );
        let twice = with_password("database_url", &url, &SecretString::from("x"));
        assert!(twice.unwrap_err().to_string().contains("set one, not both"));
    }
}
