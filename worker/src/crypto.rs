//! Keys derived from `secret_key`, random tokens and hashing. Where the secret
//! itself comes from is [`secret_key`].

use aes_gcm::{
    Aes256Gcm, KeyInit,
    aead::{Aead, AeadCore, OsRng},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

mod secret_key;

/// Keys for every purpose, each derived from `secret_key` with its own label so that
/// no two purposes share key material.
#[derive(Clone)]
pub struct Keys {
    /// Input for poem's `CookieKey::derive_from` (private and signed cookies).
    pub cookie: [u8; 32],
    /// Encrypts provider tokens at rest.
    pub tokens: Sealer,
    /// Token keys of retired secrets (`previous_secret_keys`), tried when opening.
    pub previous_tokens: Vec<Sealer>,
    /// Seals the demo provider's codes and access tokens.
    pub demo: Sealer,
    /// Signs the JSON API's access tokens: the HMAC key, or the seed of the
    /// derived Ed25519 key.
    pub access_tokens: [u8; 32],
    /// The same of retired secrets (`previous_secret_keys`): their tokens still
    /// verify, and their public keys are still published.
    pub previous_access_tokens: Vec<[u8; 32]>,
    /// Seals the secrets of queued jobs (codes, verifiers, ID tokens).
    pub jobs: Sealer,
    /// Derives a refresh token's successor from it, so a repeated refresh inside
    /// the grace period gets the same new token back.
    pub refresh_successors: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    /// Derives every key from the secret.
    pub fn derive(secret: &SecretString) -> Self {
        let secret = secret.expose_secret().as_bytes();
        Self {
            cookie: derive_key(secret, "social-signin cookies v1"),
            tokens: Sealer::new(derive_key(secret, "social-signin provider tokens v1")),
            previous_tokens: Vec::new(),
            demo: Sealer::new(derive_key(secret, "social-signin demo provider v1")),
            access_tokens: derive_key(secret, ACCESS_TOKENS),
            previous_access_tokens: Vec::new(),
            jobs: Sealer::new(derive_key(secret, "social-signin job payloads v1")),
            refresh_successors: derive_key(secret, "social-signin refresh successors v1"),
        }
    }

    /// Also accepts tokens sealed under `previous` secrets (key rotation).
    pub fn with_previous(mut self, previous: &[SecretString]) -> Self {
        self.previous_access_tokens = previous
            .iter()
            .map(|s| derive_key(s.expose_secret().as_bytes(), ACCESS_TOKENS))
            .collect();
        self.previous_tokens = previous
            .iter()
            .map(|s| {
                Sealer::new(derive_key(
                    s.expose_secret().as_bytes(),
                    "social-signin provider tokens v1",
                ))
            })
            .collect();
        self
    }

    /// Opens a stored provider token with the current key, else a previous one.
    pub fn open_token(&self, sealed: &str) -> Option<Vec<u8>> {
        self.tokens
            .open(sealed)
            .or_else(|| self.previous_tokens.iter().find_map(|k| k.open(sealed)))
    }
}

const ACCESS_TOKENS: &str = "social-signin access tokens v1";

fn derive_key(secret: &[u8], label: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

/// AES-256-GCM with a random nonce per message; output is base64url(nonce ‖ ciphertext).
#[derive(Clone)]
pub struct Sealer(Aes256Gcm);

impl Sealer {
    fn new(key: [u8; 32]) -> Self {
        Self(Aes256Gcm::new(&key.into()))
    }

    /// Encrypts and authenticates `plaintext`.
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .0
            .encrypt(&nonce, plaintext)
            .expect("AES-GCM encryption cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Decrypts what `seal` made with the same key; `None` for anything else.
    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < 12 + 16 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let nonce = <[u8; 12]>::try_from(nonce).ok()?;
        self.0.decrypt(&nonce.into(), ciphertext).ok()
    }
}

/// `n` random bytes from the OS, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// HMAC-SHA256 of `input` under `key`, base64url without padding: as long as a
/// [`random_token`] of 32 bytes, and as unguessable without the key.
pub fn hmac_b64url(key: &[u8; 32], input: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(input.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// SHA-256 as lower-case hex: how tokens and browser keys are stored.
pub fn sha256_hex(input: &str) -> String {
    hex::encode(Sha256::digest(input.as_bytes()))
}

/// SHA-256 as base64url: the PKCE S256 transform.
pub fn sha256_b64url(input: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(input.as_bytes()))
}

/// Compares secrets without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_the_same_key() {
        let a = Keys::derive(&SecretString::from("a".repeat(40)));
        let b = Keys::derive(&SecretString::from("b".repeat(40)));
        let sealed = a.tokens.seal(b"refresh-token");
        assert_eq!(a.tokens.open(&sealed).unwrap(), b"refresh-token");
        assert!(b.tokens.open(&sealed).is_none());
        assert!(
            a.demo.open(&sealed).is_none(),
            "purposes must not share keys"
        );
        assert!(a.tokens.open("garbage").is_none());
    }

    #[test]
    fn rotated_keys_still_open_old_tokens() {
        let old = SecretString::from("o".repeat(40));
        let sealed = Keys::derive(&old).tokens.seal(b"t");
        let rotated = Keys::derive(&SecretString::from("n".repeat(40))).with_previous(&[old]);
        assert_eq!(rotated.open_token(&sealed).unwrap(), b"t");
        assert!(
            Keys::derive(&SecretString::from("n".repeat(40)))
                .open_token(&sealed)
                .is_none()
        );
    }

    #[test]
    fn pkce_s256_is_unpadded_base64url_of_sha256() {
        // Computed independently: base64.urlsafe_b64encode(sha256(v)).rstrip("=") in Python.
        assert_eq!(
            sha256_b64url("dBjftJeZ4CVP-mJ92K1qTyaZHm6mQG0HNdwYIqrnx8M"),
            "vtRohWwwcoWSKUiAlxc2cv76kJuNX7fcxKCcghqC7eY"
        );
    }
}
