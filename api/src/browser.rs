//! What binds a sign-in to one browser: a random browser key (private cookie) whose
//! hash is stored as the operation's redeemer, and one private cookie per attempt
//! holding its PKCE verifier, nonce and `next`, named after its `state` and sent only
//! to that provider's callback. Two tabs get two attempts and never collide.

use std::{borrow::Cow, time::Duration};

use chrono::Utc;
use poem::web::cookie::{Cookie, CookieJar, SameSite};
use serde::{Deserialize, Serialize};
use worker::{config::Settings, crypto, linking::LinkTo};

/// Private cookie holding this browser's random key.
pub const BROWSER_COOKIE: &str = "signin_browser";
const ATTEMPT_COOKIE_PREFIX: &str = "signin_attempt_";
/// How long a started sign-in may take to come back from the provider.
pub const ATTEMPT_TTL: Duration = Duration::from_secs(600);
/// Longest `state` we accept; ours are 43 characters.
pub const MAX_STATE_LEN: usize = 512;

/// One started sign-in, as stored in its cookie.
#[derive(Debug, Serialize, Deserialize)]
pub struct Attempt {
    pub provider: String,
    /// SHA-256 of the `state` sent to the provider.
    state_hash: String,
    pub pkce_verifier: String,
    pub nonce: Option<String>,
    pub next: Option<String>,
    /// For "link another provider": the signed-in user to link to, and the
    /// session that asked.
    #[serde(default)]
    pub link: Option<LinkTo>,
    /// Unix seconds.
    created_at: i64,
}

impl Attempt {
    /// A fresh attempt for `state`.
    pub fn new(
        provider: &str,
        state: &str,
        pkce_verifier: String,
        nonce: Option<String>,
        next: Option<String>,
        link: Option<LinkTo>,
    ) -> Self {
        Self {
            provider: provider.to_owned(),
            state_hash: crypto::sha256_hex(state),
            pkce_verifier,
            nonce,
            next,
            link,
            created_at: Utc::now().timestamp(),
        }
    }
}

/// This browser's key, if it has one.
pub fn browser_key(jar: &CookieJar, settings: &Settings) -> Option<String> {
    jar.private()
        .get(&cookie_name(BROWSER_COOKIE, "/", settings))
        .map(|c| c.value_str().to_owned())
        .filter(|k| k.len() >= 32)
}

/// This browser's key, set now if it has none.
pub fn ensure_browser_key(jar: &CookieJar, settings: &Settings) -> String {
    if let Some(key) = browser_key(jar, settings) {
        return key;
    }
    let key = crypto::random_token(32);
    jar.private()
        .add(cookie(BROWSER_COOKIE, &key, "/", None, settings));
    key
}

/// Forgets this browser's key (at logout): operations it started, finished or
/// not, can no longer be redeemed here, so the next person at a shared computer
/// gets nobody's session from `/auth/success`.
pub fn forget_browser_key(jar: &CookieJar, settings: &Settings) {
    expire(jar, BROWSER_COOKIE, "/", settings);
}

/// What `async_operation.redeemer_hash` stores for a browser key.
pub fn redeemer_hash(browser_key: &str) -> String {
    crypto::sha256_hex(browser_key)
}

/// Stores `attempt` for the callback of its provider.
pub fn save_attempt(jar: &CookieJar, settings: &Settings, state: &str, attempt: &Attempt) {
    let value = serde_json::to_string(attempt).expect("an attempt serializes");
    let path = callback_path(&attempt.provider);
    jar.private().add(cookie(
        &attempt_cookie_name(state),
        &value,
        &path,
        Some(ATTEMPT_TTL),
        settings,
    ));
}

/// The attempt `state` names, if this browser started it for `provider` and it is
/// still fresh. The cookie is removed either way: a state is good for one callback.
pub fn take_attempt(
    jar: &CookieJar,
    settings: &Settings,
    provider: &str,
    state: &str,
) -> Option<Attempt> {
    if state.is_empty() || state.len() > MAX_STATE_LEN {
        return None;
    }
    let name = attempt_cookie_name(state);
    let path = callback_path(provider);
    let found = jar.private().get(&cookie_name(&name, &path, settings))?;
    expire(jar, &name, &path, settings);
    let attempt: Attempt = serde_json::from_str(found.value_str()).ok()?;
    attempt
        .answers(provider, state, Utc::now().timestamp())
        .then_some(attempt)
}

impl Attempt {
    /// Whether a callback for `provider` carrying `state` at `now` (Unix seconds)
    /// completes this attempt: same provider, same state, within [`ATTEMPT_TTL`].
    fn answers(&self, provider: &str, state: &str, now: i64) -> bool {
        let fresh = now - self.created_at <= ATTEMPT_TTL.as_secs() as i64;
        let same_state = crypto::constant_time_eq(
            self.state_hash.as_bytes(),
            crypto::sha256_hex(state).as_bytes(),
        );
        fresh && same_state && self.provider == provider
    }
}

fn attempt_cookie_name(state: &str) -> String {
    format!(
        "{ATTEMPT_COOKIE_PREFIX}{}",
        &crypto::sha256_hex(state)[..16]
    )
}

fn callback_path(provider: &str) -> String {
    format!("/auth/{provider}/callback")
}

/// How long the nonce a page gave Google's One Tap stays good.
pub const ONE_TAP_TTL: Duration = Duration::from_secs(3600);
const ONE_TAP_COOKIE: &str = "signin_one_tap";

