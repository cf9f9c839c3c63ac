//! Facebook's Graph API: its error object, `/me` with `appsecret_proof`, and the
//! check of a user access token an app's Facebook SDK obtained (`debug_token`).
//!
//! Graph answers errors as an object, not the OAuth string:
//! `{"error":{"message","type":"OAuthException","code":100,"error_subcode":36007}}`.

use std::time::Duration;

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::{Profile, Provider, ProviderError, TokenSet, profile};

/// Graph's "invalid parameter": at the token endpoint, the code (expired 36007,
/// redirect URI differs 36008, used 36009).
const INVALID_PARAMETER: i64 = 100;
/// Graph's "invalid OAuth access token" (expired, revoked, malformed).
const INVALID_ACCESS_TOKEN: i64 = 190;
/// The profile fields read from `/me`.
const ME_FIELDS: &str = "id,email,first_name,last_name,name,picture";

/// Why Facebook's SDK token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessTokenProblem {
    /// `debug_token` says the token is not valid (revoked, malformed, logged out).
    #[error("the access token is not valid")]
    Invalid,
    #[error("the access token has expired")]
    Expired,
    /// Issued to another Facebook app: it must not sign anyone in here.
    #[error("the access token was issued to another app")]
    OtherApp,
    /// No user behind it (an app or page token), or `/me` names someone else.
    #[error("the access token is not a user's token for this person")]
    NotThisUser,
}

/// Graph's error object.
#[derive(Debug, Deserialize)]
struct GraphError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: i64,
    #[serde(default)]
    error_subcode: Option<i64>,
}

/// Which Graph call answered: the same error code means different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GraphCall {
    /// `oauth/access_token`: code 100 is about the code.
    Token,
    /// `debug_token`, made with our app access token: any error is ours.
    DebugToken,
    /// `/me`, made with the person's access token: code 190 is about theirs.
    Me,
}

/// The error a Graph response body carries, classified; `None` when the body is
/// not a Graph error object.
pub(super) fn graph_error(body: &[u8], call: GraphCall) -> Option<ProviderError> {
    let json: Value = serde_json::from_slice(body).ok()?;
    let error: GraphError = serde_json::from_value(json.get("error")?.clone()).ok()?;
    Some(match (error.code, call) {
        (INVALID_PARAMETER, GraphCall::Token) => ProviderError::InvalidGrant,
        (INVALID_ACCESS_TOKEN, GraphCall::Me) => {
            ProviderError::AccessToken(AccessTokenProblem::Invalid)
        }
        (code, _) => ProviderError::Rejected(format!(
            "Graph error {code}{}: {}",
            error
                .error_subcode
                .map(|s| format!("/{s}"))
                .unwrap_or_default(),
            error.message
        )),
    })
}

/// `debug_token`'s `data` for a user access token.
#[derive(Debug, Deserialize)]
struct TokenInfo {
    #[serde(default)]
    is_valid: bool,
    #[serde(default, deserialize_with = "id_string")]
    app_id: Option<String>,
    #[serde(default, deserialize_with = "id_string")]
    user_id: Option<String>,
    /// Unix seconds; 0 means it does not expire.
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// Graph ids are strings, but accept numbers too.
fn id_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

impl TokenInfo {
    /// The token's user and expiry when it is a valid user token of one of
    /// `our_apps`, at `now` (Unix seconds).
    fn accept(
        self,
        our_apps: &[&str],
        now: i64,
    ) -> Result<(String, Option<Duration>), AccessTokenProblem> {
        if !self.is_valid {
            return Err(match self.expires_at {
                Some(at) if at != 0 && at <= now => AccessTokenProblem::Expired,
                _ => AccessTokenProblem::Invalid,
            });
        }
        if !self
            .app_id
            .as_deref()
            .is_some_and(|app| our_apps.contains(&app))
        {
            return Err(AccessTokenProblem::OtherApp);
        }
        let expires_in = match self.expires_at {
            None | Some(0) => None,
            Some(at) if at <= now => return Err(AccessTokenProblem::Expired),
            Some(at) => Some(Duration::from_secs((at - now) as u64)),
        };
        if self.kind.as_deref().is_some_and(|k| k != "USER") {
            return Err(AccessTokenProblem::NotThisUser);
        }
        let user_id = self.user_id.ok_or(AccessTokenProblem::NotThisUser)?;
        Ok((user_id, expires_in))
    }
}

impl Provider {
    /// Signs in with a user access token from Facebook's SDK: `debug_token` (with
    /// the app access token) must call it valid, unexpired, a user's and issued to
    /// our app (`client_id` or one of `native_client_ids`); then `/me` must name
    /// the same user. Safe to retry.
    pub async fn verify_facebook_access_token(
        &self,
        access_token: &str,
    ) -> Result<(TokenSet, Profile), ProviderError> {
        let mut url = self.graph_url("debug_token")?;
        url.query_pairs_mut()
            .append_pair("input_token", access_token);
        let app_token = format!("{}|{}", self.client_id, self.app_secret());
        let answer = self
            .graph_get(GraphCall::DebugToken, &url, &app_token)
            .await?;
        let info: TokenInfo = answer
            .get("data")
            .cloned()
            .and_then(|data| serde_json::from_value(data).ok())
            .ok_or_else(|| ProviderError::Rejected("debug_token answered without data".into()))?;
        let our_apps: Vec<&str> = std::iter::once(self.client_id.as_str())
            .chain(self.native_client_ids.iter().map(String::as_str))
            .collect();
        let (user_id, expires_in) = info
            .accept(&our_apps, Utc::now().timestamp())
            .map_err(ProviderError::AccessToken)?;
        let profile = self.facebook_me(access_token).await?;
        if profile.subject != user_id {
            return Err(ProviderError::AccessToken(AccessTokenProblem::NotThisUser));
        }
        let tokens = TokenSet {
            access_token: SecretString::from(access_token.to_owned()),
            refresh_token: None,
            expires_in,
            id_token: None,
        };
        Ok((tokens, profile))
    }

