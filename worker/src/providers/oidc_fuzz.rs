//! Property tests of ID-token parsing and validation (`CoreIdToken` parsing, `check`,
//! `raw_claims`): whatever the token looks like, the answer is `Err` or a profile,
//! never a panic; and a token that is not signed by the provider's published key, or
//! whose `iss`, `aud`, `exp`, `iat`, `nonce`, `sub`, `alg` or `kid` is wrong, is
//! always refused. No network: the keys are the fixture JWKS.

use std::{str::FromStr, sync::LazyLock};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use figment::{Figment, providers::Serialized};
use jsonwebtoken::{Algorithm, EncodingKey};
use proptest::{prelude::*, test_runner::TestCaseError};
use serde_json::{Map, Value, json};

use chrono::Utc;
use openidconnect::core::CoreIdToken;

use super::{Expected, MAX_IAT_AGE, MAX_IAT_SKEW, check, raw_claims};
use crate::{
    config::Settings,
    providers::{Endpoints, Profile, ProviderRegistry, jwk::ProviderKeys},
};

const ISSUER: &str = "https://issuer.example";
const CLIENT_ID: &str = "client-123";
const CLIENT_SECRET: &str = "secret-456-secret-456-secret-456";
const NONCE: &str = "nonce-0123456789";
const KID: &str = "test-key-1";

struct Fixture {
    registry: ProviderRegistry,
    keys: ProviderKeys,
    rsa: EncodingKey,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let settings = Settings::from_figment(Figment::from(Serialized::defaults(json!({
        "public_url": "http://127.0.0.1:8080",
        "providers": {"mock": {
            "kind": "oidc",
            "issuer": ISSUER,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "authorize_url": format!("{ISSUER}/authorize"),
            "token_url": format!("{ISSUER}/token"),
            "jwks_url": format!("{ISSUER}/jwks"),
        }},
    }))))
    .expect("valid settings");
    Fixture {
        registry: ProviderRegistry::from_settings(&settings).expect("registry"),
        keys: serde_json::from_str(include_str!("../../tests/fixtures/jwks.json"))
            .expect("fixture JWKS"),
        rsa: EncodingKey::from_rsa_pem(include_bytes!("../../tests/fixtures/rsa_private.pem"))
            .expect("fixture key"),
    }
});

/// The endpoints as discovery would give them (all configured, so no discovery
/// runs), advertising `algs`.
fn endpoints(algs: &[String]) -> Endpoints {
    let provider = FIXTURE.registry.get("mock").expect("mock provider");
    let resolved = futures::executor::block_on(provider.resolve_endpoints())
        .expect("configured endpoints need no discovery");
    Endpoints {
        signing_algs: algs.to_vec(),
        ..resolved
    }
}

/// Parses `raw` and, when it is a JWT, checks it; touches everything the worker
/// does with an unverified token on the way. Panics propagate to the runner.
fn parse_and_check(raw: &str, algs: &[String], hashed: bool) -> Result<Profile, String> {
    let token = CoreIdToken::from_str(raw).map_err(|e| format!("parse: {e}"))?;
    // `verify_native_id_token` reads the audience before verifying, and
    // `Display` re-serializes: both on unverified input.
    let _ = raw_claims(&token);
    let _ = token.to_string();
    let fixture = &*FIXTURE;
    let provider = fixture.registry.get("mock").expect("mock provider");
    let expected = Expected {
        client_id: CLIENT_ID,
        nonce: NONCE,
        accept_hashed_nonce: hashed,
        other_azp: &[],
    };
    check(
        provider,
        &endpoints(algs),
        ISSUER,
        &fixture.keys,
        &token,
        &expected,
    )
    .map_err(|e| e.to_string())
}

fn now() -> i64 {
    Utc::now().timestamp()
}

fn valid_header() -> Map<String, Value> {
    json!({"alg": "RS256", "kid": KID, "typ": "JWT"})
        .as_object()
        .unwrap()
        .clone()
}

fn valid_claims() -> Map<String, Value> {
    let now = now();
    json!({
        "iss": ISSUER, "aud": CLIENT_ID, "sub": "user-1", "iat": now, "exp": now + 300,
        "nonce": NONCE, "email": "a@example.com", "email_verified": true,
        "given_name": "Grace", "family_name": "Hopper", "name": "Grace Hopper",
    })
    .as_object()
    .unwrap()
    .clone()
}

