//! Property tests (proptest) over every entry point that takes input from outside
//! before anyone is signed in: the provider callback (GET and form POST), the status
//! poll, the success and login pages, the native token exchange and its operation
//! poll, and the ID-token parser. Whatever the input, the answer is a response (no
//! panic, no broken connection), never a 5xx, and never a session.
//!
//! Each property runs a fixed number of cases against one app on 127.0.0.1, with a
//! 5 s timeout on every request. The cases come from a fixed seed, the same every run
//! (`worker/src/proptest_config.rs`: `PROPTEST_CASES` and `PROPTEST_RNG_SEED=random`
//! make a longer, random search); a failure prints the shrunk input.

use std::{future::Future, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use entity::prelude::Session;
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use reqwest::{
    Method, RequestBuilder, StatusCode,
    header::{CONTENT_TYPE, COOKIE, HeaderValue, LOCATION, SET_COOKIE},
    redirect::Policy,
};
use serde_json::{Map, Value, json};
use url::Url;

use crate::helpers::{
    Browser, Options, TestApp, mock_provider::CLIENT_ID, preloader_operation_of, spawn_app_with,
};

// ---- harness --------------------------------------------------------------------

/// Runs `cases` cases of `strategy` through `test` (which drives async code with
/// [`block_on`]), shrinking a failure to a minimal input. Needs a multi-thread
/// runtime: the runner blocks this thread while the app serves on the others.
fn run<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let config = Config {
        max_shrink_iters: 256,
        max_shrink_time: 60_000,
        ..crate::proptest_config::config(cases)
    };
    let mut runner = TestRunner::new(config);
    let result = tokio::task::block_in_place(|| runner.run(&strategy, test));
    if let Err(error) = result {
        panic!("{error}");
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(future)
}

/// The app with the per-IP budgets off (the properties would only see 429s) and
/// room for many pending operations per browser and per address.
async fn fuzz_app(options: Options) -> TestApp {
    let limits = json!({"limits": {
        "sign_in_starts_per_ip_per_minute": 0,
        "callbacks_per_ip_per_minute": 0,
        "status_polls_per_ip_per_minute": 0,
        "native_sign_ins_per_ip_per_minute": 0,
        "pending_operations_per_browser": 100_000,
        "pending_operations_per_ip": 0,
    }});
    let mut overrides = options.overrides.clone();
    crate::helpers::merge(&mut overrides, limits);
    spawn_app_with(Options {
        overrides,
        ..options
    })
    .await
    .expect("SQLite needs no configuration")
}

fn client(cookies: bool) -> reqwest::Client {
    worker::telemetry::install_crypto_provider();
    reqwest::Client::builder()
        .cookie_store(cookies)
        .redirect(Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client builds")
}

/// A fresh browser (own cookie jar) with the 5 s timeout.
fn browser(app: &TestApp) -> Browser {
    Browser {
        address: app.address.clone(),
        client: client(true),
    }
}

/// What came back, read whole.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    location: Option<String>,
    body: String,
}

/// Sends `request` and checks what every answer must satisfy: an answer at all (a
/// panicking handler breaks the connection), below 500, and no session cookie.
async fn send(what: &str, request: RequestBuilder) -> Result<Reply, TestCaseError> {
    // Paths may carry 60 KB of query: name them by their start.
    let what = &what[..what.floor_char_boundary(200)];
    let response = request
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("{what}: no answer ({e:?})")))?;
    let status = response.status();
    if status.is_server_error() {
        let body = response.text().await.unwrap_or_default();
        return Err(TestCaseError::fail(format!("{what}: {status} {body:.300}")));
    }
    for cookie in response.headers().get_all(SET_COOKIE) {
        let cookie = String::from_utf8_lossy(cookie.as_bytes());
        let (name, rest) = cookie.split_once('=').unwrap_or((&cookie, ""));
        let value = rest.split(';').next().unwrap_or_default();
        if name.contains(api::session::SESSION_COOKIE) && !value.is_empty() {
            return Err(TestCaseError::fail(format!("{what}: session cookie set")));
        }
    }
    let location = response
        .headers()
        .get(LOCATION)
        .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
    let body = response
        .text()
        .await
        .map_err(|e| TestCaseError::fail(format!("{what}: body cut ({e})")))?;
    Ok(Reply {
        status,
        location,
        body,
    })
}

