//! The person as a provider describes them, mapped per kind into one [`Profile`]:
//! OIDC standard claims (ID token and userinfo) for `oidc`, `google` and `demo`.

use openidconnect::{EmptyAdditionalClaims, IdTokenClaims, core::CoreGenderClaim};
use serde_json::Value;

use super::ProviderError;
use crate::config::ProviderKind;

/// What we learn about a person from one provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// The provider's stable id for the person.
    pub subject: String,
    /// Lower-cased email, if given.
    pub email: Option<String>,
    /// Whether the provider asserts the email is verified.
    pub email_verified: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
}

/// The profile carried by validated ID-token claims.
pub fn from_id_token(claims: &IdTokenClaims<EmptyAdditionalClaims, CoreGenderClaim>) -> Profile {
    Profile {
        subject: claims.subject().as_str().to_owned(),
        email: claims.email().map(|e| normalize_email(e.as_str())),
        email_verified: claims.email_verified().unwrap_or(false),
        first_name: claims
            .given_name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned()),
        last_name: claims
            .family_name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned()),
        display_name: claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned()),
        avatar_url: claims
            .picture()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned()),
    }
}

/// Maps a userinfo document. For OIDC kinds its `sub` must equal the ID token's
/// (Core 5.3.2); its other claims take precedence over the ID token's.
pub fn from_userinfo(
    kind: ProviderKind,
    json: &Value,
    from_id_token: Option<&Profile>,
) -> Result<Profile, ProviderError> {
    match kind {
        ProviderKind::Oidc | ProviderKind::Google | ProviderKind::Demo => {
            let subject = string_claim(json, "sub")
                .ok_or_else(|| ProviderError::Profile("userinfo has no `sub`".into()))?;
            if let Some(id) = from_id_token {
                if id.subject != subject {
                    return Err(ProviderError::InvalidIdToken(
                        "the userinfo `sub` differs from the ID token's".into(),
                    ));
                }
            }
            let base = from_id_token.cloned().unwrap_or_default();
            let email = string_claim(json, "email").map(|e| normalize_email(&e));
            let email_verified = match (&email, bool_claim(json, "email_verified")) {
                (Some(_), Some(verified)) => verified,
                // The userinfo repeats the ID token's address without the flag.
                (Some(e), None) => base.email.as_deref() == Some(e.as_str()) && base.email_verified,
                (None, _) => base.email_verified,
            };
            Ok(Profile {
                subject,
                email: email.or(base.email),
                email_verified,
                first_name: string_claim(json, "given_name").or(base.first_name),
                last_name: string_claim(json, "family_name").or(base.last_name),
                display_name: string_claim(json, "name").or(base.display_name),
                avatar_url: string_claim(json, "picture").or(base.avatar_url),
            })
        }
        ProviderKind::Facebook | ProviderKind::Github | ProviderKind::Oauth2 => Err(
            ProviderError::Profile(format!("profiles of kind {kind} are not supported yet")),
        ),
    }
}

/// A non-empty string claim, trimmed and bounded; numbers are accepted as strings.
fn string_claim(json: &Value, key: &str) -> Option<String> {
    let value = match json.get(key)? {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!value.is_empty() && value.len() <= 2048).then_some(value)
}

/// `email_verified` as a boolean; some providers send the string `"true"`.
fn bool_claim(json: &Value, key: &str) -> Option<bool> {
    match json.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(s.eq_ignore_ascii_case("true")),
        _ => None,
    }
}

fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn userinfo_maps_standard_claims() {
        let p = from_userinfo(
            ProviderKind::Oidc,
            &json!({"sub": "42", "email": "Ada@Example.COM", "email_verified": "true",
                    "given_name": "Ada", "family_name": "Lovelace", "name": "Ada L", "picture": "https://x/p.png"}),
            None,
        )
        .unwrap();
        assert_eq!(p.subject, "42");
        assert_eq!(p.email.as_deref(), Some("ada@example.com"));
        assert!(p.email_verified);
        assert_eq!(p.first_name.as_deref(), Some("Ada"));
        assert_eq!(p.avatar_url.as_deref(), Some("https://x/p.png"));
    }

    #[test]
    fn userinfo_sub_must_match_the_id_token() {
        let id = Profile {
            subject: "a".into(),
            ..Profile::default()
        };
        let err = from_userinfo(ProviderKind::Oidc, &json!({"sub": "b"}), Some(&id)).unwrap_err();
        assert!(matches!(err, ProviderError::InvalidIdToken(_)));
    }

    #[test]
    fn missing_email_verified_is_not_verified() {
        let p = from_userinfo(
            ProviderKind::Oidc,
            &json!({"sub": "1", "email": "a@b.c"}),
            None,
        )
        .unwrap();
        assert!(!p.email_verified);
    }

    #[test]
    fn userinfo_without_sub_is_rejected() {
        assert!(from_userinfo(ProviderKind::Demo, &json!({"email": "a@b.c"}), None).is_err());
    }
}
