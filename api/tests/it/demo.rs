//! The built-in demo provider, through the production code path, as a newcomer
//! clicks through it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    Browser, Options, assert_redirect_to, assert_to_preloader, location, spawn_app_with,
};

async fn demo_app() -> crate::helpers::TestApp {
    // No provider configured and a loopback public_url: the demo provider is on.
    spawn_app_with(Options {
        overrides: json!({"providers": {}}),
        ..Options::default()
    })
    .await
    .unwrap()
}

/// Fills and submits the demo form; returns the redirect back to our callback.
async fn authorize(browser: &Browser, name: &str, email: &str, action: &str) -> reqwest::Response {
    let response = browser.get("/auth/demo/login").await;
    let authorize_url = url::Url::parse(location(&response)).unwrap();
    assert!(authorize_url.path().ends_with("/demo-provider/authorize"));
    let form_page = browser
        .get(&format!(
            "/demo-provider/authorize?{}",
            authorize_url.query().unwrap()
        ))
        .await;
    assert_eq!(form_page.status(), StatusCode::OK);
    assert!(form_page.text().await.unwrap().contains("name=\"email\""));
    let mut form: Vec<(String, String)> = authorize_url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.push(("name".into(), name.into()));
    form.push(("email".into(), email.into()));
    form.push(("action".into(), action.into()));
    browser
        .client
        .post(format!("{}/demo-provider/authorize", browser.address))
        .form(&form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_newcomer_signs_in_with_the_demo_provider() {
    let app = demo_app().await;
    let index = app.get("/").await.text().await.unwrap();
    assert!(
        index.contains(r#"<a href="/auth/demo/login""#) && index.contains("Sign in with Demo"),
        "{index}"
    );

    let back = authorize(&app.browser, "Ada Lovelace", "Ada@Example.com", "allow").await;
    let callback = location(&back).to_owned();
    assert!(
        callback.starts_with(&format!("{}/auth/demo/callback?code=", app.address)),
        "{callback}"
    );
    let response = app.client.get(&callback).send().await.unwrap();
    assert_to_preloader(&response);
    let preloader = app.get("/auth/preloader").await.text().await.unwrap();
    assert!(preloader.contains("/static/preloader.js"));
    assert_eq!(app.wait_for_status("").await["status"], "ok");
    assert_redirect_to(&app.get_success("").await, "/");
    assert!(app.get("/").await.text().await.unwrap().contains("Hi, Ada"));
    let me: Value = app.get_me().await.json().await.unwrap();
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["last_name"], "Lovelace");
    assert_eq!(me["providers"], json!(["demo"]));
    assert_redirect_to(&app.post_logout().await, "/");
    assert_eq!(app.get_me().await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cancelling_at_the_demo_provider_shows_the_error_page() {
    let app = demo_app().await;
    let back = authorize(&app.browser, "", "", "deny").await;
    let callback = location(&back).to_owned();
    assert!(callback.contains("error=access_denied"), "{callback}");
    let response = app.client.get(&callback).send().await.unwrap();
    assert_redirect_to(&response, "/auth/error?reason=access_denied");
}

#[tokio::test]
async fn demo_codes_work_once() {
    let app = demo_app().await;
    let back = authorize(&app.browser, "Bob", "bob@example.com", "allow").await;
    let callback = url::Url::parse(location(&back)).unwrap();
    let code = callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let token = |verifier: &'static str| {
        let client = reqwest::Client::new();
        let address = app.address.clone();
        let code = code.clone();
        async move {
            client
                .post(format!("{address}/demo-provider/token"))
                .basic_auth("social-signin-demo", Some("social-signin-demo-secret"))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", &format!("{address}/auth/demo/callback")),
                    ("code_verifier", verifier),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    // A wrong verifier is refused (PKCE), without spending the code...
    let wrong = token("wrong-verifier-wrong-verifier-wrong-verifier-x").await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    // ...and the real flow redeems it once through the worker.
    app.client.get(callback.as_str()).send().await.unwrap();
    assert_eq!(app.wait_for_status("").await["status"], "ok");
}

#[tokio::test]
async fn the_demo_provider_is_off_when_a_real_provider_is_configured() {
    let app = spawn_app_with(Options::default()).await.unwrap();
    assert_eq!(
        app.get("/demo-provider/authorize").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get_login("demo").await.status(), StatusCode::NOT_FOUND);
}

/// An authorize URL for the demo client with our own PKCE pair.
fn demo_authorize_query(redirect_uri: &str, method: &str) -> String {
    let verifier = "v".repeat(43);
    let challenge = worker::crypto::sha256_b64url(&verifier);
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", "social-signin-demo")
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("state", "some-state")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", method)
        .append_pair("scope", "openid email profile")
        .finish()
}

#[tokio::test]
async fn demo_authorize_refuses_an_unregistered_redirect_uri() {
    let app = demo_app().await;
    let query = demo_authorize_query("https://evil.example/callback", "S256");
    let response = app.get(&format!("/demo-provider/authorize?{query}")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response.headers().get("location").is_none(),
        "never redirects there"
    );
}

#[tokio::test]
async fn demo_authorize_requires_s256() {
    let app = demo_app().await;
    let redirect_uri = format!("{}/auth/demo/callback", app.address);
    let query = demo_authorize_query(&redirect_uri, "plain");
    let response = app.get(&format!("/demo-provider/authorize?{query}")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let back = location(&response);
    assert!(
        back.contains("error=invalid_request") && !back.contains("code="),
        "{back}"
    );
}

#[tokio::test]
async fn demo_codes_are_refused_the_second_time() {
    let app = demo_app().await;
    let redirect_uri = format!("{}/auth/demo/callback", app.address);
    let query = demo_authorize_query(&redirect_uri, "S256");
    let mut form: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.push(("name".into(), "Eve".into()));
    form.push(("email".into(), "eve@example.com".into()));
    form.push(("action".into(), "allow".into()));
    let back = app
        .client
        .post(format!("{}/demo-provider/authorize", app.address))
        .form(&form)
        .send()
        .await
        .unwrap();
    let code = url::Url::parse(location(&back))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let exchange = || {
        reqwest::Client::new()
            .post(format!("{}/demo-provider/token", app.address))
            .basic_auth("social-signin-demo", Some("social-signin-demo-secret"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect_uri.as_str()),
                ("code_verifier", &"v".repeat(43)),
            ])
            .send()
    };
    assert_eq!(exchange().await.unwrap().status(), StatusCode::OK);
    let again = exchange().await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        again.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
}
