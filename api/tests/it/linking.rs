//! Identity rules: one person, one user. Linking by verified email on both sides
//! only, explicit link and unlink, and local profile edits that sign-ins respect.

use entity::prelude::{SocialAccount, UserProfile};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use crate::helpers::{Browser, Options, TestApp, assert_to_preloader, spawn_app_with};

/// The default mock OIDC provider plus a GitHub preset answering with `email`.
async fn app_with_github(email: &str, verified: bool) -> TestApp {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "gh", "token_type": "bearer"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/user"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": 99, "login": "gh-user", "name": "Octo Cat"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/user/emails"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([{"email": email, "primary": true, "verified": verified}])),
        )
        .mount(&server)
        .await;
    let app = spawn_app_with(Options {
        overrides: json!({"providers": {"github": {
            "client_id": "g", "client_secret": "s",
            "authorize_url": format!("{}/authorize", server.uri()),
            "token_url": format!("{}/token", server.uri()),
            "userinfo_url": format!("{}/user", server.uri()),
        }}}),
        ..Options::default()
    })
    .await
    .unwrap();
    // Keep the server alive as long as the app.
    std::mem::forget(server);
    app
}

/// A mock OIDC sign-in of `sub` whose email is `email`, verified or not.
async fn oidc_sign_in(
    app: &TestApp,
    browser: &Browser,
    sub: &str,
    email: &str,
    verified: bool,
) -> Value {
    let authorize = browser.start_login("mock", "").await;
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    let mut claims = app
        .provider
        .claims(sub, authorize.nonce.as_deref().unwrap());
    claims["email"] = json!(email);
    claims["email_verified"] = json!(verified);
    app.provider
        .given_token_ok(&code, &app.provider.id_token(&claims))
        .await;
    app.provider
        .given_userinfo(json!({"sub": sub, "email": email, "email_verified": verified, "given_name": "Grace", "family_name": "Hopper"}))
        .await;
    complete(
        browser,
        "mock",
        &format!("code={code}&state={}", authorize.state),
    )
    .await
}

async fn github_sign_in(browser: &Browser, query: &str) -> Value {
    let authorize = browser.start_login("github", query).await;
    complete(
        browser,
        "github",
        &format!("code=gh&state={}", authorize.state),
    )
    .await
}

async fn complete(browser: &Browser, provider: &str, callback_query: &str) -> Value {
    assert_to_preloader(&browser.get_callback(provider, callback_query).await);
    let status = browser.wait_for_status("").await;
    if status["status"] != "ok" {
        return status;
    }
    assert_eq!(
        browser.get_success("").await.status(),
        StatusCode::SEE_OTHER
    );
    browser.get_me().await.json().await.unwrap()
}

#[tokio::test]
async fn the_same_verified_email_across_two_providers_is_one_user() {
    let app = app_with_github("grace@example.com", true).await;
    let first = oidc_sign_in(&app, &app.browser, "g-1", "grace@example.com", true).await;
    let other = app.new_browser();
    let second = github_sign_in(&other, "").await;
    assert_eq!(first["id"], second["id"]);
    assert_eq!(second["providers"], json!(["github", "mock"]));
    assert_eq!(app.count(UserProfile).await, 1);
}

#[tokio::test]
async fn an_unverified_email_on_either_side_makes_two_users() {
    // The provider does not vouch for the address: no link (pre-account takeover).
    let app = app_with_github("grace@example.com", false).await;
    let first = oidc_sign_in(&app, &app.browser, "g-1", "grace@example.com", true).await;
    let second = github_sign_in(&app.new_browser(), "").await;
    assert_ne!(first["id"], second["id"]);

    // The existing user's address is unverified: no link either.
    let app = app_with_github("ada@example.com", true).await;
    let first = oidc_sign_in(&app, &app.browser, "a-1", "ada@example.com", false).await;
    let second = github_sign_in(&app.new_browser(), "").await;
    assert_ne!(first["id"], second["id"]);
    assert_eq!(app.count(UserProfile).await, 2);
}

