//! A provider's signing key as openidconnect reads it, with RSA signatures checked
//! by `ring`.
//!
//! openidconnect checks RS256 with the pure-Rust `rsa` crate, which rebuilds the
//! key from the JWK's `n` and `e` as big integers on every token and then runs a
//! generic modular exponentiation: 6.6% of the api's CPU in the sign-in benchmark
//! (`num_bigint_dig::monty`, docs/benchmarks.md, 2026-11-30), for one token per
//! sign-in. `ring` (already linked, through rustls) does the same check in a
//! fraction of that. Everything else (which keys a token may use, every other
//! algorithm, the claims) stays openidconnect's.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use openidconnect::{
    JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyId, JsonWebKeySet, JsonWebKeyUse,
    SignatureVerificationError,
    core::{CoreJsonWebKey, CoreJsonWebKeyType, CoreJsonWebKeyUse, CoreJwsSigningAlgorithm},
};
use ring::signature::{self, RsaParameters, RsaPublicKeyComponents};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A provider's published keys.
pub type ProviderKeys = JsonWebKeySet<ProviderKey>;

/// One key of a provider's JWKS.
#[derive(Clone, Debug)]
pub struct ProviderKey {
    inner: CoreJsonWebKey,
    /// `n` and `e` when this is an RSA key `ring` accepts (2048 to 8192 bits);
    /// other keys are checked by openidconnect itself.
    rsa: Option<Arc<RsaKey>>,
}

#[derive(Debug)]
struct RsaKey {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl RsaKey {
    /// The modulus and exponent of an RSA JWK, without leading zero bytes (RFC 7518
    /// 6.3.1.1 forbids them, but some providers send one), if `ring` takes its size.
    fn from_jwk(jwk: &serde_json::Value) -> Option<Self> {
        if jwk.get("kty")?.as_str()? != "RSA" {
            return None;
        }
        let unsigned = |name: &str| -> Option<Vec<u8>> {
            let bytes = URL_SAFE_NO_PAD.decode(jwk.get(name)?.as_str()?).ok()?;
            let first = bytes.iter().position(|b| *b != 0)?;
            Some(bytes[first..].to_vec())
        };
        let (n, e) = (unsigned("n")?, unsigned("e")?);
        let bits = n.len() * 8 - n[0].leading_zeros() as usize;
        (2048..=8192).contains(&bits).then_some(Self { n, e })
    }

    fn verify(
        &self,
        params: &'static RsaParameters,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureVerificationError> {
        RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(params, message, signature)
        .map_err(|_| SignatureVerificationError::CryptoError("bad signature".to_owned()))
    }
}

/// The PKCS #1 v1.5 algorithms `ring` checks here.
fn ring_params(alg: &CoreJwsSigningAlgorithm) -> Option<&'static RsaParameters> {
    match alg {
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256 => {
            Some(&signature::RSA_PKCS1_2048_8192_SHA256)
        }
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384 => {
            Some(&signature::RSA_PKCS1_2048_8192_SHA384)
        }
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512 => {
            Some(&signature::RSA_PKCS1_2048_8192_SHA512)
        }
        _ => None,
    }
}

impl ProviderKey {
    /// openidconnect's own test of whether this key may check a signature made
    /// with `alg` (it is not public): a signing key, of `alg`'s type, and of `alg`
    /// itself when the key names one. The verifier already picks keys by it; this
    /// keeps `verify_signature` as strict as openidconnect's when called directly.
    fn may_verify(&self, alg: &CoreJwsSigningAlgorithm) -> Result<(), SignatureVerificationError> {
        let refuse = |why: &str| Err(SignatureVerificationError::InvalidKey(why.to_owned()));
        if self.key_use().is_some_and(|u| !u.allows_signature()) {
            return refuse("key usage not permitted for digital signatures");
        }
        if *self.key_type() != CoreJsonWebKeyType::RSA {
            return refuse("key type does not match signature algorithm");
        }
        match self.signing_alg() {
            JsonWebKeyAlgorithm::Unspecified => Ok(()),
            JsonWebKeyAlgorithm::Algorithm(key_alg) if key_alg == alg => Ok(()),
            JsonWebKeyAlgorithm::Algorithm(_) => refuse("incompatible key algorithm"),
            JsonWebKeyAlgorithm::Unsupported => refuse("key algorithm is not a signing algorithm"),
        }
    }
}

impl JsonWebKey for ProviderKey {
    type KeyUse = CoreJsonWebKeyUse;
    type SigningAlgorithm = CoreJwsSigningAlgorithm;

    fn key_id(&self) -> Option<&JsonWebKeyId> {
        self.inner.key_id()
    }

    fn key_type(&self) -> &CoreJsonWebKeyType {
        self.inner.key_type()
    }

    fn key_use(&self) -> Option<&CoreJsonWebKeyUse> {
        self.inner.key_use()
    }

    fn signing_alg(&self) -> JsonWebKeyAlgorithm<&CoreJwsSigningAlgorithm> {
        self.inner.signing_alg()
    }

