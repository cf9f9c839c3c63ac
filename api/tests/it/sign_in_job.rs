//! The worker's sign-in job through the whole app: token errors, ID-token
//! validation, idempotent and concurrent runs.

use entity::prelude::{SocialAccount, UserProfile};
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    Authorize, Backend, Options, TestApp, assert_to_preloader, code_job, spawn_app, spawn_app_with,
    spawn_app_without_worker_on,
};

async fn finish(app: &TestApp, authorize: &Authorize, code: &str) -> Value {
    let callback = app
        .get_callback("mock", &format!("code={code}&state={}", authorize.state))
        .await;
    assert_to_preloader(&callback);
    app.wait_for_status("").await
}

#[tokio::test]
async fn invalid_grant_fails_the_operation_without_retry() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    app.provider.given_token_error("invalid_grant", 1).await;
    let status = finish(&app, &authorize, "spent").await;
    assert_eq!(status["status"], "error");
    assert_eq!(status["error"]["code"], "invalid_grant");
    assert!(
        status["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Mock ID")
    );
    assert_eq!(app.provider.token_requests().await.len(), 1, "no retry");
    assert_eq!(app.count(UserProfile).await, 0);
}

#[tokio::test]
async fn token_endpoint_5xx_is_retried_then_fails_readably() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    app.provider.given_token_status(503).await;
    let status = finish(&app, &authorize, "x").await;
    assert_eq!(status["error"]["code"], "provider_unavailable");
    assert_eq!(
        status["error"]["message"],
        "Mock ID is not responding right now. Please try again in a moment."
    );
    assert!(
        app.provider.token_requests().await.len() > 1,
        "5xx means the code was not used: retried"
    );
}

#[tokio::test]
async fn unreachable_token_endpoint_ends_in_error() {
    let app = spawn_app_with(Options {
        overrides: json!({"providers": {"mock": {"token_url": "http://127.0.0.1:9/token"}}}),
        ..Options::default()
    })
    .await
    .unwrap();
    let authorize = app.start_login("mock", "").await;
    let status = finish(&app, &authorize, "x").await;
    assert_eq!(status["error"]["code"], "provider_unavailable");
}

async fn bad_id_token(mutate: impl FnOnce(&TestApp, &mut Value) -> Option<String>) {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    let mut claims = app
        .provider
        .claims("victim", authorize.nonce.as_deref().unwrap());
    let token = mutate(&app, &mut claims).unwrap_or_else(|| app.provider.id_token(&claims));
    app.provider.given_token_ok("c", &token).await;
    app.provider
        .given_userinfo(
            json!({"sub": "victim", "email": "victim@example.com", "email_verified": true}),
        )
        .await;
    let status = finish(&app, &authorize, "c").await;
    assert_eq!(status["status"], "error", "{status}");
    assert_eq!(status["error"]["code"], "id_token_invalid");
    assert_eq!(
        app.count(UserProfile).await,
        0,
        "no user from a bad ID token"
    );
    assert_eq!(app.count(SocialAccount).await, 0);
}

#[tokio::test]
async fn id_token_with_a_wrong_signature_fails() {
    bad_id_token(|app, claims| Some(app.provider.id_token_with_wrong_key(claims))).await;
}

#[tokio::test]
async fn id_token_for_another_audience_fails() {
    bad_id_token(|_, claims| {
        claims["aud"] = json!("someone-else");
        None
    })
    .await;
}

#[tokio::test]
async fn id_token_with_a_wrong_nonce_fails() {
    bad_id_token(|_, claims| {
        claims["nonce"] = json!("not-the-nonce");
        None
    })
    .await;
}

#[tokio::test]
async fn id_token_from_another_issuer_fails() {
    bad_id_token(|_, claims| {
        claims["iss"] = json!("https://evil.example");
        None
    })
    .await;
}

#[tokio::test]
async fn expired_id_token_fails() {
    bad_id_token(|_, claims| {
        let now = chrono::Utc::now().timestamp();
        claims["iat"] = json!(now - 120);
        claims["exp"] = json!(now - 60);
        None
    })
    .await;
}

#[tokio::test]
async fn id_token_issued_in_the_future_fails() {
    bad_id_token(|_, claims| {
        claims["iat"] = json!(chrono::Utc::now().timestamp() + 600);
        None
    })
    .await;
}

#[tokio::test]
async fn id_token_with_alg_none_fails() {
    bad_id_token(|_, claims| {
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        Some(format!("{header}.{payload}."))
    })
    .await;
}