/// A redirect, if any, stays on this site.
fn assert_local_redirect(what: &str, reply: &Reply) -> Result<(), TestCaseError> {
    if let Some(location) = &reply.location {
        let base = Url::parse("http://app.invalid/auth/x/callback").unwrap();
        let on_site = base
            .join(location)
            .is_ok_and(|u| u.host_str() == Some("app.invalid"));
        prop_assert!(on_site, "{what}: off-site redirect to {location:?}");
    }
    Ok(())
}

/// Waits (bounded) until the browser's latest operation leaves `pending`.
async fn settle(browser: &Browser) -> Result<Value, TestCaseError> {
    for _ in 0..4 {
        let reply = send(
            "settle",
            browser
                .client
                .get(format!("{}/auth/status?wait=2", browser.address)),
        )
        .await?;
        let body: Value = serde_json::from_str(&reply.body).unwrap_or_default();
        if body["status"] != "pending" {
            return Ok(body);
        }
    }
    Err(TestCaseError::fail("operation still pending after ~8 s"))
}

/// The sessions table stays empty: nothing in a property signs anyone in.
async fn assert_no_sessions(app: &TestApp) {
    assert_eq!(app.count(Session).await, 0, "a session was created");
}

// ---- strategies -------------------------------------------------------------------

/// Every byte as `%XX`.
fn pct(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// One query-string or form component exactly as it goes on the wire: encoded text
/// and bytes (non-UTF-8 too), raw URL-safe characters, broken escapes, huge values.
fn component() -> BoxedStrategy<String> {
    prop_oneof![
        3 => any::<String>().prop_map(|s| pct(s.as_bytes())),
        2 => prop::collection::vec(any::<u8>(), 0..48).prop_map(|b| pct(&b)),
        3 => "[A-Za-z0-9._~!$'()*,;:@/?+-]{0,40}",
        2 => "(%|%[0-9A-Fa-f]|%[G-Zg-z][0-9]|%%|%0|%00|%FF|%C0%AF|%E2%80%AE|%ED%A0%80|\\+|=|&){1,8}",
        1 => prop::sample::select(vec![
            "%22%3E%3Cscript%3Ex%3C%2Fscript%3E", // "><script>x</script>
            "javascript:alert(1)",
            "%2F%2Fevil.example",
            "https://evil.example/",
            "%0D%0ASet-Cookie:%20signin_session=x",
        ])
        .prop_map(str::to_owned),
        1 => (1usize..12_000).prop_map(|n| "A".repeat(n)),
        1 => (0u64..40).prop_map(|n| n.to_string()),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
    ]
    .boxed()
}

/// A query (or form body) of `keys` and random keys, in any order, repeats allowed.
fn query(keys: &'static [&'static str]) -> BoxedStrategy<String> {
    let key = prop_oneof![
        3 => prop::sample::select(keys.to_vec()).prop_map(str::to_owned),
        1 => component(),
    ];
    let pair = (key, prop::option::weighted(0.9, component())).prop_map(|(k, v)| match v {
        Some(v) => format!("{k}={v}"),
        None => k,
    });
    (
        prop::collection::vec(pair, 0..7),
        prop::sample::select(vec!["&", "&", "&", ";", "&&"]),
    )
        .prop_map(|(pairs, sep)| {
            let mut q = pairs.join(sep);
            // Stay under what an HTTP client can put in a URI (64 KiB).
            q.truncate(60_000);
            q
        })
        .boxed()
}

/// A header value: any bytes a header may carry (visible ASCII, tab, obs-text).
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            8 => 0x20u8..0x7f,
            1 => Just(b'\t'),
            1 => 0x80u8..=0xff,
        ],
        0..300,
    )
}

/// A `Cookie` header: names this app uses or random ones, with random values; or
/// raw header bytes.
fn cookie_header() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "signin_browser",
            "signin_session",
            "signin_attempt_0123456789abcdef",
            "__Host-signin_session",
        ])
        .prop_map(str::to_owned),
        "[!-:<-~]{0,20}",
    ];
    let value = prop_oneof![
        "[!-:<-~]{0,80}",
        (1usize..5000).prop_map(|n| "B".repeat(n)),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
    ];
    prop_oneof![
        3 => prop::collection::vec((name, value), 0..5).prop_map(|pairs| {
            pairs
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
                .into_bytes()
        }),
        1 => header_value(),
    ]
}

/// A provider name in a path: mostly the configured one; unknown, or any encoded
/// bytes.
fn provider_segment(configured: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        12 => Just(configured.to_owned()),
        1 => Just("nope".to_owned()),
        1 => Just("demo".to_owned()),
        1 => "[a-z0-9_-]{0,40}",
        1 => prop::collection::vec(any::<u8>(), 1..24).prop_map(|b| pct(&b)),
    ]
}

