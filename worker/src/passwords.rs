//! Password hashing and policy. Argon2id with OWASP's parameters (19 MiB, 2
//! passes, 1 lane), at most `limits.password_hashing_concurrency` at once
//! ([`Hashing`]); a minimum length; and zxcvbn, whose bundled lists of common
//! passwords, names and words turn away anything easy to guess.

use std::{sync::Arc, time::Duration};

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};

/// Shortest password accepted.
pub const MIN_LENGTH: usize = 10;
/// Longest password accepted (hashing cost is bounded).
pub const MAX_LENGTH: usize = 256;

/// Why a new password is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("Use at least {MIN_LENGTH} characters.")]
    TooShort,
    #[error("Use at most {MAX_LENGTH} characters.")]
    TooLong,
    #[error("This password is too common or too easy to guess; try a longer phrase.")]
    TooCommon,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP argon2id parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks a new password; `context` (email, names) makes passwords built from
/// them count as easy to guess.
pub fn check_policy(password: &str, context: &[&str]) -> Result<(), PolicyError> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(PolicyError::TooShort);
    }
    if length > MAX_LENGTH {
        return Err(PolicyError::TooLong);
    }
    let estimate = zxcvbn::zxcvbn(password, context);
    if u8::from(estimate.score()) < 3 {
        return Err(PolicyError::TooCommon);
    }
    Ok(())
}

/// The Argon2id PHC string of `password` with a fresh salt. CPU-heavy: call it from
/// `spawn_blocking`.
pub fn hash(password: &str) -> String {
    argon2()
        .hash_password(password.as_bytes())
        .expect("argon2 hashing with valid parameters cannot fail")
        .to_string()
}

/// Whether `password` matches `phc`. A malformed hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|parsed| {
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// How long a request waits for a hashing slot before it is answered [`Busy`].
pub const SLOT_WAIT: Duration = Duration::from_millis(1500);

/// Every hashing slot was taken for [`SLOT_WAIT`]: answer 503 `busy` and let the
/// client retry (nothing was read or written yet).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("password hashing is busy")]
pub struct Busy;

/// Runs [`hash`] and [`verify`] on the blocking pool, a bounded number at once.
/// Each takes a core and 19 MiB for about 50 ms, and the blocking pool would run
/// up to 512 of them: a login flood would take every core and gigabytes of memory.
/// With one slot per core the flood waits here instead, briefly, then gets [`Busy`].
#[derive(Debug, Clone)]
pub struct Hashing {
    slots: Arc<tokio::sync::Semaphore>,
    wait: Duration,
}

impl Hashing {
    /// `concurrency` hashes at once (at least 1); a request waits up to `wait` for one.
    pub fn new(concurrency: usize, wait: Duration) -> Self {
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
            wait,
        }
    }

    /// [`hash`] in a slot.
    pub async fn hash(&self, password: String) -> Result<String, Busy> {
        self.run(move || hash(&password)).await
    }

    /// [`verify`] in a slot. The caller verifies against [`dummy_hash`] for an
    /// unknown email, through here too, so both take the same time and the same slot.
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, Busy> {
        self.run(move || verify(&password, &phc)).await
    }

    /// Takes a slot without hashing, as a request in flight would; tests hold one
    /// to show what a full pool answers. `None` when every slot is taken.
    pub fn try_hold(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let slot = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        tokio::task::spawn_blocking(move || {
            // Held until the hash is done, even if the request is dropped meanwhile.
            let _slot = slot;
            work()
        })
        .await
        .map_err(|_| Busy)
    }
}

/// A hash of a random password, verified against when the email is unknown, so an
/// unknown email and a wrong password take the same time.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash(&crate::crypto::random_token(24)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let phc = hash("correct horse battery staple");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery staple", &phc));
        assert!(!verify("correct horse battery stapler", &phc));
        assert!(!verify("x", "not a hash"));
        assert_ne!(phc, hash("correct horse battery staple"), "salted");
    }

    #[tokio::test]
    async fn a_full_pool_answers_busy_after_a_short_wait_and_then_serves_again() {
        let hashing = Hashing::new(1, Duration::from_millis(100));
        let held = hashing.try_hold().expect("the only slot is free");
        assert!(hashing.try_hold().is_none(), "the pool is full");
        let started = std::time::Instant::now();
        let busy = hashing.verify("x".into(), "not a hash".into()).await;
        assert!(busy.is_err(), "a full pool refuses");
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "after waiting"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "not for long");
        drop(held);
        let phc = hashing
            .hash("violet-lantern-harbor-42".into())
            .await
            .unwrap();
        assert_eq!(
            hashing
                .verify("violet-lantern-harbor-42".into(), phc)
                .await
                .ok(),
            Some(true)
        );
    }

    #[test]
    fn policy_refuses_short_common_and_personal_passwords() {
        assert_eq!(check_policy("short", &[]), Err(PolicyError::TooShort));
        assert_eq!(
            check_policy("password123", &[]),
            Err(PolicyError::TooCommon)
        );
        assert_eq!(check_policy("qwertyuiop", &[]), Err(PolicyError::TooCommon));
        assert_eq!(check_policy("1234567890", &[]), Err(PolicyError::TooCommon));
        assert_eq!(
            check_policy(
                "grace@example.com",
                &["grace@example.com", "Grace", "Hopper"]
            ),
            Err(PolicyError::TooCommon)
        );
        assert_eq!(
            check_policy(&"a".repeat(300), &[]),
            Err(PolicyError::TooLong)
        );
        assert!(check_policy("violet-lantern-harbor-42", &[]).is_ok());
    }
}
