//! Every provider preset against a local server answering with the provider's
//! documented response shapes.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_string_contains, header, method, path, query_param},
};

use crate::helpers::{
    Authorize, Browser, Options, TestApp, appsecret_proof, assert_redirect_to, assert_to_preloader,
    spawn_app_with,
};

/// An app whose providers are `providers` (merged over the default mock OIDC one).
async fn app_with(providers: Value) -> TestApp {
    spawn_app_with(Options {
        overrides: json!({ "providers": providers }),
        ..Options::default()
    })
    .await
    .unwrap()
}

/// Callback → preloader → status; on `ok`, success and `/api/me`.
async fn finish(browser: &Browser, provider: &str, query: &str) -> Value {
    let callback = browser.get_callback(provider, query).await;
    assert_to_preloader(&callback);
    let status = browser.wait_for_status("").await;
    if status["status"] != "ok" {
        return status;
    }
    assert_redirect_to(&browser.get_success("").await, "/");
    browser.get_me().await.json().await.unwrap()
}

// ---- GitHub -------------------------------------------------------------------

async fn github_server(emails: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/login/oauth/access_token"))
        .and(body_string_contains("client_secret=gh-secret"))
        .and(body_string_contains("code=gh-code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "gho_16C7e42F292c6912E7710c838347Ae178B4a",
            "scope": "read:user,user:email",
            "token_type": "bearer",
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/login/oauth/access_token"))
        .and(body_string_contains("code=spent"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "error": "bad_verification_code",
            "error_description": "The code passed is incorrect or expired.",
            "error_uri": "https://docs.github.com/apps/troubleshooting-oauth-apps",
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/user"))
        .and(header(
            "authorization",
            "Bearer gho_16C7e42F292c6912E7710c838347Ae178B4a",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "login": "octocat", "id": 583231, "node_id": "MDQ6VXNlcjE=",
            "avatar_url": "https://github.com/images/error/octocat_happy.gif",
            "name": "Mona Lisa Octocat", "company": "GitHub", "email": "octocat@public.example",
            "type": "User", "site_admin": false,
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/user/emails"))
        .respond_with(ResponseTemplate::new(200).set_body_json(emails))
        .mount(&server)
        .await;
    server
}

fn github_config(server: &MockServer) -> Value {
    json!({"github": {
        "client_id": "gh-client", "client_secret": "gh-secret",
        "authorize_url": format!("{}/login/oauth/authorize", server.uri()),
        "token_url": format!("{}/login/oauth/access_token", server.uri()),
        "userinfo_url": format!("{}/user", server.uri()),
    }})
}

fn several_github_emails() -> Value {
    json!([
        {"email": "mona@old.example", "verified": true, "primary": false, "visibility": null},
        {"email": "Octocat@GitHub.example", "verified": true, "primary": true, "visibility": "public"},
        {"email": "unverified@example.com", "verified": false, "primary": false, "visibility": null},
    ])
}

#[tokio::test]
async fn github_signs_in_with_the_primary_verified_email() {
    let server = github_server(several_github_emails()).await;
    let app = app_with(github_config(&server)).await;
    let authorize = app.start_login("github", "").await;
    assert!(
        authorize
            .url
            .as_str()
            .starts_with(&format!("{}/login/oauth/authorize", server.uri()))
    );
    assert_eq!(
        authorize.param("scope").as_deref(),
        Some("read:user user:email")
    );
    assert!(authorize.nonce.is_none(), "plain OAuth 2 sends no nonce");
    let me = finish(
        &app.browser,
        "github",
        &format!("code=gh-code&state={}", authorize.state),
    )
    .await;
    assert_eq!(me["email"], "octocat@github.example");
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["display_name"], "Mona Lisa Octocat");
    assert_eq!(me["first_name"], "Mona");
    assert_eq!(
        me["avatar_url"],
        "https://github.com/images/error/octocat_happy.gif"
    );
    assert_eq!(me["providers"], json!(["github"]));
}

#[tokio::test]
async fn github_bad_verification_code_is_invalid_grant() {
    let server = github_server(several_github_emails()).await;
    let app = app_with(github_config(&server)).await;
    let authorize = app.start_login("github", "").await;
    let status = finish(
        &app.browser,
        "github",
        &format!("code=spent&state={}", authorize.state),
    )
    .await;
    assert_eq!(status["error"]["code"], "invalid_grant");
}

// ---- Facebook -----------------------------------------------------------------

#[tokio::test]
async fn facebook_without_email_signs_in_with_appsecret_proof() {
    let server = MockServer::start().await;
    let token = "EAAGm0PX4ZCpsBAKZCg1ZBsZCZB";
    Mock::given(method("POST"))
        .and(path("/v19.0/oauth/access_token"))
        .and(body_string_contains("client_id=1234567890"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": token, "token_type": "bearer", "expires_in": 5183944,
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v19.0/me"))
        .and(query_param("fields", "id,email,first_name,last_name,name,picture"))
        .and(query_param("appsecret_proof", appsecret_proof("fb-secret", token)))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "10158923456789012", "first_name": "Priscilla", "last_name": "Chan", "name": "Priscilla Chan",
            "picture": {"data": {"height": 50, "is_silhouette": false, "url": "https://platform-lookaside.example/p.jpg", "width": 50}},
        })))
        .expect(1)
        .mount(&server)
        .await;
    // Numeric app ids arrive from the environment as numbers; they must still work.
    let app = app_with(json!({"facebook": {
        "client_id": 1234567890u64, "client_secret": "fb-secret",
        "authorize_url": format!("{}/v19.0/dialog/oauth", server.uri()),
        "token_url": format!("{}/v19.0/oauth/access_token", server.uri()),
        "userinfo_url": format!("{}/v19.0/me", server.uri()),
    }}))
    .await;
    let authorize = app.start_login("facebook", "").await;
    assert_eq!(authorize.param("client_id").as_deref(), Some("1234567890"));
    let me = finish(
        &app.browser,
        "facebook",
        &format!("code=fb-code&state={}", authorize.state),
    )
    .await;
    assert_eq!(me["email"], Value::Null);
    assert_eq!(me["email_verified"], false);
    assert_eq!(me["first_name"], "Priscilla");
    assert_eq!(me["avatar_url"], "https://platform-lookaside.example/p.jpg");
    assert_eq!(me["providers"], json!(["facebook"]));
}

#[tokio::test]
async fn require_email_refuses_a_profile_without_one() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "t", "token_type": "bearer"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/me"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "1", "name": "No Mail"})),
        )
        .mount(&server)
        .await;
    let app = spawn_app_with(Options {
        overrides: json!({"require_email": true, "providers": {"facebook": {
            "client_id": "1", "client_secret": "s",
            "authorize_url": format!("{}/dialog", server.uri()),
            "token_url": format!("{}/token", server.uri()),
            "userinfo_url": format!("{}/me", server.uri()),
        }}}),
        ..Options::default()
    })
    .await
    .unwrap();
    let authorize = app.start_login("facebook", "").await;
    let status = finish(
        &app.browser,
        "facebook",
        &format!("code=c&state={}", authorize.state),
    )
    .await;
    assert_eq!(status["error"]["code"], "email_required");
    assert_eq!(app.count(entity::prelude::UserProfile).await, 0);
}

// ---- Google -------------------------------------------------------------------

/// The `google` preset, pointed at the mock OpenID Provider.
async fn google_app(hd: Option<&str>) -> TestApp {
    let config = match hd {
        Some(hd) => json!({"hd": hd}),
        None => json!({"hd": null}),
    };
    spawn_app_with(Options {
        mock_name: "google",
        mock_config: config,
        ..Options::default()
    })
    .await
    .unwrap()
}

async fn google_sign_in(app: &TestApp, hd_claim: Option<&str>) -> (Authorize, Value) {
    let authorize = app.start_login("google", "").await;
    let mut claims = app
        .provider
        .claims("g-1", authorize.nonce.as_deref().unwrap());
    if let Some(hd) = hd_claim {
        claims["hd"] = json!(hd);
    }
    app.provider
        .given_token_ok("g-code", &app.provider.id_token(&claims))
        .await;
    app.provider
        .given_userinfo(json!({"sub": "g-1", "email": "g-1@example.com", "email_verified": true}))
        .await;
    let result = finish(
        &app.browser,
        "google",
        &format!("code=g-code&state={}", authorize.state),
    )
    .await;
    (authorize, result)
}

#[tokio::test]
async fn google_signs_in_through_discovery() {
    let app = google_app(None).await;
    let (authorize, me) = google_sign_in(&app, None).await;
    assert_eq!(authorize.param("hd"), None);
    assert_eq!(me["providers"], json!(["google"]));
    assert!(
        app.get("/")
            .await
            .text()
            .await
            .unwrap()
            .contains("Hi, Grace")
    );
}

#[tokio::test]
async fn google_hd_admits_the_workspace_domain() {
    let app = google_app(Some("example.com")).await;
    let (authorize, me) = google_sign_in(&app, Some("example.com")).await;
    assert_eq!(authorize.param("hd").as_deref(), Some("example.com"));
    assert_eq!(me["email"], "g-1@example.com");
}

#[tokio::test]
async fn google_hd_refuses_other_domains_and_consumer_accounts() {
    for claim in [Some("evil.example"), None] {
        let app = google_app(Some("example.com")).await;
        let (_, status) = google_sign_in(&app, claim).await;
        assert_eq!(
            status["error"]["code"], "domain_not_allowed",
            "hd claim {claim:?}"
        );
        assert_eq!(app.count(entity::prelude::UserProfile).await, 0);
    }
}

// ---- Apple --------------------------------------------------------------------

const APPLE_TEAM: &str = "TEAM123456";
const APPLE_KEY_ID: &str = "KEY1234567";

async fn apple_app() -> TestApp {
    spawn_app_with(Options {
        mock_name: "apple",
        mock_config: json!({
            "client_id": "com.example.signin",
            "client_secret": null,
            "authorize_url": "{mock}/auth/authorize",
            "token_url": "{mock}/auth/token",
            "jwks_url": "{mock}/jwks",
            "team_id": APPLE_TEAM,
            "key_id": APPLE_KEY_ID,
            "private_key": include_str!("fixtures/apple_test_key.p8"),
        }),
        ..Options::default()
    })
    .await
    .unwrap()
}

/// Apple's token response for `sub`, with an ID token as Apple issues it: string
/// booleans, `is_private_email`, no names.
async fn given_apple_token(app: &TestApp, authorize: &Authorize, code: &str, sub: &str) {
    let now = chrono::Utc::now().timestamp();
    let id_token = app.provider.id_token(&json!({
        "iss": app.provider.issuer(), "aud": "com.example.signin", "exp": now + 600, "iat": now,
        "sub": sub, "nonce": authorize.nonce.as_deref().unwrap(), "c_hash": "x", "auth_time": now,
        "email": "abc123@privaterelay.appleid.com", "email_verified": "true", "is_private_email": "true",
        "nonce_supported": true,
    }));
    Mock::given(method("POST"))
        .and(path("/auth/token"))
        .and(body_string_contains(format!("code={code}&")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "a0b1c2", "token_type": "Bearer", "expires_in": 3600,
            "refresh_token": "r0b1c2", "id_token": id_token,
        })))
        .mount(&app.provider.server)
        .await;
}