    fn new_symmetric(key: Vec<u8>) -> Self {
        Self {
            inner: CoreJsonWebKey::new_symmetric(key),
            rsa: None,
        }
    }

    fn verify_signature(
        &self,
        signature_alg: &CoreJwsSigningAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureVerificationError> {
        match (&self.rsa, ring_params(signature_alg)) {
            (Some(rsa), Some(params)) => {
                self.may_verify(signature_alg)?;
                rsa.verify(params, message, signature)
            }
            _ => self
                .inner
                .verify_signature(signature_alg, message, signature),
        }
    }

    fn hash_bytes(&self, bytes: &[u8], alg: &CoreJwsSigningAlgorithm) -> Result<Vec<u8>, String> {
        self.inner.hash_bytes(bytes, alg)
    }
}

impl<'de> Deserialize<'de> for ProviderKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let jwk = serde_json::Value::deserialize(deserializer)?;
        let rsa = RsaKey::from_jwk(&jwk).map(Arc::new);
        let inner = CoreJsonWebKey::deserialize(jwk).map_err(serde::de::Error::custom)?;
        Ok(Self { inner, rsa })
    }
}

impl Serialize for ProviderKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, EncodingKey};
    use serde_json::{Value, json};

    use super::*;

    const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ";

    /// The fixture's RSA key as the provider publishes it, changed by `edit`.
    fn key(edit: impl FnOnce(&mut Value)) -> ProviderKey {
        let jwks: Value =
            serde_json::from_str(include_str!("../../tests/fixtures/jwks.json")).unwrap();
        let mut jwk = jwks["keys"][0].clone();
        edit(&mut jwk);
        serde_json::from_value(jwk).unwrap()
    }

    fn sign(alg: Algorithm) -> Vec<u8> {
        let pem = include_bytes!("../../tests/fixtures/rsa_private.pem");
        let key = EncodingKey::from_rsa_pem(pem).unwrap();
        let signature = jsonwebtoken::crypto::sign(MESSAGE, &key, alg).unwrap();
        URL_SAFE_NO_PAD.decode(signature).unwrap()
    }

    fn verify(key: &ProviderKey, signature: &[u8]) -> Result<(), SignatureVerificationError> {
        key.verify_signature(
            &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            MESSAGE,
            signature,
        )
    }

    #[test]
    fn ring_checks_what_openidconnect_checks() {
        let key = key(|_| {});
        assert!(key.rsa.is_some(), "the fixture key takes the ring path");
        let good = sign(Algorithm::RS256);
        assert!(verify(&key, &good).is_ok());
        assert!(
            key.inner
                .verify_signature(
                    &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                    MESSAGE,
                    &good
                )
                .is_ok()
        );

        let mut flipped = good.clone();
        flipped[10] ^= 1;
        assert!(matches!(
            verify(&key, &flipped),
            Err(SignatureVerificationError::CryptoError(_))
        ));
        // Signed with SHA-384, checked as RS256.
        assert!(verify(&key, &sign(Algorithm::RS384)).is_err());
        assert!(verify(&key, &good[1..]).is_err());
        assert!(verify(&key, &[]).is_err());
    }

    #[test]
    fn a_key_that_may_not_check_this_signature_is_refused() {
        let good = sign(Algorithm::RS256);
        let encryption = key(|jwk| jwk["use"] = json!("enc"));
        assert!(matches!(
            verify(&encryption, &good),
            Err(SignatureVerificationError::InvalidKey(_))
        ));
        let other_alg = key(|jwk| jwk["alg"] = json!("RS384"));
        assert!(matches!(
            verify(&other_alg, &good),
            Err(SignatureVerificationError::InvalidKey(_))
        ));
        let no_alg = key(|jwk| {
            jwk.as_object_mut().unwrap().remove("alg");
        });
        assert!(verify(&no_alg, &good).is_ok());
    }

    #[test]
    fn a_leading_zero_in_the_modulus_is_read_past() {
        let key = key(|jwk| {
            let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
            let padded = [&[0u8][..], &n].concat();
            jwk["n"] = json!(URL_SAFE_NO_PAD.encode(padded));
        });
        assert!(key.rsa.is_some());
        assert!(verify(&key, &sign(Algorithm::RS256)).is_ok());
    }

    #[test]
    fn keys_ring_does_not_take_stay_with_openidconnect() {
        // A 1024-bit modulus: below ring's minimum, so openidconnect checks it.
        let short = key(|jwk| jwk["n"] = json!(URL_SAFE_NO_PAD.encode([0xc5u8; 128])));
        assert!(short.rsa.is_none());
        assert!(verify(&short, &sign(Algorithm::RS256)).is_err());
        let ec: ProviderKey = serde_json::from_value(json!({
            "kty": "EC", "crv": "P-256", "kid": "ec",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        }))
        .unwrap();
        assert!(ec.rsa.is_none());
        assert!(matches!(
            verify(&ec, &sign(Algorithm::RS256)),
            Err(SignatureVerificationError::InvalidKey(_))
        ));
    }
}
