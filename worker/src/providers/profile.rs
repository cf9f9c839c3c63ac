//! The person as a provider describes them, mapped per kind into one [`Profile`]:
//! OIDC standard claims (ID token and userinfo) for `oidc`, `google` and `demo`;
//! Facebook's Graph `me`; GitHub's `/user` and `/user/emails`; Apple's ID token plus
//! the first sign-in's `user` form field; JSON pointers for generic `oauth2`.

use openidconnect::{EmptyAdditionalClaims, IdTokenClaims, core::CoreGenderClaim};
use serde_json::Value;

use super::ProviderError;
use crate::config::{ClaimPointers, ProviderKind};

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

impl Profile {
    /// Whether it holds what a user record needs without asking userinfo: an email
    /// the provider marks verified (what linking and `require_email` rely on) and a
    /// name to greet the person with.
    pub fn is_enough_for_a_user(&self) -> bool {
        self.email.is_some()
            && self.email_verified
            && (self.display_name.is_some() || self.first_name.is_some())
    }
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
        other => Err(ProviderError::Profile(format!(
            "kind {other} has no OIDC userinfo"
        ))),
    }
}

/// Facebook Graph `me?fields=id,email,first_name,last_name,name,picture`. Facebook does
/// not say whether the address is verified, so it never links accounts by itself.
pub fn from_facebook(json: &Value) -> Result<Profile, ProviderError> {
    let subject = string_claim(json, "id")
        .ok_or_else(|| ProviderError::Profile("Graph `me` has no `id`".into()))?;
    Ok(Profile {
        subject,
        email: string_claim(json, "email").map(|e| normalize_email(&e)),
        email_verified: false,
        first_name: string_claim(json, "first_name"),
        last_name: string_claim(json, "last_name"),
        display_name: string_claim(json, "name"),
        avatar_url: json
            .pointer("/picture/data/url")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    })
}

/// GitHub `/user` plus `/user/emails`: the primary verified address, else none
/// verified (the public profile email is not known to be verified).
pub fn from_github(user: &Value, emails: Option<&Value>) -> Result<Profile, ProviderError> {
    let subject = string_claim(user, "id")
        .ok_or_else(|| ProviderError::Profile("GitHub `/user` has no `id`".into()))?;
    let primary_verified = emails.and_then(Value::as_array).and_then(|list| {
        list.iter()
            .find(|e| e["primary"] == true && e["verified"] == true)
            .and_then(|e| e["email"].as_str())
    });
    let (email, email_verified) = match primary_verified {
        Some(email) => (Some(normalize_email(email)), true),
        None => (
            string_claim(user, "email").map(|e| normalize_email(&e)),
            false,
        ),
    };
    let display_name = string_claim(user, "name").or_else(|| string_claim(user, "login"));
    let (first_name, last_name) = split_name(string_claim(user, "name").as_deref());
    Ok(Profile {
        subject,
        email,
        email_verified,
        first_name,
        last_name,
        display_name,
        avatar_url: string_claim(user, "avatar_url"),
    })
}

/// Apple: the ID token carries the subject and email; the name arrives only on the
/// first sign-in, in the `user` form field (`{"name":{"firstName","lastName"}}`).
pub fn from_apple(from_id_token: &Profile, user_field: Option<&str>) -> Profile {
    let user: Value = user_field
        .and_then(|u| serde_json::from_str(u).ok())
        .unwrap_or(Value::Null);
    let first_name = user
        .pointer("/name/firstName")
        .and_then(Value::as_str)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let last_name = user
        .pointer("/name/lastName")
        .and_then(Value::as_str)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let display_name = match (&first_name, &last_name) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (Some(f), None) => Some(f.clone()),
        (None, Some(l)) => Some(l.clone()),
        (None, None) => None,
    };
    Profile {
        first_name: first_name.or_else(|| from_id_token.first_name.clone()),
        last_name: last_name.or_else(|| from_id_token.last_name.clone()),
        display_name: display_name.or_else(|| from_id_token.display_name.clone()),
        ..from_id_token.clone()
    }
}

