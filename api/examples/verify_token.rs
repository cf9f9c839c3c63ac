//! Another service (a posts service, a gateway) verifying social-signin access tokens
//! offline: it fetches `/.well-known/jwks.json` once, keeps the keys, and checks
//! each token's signature (by its `kid`), `iss`, `aud` and `exp` without calling
//! social-signin. An unknown `kid` (the keys rotated) refetches the set, at most
//! once a minute. Revocation shows up when the token expires (15 minutes by
//! default); a service that must see it sooner asks `POST /api/token/introspect`.
//!
//! ```sh
//! cargo run -p api --example verify_token -- http://127.0.0.1:8080 "$ACCESS_TOKEN"
//! # -> {"sub":"…","sid":"…","iat":…,"exp":…,"iss":"http://127.0.0.1:8080","aud":"http://127.0.0.1:8080"}
//! ```
//!
//! The issuer and audience default to the base URL, as `tokens.issuer` and
//! `tokens.audience` do; pass others as the third and fourth arguments.

use std::time::{Duration, Instant};

use jsonwebtoken::{DecodingKey, Validation, jwk::JwkSet};
use serde::Deserialize;
use tokio::sync::Mutex;

/// What a service reads from a verified token.
#[derive(Debug, Deserialize, serde::Serialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The session id.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

/// Verifies tokens with a cached copy of the published keys.
pub struct Verifier {
    jwks_url: String,
    issuer: String,
    audience: String,
    http: reqwest::Client,
    keys: Mutex<(JwkSet, Instant)>,
}

const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(60);

impl Verifier {
    /// Fetches the keys of the social-signin at `base`.
    pub async fn new(base: &str, issuer: &str, audience: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        let jwks_url = format!("{}/.well-known/jwks.json", base.trim_end_matches('/'));
        let keys = fetch(&http, &jwks_url).await?;
        Ok(Self {
            jwks_url,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            http,
            keys: Mutex::new((keys, Instant::now())),
        })
    }

    /// The claims of `token` if one of the published keys signed it and its `iss`,
    /// `aud` and `exp` are right.
    pub async fn verify(&self, token: &str) -> Result<Claims, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        let kid = header.kid.ok_or("the token has no kid")?;
        let mut cached = self.keys.lock().await;
        if cached.0.find(&kid).is_none() && cached.1.elapsed() >= REFETCH_AT_MOST_EVERY {
            *cached = (fetch(&self.http, &self.jwks_url).await?, Instant::now());
        }
        let jwk = cached.0.find(&kid).ok_or("no published key has this kid")?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        // The algorithm comes from our copy of the key, never from the token.
        let algorithm = jwk
            .common
            .key_algorithm
            .and_then(|a| jsonwebtoken::Algorithm::try_from(a).ok())
            .ok_or("the published key names no algorithm")?;
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<JwkSet, String> {
    let response = http.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    response.json().await.map_err(|e| e.to_string())
}

#[allow(dead_code)] // the tests include this file for `Verifier`
#[tokio::main(flavor = "current_thread")]
async fn main() {
    worker::telemetry::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, token, rest @ ..] = args.as_slice() else {
        eprintln!("usage: verify_token BASE_URL TOKEN [ISSUER [AUDIENCE]]");
        std::process::exit(2);
    };
    let issuer = rest.first().unwrap_or(base);
    let audience = rest.get(1).unwrap_or(base);
    let verified = match Verifier::new(base, issuer, audience).await {
        Ok(verifier) => verifier.verify(token).await,
        Err(error) => Err(error),
    };
    match verified {
        Ok(claims) => println!(
            "{}",
            serde_json::to_string(&claims).expect("claims serialize")
        ),
        Err(error) => {
            eprintln!("invalid token: {error}");
            std::process::exit(1);
        }
    }
}
