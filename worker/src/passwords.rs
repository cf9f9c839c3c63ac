//! Password hashing and policy. Argon2id with OWASP's parameters (19 MiB, 2
//! passes, 1 lane); a minimum length; and zxcvbn, whose bundled lists of common
//! passwords, names and words turn away anything easy to guess.

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

/// [`hash`] on the blocking pool, so request threads keep serving.
pub async fn hash_off_thread(password: String) -> String {
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .expect("hashing does not panic")
}

/// [`verify`] on the blocking pool.
pub async fn verify_off_thread(password: String, phc: String) -> bool {
    tokio::task::spawn_blocking(move || verify(&password, &phc))
        .await
        .unwrap_or(false)
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