/// Arbitrary JSON with odd numbers, long strings and nesting.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::from),
        (0usize..10_000).prop_map(|n| Value::String("c".repeat(n))),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

// ---- ID tokens ------------------------------------------------------------------------

/// Signs `header` and `claims` (any JSON) with the mock provider's published key,
/// whatever `alg` the header claims.
fn sign_rs256(header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("fixtures/rsa_private.pem"))
        .expect("fixture key");
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::RS256)
            .expect("signs");
    format!("{input}.{signature}")
}

/// Claims of a valid token from the mock `issuer` for `aud` and `nonce`.
fn good_claims(issuer: &str, aud: &str, nonce: &str) -> Map<String, Value> {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": issuer, "aud": aud, "sub": "fuzz-user", "iat": now, "exp": now + 300,
        "nonce": nonce, "email": "fuzz@example.com", "email_verified": true,
    })
    .as_object()
    .unwrap()
    .clone()
}

/// What makes a correctly signed token unacceptable.
#[derive(Debug, Clone)]
enum Flaw {
    /// A claim replaced (or removed) with a value that is certainly wrong.
    Claim(&'static str, Option<Value>),
    /// The header says another algorithm (or none) over the RS256 signature.
    Alg(String),
    /// An unknown key id.
    Kid(String),
    /// The signature bytes replaced.
    Signature(Vec<u8>),
}

fn flaw() -> impl Strategy<Value = Flaw> {
    let now = chrono::Utc::now().timestamp();
    let not_a_string = || json_value().prop_filter("not a string", |v| !v.is_string());
    prop_oneof![
        (any::<String>(), prop::bool::ANY).prop_map(|(s, remove)| {
            Flaw::Claim(
                "iss",
                (!remove).then(|| Value::from(format!("https://x{s}"))),
            )
        }),
        json_value()
            .prop_filter("not our client", |v| !v.to_string().contains(CLIENT_ID))
            .prop_map(|v| Flaw::Claim("aud", Some(v))),
        not_a_string().prop_map(|v| Flaw::Claim("sub", Some(v))),
        (i64::MIN..now - 5).prop_map(|t| Flaw::Claim("exp", Some(Value::from(t)))),
        (i64::MIN..now - 400).prop_map(|t| Flaw::Claim("iat", Some(Value::from(t)))),
        (now + 120..i64::MAX).prop_map(|t| Flaw::Claim("iat", Some(Value::from(t)))),
        any::<String>()
            .prop_filter("not the nonce", |n| !n.starts_with("nonce-"))
            .prop_map(|n| Flaw::Claim("nonce", Some(Value::from(n)))),
        not_a_string().prop_map(|v| Flaw::Claim("nonce", Some(v))),
        prop::sample::select(vec!["exp", "iat", "nonce", "aud", "iss", "sub"])
            .prop_map(|k| Flaw::Claim(k, None)),
        prop::sample::select(vec![
            "none", "HS256", "RS384", "ES256", "PS256", "EdDSA", "RSA-OAEP", "dir", ""
        ])
        .prop_map(|a| Flaw::Alg(a.to_owned())),
        "[ -~]{0,30}"
            .prop_filter("not the key", |k| k != "test-key-1")
            .prop_map(Flaw::Kid),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Flaw::Signature),
    ]
}

/// An ID token the provider must refuse: built from a valid one with `flaw`.
fn flawed_token(issuer: &str, aud: &str, nonce: &str, flaw: &Flaw) -> String {
    let mut header = json!({"alg": "RS256", "kid": "test-key-1", "typ": "JWT"});
    let mut claims = good_claims(issuer, aud, nonce);
    match flaw {
        Flaw::Claim(key, Some(value)) => {
            claims.insert((*key).to_owned(), value.clone());
        }
        Flaw::Claim(key, None) => {
            claims.remove(*key);
        }
        Flaw::Alg(alg) => header["alg"] = json!(alg),
        Flaw::Kid(kid) => header["kid"] = json!(kid),
        Flaw::Signature(_) => {}
    }
    let token = sign_rs256(&header, &Value::Object(claims));
    match flaw {
        Flaw::Signature(bytes) => {
            let (input, _) = token.rsplit_once('.').unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes))
        }
        _ => token,
    }
}