/// The nonce for Google's One Tap on this browser's pages: the one it holds while
/// it is younger than half of [`ONE_TAP_TTL`] (so tabs share it), else a new one.
/// Kept in a private cookie; the ID token Google posts back must carry it.
pub fn one_tap_nonce(jar: &CookieJar, settings: &Settings) -> String {
    let now = Utc::now().timestamp();
    let half = ONE_TAP_TTL.as_secs() as i64 / 2;
    if let Some((nonce, created_at)) = read_one_tap(jar, settings)
        && now - created_at < half
    {
        return nonce;
    }
    let nonce = crypto::random_token(32);
    jar.private().add(cookie(
        ONE_TAP_COOKIE,
        &format!("{nonce}.{now}"),
        "/",
        Some(ONE_TAP_TTL),
        settings,
    ));
    nonce
}

/// This browser's One Tap nonce if it is still good.
pub fn current_one_tap_nonce(jar: &CookieJar, settings: &Settings) -> Option<String> {
    let (nonce, created_at) = read_one_tap(jar, settings)?;
    (Utc::now().timestamp() - created_at <= ONE_TAP_TTL.as_secs() as i64).then_some(nonce)
}

/// Spends this browser's One Tap nonce (once its sign-in is queued): a nonce signs
/// in once.
pub fn spend_one_tap_nonce(jar: &CookieJar, settings: &Settings) {
    expire(jar, ONE_TAP_COOKIE, "/", settings);
}

fn read_one_tap(jar: &CookieJar, settings: &Settings) -> Option<(String, i64)> {
    let found = jar
        .private()
        .get(&cookie_name(ONE_TAP_COOKIE, "/", settings))?;
    let (nonce, created_at) = found.value_str().split_once('.')?;
    Some((nonce.to_owned(), created_at.parse().ok()?))
}

/// The name cookie `name` at `path` really has. On https, site-wide cookies get
/// `__Host-` (the browser then insists on `Secure`, `Path=/` and no `Domain`, so
/// neither a sibling subdomain nor a plain-http response can plant or overwrite
/// them) and path-scoped ones `__Secure-`.
pub fn cookie_name<'a>(name: &'a str, path: &str, settings: &Settings) -> Cow<'a, str> {
    match (settings.is_https(), path) {
        (false, _) => Cow::Borrowed(name),
        (true, "/") => Cow::Owned(format!("__Host-{name}")),
        (true, _) => Cow::Owned(format!("__Secure-{name}")),
    }
}

/// A cookie with our flags: `HttpOnly; SameSite=Lax`, `Secure` and a name prefix
/// ([`cookie_name`]) on https.
pub fn cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: Option<Duration>,
    settings: &Settings,
) -> Cookie {
    let mut cookie = Cookie::new_with_str(cookie_name(name, path, settings), value);
    cookie.set_http_only(true);
    cookie.set_same_site(SameSite::Lax);
    cookie.set_path(path);
    cookie.set_secure(settings.is_https());
    if let Some(max_age) = max_age {
        cookie.set_max_age(max_age);
    }
    cookie
}

/// Tells the browser to drop cookie `name` at `path`.
pub fn expire(jar: &CookieJar, name: &str, path: &str, settings: &Settings) {
    let mut removal = cookie(name, "", path, Some(Duration::ZERO), settings);
    removal.make_removal();
    jar.add(removal);
}

/// A `next` that stays on this site: an absolute path, not `//host` or `/\host`,
/// no control characters, bounded length. Anything else is dropped.
pub fn validate_next(next: &str) -> Option<String> {
    let ok = next.len() <= 1024
        && next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace());
    if !ok {
        return None;
    }
    let base = url::Url::parse("http://same.invalid").expect("static URL");
    let resolved = base.join(next).ok()?;
    (resolved.host_str() == Some("same.invalid")).then(|| ascii_only(next))
}

/// `path` with every non-ASCII character percent-encoded (UTF-8), so a `Location`
/// header carries ASCII only.
fn ascii_only(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_expire_and_bind_to_provider_and_state() {
        let state = "a-state-of-sufficient-length";
        let attempt = Attempt::new("mock", state, "v".repeat(43), None, None, None);
        let now = attempt.created_at;
        let ttl = ATTEMPT_TTL.as_secs() as i64;
        assert!(attempt.answers("mock", state, now));
        assert!(attempt.answers("mock", state, now + ttl));
        assert!(!attempt.answers("mock", state, now + ttl + 1), "stale");
        assert!(!attempt.answers("github", state, now), "another provider");
        assert!(
            !attempt.answers("mock", "another-state", now),
            "another state"
        );
    }

    #[test]
    fn next_accepts_local_paths_only() {
        for good in ["/", "/account", "/a/b?x=1#top", "/%2F%2Fevil"] {
            assert_eq!(validate_next(good).as_deref(), Some(good), "{good}");
        }
        for bad in [
            "",
            "https://evil.com",
            "//evil.com",
            "/\\evil.com",
            "\\\\evil",
            "/ok\n",
            "javascript:alert(1)",
            "/\tx",
            "evil.com",
            "/a b",
        ] {
            assert_eq!(validate_next(bad), None, "{bad:?}");
        }
        assert_eq!(validate_next(&format!("/{}", "a".repeat(2000))), None);
        // Kept, but as ASCII: a Location header must not carry raw UTF-8.
        assert_eq!(
            validate_next("/café?q=ü").as_deref(),
            Some("/caf%C3%A9?q=%C3%BC")
        );
    }
}