/// The app with the mock provider's `userinfo` setting at `mode`.
async fn app_reading_userinfo(mode: &str) -> TestApp {
    spawn_app_with(Options {
        mock_config: json!({"kind": "oidc", "display_name": "Mock ID", "userinfo": mode}),
        ..Options::default()
    })
    .await
    .unwrap()
}

/// The token endpoint answers code `c` with an ID token of `claims`; userinfo
/// answers `userinfo`.
async fn given_id_token_and_userinfo(app: &TestApp, claims: &Value, userinfo: Value) {
    app.provider
        .given_token_ok("c", &app.provider.id_token(claims))
        .await;
    app.provider.given_userinfo(userinfo).await;
}

#[tokio::test]
async fn userinfo_for_another_subject_fails() {
    let app = app_reading_userinfo("always").await;
    let authorize = app.start_login("mock", "").await;
    let claims = app
        .provider
        .claims("alice", authorize.nonce.as_deref().unwrap());
    given_id_token_and_userinfo(
        &app,
        &claims,
        json!({"sub": "mallory", "email": "mallory@example.com"}),
    )
    .await;
    let status = finish(&app, &authorize, "c").await;
    assert_eq!(status["error"]["code"], "id_token_invalid");
    assert_eq!(app.count(UserProfile).await, 0);
}

/// A job run twice, or by two workers at once, makes one user and one link.
async fn repeated_and_concurrent_runs_make_one_user_and_one_link(backend: Backend) {
    let Some(app) = spawn_app_without_worker_on(backend).await else {
        return;
    };
    let authorize = app.start_login("mock", "").await;
    app.given_provider_signs_in(&authorize, "twice", "twice")
        .await;
    app.return_from_provider(&authorize, "twice").await;
    let operation = <entity::prelude::AsyncOperation as sea_orm::EntityTrait>::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let job = code_job(
        operation.id,
        "twice",
        &"v".repeat(43),
        authorize.nonce.clone(),
    );
    let state = worker_state(&app);
    let (a, b) = tokio::join!(
        worker::jobs::sign_in::run(&job, &state),
        worker::jobs::sign_in::run(&job, &state)
    );
    a.unwrap();
    b.unwrap();
    worker::jobs::sign_in::run(&job, &state).await.unwrap();
    assert_eq!(app.count(UserProfile).await, 1);
    assert_eq!(app.count(SocialAccount).await, 1);
    assert_eq!(app.wait_for_status("").await["status"], "ok");
}

#[tokio::test]
async fn repeated_and_concurrent_runs_make_one_user_and_one_link_on_sqlite() {
    repeated_and_concurrent_runs_make_one_user_and_one_link(Backend::Sqlite).await;
}

#[tokio::test]
async fn repeated_and_concurrent_runs_make_one_user_and_one_link_on_postgres() {
    repeated_and_concurrent_runs_make_one_user_and_one_link(Backend::Postgres).await;
}

#[tokio::test]
async fn a_job_for_a_missing_operation_is_an_error_not_a_panic() {
    let app = spawn_app().await;
    let job = code_job(Uuid::new_v4(), "x", &"v".repeat(43), None);
    let error = worker::jobs::sign_in::run(&job, &worker_state(&app))
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        worker::jobs::SignInError::OperationMissing(_)
    ));
}

fn worker_state(app: &TestApp) -> worker::WorkerState {
    worker::WorkerState {
        db: app.db.clone(),
        writer: app.state.writer.clone(),
        reader: app.state.reader.clone(),
        audit: app.state.audit.clone(),
        settings: app.settings.clone(),
        providers: app.state.providers.clone(),
        keys: app.state.keys.clone(),
        events: app.state.events.clone(),
    }
}

#[tokio::test]
async fn id_token_with_a_foreign_azp_fails() {
    bad_id_token(|_, claims| {
        claims["aud"] = json!([crate::helpers::mock_provider::CLIENT_ID, "other-client"]);
        claims["azp"] = json!("other-client");
        None
    })
    .await;
}

#[tokio::test]
async fn id_token_with_one_audience_and_a_foreign_azp_fails() {
    // `aud` is ours alone, so only the `azp` check can refuse it.
    bad_id_token(|_, claims| {
        claims["aud"] = json!(crate::helpers::mock_provider::CLIENT_ID);
        claims["azp"] = json!("other-client");
        None
    })
    .await;
}

#[tokio::test]
async fn id_token_issued_too_long_ago_fails() {
    bad_id_token(|_, claims| {
        let now = chrono::Utc::now().timestamp();
        claims["iat"] = json!(now - 3600);
        claims["exp"] = json!(now + 600);
        None
    })
    .await;
}