/// Raw JSON number literals serde_json cannot hold in a `Value`; strategies put a
/// `"@@NUM{i}@@"` string where one goes and [`encode`] splices it in.
const RAW_NUMBERS: &[&str] = &[
    "1e400",
    "-1e400",
    "123456789012345678901234567890",
    "-123456789012345678901234567890",
    "1E-400",
    "-0",
    "0.000000001",
    "18446744073709551616",
    "9223372036854775808",
    "-9223372036854775809",
];

/// Arbitrary JSON: every type, huge and odd numbers, long strings, nesting.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        (0..RAW_NUMBERS.len()).prop_map(|i| Value::String(format!("@@NUM{i}@@"))),
        any::<String>().prop_map(Value::from),
        "[a-zA-Z0-9:/._-]{0,40}".prop_map(Value::from),
        (1usize..20_000).prop_map(|n| Value::String("x".repeat(n))),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// base64url without padding of `value`'s JSON, with the raw numbers spliced in.
fn encode(value: &Value) -> String {
    let mut text = value.to_string();
    for (i, raw) in RAW_NUMBERS.iter().enumerate() {
        text = text.replace(&format!("\"@@NUM{i}@@\""), raw);
    }
    URL_SAFE_NO_PAD.encode(text)
}

/// A change to one header or claim: a new value, or removal.
#[derive(Debug, Clone)]
struct Mutation {
    key: String,
    value: Option<Value>,
}

fn alg_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "RS256",
            "RS384",
            "RS512",
            "PS256",
            "PS384",
            "PS512",
            "ES256",
            "ES384",
            "ES512",
            "EdDSA",
            "HS256",
            "HS384",
            "HS512",
            "none",
            "None",
            "NONE",
            "nOnE",
            "RSA-OAEP",
            "RSA-OAEP-256",
            "RSA1_5",
            "A128KW",
            "A256GCMKW",
            "dir",
            "ECDH-ES",
            "",
            "rs256",
            "RS256 ",
        ])
        .prop_map(Value::from),
        json_value(),
    ]
}