/// Any text, three base64url parts of garbage or JSON, or a flawed signed token.
fn id_token(issuer: String) -> impl Strategy<Value = String> {
    let part = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        json_value().prop_map(|v| URL_SAFE_NO_PAD.encode(v.to_string())),
        "[A-Za-z0-9_=+/-]{0,40}",
    ];
    prop_oneof![
        1 => any::<String>(),
        1 => prop::collection::vec(part, 3).prop_map(|p| p.join(".")),
        3 => flaw().prop_map(move |f| flawed_token(&issuer, CLIENT_ID, "nonce-fuzz", &f)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_id_tokens_that_are_not_genuine_are_refused() {
    let app = fuzz_app(Options::default()).await;
    let provider = app
        .state
        .providers
        .get("mock")
        .expect("mock provider")
        .clone();
    let issuer = app.provider.issuer();
    // The genuine token passes: the property below is not vacuous.
    let genuine = sign_rs256(
        &json!({"alg": "RS256", "kid": "test-key-1"}),
        &Value::Object(good_claims(&issuer, CLIENT_ID, "nonce-fuzz")),
    );
    provider
        .verify_native_id_token(&genuine, "nonce-fuzz", false)
        .await
        .expect("the genuine token is accepted");
    run(256, id_token(issuer), |token| {
        let result = block_on(provider.verify_native_id_token(&token, "nonce-fuzz", false));
        prop_assert!(result.is_err(), "accepted: {result:?}");
        Ok(())
    });
}

// ---- GET /auth/{provider}/callback -----------------------------------------------------

const CALLBACK_KEYS: &[&str] = &[
    "state",
    "code",
    "error",
    "error_description",
    "iss",
    "user",
    "_hop",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_never_fails_and_never_signs_in() {
    let app = fuzz_app(Options::default()).await;
    let strategy = (
        query(CALLBACK_KEYS),
        // Start a real attempt first and put its state (and a code) into the query.
        prop::option::weighted(
            0.6,
            (
                0usize..8,
                prop::bool::weighted(0.1),
                prop::option::weighted(0.8, component()),
            ),
        ),
        provider_segment("mock"),
    );
    run(128, strategy, |(query, real_state, provider)| {
        block_on(async {
            let browser = browser(&app);
            let mut query = query;
            let mut has_state = false;
            if let Some((position, twice, code)) = real_state {
                let authorize = browser.start_login("mock", "").await;
                let state = format!("state={}", authorize.state);
                let mut pairs: Vec<String> = query.split('&').map(str::to_owned).collect();
                pairs.insert(position.min(pairs.len()), state.clone());
                if twice {
                    pairs.push(state);
                }
                if let Some(code) = code {
                    pairs.insert(position.min(pairs.len()), format!("code={code}"));
                }
                query = pairs.join("&");
                has_state = true;
            }
            let path = format!("/auth/{provider}/callback?{query}");
            let reply = send(&path, browser.client.get(format!("{}{path}", app.address))).await?;
            assert_local_redirect(&path, &reply)?;
            if reply
                .location
                .as_deref()
                .is_some_and(|l| preloader_operation_of(l).is_some())
            {
                // An operation was recorded: only with this browser's own state.
                prop_assert!(has_state && provider == "mock", "{path}: recorded");
                let status = settle(&browser).await?;
                prop_assert_eq!(&status["status"], "error", "{}: {}", path, status);
                let success = send(
                    "success",
                    browser.client.get(format!("{}/auth/success", app.address)),
                )
                .await?;
                assert_local_redirect("success", &success)?;
            }
            Ok(())
        })
    });
    assert_no_sessions(&app).await;
}

// ---- POST /auth/{provider}/callback (form_post) ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_post_callback_never_fails_and_never_signs_in() {
    let app = fuzz_app(Options {
        mock_name: "apple",
        mock_config: json!({
            "kind": "apple",
            "client_id": "com.example.signin",
            "client_secret": null,
            "authorize_url": "{mock}/auth/authorize",
            "token_url": "{mock}/auth/token",
            "jwks_url": "{mock}/jwks",
            "team_id": "TEAM123456",
            "key_id": "KEY1234567",
            "private_key": include_str!("fixtures/apple_test_key.p8"),
        }),
        ..Options::default()
    })
    .await;
    let body = prop_oneof![
        4 => query(CALLBACK_KEYS).prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..2000),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
    ];
    let content_type = prop_oneof![
        4 => Just(Some("application/x-www-form-urlencoded")),
        1 => prop::option::of(prop::sample::select(vec![
            "application/x-www-form-urlencoded; charset=utf-8",
            "multipart/form-data; boundary=x",
            "application/json",
            "text/plain",
        ])),
    ];
    let strategy = (
        body,
        content_type,
        prop::option::weighted(0.6, (0usize..8, prop::option::weighted(0.8, component()))),
        provider_segment("apple"),
    );
    run(
        128,
        strategy,
        |(body, content_type, real_state, provider)| {
            block_on(async {
                let browser = browser(&app);
                let mut body = body;
                let mut has_state = false;
                if let Some((position, code)) = real_state {
                    let authorize = browser.start_login("apple", "").await;
                    let text = String::from_utf8_lossy(&body).into_owned();
                    let mut pairs: Vec<String> = text.split('&').map(str::to_owned).collect();
                    pairs.insert(
                        position.min(pairs.len()),
                        format!("state={}", authorize.state),
                    );
                    if let Some(code) = code {
                        pairs.insert(position.min(pairs.len()), format!("code={code}"));
                    }
                    body = pairs.join("&").into_bytes();
                    has_state = true;
                }
                let path = format!("/auth/{provider}/callback");
                let mut request = browser
                    .client
                    .post(format!("{}{path}", app.address))
                    .body(body.clone());
                if let Some(content_type) = content_type {
                    request = request.header(CONTENT_TYPE, content_type);
                }
                let reply = send(&path, request).await?;
                assert_local_redirect(&path, &reply)?;
                // The re-post page escapes what it echoes.
                prop_assert!(!reply.body.contains("<script>x"), "{path}: unescaped echo");
                if reply
                    .location
                    .as_deref()
                    .is_some_and(|l| preloader_operation_of(l).is_some())
                {
                    prop_assert!(has_state && provider == "apple", "{path}: recorded");
                    let status = settle(&browser).await?;
                    prop_assert_eq!(&status["status"], "error", "{}", status);
                }
                Ok(())
            })
        },
    );
    assert_no_sessions(&app).await;
}

// ---- GET /auth/status -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_never_fails() {
    let app = fuzz_app(Options::default()).await;
    let strategy = (
        query(&["wait", "operation"]),
        prop::option::of(cookie_header()),
        // Poll as a browser that has a (failed) operation of its own.
        prop::bool::weighted(0.25),
    );
    let plain = client(false);
    run(128, strategy, |(query, cookie, with_operation)| {
        block_on(async {
            let browser = browser(&app);
            if with_operation {
                let authorize = browser.start_login("mock", "").await;
                browser.return_from_provider(&authorize, "fuzz-code").await;
                settle(&browser).await?;
            }
            let path = format!("/auth/status?{query}");
            let client = if with_operation {
                &browser.client
            } else {
                &plain
            };
            let mut request = client.get(format!("{}{path}", app.address));
            if let Some(cookie) = &cookie {
                request = request.header(COOKIE, HeaderValue::from_bytes(cookie).unwrap());
            }
            let reply = send(&path, request).await?;
            // A JSON answer, `ok` for nobody.
            let body: Value = serde_json::from_str(&reply.body).map_err(|_| {
                TestCaseError::fail(format!("{path}: not JSON: {:.200}", reply.body))
            })?;
            prop_assert_ne!(&body["status"], "ok");
            Ok(())
        })
    });
    assert_no_sessions(&app).await;
}