#[tokio::test]
async fn id_token_with_several_audiences_and_no_azp_fails() {
    bad_id_token(|_, claims| {
        claims["aud"] = json!([crate::helpers::mock_provider::CLIENT_ID, "other-client"]);
        None
    })
    .await;
}

#[tokio::test]
async fn id_token_without_a_nonce_fails() {
    bad_id_token(|_, claims| {
        claims.as_object_mut().unwrap().remove("nonce");
        None
    })
    .await;
}

#[tokio::test]
async fn id_token_without_kid_is_refused_when_several_keys_could_match() {
    let app = spawn_app().await;
    app.provider
        .rotate_keys(include_str!("fixtures/jwks_both_no_kid.json"))
        .await;
    let authorize = app.start_login("mock", "").await;
    let claims = app
        .provider
        .claims("nokid", authorize.nonce.as_deref().unwrap());
    app.provider
        .given_token_ok("c", &app.provider.id_token_without_kid(&claims))
        .await;
    app.provider.given_userinfo(json!({"sub": "nokid"})).await;
    let status = finish(&app, &authorize, "c").await;
    assert_eq!(status["error"]["code"], "id_token_invalid");
    assert_eq!(app.count(UserProfile).await, 0);
}

#[tokio::test]
async fn provider_key_rotation_is_followed_and_unknown_kids_do_not_hammer_the_jwks() {
    let app = spawn_app().await;
    // First sign-in caches the JWKS with key 1.
    app.sign_in(&app.browser, "rotating").await;
    assert_eq!(app.provider.jwks_requests().await, 1);

    // The provider rotates to key 2; a token signed with it triggers one refresh.
    app.provider
        .rotate_keys(include_str!("fixtures/jwks_both.json"))
        .await;
    let browser = app.new_browser();
    let authorize = browser.start_login("mock", "").await;
    let claims = app
        .provider
        .claims("rotating", authorize.nonce.as_deref().unwrap());
    app.provider
        .given_token_ok(
            "rot",
            &app.provider
                .id_token_with_second_key(&claims, Some("test-key-2")),
        )
        .await;
    app.provider
        .given_userinfo(json!({"sub": "rotating"}))
        .await;
    browser.return_from_provider(&authorize, "rot").await;
    assert_eq!(
        browser.wait_for_status("").await["status"],
        "ok",
        "the new key was fetched"
    );
    assert_eq!(
        app.provider.jwks_requests().await,
        1,
        "one fetch since the reset"
    );

    // Tokens naming keys that do not exist: no further fetches within the interval.
    for n in 0..3 {
        let browser = app.new_browser();
        let authorize = browser.start_login("mock", "").await;
        let claims = app
            .provider
            .claims("rotating", authorize.nonce.as_deref().unwrap());
        let code = format!("bogus-{n}");
        app.provider
            .given_token_ok(
                &code,
                &app.provider
                    .id_token_with_second_key(&claims, Some(&format!("nope-{n}"))),
            )
            .await;
        browser.return_from_provider(&authorize, &code).await;
        assert_eq!(
            browser.wait_for_status("").await["error"]["code"],
            "id_token_invalid"
        );
    }
    assert_eq!(
        app.provider.jwks_requests().await,
        1,
        "a flood of unknown kids is throttled"
    );
    assert_eq!(app.count(UserProfile).await, 1);
}

#[tokio::test]
async fn an_iss_in_the_authorization_response_must_be_the_providers() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    let mix_up = app
        .get_callback(
            "mock",
            &format!(
                "code=x&state={}&iss=https://attacker.example",
                authorize.state
            ),
        )
        .await;
    assert_eq!(mix_up.status(), reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(app.count(entity::prelude::AsyncOperation).await, 0);

    let issuer = app.provider.issuer();
    assert_to_preloader(&callback_with_iss(&app, Some(&issuer)).await);
}

/// A fresh attempt's callback, with `iss` when given.
async fn callback_with_iss(app: &TestApp, iss: Option<&str>) -> reqwest::Response {
    let authorize = app.start_login("mock", "").await;
    let iss = iss.map(|i| format!("&iss={i}")).unwrap_or_default();
    app.get_callback("mock", &format!("code=x&state={}{iss}", authorize.state))
        .await
}