fn header_mutation() -> impl Strategy<Value = Mutation> {
    let key = prop_oneof![
        4 => prop::sample::select(vec![
            "alg", "kid", "typ", "crit", "cty", "enc", "jku", "jwk", "x5u", "x5c", "zip", "b64",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    (key, prop::option::weighted(0.9, json_value()), alg_value()).prop_map(|(key, value, alg)| {
        let value = if key == "alg" {
            value.map(|_| alg)
        } else {
            value
        };
        Mutation { key, value }
    })
}

fn claim_value(key: &str) -> BoxedStrategy<Value> {
    let now = now();
    let time = prop_oneof![
        (i64::MIN..i64::MAX).prop_map(Value::from),
        (now - 10_000..now + 10_000).prop_map(Value::from),
        (now - 10_000..now + 10_000).prop_map(|t| Value::from(t as f64 + 0.5)),
        (now - 10_000..now + 10_000).prop_map(|t| Value::from(t.to_string())),
        json_value(),
    ];
    match key {
        "exp" | "iat" | "auth_time" | "updated_at" | "nbf" => time.boxed(),
        "nonce" => prop_oneof![
            Just(Value::from(crate::crypto::sha256_hex(NONCE))),
            Just(Value::from(NONCE.to_uppercase())),
            Just(Value::from(format!("{NONCE} "))),
            json_value(),
        ]
        .boxed(),
        "aud" => prop_oneof![
            Just(json!([CLIENT_ID, "other"])),
            Just(json!(["other", CLIENT_ID])),
            Just(json!([CLIENT_ID])),
            Just(json!([])),
            Just(json!(format!("{CLIENT_ID} "))),
            json_value(),
        ]
        .boxed(),
        "iss" => prop_oneof![
            Just(json!(format!("{ISSUER}/"))),
            Just(json!("https://evil.example")),
            Just(json!("HTTPS://ISSUER.EXAMPLE")),
            json_value(),
        ]
        .boxed(),
        "azp" => prop_oneof![Just(json!(CLIENT_ID)), Just(json!("other")), json_value()].boxed(),
        _ => json_value().boxed(),
    }
}

fn claim_mutation() -> impl Strategy<Value = Mutation> {
    let key = prop_oneof![
        6 => prop::sample::select(vec![
            "iss", "aud", "sub", "exp", "iat", "nonce", "azp", "auth_time", "nbf",
            "email", "email_verified", "name", "given_name", "family_name", "picture",
            "updated_at", "address", "locale", "amr", "acr", "at_hash", "c_hash", "hd",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    key.prop_flat_map(|key| {
        let value = prop::option::weighted(0.85, claim_value(&key));
        (Just(key), value)
    })
    .prop_map(|(key, value)| Mutation { key, value })
}

/// How the token is signed.
#[derive(Debug, Clone)]
enum Signature {
    /// RS256 with the published key: genuine.
    Rs256,
    /// RS384 with the published key (the key allows only what the header says).
    Rs384,
    /// HS256 keyed with the client secret: the classic key-confusion forgery.
    Hs256ClientSecret,
    /// HS256 keyed with the base64url modulus of the public key.
    Hs256PublicKey,
    Empty,
    Bytes(Vec<u8>),
    /// Not base64url at all.
    Text(String),
}

fn signature() -> impl Strategy<Value = Signature> {
    prop_oneof![
        6 => Just(Signature::Rs256),
        1 => Just(Signature::Rs384),
        1 => Just(Signature::Hs256ClientSecret),
        1 => Just(Signature::Hs256PublicKey),
        1 => Just(Signature::Empty),
        1 => prop::collection::vec(any::<u8>(), 0..600).prop_map(Signature::Bytes),
        1 => any::<String>().prop_map(Signature::Text),
    ]
}

fn sign(signing_input: &str, signature: &Signature) -> String {
    let fixture = &*FIXTURE;
    let rsa = |alg| jsonwebtoken::crypto::sign(signing_input.as_bytes(), &fixture.rsa, alg);
    let hs = |secret: &[u8]| {
        jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &EncodingKey::from_secret(secret),
            Algorithm::HS256,
        )
    };
    let jwks: Value = serde_json::from_str(include_str!("../../tests/fixtures/jwks.json")).unwrap();
    let modulus = jwks["keys"][0]["n"].as_str().unwrap_or_default().to_owned();
    match signature {
        Signature::Rs256 => rsa(Algorithm::RS256).unwrap(),
        Signature::Rs384 => rsa(Algorithm::RS384).unwrap(),
        Signature::Hs256ClientSecret => hs(CLIENT_SECRET.as_bytes()).unwrap(),
        Signature::Hs256PublicKey => hs(modulus.as_bytes()).unwrap(),
        Signature::Empty => String::new(),
        Signature::Bytes(bytes) => URL_SAFE_NO_PAD.encode(bytes),
        Signature::Text(text) => text.clone(),
    }
}

/// A token built from the valid one with `header` and `claims` changes, signed so.
#[derive(Debug, Clone)]
struct Forged {
    header: Vec<Mutation>,
    claims: Vec<Mutation>,
    signature: Signature,
    /// Accept SHA-256(nonce) as Apple's native SDK sends it.
    hashed: bool,
    /// What the provider advertises in `id_token_signing_alg_values_supported`.
    algs: Vec<String>,
}

fn forged() -> impl Strategy<Value = Forged> {
    (
        prop::collection::vec(header_mutation(), 0..3),
        prop::collection::vec(claim_mutation(), 0..4),
        signature(),
        any::<bool>(),
        prop::collection::vec(
            prop::sample::select(vec![
                "RS256", "RS384", "ES256", "HS256", "none", "PS256", "x",
            ]),
            0..4,
        ),
    )
        .prop_map(|(header, claims, signature, hashed, algs)| Forged {
            header,
            claims,
            signature,
            hashed,
            algs: algs.into_iter().map(str::to_owned).collect(),
        })
}

fn apply(base: &mut Map<String, Value>, mutations: &[Mutation]) {
    for m in mutations {
        match &m.value {
            Some(v) => base.insert(m.key.clone(), v.clone()),
            None => base.remove(&m.key),
        };
    }
}

impl Forged {
    fn token(&self) -> String {
        let mut header = valid_header();
        apply(&mut header, &self.header);
        let mut claims = valid_claims();
        apply(&mut claims, &self.claims);
        let input = format!(
            "{}.{}",
            encode(&Value::Object(header)),
            encode(&Value::Object(claims))
        );
        let signature = sign(&input, &self.signature);
        format!("{input}.{signature}")
    }

    /// Whether the token is certainly not acceptable; `false` means "may be valid".
    fn must_fail(&self) -> Option<String> {
        let mut header = valid_header();
        apply(&mut header, &self.header);
        let mut claims = valid_claims();
        apply(&mut claims, &self.claims);
        let now = now() as f64;
        // Only an RS256 signature by the published key is genuine.
        let genuine_alg = match self.signature {
            Signature::Rs256 => "RS256",
            Signature::Rs384 => "RS384",
            _ => return Some(format!("signature {:?}", self.signature)),
        };
        if header.get("alg") != Some(&json!(genuine_alg)) {
            return Some("alg differs from the signature's".into());
        }
        let advertised: Vec<&str> = self
            .algs
            .iter()
            .map(String::as_str)
            .filter(|a| !a.starts_with("HS") && *a != "none" && *a != "x")
            .collect();
        let allowed = if advertised.is_empty() {
            vec!["RS256"]
        } else {
            advertised
        };
        if !allowed.contains(&genuine_alg) {
            return Some(format!("{genuine_alg} not among {allowed:?}"));
        }
        match header.get("kid") {
            None => {}
            Some(kid) if kid == &json!(KID) => {}
            Some(_) => return Some("unknown kid".into()),
        }
        if claims.get("iss") != Some(&json!(ISSUER)) {
            return Some("iss".into());
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(s)) => s == CLIENT_ID,
            // Extra audiences are untrusted: only `[client_id]` may pass.
            Some(Value::Array(list)) => list.iter().any(|a| a == CLIENT_ID),
            _ => false,
        };
        if !aud_ok {
            return Some("aud".into());
        }
        if !matches!(claims.get("sub"), Some(Value::String(_))) {
            return Some("sub".into());
        }
        let number = |key: &str| claims.get(key).and_then(Value::as_f64);
        // The verifier reads the clock before this does, so each time bound gets
        // SLACK seconds of no verdict; "@@NUM@@" placeholders become odd numbers: no
        // verdict on those either.
        const SLACK: f64 = 10.0;
        let age = MAX_IAT_AGE.num_seconds() as f64;
        let skew = MAX_IAT_SKEW.num_seconds() as f64;
        match number("exp") {
            Some(exp) if exp < now - SLACK => return Some("expired".into()),
            Some(_) => {}
            None if is_raw_number(claims.get("exp")) => {}
            None => return Some("exp".into()),
        }
        match number("iat") {
            Some(iat) if iat < now - age - SLACK || iat > now + skew + SLACK => {
                return Some("iat out of bounds".into());
            }
            Some(_) => {}
            None if is_raw_number(claims.get("iat")) => {}
            None => return Some("iat".into()),
        }
        let nonce_ok = match claims.get("nonce") {
            Some(Value::String(n)) => {
                n == NONCE || (self.hashed && *n == crate::crypto::sha256_hex(NONCE))
            }
            _ => false,
        };
        if !nonce_ok {
            return Some("nonce".into());
        }
        None
    }
}

/// The property of [`forged_tokens_are_refused`] for one token: whatever the oracle
/// says must fail, the verifier refuses.
fn verifier_agrees(forged: &Forged) -> Result<(), TestCaseError> {
    let result = parse_and_check(&forged.token(), &forged.algs, forged.hashed);
    match (forged.must_fail(), result) {
        (Some(reason), Ok(profile)) => Err(TestCaseError::fail(format!(
            "accepted ({reason}): {profile:?}"
        ))),
        _ => Ok(()),
    }
}

fn is_raw_number(value: Option<&Value>) -> bool {
    value
        .and_then(Value::as_str)
        .is_some_and(|s| s.starts_with("@@NUM") && s.ends_with("@@"))
}

fn rs256() -> Vec<String> {
    vec!["RS256".to_owned()]
}

/// `cases` from the fixed seed (see [`crate::proptest_config`]), shrunk hard.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        max_shrink_iters: 2000,
        ..crate::proptest_config::config(cases)
    }
}

#[test]
fn the_genuine_token_passes_and_forgeries_of_it_do_not() {
    let genuine = Forged {
        header: vec![],
        claims: vec![],
        signature: Signature::Rs256,
        hashed: false,
        algs: vec![],
    };
    let profile = parse_and_check(&genuine.token(), &rs256(), false).expect("genuine token");
    assert_eq!(profile.subject, "user-1");
    for signature in [
        Signature::Hs256ClientSecret,
        Signature::Hs256PublicKey,
        Signature::Empty,
    ] {
        let alg = match signature {
            Signature::Empty => "none",
            _ => "HS256",
        };
        let forged = Forged {
            header: vec![Mutation {
                key: "alg".into(),
                value: Some(json!(alg)),
            }],
            signature,
            // Even when the provider claims to sign with them.
            algs: vec!["HS256".into(), "none".into(), "RS256".into()],
            ..genuine.clone()
        };
        let result = parse_and_check(&forged.token(), &forged.algs, false);
        assert!(result.is_err(), "{forged:?} accepted");
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// Any text at all.
    #[test]
    fn arbitrary_strings_are_refused(raw in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_.=+/-]{0,400}",
        "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,60}",
    ]) {
        prop_assert!(parse_and_check(&raw, &rs256(), false).is_err());
    }

    /// Three base64url parts of arbitrary bytes, or of arbitrary JSON.
    #[test]
    fn three_part_base64url_garbage_is_refused(
        parts in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
                json_value().prop_map(|v| encode(&v)),
            ],
            3,
        ),
        hashed in any::<bool>(),
    ) {
        let raw = parts.join(".");
        prop_assert!(parse_and_check(&raw, &rs256(), hashed).is_err());
    }

}