// ---- POST /api/auth/{provider}/token and GET /api/operations/{id} -----------------------

/// A token-exchange body: one of the two shapes the endpoint takes with each field
/// well-formed or not, any object of its fields, other JSON, or no JSON at all.
fn token_body(issuer: String, redirect_uri: String) -> impl Strategy<Value = Vec<u8>> {
    /// `good` mostly; otherwise a value of any type or an oversized string.
    fn maybe(good: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
        prop_oneof![
            12 => good,
            1 => json_value(),
            1 => (0usize..10_000).prop_map(|n| Value::String("v".repeat(n))),
        ]
        .boxed()
    }
    let code = || maybe("[A-Za-z0-9._~-]{1,40}".prop_map(Value::from).boxed());
    let verifier = || maybe("[A-Za-z0-9._~-]{43,128}".prop_map(Value::from).boxed());
    let redirect = || {
        maybe(
            prop_oneof![
                8 => Just(Value::from(redirect_uri.clone())),
                1 => Just(Value::from("http://127.0.0.1:0/auth/mock/callback/../x")),
                1 => Just(Value::from("https://evil.example/cb")),
            ]
            .boxed(),
        )
    };
    let nonce = || {
        maybe(
            prop_oneof![
                3 => Just(Value::from("nonce-fuzz")),
                1 => any::<String>().prop_map(Value::from),
            ]
            .boxed(),
        )
    };
    let token = maybe(id_token(issuer).prop_map(Value::from).boxed());
    let link = || {
        prop::option::weighted(
            0.15,
            prop_oneof![3 => any::<bool>().prop_map(Value::from), 1 => json_value()],
        )
    };
    let object = |fields: Vec<(&str, Option<Value>)>, link: Option<Value>| {
        let mut map: Map<String, Value> = fields
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .collect();
        if let Some(link) = link {
            map.insert("link".to_owned(), link);
        }
        Value::Object(map).to_string().into_bytes()
    };
    let with_code = (
        prop::option::weighted(0.9, code()),
        prop::option::weighted(0.9, verifier()),
        prop::option::weighted(0.9, redirect()),
        prop::option::weighted(0.3, nonce()),
        link(),
    )
        .prop_map(move |(c, v, r, n, link)| {
            object(
                vec![
                    ("code", c),
                    ("code_verifier", v),
                    ("redirect_uri", r),
                    ("nonce", n),
                ],
                link,
            )
        });
    let with_id_token = (
        prop::option::weighted(0.95, token),
        prop::option::weighted(0.95, nonce()),
        prop::option::weighted(0.05, code()),
        link(),
    )
        .prop_map(move |(t, n, c, link)| {
            object(vec![("id_token", t), ("nonce", n), ("code", c)], link)
        });
    let any_object = prop::collection::btree_map(
        prop::sample::select(vec![
            "code",
            "code_verifier",
            "redirect_uri",
            "id_token",
            "nonce",
            "link",
            "device",
        ]),
        json_value(),
        0..7,
    )
    .prop_map(|map| {
        let map: Map<String, Value> = map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Value::Object(map).to_string().into_bytes()
    });
    prop_oneof![
        5 => with_code,
        8 => with_id_token,
        1 => any_object,
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..3000),
        1 => (60_000usize..70_000)
            .prop_map(|n| format!("{{\"code\":\"{}\"}}", "x".repeat(n)).into_bytes()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_never_fails_and_never_issues_tokens() {
    let app = fuzz_app(Options::default()).await;
    let strategy = (
        token_body(app.provider.issuer(), app.settings.redirect_uri("mock")),
        prop_oneof![
            8 => Just(Some("application/json")),
            1 => Just(Some("application/json; charset=utf-8")),
            1 => prop::option::of(prop::sample::select(vec![
                "text/plain",
                "application/x-www-form-urlencoded",
                "application/jsonx",
            ])),
        ],
        prop::option::weighted(0.1, header_value()),
        provider_segment("mock"),
    );
    let plain = client(false);
    run(
        256,
        strategy,
        |(body, content_type, authorization, provider)| {
            block_on(async {
                let path = format!("/api/auth/{provider}/token");
                let mut request = plain.post(format!("{}{path}", app.address)).body(body);
                if let Some(content_type) = content_type {
                    request = request.header(CONTENT_TYPE, content_type);
                }
                if let Some(authorization) = &authorization {
                    request = request.header(
                        "authorization",
                        HeaderValue::from_bytes(authorization).unwrap(),
                    );
                }
                let reply = send(&path, request).await?;
                if reply.status != StatusCode::ACCEPTED {
                    prop_assert!(reply.status.is_client_error(), "{path}: {}", reply.status);
                    return Ok(());
                }
                // Queued: the operation must end in `error`, with no tokens.
                let started: Value = serde_json::from_str(&reply.body).unwrap();
                let status_url = started["status_url"].as_str().unwrap().to_owned();
                let secret = started["poll_secret"].as_str().unwrap().to_owned();
                for _ in 0..4 {
                    let poll = send(
                        "poll",
                        plain
                            .get(format!("{}{status_url}?wait=2", app.address))
                            .header("x-poll-secret", &secret),
                    )
                    .await?;
                    let body: Value = serde_json::from_str(&poll.body).unwrap_or_default();
                    prop_assert!(body["tokens"].is_null(), "tokens issued: {body}");
                    match body["status"].as_str() {
                        Some("pending") => continue,
                        Some("error") => return Ok(()),
                        _ => return Err(TestCaseError::fail(format!("poll: {body}"))),
                    }
                }
                Err(TestCaseError::fail("operation still pending after ~8 s"))
            })
        },
    );
    assert_no_sessions(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_polls_never_fail() {
    let app = fuzz_app(Options::default()).await;
    let id = prop_oneof![
        Just(uuid::Uuid::nil().to_string()),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).simple().to_string()),
        component(),
        Just("..%2F..%2Fadmin".to_owned()),
    ];
    let strategy = (id, prop::option::of(header_value()), query(&["wait"]));
    let plain = client(false);
    run(256, strategy, |(id, secret, query)| {
        block_on(async {
            let path = format!("/api/operations/{id}?{query}");
            let mut request = plain.get(format!("{}{path}", app.address));
            if let Some(secret) = &secret {
                request = request.header("x-poll-secret", HeaderValue::from_bytes(secret).unwrap());
            }
            let reply = send(&path, request).await?;
            // Nobody else's operation: never found, never tokens.
            prop_assert!(reply.status.is_client_error(), "{path}: {}", reply.status);
            Ok(())
        })
    });
    assert_no_sessions(&app).await;
}

// ---- /auth/success and /auth/{provider}/login --------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_and_login_never_fail() {
    let app = fuzz_app(Options::default()).await;
    let page = prop_oneof![
        (query(&["operation"]), Just("/auth/success".to_owned())),
        (
            query(&["next", "link"]),
            provider_segment("mock").prop_map(|p| format!("/auth/{p}/login")),
        ),
        (
            query(&["reason", "operation"]),
            Just("/auth/error".to_owned())
        ),
    ];
    let strategy = (
        page,
        prop::option::of(cookie_header()),
        prop::option::of(prop::sample::select(vec![
            "same-origin",
            "cross-site",
            "none",
            "same-site",
        ])),
    );
    let plain = client(false);
    run(256, strategy, |((query, route), cookie, fetch_site)| {
        block_on(async {
            let path = format!("{route}?{query}");
            let mut request = plain.request(Method::GET, format!("{}{path}", app.address));
            if let Some(cookie) = &cookie {
                request = request.header(COOKIE, HeaderValue::from_bytes(cookie).unwrap());
            }
            if let Some(site) = fetch_site {
                request = request.header("sec-fetch-site", site);
            }
            let reply = send(&path, request).await?;
            match route.as_str() {
                "/auth/success" => {
                    // Nothing to redeem: always the error page.
                    let location = reply.location.clone().unwrap_or_default();
                    prop_assert!(location.starts_with("/auth/error"), "{path}: {location:?}");
                }
                "/auth/mock/login" if reply.status == StatusCode::SEE_OTHER => {
                    // Off to the provider (the mock, on 127.0.0.1) or home.
                    let location = reply.location.clone().unwrap_or_default();
                    prop_assert!(
                        location.starts_with(&app.provider.issuer()) || location == "/",
                        "{path}: {location:?}"
                    );
                }
                _ => assert_local_redirect(&path, &reply)?,
            }
            prop_assert!(!reply.body.contains("<script>x"), "{path}: unescaped echo");
            Ok(())
        })
    });
    assert_no_sessions(&app).await;
}

// ---- `next` ---------------------------------------------------------------------------------

/// `next` candidates: paths, and the tricks that turn a path into another site.
fn next_value() -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(vec![
        "/",
        "//",
        "/\\",
        "\\\\",
        "/\t/",
        "/\n/",
        "\t//",
        " /",
        "/%2F",
        "/%5C",
        "/./",
        "/../",
        "https:",
        "https://",
        "http:/",
        "javascript:",
        "data:",
        "\u{3000}/",
        "/\u{ff0f}",
        "///",
        "/;/",
        "/?/",
        "/#/",
        "",
    ]);
    let rest = prop_oneof![
        Just(String::new()),
        Just("evil.example".to_owned()),
        Just("evil.example/path?x=1#f".to_owned()),
        "[a-z0-9./?#=&%@:;\\\\-]{0,30}",
        any::<String>(),
    ];
    (prefix, rest).prop_map(|(p, r)| format!("{p}{r}"))
}