#[tokio::test]
async fn a_signed_in_user_links_and_unlinks_another_provider() {
    let app = app_with_github("different@example.com", true).await;
    let me = oidc_sign_in(&app, &app.browser, "g-1", "grace@example.com", true).await;
    let linked = github_sign_in(&app.browser, "?link=1&next=/settings").await;
    assert_eq!(
        linked["id"], me["id"],
        "linked to the signed-in user, not a new one"
    );
    assert_eq!(linked["providers"], json!(["github", "mock"]));
    assert_eq!(app.count(UserProfile).await, 1);

    let unlink = |provider: &'static str| {
        let browser = &app.browser;
        async move {
            browser
                .client
                .delete(format!("{}/api/me/providers/{provider}", browser.address))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(unlink("github").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(unlink("github").await.status(), StatusCode::NOT_FOUND);
    let last = unlink("mock").await;
    assert_eq!(last.status(), StatusCode::CONFLICT);
    assert_eq!(
        last.json::<Value>().await.unwrap()["error"]["code"],
        "last_sign_in_method"
    );
    let me: Value = app.get_me().await.json().await.unwrap();
    assert_eq!(me["providers"], json!(["mock"]));
    assert_eq!(app.count(SocialAccount).await, 1);

    // Both are in the user's audit log (the worker writes `linked` just after
    // finishing, so wait a little for it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let events: Vec<Value> = app.get("/api/me/events").await.json().await.unwrap();
        let has = |kind: &str, provider: &str| {
            events
                .iter()
                .any(|e| e["kind"] == kind && e["provider"] == provider)
        };
        if has("linked", "github") && has("unlinked", "github") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{events:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn linking_an_account_that_belongs_to_someone_else_fails() {
    let app = app_with_github("octo@example.com", true).await;
    let owner = app.new_browser();
    github_sign_in(&owner, "").await;
    oidc_sign_in(&app, &app.browser, "g-2", "grace@example.com", true).await;
    let status = github_sign_in(&app.browser, "?link=1").await;
    assert_eq!(status["status"], "error");
    assert_eq!(status["error"]["code"], "account_in_use");
    assert_eq!(app.count(SocialAccount).await, 2);
}

#[tokio::test]
async fn linking_needs_a_signed_in_user() {
    let app = app_with_github("octo@example.com", true).await;
    assert_eq!(
        app.get("/auth/github/login?link=1").await.status(),
        StatusCode::BAD_REQUEST
    );
    let unlink = app
        .client
        .delete(format!("{}/api/me/providers/github", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(unlink.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn names_the_user_set_locally_survive_the_next_sign_in() {
    let app = spawn_app_with(Options::default()).await.unwrap();
    oidc_sign_in(&app, &app.browser, "g-3", "grace@example.com", true).await;
    let patched = app
        .client
        .patch(format!("{}/api/me", app.address))
        .json(&json!({"first_name": "Amazing Grace", "display_name": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let me: Value = patched.json().await.unwrap();
    assert_eq!(me["first_name"], "Amazing Grace");
    assert_eq!(me["display_name"], Value::Null);

    app.post_logout().await;
    let again = oidc_sign_in(&app, &app.browser, "g-3", "grace@example.com", true).await;
    assert_eq!(again["first_name"], "Amazing Grace", "a local edit wins");
    assert_eq!(again["display_name"], Value::Null, "a local clear wins too");
    assert_eq!(
        again["last_name"], "Hopper",
        "other fields still follow the provider"
    );

    for bad in [
        json!({"email": "x@example.com"}),
        json!({"first_name": {"nested": true}}),
        json!({"first_name": "x".repeat(101)}),
        json!([1]),
    ] {
        let response = app
            .client
            .patch(format!("{}/api/me", app.address))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn a_state_from_one_provider_is_refused_at_another_providers_callback() {
    let app = app_with_github("x@example.com", true).await;
    let login = app.get_login("mock").await;
    let state = url::Url::parse(crate::helpers::location(&login))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    // Both cookies as the browser holds them, sent by hand to any path.
    let cookies: Vec<String> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next())
        .map(str::to_owned)
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    let callback = |provider: &'static str| {
        let url = format!(
            "{}/auth/{provider}/callback?code=some-code&state={state}",
            app.address
        );
        let cookie = cookies.join("; ");
        async move {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
        }
    };
    // The mock's attempt presented at GitHub's callback (a mix-up): refused.
    assert_eq!(callback("github").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count(entity::prelude::AsyncOperation).await, 0);
    // The same cookies at the right callback work.
    let right = callback("mock").await;
    crate::helpers::assert_to_preloader(&right);
}
