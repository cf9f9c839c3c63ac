//! ID-token validation (OpenID Connect Core 3.1.3.7) with the openidconnect crate:
//! signature from the provider's JWKS, `iss`, `aud`, `azp`, `exp`, a bound on `iat`
//! and the `nonce`. Unknown `kid` refreshes the keys once (key rotation).

use chrono::{Duration as ChronoDuration, Utc};
use openidconnect::{
    ClaimsVerificationError, ClientId, IdTokenVerifier, IssuerUrl, Nonce,
    SignatureVerificationError,
    core::{CoreIdToken, CoreJwsSigningAlgorithm},
};
use secrecy::ExposeSecret;

use super::{
    Endpoints, Profile, Provider, ProviderError,
    jwk::{ProviderKey, ProviderKeys},
    profile,
};

/// How far in the future `iat` may be (clock skew between us and the provider).
const MAX_IAT_SKEW: ChronoDuration = ChronoDuration::seconds(60);
/// How old an ID token may be when we see it: it was issued by the token request we
/// just made, so anything older is a replay.
const MAX_IAT_AGE: ChronoDuration = ChronoDuration::minutes(5);

/// Who the token must be for and which nonce it must carry.
pub(super) struct Expected<'a> {
    /// Our client id, or one of `native_client_ids` for a native app's token.
    pub client_id: &'a str,
    pub nonce: &'a str,
    /// Native Sign in with Apple puts SHA-256(nonce) in the token.
    pub accept_hashed_nonce: bool,
    /// Other clients of ours an `azp` may name (a native app's own client id, as
    /// Google's Android SDK puts there); empty for tokens we fetched ourselves.
    pub other_azp: &'a [String],
}

pub(super) async fn verify(
    provider: &Provider,
    endpoints: &Endpoints,
    id_token: &CoreIdToken,
    expected: &Expected<'_>,
) -> Result<(Profile, serde_json::Value), ProviderError> {
    let issuer = endpoints
        .issuer
        .clone()
        .ok_or_else(|| ProviderError::Discovery("an OIDC provider needs an issuer".into()))?;
    let jwks_url = endpoints
        .jwks_url
        .as_ref()
        .ok_or_else(|| ProviderError::Discovery("no jwks_url configured or discovered".into()))?;
    let keys = provider.jwks.get(&provider.http, jwks_url).await?;
    let profile = match check(provider, endpoints, &issuer, &keys, id_token, expected) {
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        )) => {
            // The provider may have rotated its keys since we cached them.
            match provider.jwks.refresh(&provider.http, jwks_url).await? {
                Some(fresh) => check(provider, endpoints, &issuer, &fresh, id_token, expected),
                None => Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )),
            }
        }
        other => other,
    }
    .map_err(|e| ProviderError::InvalidIdToken(e.to_string()))?;
    Ok((profile, raw_claims(id_token)))
}

/// The verified token's payload as JSON, for provider-specific claims (`hd`).
pub(super) fn raw_claims(id_token: &CoreIdToken) -> serde_json::Value {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    id_token
        .to_string()
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn check(
    provider: &Provider,
    endpoints: &Endpoints,
    issuer: &str,
    keys: &ProviderKeys,
    id_token: &CoreIdToken,
    expected: &Expected<'_>,
) -> Result<Profile, ClaimsVerificationError> {
    check_header(id_token)?;
    let client_id = ClientId::new(expected.client_id.to_owned());
    // Exactly as the provider writes it: `iss` is compared by simple string equality.
    let issuer = IssuerUrl::new(issuer.to_owned())
        .map_err(|e| ClaimsVerificationError::Other(e.to_string()))?;
    let verifier = match &provider.client_secret {
        Some(secret) => IdTokenVerifier::<ProviderKey>::new_confidential_client(
            client_id,
            openidconnect::ClientSecret::new(secret.expose_secret().to_owned()),
            issuer,
            keys.clone(),
        ),
        None => IdTokenVerifier::new_public_client(client_id, issuer, keys.clone()),
    }
    .set_allowed_algs(allowed_algs(&endpoints.signing_algs))
    .set_issue_time_verifier_fn(|iat| {
        let now = Utc::now();
        if iat > now + MAX_IAT_SKEW {
            Err(format!("issued in the future ({iat})"))
        } else if iat < now - MAX_IAT_AGE {
            Err(format!("issued too long ago ({iat})"))
        } else {
            Ok(())
        }
    });
    let nonce_check = |claim: Option<&Nonce>| -> Result<(), String> {
        let Some(claim) = claim else {
            return Err("the ID token has no nonce".to_owned());
        };
        let raw =
            crate::crypto::constant_time_eq(claim.secret().as_bytes(), expected.nonce.as_bytes());
        let hashed = expected.accept_hashed_nonce
            && crate::crypto::constant_time_eq(
                claim.secret().as_bytes(),
                crate::crypto::sha256_hex(expected.nonce).as_bytes(),
            );
        if raw || hashed {
            Ok(())
        } else {
            Err("nonce mismatch".to_owned())
        }
    };
    let claims = id_token.claims(&verifier, nonce_check)?;
    // OIDC Core 3.1.3.7 (5): an `azp` must name us, even with a single audience
    // (the verifier only looks at it when there are several).
    if let Some(azp) = claims.authorized_party() {
        let azp = azp.as_str();
        if azp != expected.client_id && !expected.other_azp.iter().any(|c| c == azp) {
            return Err(ClaimsVerificationError::InvalidAudience(format!(
                "authorized party {azp} is not this client"
            )));
        }
    }
    Ok(profile::from_id_token(claims))
}

/// What the openidconnect crate reads leniently in the JOSE header: it takes
/// `"kid": null` for an absent `kid` and then signs with the only key of a one-key
/// JWKS. RFC 7515 4.1.4 makes `kid` a string, so anything else is a malformed token.
fn check_header(id_token: &CoreIdToken) -> Result<(), ClaimsVerificationError> {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let raw = id_token.to_string();
    let header = raw.split('.').next().unwrap_or_default();
    let header: serde_json::Map<String, serde_json::Value> = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| ClaimsVerificationError::Other("malformed JOSE header".into()))?;
    match header.get("kid") {
        None | Some(serde_json::Value::String(_)) => Ok(()),
        Some(_) => Err(ClaimsVerificationError::Other(
            "malformed JOSE header: kid is not a string".into(),
        )),
    }
}

/// The asymmetric algorithms the provider advertises (RS256 when it says nothing).
/// `none` and the HMAC family are never accepted.
fn allowed_algs(advertised: &[String]) -> Vec<CoreJwsSigningAlgorithm> {
    let algs: Vec<CoreJwsSigningAlgorithm> = advertised
        .iter()
        .filter(|a| !a.starts_with("HS") && *a != "none")
        .filter_map(|a| serde_json::from_value(serde_json::Value::String(a.clone())).ok())
        .collect();
    if algs.is_empty() {
        vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
    } else {
        algs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_and_none_are_never_allowed() {
        let algs = allowed_algs(&["HS256".into(), "none".into(), "ES256".into()]);
        assert_eq!(algs, vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
        assert_eq!(
            allowed_algs(&[]),
            vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
        );
    }
}

#[cfg(test)]
#[path = "oidc_fuzz.rs"]
mod fuzz;
