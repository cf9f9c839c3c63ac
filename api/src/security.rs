//! Browser-facing protections applied in one place: security headers on every
//! response, and the same-origin check for state-changing requests that a cookie
//! authenticates (CSRF).

use poem::{
    Endpoint, IntoResponse, Request, Response,
    http::{HeaderMap, HeaderValue, header},
};

use crate::state::AppState;

/// Our pages: scripts, styles and forms only from our origin, never framed. No
/// inline script anywhere (the pages load `/static/*.js`). Provider avatars may be
/// any https image.
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' https: data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'";
/// The index page with Google's One Tap on: Google's script, its styles, its
/// iframe and its calls are allowed too (Google's documented CSP), nothing else.
pub const ONE_TAP_PAGE_CSP: &str = "default-src 'self'; \
     script-src 'self' https://accounts.google.com/gsi/client; \
     style-src 'self' https://accounts.google.com/gsi/style; \
     frame-src https://accounts.google.com/gsi/; \
     connect-src 'self' https://accounts.google.com/gsi/; \
     img-src 'self' https: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
/// `/api/docs`: poem-openapi's Swagger UI page is one inline bundle.
const DOCS_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     base-uri 'none'; frame-ancestors 'none'";
/// JSON and everything else: nothing to run, nothing to frame.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Adds the security headers (CSP, `X-Frame-Options`, `nosniff`, `Referrer-Policy`,
/// HSTS on https) and `Cache-Control: no-store` where a response carries a token, a
/// code or an operation. Headers a route set itself are kept.
pub async fn security_headers<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    // Classified before the call, so the path need not be kept.
    let path = req.uri().path();
    let docs = path.starts_with("/api/docs");
    let json = is_json_path(path);
    let secrets = carries_secrets(path);
    // `/` greets the signed-in user by name.
    let no_store = secrets || json || path == "/";
    let https = req
        .data::<AppState>()
        .is_some_and(|state| state.settings.is_https());
    let mut response = match next.call(req).await {
        Ok(response) => response.into_response(),
        Err(error) => error.into_response(),
    };
    let headers = response.headers_mut();
    let csp = match (docs, json) {
        (true, _) => DOCS_CSP,
        (false, true) => API_CSP,
        (false, false) => PAGE_CSP,
    };
    set_default(headers, header::CONTENT_SECURITY_POLICY, csp);
    set_default(headers, header::X_FRAME_OPTIONS, "DENY");
    set_default(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // The callback's and the preloader's URLs must never leak (codes, state), and a
    // page we serve has no reason to tell other sites where the user was.
    if secrets {
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    } else {
        set_default(headers, header::REFERRER_POLICY, "same-origin");
    }
    if no_store {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if https {
        set_default(headers, header::STRICT_TRANSPORT_SECURITY, HSTS);
    }
    Ok(response)
}

fn set_default(headers: &mut HeaderMap, name: header::HeaderName, value: &'static str) {
    if !headers.contains_key(&name) {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

fn is_json_path(path: &str) -> bool {
    (path.starts_with("/api/") && !path.starts_with("/api/docs")) || path == "/auth/status"
}

/// Routes whose URL or response carries a code, `state`, a session cookie, tokens or
/// an operation: never cached, never sent as a referrer.
fn carries_secrets(path: &str) -> bool {
    path.starts_with("/auth/") || path.starts_with("/demo-provider/")
}

/// The JSON API's CORS policy when `cors.allowed_origins` names other origins:
/// those origins (and our own) may call it with credentials, the bearer token and
/// the poll secret; a request from any other origin is refused (403). `None`: no
/// cross-origin calls, and no CORS headers at all.
pub fn cors(settings: &worker::config::Settings) -> Option<poem::middleware::Cors> {
    let allowed = &settings.cors.allowed_origins;
    if allowed.is_empty() {
        return None;
    }
    let ours = settings.public_url.origin().ascii_serialization();
    let origins: std::collections::HashSet<String> =
        allowed.iter().cloned().chain([ours]).collect();
    // A function (not a list) so that poem adds `Vary: Origin` to every answer.
    Some(
        poem::middleware::Cors::new()
            .allow_origins_fn(move |origin| origins.contains(origin))
            .allow_credentials(true)
            .allow_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
            .allow_headers(["authorization", "content-type", "x-poll-secret"])
            .expose_headers(["location", "retry-after", "www-authenticate"])
            .max_age(600),
    )
}

/// Whether a request may change state on the strength of the session cookie: it
/// must come from one of our own pages. Browsers send `Sec-Fetch-Site`; older ones
/// send `Origin` on every POST. A request with neither is not a browser's cross-site
/// request (curl, an app), and the cookies are `SameSite=Lax` as well.
///
/// `navigation` allows `Sec-Fetch-Site: none` (the user typed or bookmarked the URL),
/// for GET routes that start something, such as linking a provider.
pub fn is_same_origin(req: &Request, state: &AppState, navigation: bool) -> bool {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin" || (navigation && site == "none");
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => origin == state.settings.public_url.origin().ascii_serialization(),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_json_paths() {
        assert!(carries_secrets("/auth/google/callback"));
        assert!(carries_secrets("/auth/preloader"));
        assert!(!carries_secrets("/"));
        assert!(is_json_path("/api/me"));
        assert!(is_json_path("/auth/status"));
        assert!(!is_json_path("/api/docs/"));
    }
}
