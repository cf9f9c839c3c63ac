//! Loading and validating `Settings`.

use super::*;
use figment::providers::Serialized;

fn load(toml: &str) -> anyhow::Result<Settings> {
    Settings::from_figment(Figment::new().merge(Toml::string(toml)))
}

#[test]
fn defaults_match_the_spec() {
    let s = load("").unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(s.public_base(), "http://127.0.0.1:8080");
    assert_eq!(s.database_url, "sqlite://signin.db?mode=rwc");
    assert!(s.worker.embedded);
    assert!(s.worker.concurrency >= 1);
    assert_eq!(s.operation_timeout, Duration::from_secs(60));
    assert!(s.providers.is_empty());
}

#[test]
fn numeric_client_id_from_env_is_a_string() {
    let figment = Figment::new().merge(Serialized::default(
        "providers.corp",
        serde_json::json!({"kind": "oidc", "issuer": "https://id.example.com", "client_id": 1234567890u64, "client_secret": "s"}),
    ));
    let s = Settings::from_figment(figment).unwrap();
    assert_eq!(s.providers["corp"].client_id.as_deref(), Some("1234567890"));
}

#[test]
fn oidc_without_issuer_names_the_key() {
    let err = load("[providers.corp]\nkind = 'oidc'\nclient_id = 'a'\nclient_secret = 'b'\n")
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("providers.corp.issuer"),
        "{err:#}"
    );
}

#[test]
fn unknown_kind_names_the_key() {
    let err = load("[providers.corp]\nkind = 'ldap'\n").unwrap_err();
    assert!(
        format!("{err:#}").contains("providers.corp.kind"),
        "{err:#}"
    );
}

#[test]
fn plain_http_public_url_is_refused_unless_loopback() {
    let err = load("public_url = 'http://signin.example.com'\n").unwrap_err();
    assert!(
        format!("{err:#}").contains("public_url: must be https"),
        "{err:#}"
    );
    for ok in [
        "https://signin.example.com",
        "http://127.0.0.1:8080",
        "http://localhost:3000",
    ] {
        load(&format!(
            "public_url = '{ok}'\nsecret_key = '{}'\n",
            "k".repeat(32)
        ))
        .unwrap_or_else(|e| panic!("{ok}: {e:#}"));
    }
}

#[test]
fn bad_duration_names_the_key() {
    let err = load("operation_timeout = 'soon'\n").unwrap_err();
    assert!(format!("{err:#}").contains("operation_timeout"), "{err:#}");
}

#[test]
fn scopes_accept_a_spaced_string() {
    let s = load("[providers.corp]\nkind='oidc'\nissuer='https://id.example.com'\nclient_id='a'\nclient_secret='b'\nscopes='openid email'\n").unwrap();
    assert_eq!(
        s.providers["corp"].scopes.as_deref().unwrap(),
        ["openid", "email"]
    );
}

#[test]
fn test_and_cli_variables_are_not_configuration() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SIGNIN_TEST_POSTGRES_URL", "postgres://x");
        jail.set_env("SIGNIN_CONFIG", "other.toml");
        jail.set_env("SIGNIN_WORKER__CONCURRENCY", "3");
        let s = Settings::from_figment(Figment::new().merge(signin_env()))
            .map_err(|e| e.to_string())?;
        assert_eq!(s.worker.concurrency, 3);
        Ok(())
    });
}

#[test]
fn short_secret_key_is_refused() {
    let err = load("secret_key = 'short'\n").unwrap_err();
    assert!(err.to_string().contains("secret_key"));
}
