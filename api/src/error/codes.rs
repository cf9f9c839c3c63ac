//! Every `error.code` a JSON answer can carry: the JSON API's own refusals, the
//! generic ones for requests the router or the document refuse, and the codes a
//! sign-in operation ends with (`/auth/status`, `/api/operations/{id}`). The
//! OpenAPI document lists them as the `enum` of `ErrorDetail.code`, and the
//! TypeScript client's `ServerErrorCode` is the same list (a test compares them).

/// Sorted; a test keeps this list and the code in step.
pub const ERROR_CODES: &[&str] = &[
    "access_token_expired",
    "access_token_invalid",
    "account_in_use",
    "already_redeemed",
    "bad_request",
    "busy",
    "cross_site_request",
    "database_unavailable",
    "domain_not_allowed",
    "email_in_use",
    "email_required",
    "error",
    "exchange_interrupted",
    "forbidden",
    "id_token_invalid",
    "internal_error",
    "invalid_client",
    "invalid_credentials",
    "invalid_email",
    "invalid_grant",
    "invalid_limit",
    "invalid_operation",
    "invalid_profile",
    "invalid_query",
    "invalid_redirect_uri",
    "invalid_refresh_token",
    "invalid_request",
    "invalid_token",
    "invalid_wait",
    "last_sign_in_method",
    "link_session_ended",
    "method_not_allowed",
    "nonce_required",
    "not_found",
    "payload_too_large",
    "profile_invalid",
    "provider_error",
    "provider_unavailable",
    "queue_unavailable",
    "reauthentication_required",
    "refresh_token_reused",
    "timeout",
    "token_not_for_this_app",
    "too_many_requests",
    "unauthorized",
    "unsupported_grant",
    "unsupported_media_type",
    "weak_password",
];

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, path::Path};

    use super::ERROR_CODES;

    /// The string literal right after each `prefix` in `text` (whitespace and
    /// newlines skipped), when it looks like a code: `[a-z_]+`.
    fn literals_after(text: &str, prefix: &str) -> Vec<String> {
        text.match_indices(prefix)
            .filter_map(|(at, _)| {
                let rest = text[at + prefix.len()..].trim_start();
                let rest = rest.strip_prefix('"')?;
                let end = rest.find('"')?;
                let literal = &rest[..end];
                let after = rest[end + 1..].trim_start();
                let code_like = !literal.is_empty()
                    && literal.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
                // `("code", "sentence")` tuples and `=> "code",` arms, not calls.
                let tuple_or_arm = after.starts_with(',') || after.starts_with(')');
                (code_like && tuple_or_arm).then(|| literal.to_owned())
            })
            .collect()
    }

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The codes the source hands out: `bad_request("…")`, `code: "…"`, the
    /// `("code", "sentence")` tuples of the error mappings and sign-in errors, the
    /// status arms of `json_errors`.
    fn codes_in_source() -> BTreeSet<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        rust_files(&root.join("api/src"), &mut files);
        let mut found = BTreeSet::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            for prefix in ["bad_request(", "code: "] {
                found.extend(literals_after(&text, prefix));
            }
        }
        let mappings = [
            ("api/src/error/mod.rs", "("),
            ("worker/src/jobs/sign_in_error.rs", "("),
            ("worker/src/jobs/sign_in_error.rs", ": &str = "),
            ("worker/src/operations.rs", "(&str, &str) = ("),
            ("worker/src/jobs/handler.rs", "let (code, message) = ("),
        ];
        for (file, prefix) in mappings {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            found.extend(literals_after(&text, prefix));
        }
        let json_errors = std::fs::read_to_string(root.join("api/src/json_errors.rs")).unwrap();
        let json_errors = json_errors
            .split("async fn json_errors")
            .nth(1)
            .and_then(|rest| rest.split("\n}\n").next())
            .expect("json_errors in json_errors.rs");
        found.extend(literals_after(json_errors, "=> "));
        found
    }

    #[test]
    fn every_code_the_source_hands_out_is_listed() {
        let listed: BTreeSet<String> = ERROR_CODES.iter().map(|c| (*c).to_owned()).collect();
        let found = codes_in_source();
        let missing: Vec<_> = found.difference(&listed).collect();
        assert!(missing.is_empty(), "codes not in ERROR_CODES: {missing:?}");
        // The scan is not blind: it finds codes from each kind of place.
        for sample in [
            "invalid_email",
            "refresh_token_reused",
            "provider_unavailable",
            "unsupported_media_type",
            "timeout",
        ] {
            assert!(found.contains(sample), "the scan missed {sample}");
        }
        let mut sorted = ERROR_CODES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, ERROR_CODES, "sorted, no duplicates");
    }
}
