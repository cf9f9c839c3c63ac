//! Route handlers, one file per route, named after its last path segment.

pub mod auth;
pub mod auth_api;
pub mod health;
pub mod index;
pub mod introspect;
pub mod jwks;
pub mod me;
pub mod native_token;
pub mod operations;
pub mod providers;
pub mod sessions;

/// Groups of operations in the OpenAPI document.
#[derive(poem_openapi::Tags)]
pub enum Tag {
    /// Password and token sign-in, refresh, logout, native social sign-in.
    Auth,
    /// The signed-in user.
    Account,
    /// Sessions across devices.
    Sessions,
    /// Configured providers.
    Providers,
    /// The browser sign-in flow's JSON endpoint.
    Browser,
}

use std::collections::HashMap;

use poem::http::Uri;

/// Longest query string any route reads.
const MAX_QUERY_LEN: usize = 8192;

/// A query string read strictly: each listed key at most once and within its length
/// bound; other keys (providers add their own) are ignored.
#[derive(Debug, Default)]
pub struct QueryParams(HashMap<&'static str, String>);

/// Why a query string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    TooLong,
    Duplicate(&'static str),
    Oversized(&'static str),
}

impl QueryError {
    /// A sentence for the error response.
    pub fn message(self) -> String {
        match self {
            Self::TooLong => "The query string is too long.".to_owned(),
            Self::Duplicate(key) => format!("The parameter `{key}` appears more than once."),
            Self::Oversized(key) => format!("The parameter `{key}` is too long."),
        }
    }
}

impl QueryParams {
    /// Parses `uri`'s query for `keys`, each with its maximum length.
    pub fn parse(uri: &Uri, keys: &[(&'static str, usize)]) -> Result<Self, QueryError> {
        Self::parse_str(uri.query().unwrap_or_default(), keys)
    }

    /// Parses an `application/x-www-form-urlencoded` string (a query or a form body).
    pub fn parse_str(query: &str, keys: &[(&'static str, usize)]) -> Result<Self, QueryError> {
        if query.len() > MAX_QUERY_LEN {
            return Err(QueryError::TooLong);
        }
        let mut params = HashMap::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let Some(&(known, max_len)) = keys.iter().find(|(k, _)| *k == key) else {
                continue;
            };
            if value.len() > max_len {
                return Err(QueryError::Oversized(known));
            }
            if params.insert(known, value.into_owned()).is_some() {
                return Err(QueryError::Duplicate(known));
            }
        }
        Ok(Self(params))
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_oversized_values_are_refused() {
        let keys = [("state", 8), ("code", 8)];
        let parse = |q: &str| QueryParams::parse(&format!("/x?{q}").parse().unwrap(), &keys);
        assert_eq!(
            parse("state=a&state=b").unwrap_err(),
            QueryError::Duplicate("state")
        );
        assert_eq!(
            parse("state=123456789").unwrap_err(),
            QueryError::Oversized("state")
        );
        let ok = parse("state=a%20b&other=1&other=2").unwrap();
        assert_eq!(ok.get("state"), Some("a b"));
        assert_eq!(ok.get("code"), None);
    }
}