/// Whether a browser at `base` following a redirect to `location` stays on its host.
fn stays_on(base: &str, location: &str) -> bool {
    let base = Url::parse(base).unwrap();
    // Browsers drop tabs and newlines from URLs (the url crate does too).
    base.join(location)
        .is_ok_and(|u| u.host_str() == base.host_str() && u.scheme() == base.scheme())
}

#[test]
fn a_validated_next_never_leaves_the_site() {
    let mut runner = TestRunner::new(crate::proptest_config::config(5000));
    runner
        .run(&next_value(), |next| {
            if let Some(kept) = api::browser::validate_next(&next) {
                // Kept as is, but with anything non-ASCII percent-encoded.
                prop_assert!(kept.is_ascii(), "{kept:?}");
                if next.is_ascii() {
                    prop_assert_eq!(&kept, &next);
                }
                for base in [
                    "http://app.example/",
                    "https://app.example/auth/success",
                    "https://app.example:8443/a/b/c?q=1",
                ] {
                    prop_assert!(stays_on(base, &kept), "{kept:?} leaves {base}");
                }
            }
            Ok(())
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_survives_a_full_sign_in_only_as_a_local_path() {
    let app = fuzz_app(Options::default()).await;
    let counter = std::sync::atomic::AtomicUsize::new(0);
    run(32, next_value(), |next| {
        block_on(async {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let browser = browser(&app);
            let encoded: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
            let authorize = browser
                .start_login("mock", &format!("?next={encoded}"))
                .await;
            let code = format!("next-code-{n}");
            // One user throughout: the mock's userinfo answers the first one mounted.
            app.given_provider_signs_in(&authorize, &code, "next-user")
                .await;
            let callback = send(
                "callback",
                browser.client.get(format!(
                    "{}/auth/mock/callback?code={code}&state={}",
                    app.address, authorize.state
                )),
            )
            .await?;
            prop_assert!(
                callback
                    .location
                    .as_deref()
                    .and_then(preloader_operation_of)
                    .is_some(),
                "{:?}",
                callback.location
            );
            prop_assert_eq!(&settle(&browser).await?["status"], "ok");
            // This one signs in for real, so not through `send`.
            let success = browser
                .client
                .get(format!("{}/auth/success", app.address))
                .send()
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(success.status(), StatusCode::SEE_OTHER);
            // A kept `next` may hold non-ASCII characters, sent as UTF-8 bytes.
            let location = String::from_utf8(success.headers()[LOCATION].as_bytes().to_vec())
                .map_err(|e| TestCaseError::fail(format!("Location not UTF-8: {e}")))?;
            let expected = api::browser::validate_next(&next).unwrap_or_else(|| "/".to_owned());
            prop_assert_eq!(&location, &expected);
            let base = format!("{}/auth/success", app.address);
            prop_assert!(stays_on(&base, &location), "{location:?} leaves {base}");
            Ok(())
        })
    });
}

// ---- regressions ------------------------------------------------------------------------

/// Found by `token_exchange_never_fails_and_never_issues_tokens`: a 413 answered
/// before the body was read left the connection open, and the client's next request
/// on it was lost now and then (`IncompleteMessage`, no answer at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_closes_its_connection_and_spoils_no_later_request() {
    let app = fuzz_app(Options::default()).await;
    let client = client(false);
    let url = format!("{}/api/auth/mock/token", app.address);
    let big = format!("{{\"code\":\"{}\"}}", "x".repeat(70_000));
    for _ in 0..100 {
        let refused = client
            .post(&url)
            .header(CONTENT_TYPE, "application/json")
            .body(big.clone())
            .send()
            .await
            .expect("an answer to the oversized body");
        assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            refused
                .headers()
                .get("connection")
                .map(HeaderValue::as_bytes),
            Some(&b"close"[..])
        );
        let next = client
            .post(&url)
            .header(CONTENT_TYPE, "application/json")
            .body(r#"{"code":"a"}"#)
            .send()
            .await
            .expect("an answer to the next request");
        assert!(next.status().is_client_error(), "{}", next.status());
    }
}

/// Found by `token_exchange_never_fails_and_never_issues_tokens` (issue 10, 3,000
/// random cases): a route that refused a request without reading its body (an
/// unknown provider, a wrong content type) made hyper close the connection after a
/// response that did not say so, when the body had not all arrived yet (a large one);
/// the client sent its next request into the closed connection and got no answer
/// (`IncompleteMessage`). Every body is now read before the route runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_refused_unread_spoils_no_later_request_on_its_connection() {
    let app = fuzz_app(Options::default()).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .redirect(Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let body = format!("{{\"code\":\"{}\"}}", "x".repeat(60_000));
    for round in 0..200 {
        let (path, content_type) = match round % 3 {
            0 => ("/api/auth/nope/token", "application/json"),
            1 => ("/api/auth/mock/token", "text/plain"),
            _ => ("/api/auth/mock/token", "application/jsonx"),
        };
        let refused = client
            .post(format!("{}{path}", app.address))
            .header(CONTENT_TYPE, content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: no answer to the refused body: {e:?}"));
        assert!(refused.status().is_client_error(), "{}", refused.status());
        let next = client
            .get(format!("{}/api/providers", app.address))
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: no answer on the same connection: {e:?}"));
        assert_eq!(next.status(), StatusCode::OK);
    }
}