proptest! {
    // Each case signs with RSA (slow in debug builds).
    #![proptest_config(config(256))]

    /// The valid token with random header and claim changes and signatures: refused
    /// whenever a security property is broken; never a panic.
    #[test]
    fn forged_tokens_are_refused(forged in forged()) {
        verifier_agrees(&forged)?;
    }
}

// ---- cases the searches found, kept so that CI runs them every time --------------

/// The valid token with `header` and `claims` changed, signed genuinely.
fn genuine_with(header: Vec<Mutation>, claims: Vec<Mutation>) -> Forged {
    Forged {
        header,
        claims,
        signature: Signature::Rs256,
        hashed: false,
        algs: vec![],
    }
}

fn set(key: &str, value: Value) -> Vec<Mutation> {
    vec![Mutation {
        key: key.into(),
        value: Some(value),
    }]
}

/// Found by `forged_tokens_are_refused` (issue 10): the crate reads `"kid": null` as
/// no `kid` and signed with the JWKS's only key. RFC 7515 makes `kid` a string.
#[test]
fn a_kid_that_is_not_a_string_is_refused() {
    for kid in [
        json!(null),
        json!(1),
        json!({"kid": KID}),
        json!([KID]),
        json!(true),
    ] {
        let forged = genuine_with(set("kid", kid.clone()), vec![]);
        let result = parse_and_check(&forged.token(), &rs256(), false);
        assert!(result.is_err(), "kid {kid} accepted: {result:?}");
        verifier_agrees(&forged).unwrap();
    }
    // Absent or the signing key's own: accepted.
    let absent = genuine_with(
        vec![Mutation {
            key: "kid".into(),
            value: None,
        }],
        vec![],
    );
    parse_and_check(&absent.token(), &rs256(), false).expect("no kid, one key");
}