    /// `/me` with the access token and its `appsecret_proof`. The email is never
    /// treated as verified: Facebook does not say whether it is.
    pub(super) async fn facebook_me(&self, access_token: &str) -> Result<Profile, ProviderError> {
        let endpoints = self.endpoints().await?;
        let mut url = self.userinfo_url(&endpoints)?.clone();
        url.query_pairs_mut()
            .append_pair("fields", ME_FIELDS)
            .append_pair("appsecret_proof", &self.appsecret_proof(access_token));
        profile::from_facebook(&self.graph_get(GraphCall::Me, &url, access_token).await?)
    }

    /// `{graph_url}/{graph_version}/{path}`.
    fn graph_url(&self, path: &str) -> Result<Url, ProviderError> {
        let base = self
            .graph_base
            .as_ref()
            .ok_or_else(|| ProviderError::Discovery("no Graph API base".into()))?;
        Url::parse(&format!("{}/{path}", base.as_str().trim_end_matches('/')))
            .map_err(|e| ProviderError::Discovery(e.to_string()))
    }

    /// GET a Graph document; a non-200 answer is read as Graph's error object.
    async fn graph_get(
        &self,
        call: GraphCall,
        url: &Url,
        token: &str,
    ) -> Result<Value, ProviderError> {
        let endpoint = match call {
            GraphCall::DebugToken => "debug_token",
            GraphCall::Token | GraphCall::Me => "userinfo",
        };
        self.get_json_as(endpoint, url, token, |body| graph_error(body, call))
            .await
    }

    /// Facebook's `appsecret_proof`: HMAC-SHA256 of the access token with the app secret.
    fn appsecret_proof(&self, access_token: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(self.app_secret().as_bytes())
            .expect("HMAC takes any key");
        mac.update(access_token.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn app_secret(&self) -> &str {
        self.client_secret
            .as_ref()
            .map(ExposeSecret::expose_secret)
            .map_or("", |s| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(json: Value) -> TokenInfo {
        serde_json::from_value(json).unwrap()
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn debug_token_answers_are_classified() {
        let ours = ["1234", "5678"];
        let valid = |extra: Value| {
            let mut base = serde_json::json!({"app_id": "1234", "type": "USER", "application": "Cafe",
                "expires_at": NOW + 3600, "is_valid": true, "user_id": "10158", "scopes": ["email"]});
            if let Value::Object(extra) = extra {
                base.as_object_mut().unwrap().extend(extra);
            }
            info(base).accept(&ours, NOW)
        };
        assert_eq!(
            valid(Value::Null),
            Ok(("10158".into(), Some(Duration::from_secs(3600))))
        );
        assert_eq!(
            valid(serde_json::json!({"expires_at": 0, "app_id": 5678})),
            Ok(("10158".into(), None))
        );
        assert_eq!(
            valid(serde_json::json!({"app_id": "999"})),
            Err(AccessTokenProblem::OtherApp)
        );
        assert_eq!(
            valid(serde_json::json!({"expires_at": NOW - 1})),
            Err(AccessTokenProblem::Expired)
        );
        assert_eq!(
            valid(serde_json::json!({"user_id": null})),
            Err(AccessTokenProblem::NotThisUser)
        );
        assert_eq!(
            valid(serde_json::json!({"type": "PAGE"})),
            Err(AccessTokenProblem::NotThisUser)
        );
        let invalid = info(
            serde_json::json!({"error": {"code": 190, "message": "Malformed access token"},
            "is_valid": false, "scopes": []}),
        );
        assert_eq!(invalid.accept(&ours, NOW), Err(AccessTokenProblem::Invalid));
        let expired = info(serde_json::json!({"app_id": "1234", "is_valid": false,
            "expires_at": NOW - 60, "user_id": "10158"}));
        assert_eq!(expired.accept(&ours, NOW), Err(AccessTokenProblem::Expired));
    }

    #[test]
    fn graph_error_objects_are_read() {
        let used = br#"{"error":{"message":"This authorization code has been used.","type":"OAuthException","code":100,"error_subcode":36009,"fbtrace_id":"A1"}}"#;
        assert!(matches!(
            graph_error(used, GraphCall::Token),
            Some(ProviderError::InvalidGrant)
        ));
        let secret = br#"{"error":{"message":"Error validating client secret.","type":"OAuthException","code":1}}"#;
        assert!(
            matches!(graph_error(secret, GraphCall::Token), Some(ProviderError::Rejected(m)) if m.contains("client secret"))
        );
        let expired = br#"{"error":{"message":"Session has expired","type":"OAuthException","code":190,"error_subcode":463}}"#;
        assert!(matches!(
            graph_error(expired, GraphCall::Me),
            Some(ProviderError::AccessToken(AccessTokenProblem::Invalid))
        ));
        // With our app token, a 190 is our misconfiguration, not the person's token.
        assert!(matches!(
            graph_error(expired, GraphCall::DebugToken),
            Some(ProviderError::Rejected(_))
        ));
        assert!(graph_error(br#"{"error":"invalid_grant"}"#, GraphCall::Token).is_none());
        assert!(graph_error(b"not json", GraphCall::Me).is_none());
    }
}
