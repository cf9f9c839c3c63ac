//! The keys that sign access tokens: where each comes from, its `kid`, and the
//! public half other services fetch from `/.well-known/jwks.json`.
//!
//! - `EdDSA`: the PKCS#8 PEM of `tokens.signing_key_file`, else an Ed25519 key
//!   whose seed is derived from `secret_key` (so every instance sharing the secret
//!   signs alike, and a development secret saved beside the SQLite file keeps its
//!   key too);
//! - `ES256`: the P-256 key of `tokens.signing_key_file`;
//! - `HS*`: the HMAC key derived from `secret_key`, never published.
//!
//! Retired keys (`tokens.previous_signing_key_files`, or those derived from
//! `previous_secret_keys`) still verify and are still published.

use std::path::Path;

use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey,
    jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse},
};
use sha2::{Digest, Sha256};
use worker::{config::TokenSettings, crypto::Keys};

/// One signing key.
pub struct SigningKey {
    pub kid: String,
    pub algorithm: Algorithm,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// The public JWK (asymmetric keys only).
    pub public: Option<Jwk>,
}

/// The current key first, then the retired ones.
pub fn load(settings: &TokenSettings, keys: &Keys) -> anyhow::Result<Vec<SigningKey>> {
    let algorithm: Algorithm = settings
        .algorithm
        .parse()
        .with_context(|| format!("tokens.algorithm: {}", settings.algorithm))?;
    let mut all = Vec::new();
    match (algorithm, &settings.signing_key_file) {
        (Algorithm::EdDSA | Algorithm::ES256, Some(file)) => {
            all.push(from_pem_file(algorithm, file)?);
            for previous in &settings.previous_signing_key_files {
                all.push(from_pem_file(algorithm, previous)?);
            }
        }
        (Algorithm::EdDSA, None) => {
            for seed in std::iter::once(&keys.access_tokens).chain(&keys.previous_access_tokens) {
                all.push(asymmetric(
                    algorithm,
                    EncodingKey::from_ed_der(&ed25519_pkcs8(seed)),
                )?);
            }
            for previous in &settings.previous_signing_key_files {
                all.push(from_pem_file(algorithm, previous)?);
            }
        }
        (Algorithm::ES256, None) => bail!("tokens.signing_key_file: required for ES256"),
        (Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512, _) => {
            for key in std::iter::once(&keys.access_tokens).chain(&keys.previous_access_tokens) {
                all.push(SigningKey {
                    kid: format!("hs-{}", &URL_SAFE_NO_PAD.encode(Sha256::digest(key))[..16]),
                    algorithm,
                    encoding: EncodingKey::from_secret(key),
                    decoding: DecodingKey::from_secret(key),
                    public: None,
                });
            }
        }
        (other, _) => bail!("tokens.algorithm: {other:?} is not supported"),
    }
    Ok(all)
}

fn from_pem_file(algorithm: Algorithm, path: &Path) -> anyhow::Result<SigningKey> {
    let pem = std::fs::read(path)
        .with_context(|| format!("tokens.signing_key_file: cannot read {}", path.display()))?;
    let encoding = match algorithm {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_ec_pem(&pem),
    }
    .with_context(|| {
        format!(
            "{}: not a {} private key in PKCS#8 PEM",
            path.display(),
            if algorithm == Algorithm::EdDSA {
                "Ed25519"
            } else {
                "P-256"
            }
        )
    })?;
    asymmetric(algorithm, encoding)
        .with_context(|| format!("{}: not a usable {algorithm:?} key", path.display()))
}

/// The key pair of `encoding`: its public JWK (with an RFC 7638 thumbprint as
/// `kid`) and the decoding key made from it.
fn asymmetric(algorithm: Algorithm, encoding: EncodingKey) -> anyhow::Result<SigningKey> {
    let mut public = Jwk::from_encoding_key(&encoding, algorithm)?;
    let kid = thumbprint(&public)?;
    public.common.key_id = Some(kid.clone());
    public.common.public_key_use = Some(PublicKeyUse::Signature);
    public.common.key_algorithm = Some(match algorithm {
        Algorithm::EdDSA => KeyAlgorithm::EdDSA,
        _ => KeyAlgorithm::ES256,
    });
    let decoding = DecodingKey::from_jwk(&public)?;
    Ok(SigningKey {
        kid,
        algorithm,
        encoding,
        decoding,
        public: Some(public),
    })
}

/// RFC 7638: SHA-256 of the key's required members in lexicographic order.
fn thumbprint(jwk: &Jwk) -> anyhow::Result<String> {
    let canonical = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(okp) => format!(
            r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
            serde_json::to_value(&okp.curve)?
                .as_str()
                .unwrap_or_default(),
            okp.x
        ),
        AlgorithmParameters::EllipticCurve(ec) => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            serde_json::to_value(&ec.curve)?
                .as_str()
                .unwrap_or_default(),
            ec.x,
            ec.y
        ),
        _ => bail!("only OKP and EC keys are published"),
    };
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

/// The PKCS#8 v1 DER of the Ed25519 private key with `seed` (RFC 8410): a fixed
/// prefix, then the 32 seed bytes.
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    [PREFIX.as_slice(), seed.as_slice()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_derived_ed25519_key_signs_what_its_published_key_verifies() {
        let seed = [7u8; 32];
        let key = asymmetric(
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(&ed25519_pkcs8(&seed)),
        )
        .unwrap();
        let header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        let token =
            jsonwebtoken::encode(&header, &serde_json::json!({"sub": "x"}), &key.encoding).unwrap();
        let published = DecodingKey::from_jwk(key.public.as_ref().unwrap()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(&token, &published, &validation).unwrap();
        // The same seed gives the same kid (every instance agrees); another does not.
        let again = asymmetric(
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(&ed25519_pkcs8(&seed)),
        )
        .unwrap();
        let other = asymmetric(
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(&ed25519_pkcs8(&[8u8; 32])),
        )
        .unwrap();
        assert_eq!(key.kid, again.kid);
        assert_ne!(key.kid, other.kid);
    }
}
