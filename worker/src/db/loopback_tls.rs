//! No TLS to a PostgreSQL server on this machine unless asked for.
//!
//! libpq's default, which sqlx follows, is `sslmode=prefer`: TLS whenever the
//! server offers it (Debian's package does, with a self-signed certificate), and no
//! check of that certificate. Over a loopback address that encrypts traffic that
//! never leaves the host (reading it takes root, who can read the processes too),
//! and costs both sides a TLS record per statement: with the database on the same
//! machine, PostgreSQL spent 15 % and the workers 10 % less CPU per sign-in
//! without it (`signin_bench --spawn postgres`, docs/benchmarks.md). So when
//! `database_url` names a loopback host and no `sslmode`, and `PGSSLMODE` is not
//! set, the connection is plain; any `sslmode` an operator writes is kept as is,
//! and other hosts keep libpq's default.

use std::net::IpAddr;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgSslMode};

/// `options` (parsed from `url`) without TLS when the server is on a loopback
/// address and neither the URL nor `PGSSLMODE` chose a mode.
pub(super) fn plain_on_loopback(options: PgConnectOptions, url: &str) -> PgConnectOptions {
    let chosen = std::env::var_os("PGSSLMODE").is_some() || names_sslmode(url);
    if chosen || !is_loopback(options.get_host()) {
        return options;
    }
    options.ssl_mode(PgSslMode::Disable)
}

/// The URL's query names a mode (`sslmode`, or sqlx's `ssl-mode`).
fn names_sslmode(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|url| {
        url.query_pairs()
            .any(|(key, _)| key == "sslmode" || key == "ssl-mode")
    })
}

/// `localhost` or an address in 127.0.0.0/8 or `::1` (brackets allowed).
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn mode(url: &str) -> PgSslMode {
        let options = PgConnectOptions::from_str(url).unwrap();
        plain_on_loopback(options, url).get_ssl_mode()
    }

    #[test]
    fn loopback_without_a_chosen_mode_is_plain_and_any_chosen_mode_is_kept() {
        if std::env::var_os("PGSSLMODE").is_some() {
            eprintln!("skipped: PGSSLMODE is set in this environment");
            return;
        }
        for url in [
            "postgres://postgres@127.0.0.1:5432/signin",
            "postgres://postgres@127.0.0.2/signin",
            "postgres://postgres@localhost/signin",
            "postgres://postgres@LOCALHOST:5432/signin",
            "postgres://postgres@[::1]:5432/signin",
        ] {
            assert!(matches!(mode(url), PgSslMode::Disable), "{url}");
        }
        for url in [
            "postgres://postgres@db.internal:5432/signin",
            "postgres://postgres@10.0.0.5/signin",
            "postgres://postgres@[2001:db8::1]/signin",
        ] {
            assert!(matches!(mode(url), PgSslMode::Prefer), "{url}");
        }
        assert!(matches!(
            mode("postgres://postgres@127.0.0.1/signin?sslmode=require"),
            PgSslMode::Require
        ));
        assert!(matches!(
            mode("postgres://postgres@localhost/signin?sslmode=prefer"),
            PgSslMode::Prefer
        ));
        assert!(matches!(
            mode("postgres://postgres@[::1]/signin?ssl-mode=verify-full"),
            PgSslMode::VerifyFull
        ));
    }
}