/// Apple's `form_post` return: a POST with the code, state and (first time) `user`.
async fn apple_post(
    client: &reqwest::Client,
    app: &TestApp,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client
        .post(format!("{}/auth/apple/callback", app.address))
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn apple_first_sign_in_takes_the_name_from_the_user_field() {
    let app = apple_app().await;
    let authorize = app.start_login("apple", "").await;
    assert_eq!(
        authorize.param("response_mode").as_deref(),
        Some("form_post")
    );
    assert_eq!(authorize.param("scope").as_deref(), Some("name email"));
    given_apple_token(&app, &authorize, "apple-1", "001234.abcdef.1234").await;
    let user = r#"{"name":{"firstName":"Tim","lastName":"Apple"},"email":"abc123@privaterelay.appleid.com"}"#;
    let response = apple_post(
        &app.client,
        &app,
        &[
            ("state", &authorize.state),
            ("code", "apple-1"),
            ("user", user),
        ],
    )
    .await;
    assert_to_preloader(&response);
    assert_eq!(app.wait_for_status("").await["status"], "ok");
    assert_redirect_to(&app.get_success("").await, "/");
    let me: Value = app.get_me().await.json().await.unwrap();
    assert_eq!(me["first_name"], "Tim");
    assert_eq!(me["display_name"], "Tim Apple");
    assert_eq!(me["email"], "abc123@privaterelay.appleid.com");
    assert_eq!(
        me["email_verified"], true,
        "Apple's string boolean is understood"
    );

    // The client secret was an ES256 JWT from the team's key.
    let request = app
        .provider
        .server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.url.path() == "/auth/token")
        .unwrap();
    let body = String::from_utf8(request.body).unwrap();
    let secret = form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "client_secret")
        .unwrap()
        .1
        .into_owned();
    let key =
        jsonwebtoken::DecodingKey::from_ec_pem(include_bytes!("fixtures/apple_test_key.pub.pem"))
            .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["https://appleid.apple.com"]);
    validation.set_issuer(&[APPLE_TEAM]);
    let decoded = jsonwebtoken::decode::<Value>(&secret, &key, &validation)
        .expect("a valid ES256 client secret");
    assert_eq!(decoded.header.kid.as_deref(), Some(APPLE_KEY_ID));
    assert_eq!(decoded.claims["sub"], "com.example.signin");

    // A later sign-in has no `user` field; the name stays.
    let browser = app.new_browser();
    let again = browser.start_login("apple", "").await;
    given_apple_token(&app, &again, "apple-2", "001234.abcdef.1234").await;
    let response = apple_post(
        &browser.client,
        &app,
        &[("state", &again.state), ("code", "apple-2")],
    )
    .await;
    assert_to_preloader(&response);
    assert_eq!(browser.wait_for_status("").await["status"], "ok");
    assert_redirect_to(&browser.get_success("").await, "/");
    let later: Value = browser.get_me().await.json().await.unwrap();
    assert_eq!(later["id"], me["id"]);
    assert_eq!(later["first_name"], "Tim");
}