/// Generic OAuth 2: each field where its JSON pointer says.
pub fn from_pointers(json: &Value, pointers: &ClaimPointers) -> Result<Profile, ProviderError> {
    let at = |pointer: &str| -> Option<String> {
        if pointer.is_empty() {
            return None;
        }
        match json.pointer(pointer)? {
            Value::String(s) => {
                Some(s.trim().to_owned()).filter(|s| !s.is_empty() && s.len() <= 2048)
            }
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let subject = at(&pointers.subject).ok_or_else(|| {
        ProviderError::Profile(format!("userinfo has nothing at `{}`", pointers.subject))
    })?;
    let email_verified = match json.pointer(&pointers.email_verified) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    Ok(Profile {
        subject,
        email: at(&pointers.email).map(|e| normalize_email(&e)),
        email_verified,
        first_name: at(&pointers.first_name),
        last_name: at(&pointers.last_name),
        display_name: at(&pointers.display_name),
        avatar_url: at(&pointers.avatar_url),
    })
}

/// "Ada King Lovelace" → ("Ada", "King Lovelace").
fn split_name(name: Option<&str>) -> (Option<String>, Option<String>) {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        None => (None, None),
        Some(name) => match name.split_once(char::is_whitespace) {
            Some((first, rest)) => (Some(first.to_owned()), Some(rest.trim().to_owned())),
            None => (Some(name.to_owned()), None),
        },
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
    fn github_uses_the_primary_verified_email() {
        let user = json!({"id": 583231, "login": "octocat", "name": "The Octocat", "email": "public@example.com", "avatar_url": "https://a/x.png"});
        let emails = json!([
            {"email": "old@example.com", "primary": false, "verified": true, "visibility": null},
            {"email": "Octo@Example.com", "primary": true, "verified": true, "visibility": "public"},
        ]);
        let p = from_github(&user, Some(&emails)).unwrap();
        assert_eq!(p.subject, "583231");
        assert_eq!(p.email.as_deref(), Some("octo@example.com"));
        assert!(p.email_verified);
        assert_eq!(p.first_name.as_deref(), Some("The"));
        assert_eq!(p.display_name.as_deref(), Some("The Octocat"));
        let unverified = json!([{"email": "x@example.com", "primary": true, "verified": false}]);
        let p = from_github(&user, Some(&unverified)).unwrap();
        assert_eq!(p.email.as_deref(), Some("public@example.com"));
        assert!(!p.email_verified);
    }

    #[test]
    fn facebook_email_is_optional_and_never_verified() {
        let p = from_facebook(
            &json!({"id": "10158", "first_name": "Mark", "last_name": "Z", "name": "Mark Z",
            "picture": {"data": {"url": "https://fb/p.jpg", "is_silhouette": false}}}),
        )
        .unwrap();
        assert_eq!(p.subject, "10158");
        assert_eq!(p.email, None);
        assert_eq!(p.avatar_url.as_deref(), Some("https://fb/p.jpg"));
        let p = from_facebook(&json!({"id": "1", "email": "m@fb.com"})).unwrap();
        assert!(!p.email_verified);
    }

    #[test]
    fn apple_name_comes_from_the_user_field_once() {
        let id = Profile {
            subject: "001.abc".into(),
            email: Some("x@privaterelay.appleid.com".into()),
            email_verified: true,
            ..Profile::default()
        };
        let first = from_apple(
            &id,
            Some(
                r#"{"name":{"firstName":"Tim","lastName":"Apple"},"email":"x@privaterelay.appleid.com"}"#,
            ),
        );
        assert_eq!(first.first_name.as_deref(), Some("Tim"));
        assert_eq!(first.display_name.as_deref(), Some("Tim Apple"));
        let later = from_apple(&id, None);
        assert_eq!(later.first_name, None);
        assert_eq!(later.email, id.email);
        assert_eq!(from_apple(&id, Some("not json")).subject, "001.abc");
    }

    #[test]
    fn pointers_map_nested_fields() {
        let pointers = ClaimPointers {
            subject: "/data/uid".into(),
            email: "/data/mail".into(),
            email_verified: "/data/ok".into(),
            ..ClaimPointers::default()
        };
        let p = from_pointers(
            &json!({"data": {"uid": 7, "mail": "A@B.C", "ok": true}, "name": "Ann"}),
            &pointers,
        )
        .unwrap();
        assert_eq!(p.subject, "7");
        assert_eq!(p.email.as_deref(), Some("a@b.c"));
        assert!(p.email_verified);
        assert_eq!(p.display_name.as_deref(), Some("Ann"));
        assert!(from_pointers(&json!({}), &pointers).is_err());
    }

    #[test]
    fn userinfo_without_sub_is_rejected() {
        assert!(from_userinfo(ProviderKind::Demo, &json!({"email": "a@b.c"}), None).is_err());
    }
}
