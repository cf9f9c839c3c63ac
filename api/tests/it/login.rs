//! `GET /auth/{provider}/login`.

use reqwest::StatusCode;

use crate::helpers::{assert_redirect_to, location, mock_provider::CLIENT_ID, spawn_app};

#[tokio::test]
async fn login_redirects_to_the_provider_with_state_pkce_and_nonce() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "?next=/account").await;
    assert!(
        authorize
            .url
            .as_str()
            .starts_with(&format!("{}/authorize?", app.provider.issuer()))
    );
    assert_eq!(authorize.param("response_type").as_deref(), Some("code"));
    assert_eq!(authorize.param("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(
        authorize.param("redirect_uri"),
        Some(format!("http://127.0.0.1:{}/auth/mock/callback", app.port))
    );
    assert_eq!(
        authorize.param("scope").as_deref(),
        Some("openid email profile")
    );
    assert_eq!(
        authorize.param("code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(authorize.code_challenge.len(), 43);
    assert!(authorize.state.len() >= 32);
    assert!(authorize.nonce.as_ref().is_some_and(|n| n.len() >= 32));

    let again = app.start_login("mock", "").await;
    assert_ne!(
        again.state, authorize.state,
        "every attempt gets a fresh state"
    );
    assert_ne!(again.nonce, authorize.nonce);
    assert_ne!(again.code_challenge, authorize.code_challenge);
}

#[tokio::test]
async fn unknown_provider_is_a_404_page() {
    let app = spawn_app().await;
    let response = app.get_login("nope").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Unknown sign-in provider")
    );
}

#[tokio::test]
async fn signed_in_user_is_sent_home() {
    let app = spawn_app().await;
    app.sign_in(&app.browser, "home").await;
    assert_redirect_to(&app.get_login("mock").await, "/");
}

#[tokio::test]
async fn index_links_each_provider() {
    let app = spawn_app().await;
    let page = app.get("/").await.text().await.unwrap();
    assert!(page.contains(r#"<a href="/auth/mock/login""#), "{page}");
    assert!(page.contains("Sign in with Mock ID"));
    let providers: serde_json::Value = app.get("/api/providers").await.json().await.unwrap();
    assert_eq!(
        providers,
        serde_json::json!([{"name": "mock", "display_name": "Mock ID", "login_url": "/auth/mock/login"}])
    );
    // A dangerous `next` is dropped, not followed.
    let response = app.get("/auth/mock/login?next=//evil.example").await;
    assert!(location(&response).starts_with(&app.provider.issuer()));
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};
    let server = MockServer::start().await;
    let uri = server.uri();
    // A discovery document under our configured issuer that names someone else.
    Mock::given(path("/tenant/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "issuer": "https://evil.example",
            "authorization_endpoint": format!("{uri}/authorize"),
            "token_endpoint": format!("{uri}/token"),
            "jwks_uri": format!("{uri}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })))
        .mount(&server)
        .await;
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        overrides: serde_json::json!({"providers": {"evil": {
            "kind": "oidc", "issuer": format!("{uri}/tenant"),
            "client_id": "c", "client_secret": "s",
        }}}),
        ..Default::default()
    })
    .await
    .unwrap();
    let response = app.get_login("evil").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get("location").is_none());
}

#[tokio::test]
async fn index_escapes_a_hostile_provider_name() {
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        mock_config: serde_json::json!({"kind": "oidc",
            "display_name": "<script>alert(1)</script>\" onmouseover=\"x"}),
        ..Default::default()
    })
    .await
    .unwrap();
    let page = app.get("/").await.text().await.unwrap();
    assert!(!page.contains("<script>alert(1)"), "{page}");
    assert!(!page.contains("\" onmouseover=\"x"), "{page}");
    assert!(page.contains("&lt;script&gt;"), "{page}");
}