#[tokio::test]
async fn apples_cross_site_post_is_reposted_from_our_origin() {
    let app = apple_app().await;
    let authorize = app.start_login("apple", "").await;
    // Apple's POST is cross-site: the browser sends no SameSite=Lax cookies with it.
    let cookieless = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let hop = apple_post(
        &cookieless,
        &app,
        &[
            ("state", &authorize.state),
            ("code", "apple-3"),
            ("user", "{\"name\":{}}"),
        ],
    )
    .await;
    assert_eq!(hop.status(), StatusCode::OK);
    assert_eq!(hop.headers()["referrer-policy"], "no-referrer");
    let page = hop.text().await.unwrap();
    assert!(
        page.contains(r#"action="/auth/apple/callback""#) && page.contains(r#"name="_hop""#),
        "{page}"
    );
    assert!(page.contains(&format!(r#"name="state" value="{}""#, authorize.state)));
    assert!(page.contains("/static/repost.js"));
    // The re-post, same-site now, carries the cookies and completes.
    given_apple_token(&app, &authorize, "apple-3", "001234.hop").await;
    let response = apple_post(
        &app.client,
        &app,
        &[
            ("state", &authorize.state),
            ("code", "apple-3"),
            ("_hop", "1"),
        ],
    )
    .await;
    assert_to_preloader(&response);
    assert_eq!(app.wait_for_status("").await["status"], "ok");
    // A second cookieless round does not loop: it is refused.
    let again = apple_post(
        &cookieless,
        &app,
        &[
            ("state", &authorize.state),
            ("code", "apple-3"),
            ("_hop", "1"),
        ],
    )
    .await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn post_callbacks_are_only_for_form_post_providers() {
    let app = spawn_app_with(Options::default()).await.unwrap();
    let authorize = app.start_login("mock", "").await;
    let response = app
        .client
        .post(format!("{}/auth/mock/callback", app.address))
        .form(&[("state", authorize.state.as_str()), ("code", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

// ---- Generic OAuth 2 ------------------------------------------------------------

#[tokio::test]
async fn oauth2_maps_the_profile_with_json_pointers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "tok", "token_type": "Bearer", "expires_in": 600}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/user"))
        .and(header("authorization", "Bearer tok"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {"uid": 4242, "contact": {"mail": "Dev@Forge.example", "confirmed": true}},
            "profile": {"first": "Dev", "last": "Eloper", "full": "Dev Eloper", "avatar": "https://forge.example/a.png"},
        })))
        .mount(&server)
        .await;
    let app = app_with(json!({"forge": {
        "kind": "oauth2", "display_name": "Forge", "client_id": "f", "client_secret": "s",
        "authorize_url": format!("{}/oauth/authorize", server.uri()),
        "token_url": format!("{}/oauth/token", server.uri()),
        "userinfo_url": format!("{}/api/v4/user", server.uri()),
        "scopes": "read_user",
        "claims": {
            "subject": "/data/uid", "email": "/data/contact/mail", "email_verified": "/data/contact/confirmed",
            "first_name": "/profile/first", "last_name": "/profile/last", "display_name": "/profile/full",
            "avatar_url": "/profile/avatar",
        },
    }}))
    .await;
    let authorize = app.start_login("forge", "").await;
    let me = finish(
        &app.browser,
        "forge",
        &format!("code=c&state={}", authorize.state),
    )
    .await;
    assert_eq!(me["email"], "dev@forge.example");
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["last_name"], "Eloper");
    assert_eq!(me["avatar_url"], "https://forge.example/a.png");
    assert_eq!(me["providers"], json!(["forge"]));
}

#[tokio::test]
async fn the_index_and_provider_list_show_every_preset() {
    let server = github_server(json!([])).await;
    let app = app_with(github_config(&server)).await;
    let list: Value = app.get("/api/providers").await.json().await.unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["display_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["GitHub", "Mock ID"]);
}