#[tokio::test]
async fn a_missing_iss_is_refused_when_the_provider_promised_it() {
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        mock_sends_iss: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let without = callback_with_iss(&app, None).await;
    assert_eq!(without.status(), reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(app.count(entity::prelude::AsyncOperation).await, 0);
    let issuer = app.provider.issuer();
    assert_to_preloader(&callback_with_iss(&app, Some(&issuer)).await);
}

/// The application asks for a user's provider access token; an expired one is
/// refreshed with the stored refresh token, and the new tokens are stored encrypted.
#[tokio::test]
async fn provider_access_tokens_are_refreshed_when_expired() {
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel};
    use secrecy::ExposeSecret;
    use wiremock::{
        Mock, ResponseTemplate,
        matchers::{body_string_contains, method, path},
    };

    let app = spawn_app().await;
    let me = app.sign_in(&app.browser, "tokens").await;
    let user_id: Uuid = me["id"].as_str().unwrap().parse().unwrap();
    let state = worker_state(&app);
    let account = SocialAccount::find().one(&app.db).await.unwrap().unwrap();
    let stored = account.access_token_enc.clone().unwrap();
    assert!(!stored.contains("mock-access-token"), "stored encrypted");
    assert!(
        !account
            .refresh_token_enc
            .clone()
            .unwrap()
            .contains("mock-refresh-token")
    );

    let token = worker::provider_tokens::access_token(&state, user_id, "mock")
        .await
        .unwrap();
    assert_eq!(
        token.expose_secret(),
        "mock-access-token",
        "still fresh: no refresh"
    );

    let mut expired = account.into_active_model();
    expired.token_expires_at = Set(Some(chrono::Utc::now() - chrono::Duration::minutes(1)));
    expired.update(&app.db).await.unwrap();
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=mock-refresh-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "fresh-access-token", "token_type": "Bearer", "expires_in": 3600,
        })))
        .expect(1)
        .mount(&app.provider.server)
        .await;
    let token = worker::provider_tokens::access_token(&state, user_id, "mock")
        .await
        .unwrap();
    assert_eq!(token.expose_secret(), "fresh-access-token");
    let again = worker::provider_tokens::access_token(&state, user_id, "mock")
        .await
        .unwrap();
    assert_eq!(
        again.expose_secret(),
        "fresh-access-token",
        "stored, not refreshed twice"
    );
    let missing = worker::provider_tokens::access_token(&state, user_id, "github").await;
    assert!(matches!(
        missing,
        Err(worker::provider_tokens::TokenError::NotLinked(_))
    ));
}

/// What a sign-in gets when the ID token carries a verified email and a name: on
/// the default `userinfo = "when_needed"` no userinfo call (one provider round trip
/// fewer), with `"always"` the call and its answer, which takes precedence.
#[tokio::test]
async fn a_complete_id_token_spares_the_userinfo_call_unless_userinfo_is_always() {
    for (mode, userinfo_calls, name) in [("when_needed", 0, "Grace Hopper"), ("always", 1, "Ada L")]
    {
        let app = app_reading_userinfo(mode).await;
        let authorize = app.start_login("mock", "").await;
        let claims = app
            .provider
            .claims("complete", authorize.nonce.as_deref().unwrap());
        given_id_token_and_userinfo(
            &app,
            &claims,
            json!({"sub": "complete", "name": "Ada L", "email": "complete@example.com", "email_verified": true}),
        )
        .await;
        let status = finish(&app, &authorize, "c").await;
        assert_eq!(status["status"], "ok", "{mode}: {status}");
        assert_eq!(
            app.provider.userinfo_requests().await.len(),
            userinfo_calls,
            "{mode}"
        );
        let user = UserProfile::find().one(&app.db).await.unwrap().unwrap();
        assert_eq!(
            user.email.as_deref(),
            Some("complete@example.com"),
            "{mode}"
        );
        assert_eq!(user.display_name.as_deref(), Some(name), "{mode}");
    }
}

/// An ID token without an email the provider marks verified is not enough: the
/// userinfo answer decides (here it verifies the address, so accounts can link).
#[tokio::test]
async fn an_id_token_without_a_verified_email_still_asks_userinfo() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    let mut claims = app
        .provider
        .claims("thin", authorize.nonce.as_deref().unwrap());
    claims.as_object_mut().unwrap().remove("email_verified");
    given_id_token_and_userinfo(
        &app,
        &claims,
        json!({"sub": "thin", "email": "thin@example.com", "email_verified": true}),
    )
    .await;
    let status = finish(&app, &authorize, "c").await;
    assert_eq!(status["status"], "ok", "{status}");
    assert_eq!(app.provider.userinfo_requests().await.len(), 1);
    let user = UserProfile::find().one(&app.db).await.unwrap().unwrap();
    assert!(user.email_verified);
}
