//! The built-in demo provider: a small but real OAuth 2 authorization server under
//! `/demo-provider/` (authorize form, token endpoint with PKCE, userinfo). The worker
//! reaches it over HTTP like any provider. On only on loopback with nothing else
//! configured. Codes and access tokens are sealed with a key from `secret_key`, so it
//! keeps no state but the set of spent codes.

mod authorize;
mod token;
mod userinfo;

use std::{collections::HashMap, sync::Mutex};

use chrono::Utc;
use poem::{Route, get, post};
use serde::{Deserialize, Serialize};
use worker::crypto::{self, Sealer};

/// Lifetime of a demo authorization code, in seconds.
const CODE_TTL: i64 = 60;
/// Lifetime of a demo access token, in seconds.
const TOKEN_TTL: i64 = 3600;

/// State of the demo authorization server.
pub struct DemoProvider {
    sealer: Sealer,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    /// SHA-256 of spent codes → their expiry, so each code works once.
    spent_codes: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for DemoProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoProvider")
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// What a demo code carries.
#[derive(Serialize, Deserialize)]
struct CodeClaims {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    scope: String,
    name: String,
    email: String,
    exp: i64,
}

/// What a demo access token carries.
#[derive(Serialize, Deserialize)]
struct AccessClaims {
    name: String,
    email: String,
    exp: i64,
}

impl DemoProvider {
    /// A demo server for `client_id`/`client_secret` redirecting only to `redirect_uri`.
    pub fn new(sealer: Sealer, client_id: &str, client_secret: &str, redirect_uri: &str) -> Self {
        Self {
            sealer,
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            spent_codes: Mutex::default(),
        }
    }

    fn seal<T: Serialize>(&self, claims: &T) -> String {
        self.sealer
            .seal(&serde_json::to_vec(claims).expect("claims serialize"))
    }

    fn open<T: for<'de> Deserialize<'de>>(&self, sealed: &str) -> Option<T> {
        if sealed.len() > 4096 {
            return None;
        }
        serde_json::from_slice(&self.sealer.open(sealed)?).ok()
    }

    /// Marks `code` spent; false if it was spent already.
    fn spend(&self, code: &str, exp: i64) -> bool {
        let now = Utc::now().timestamp();
        let mut spent = self.spent_codes.lock().expect("spent codes lock");
        spent.retain(|_, expiry| *expiry >= now);
        spent.insert(crypto::sha256_hex(code), exp).is_none()
    }
}

/// The demo provider's routes, nested under `/demo-provider`.
pub fn routes() -> Route {
    Route::new()
        .at(
            "/authorize",
            get(authorize::authorize_form).post(authorize::authorize_submit),
        )
        .at("/token", post(token::token))
        .at("/userinfo", get(userinfo::userinfo))
}

/// The stable subject for an email: the same person signs in as the same user.
fn subject_for(email: &str) -> String {
    format!("demo-{}", &crypto::sha256_hex(&email.to_lowercase())[..24])
}