/// Found reading the oracle against the verifier (issue 10): times the verifier
/// accepts at its bounds (`exp` just ahead, `iat` up to `MAX_IAT_AGE` old or
/// `MAX_IAT_SKEW` ahead) that the oracle called certain failures.
#[test]
fn times_inside_the_verifiers_bounds_are_no_disagreement() {
    let now = now();
    let accepted = [
        ("exp", now + 3),
        ("iat", now - MAX_IAT_AGE.num_seconds() + 15),
        ("iat", now + MAX_IAT_SKEW.num_seconds() - 5),
    ];
    for (key, time) in accepted {
        let forged = genuine_with(vec![], set(key, json!(time)));
        parse_and_check(&forged.token(), &rs256(), false)
            .unwrap_or_else(|e| panic!("{key} {time} (now {now}) refused: {e}"));
        verifier_agrees(&forged).unwrap();
    }
    let refused = [
        ("exp", now - 30),
        ("iat", now - MAX_IAT_AGE.num_seconds() - 30),
        ("iat", now + MAX_IAT_SKEW.num_seconds() + 30),
    ];
    for (key, time) in refused {
        let forged = genuine_with(vec![], set(key, json!(time)));
        assert!(forged.must_fail().is_some(), "{key} {time}");
        assert!(parse_and_check(&forged.token(), &rs256(), false).is_err());
    }
}
