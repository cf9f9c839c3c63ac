//! Google's One Tap and "Sign in with Google" button: the index page's markup and
//! CSP, and `POST /auth/google/one-tap` with a credential signed by the mock's key,
//! through the queue, the preloader and success.

use std::sync::Arc;

use entity::prelude::{AsyncOperation, UserProfile};
use reqwest::{StatusCode, cookie::Jar, redirect::Policy};
use serde_json::{Value, json};

use crate::helpers::{
    Browser, Options, TestApp, assert_redirect_to, assert_to_preloader, location, mock_provider,
    spawn_app_with,
};

async fn one_tap_app() -> TestApp {
    spawn_app_with(Options {
        mock_name: "google",
        mock_config: json!({"one_tap": true, "native_client_ids": ["ios-client-id"]}),
        ..Options::default()
    })
    .await
    .unwrap()
}

/// A browser whose cookies the test can add to, as Google's script does.
struct GoogleBrowser {
    browser: Browser,
    jar: Arc<Jar>,
}

impl GoogleBrowser {
    fn new(app: &TestApp) -> Self {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(Policy::none())
            .build()
            .unwrap();
        Self {
            browser: Browser {
                address: app.address.clone(),
                client,
            },
            jar,
        }
    }

    /// Loads the index page; returns the nonce it gave Google's script.
    async fn load_index(&self) -> String {
        let page = self.browser.get("/").await.text().await.unwrap();
        attribute(&page, "data-nonce").expect("the page carries a nonce")
    }

    /// Google's script: sets the double-submit cookie and posts the form.
    async fn post_credential(
        &self,
        credential: &str,
        cookie: Option<&str>,
        field: Option<&str>,
    ) -> reqwest::Response {
        let url = format!("{}/", self.browser.address).parse().unwrap();
        if let Some(cookie) = cookie {
            self.jar
                .add_cookie_str(&format!("g_csrf_token={cookie}; Path=/"), &url);
        }
        let mut form = vec![("credential", credential), ("select_by", "btn")];
        if let Some(field) = field {
            form.push(("g_csrf_token", field));
        }
        self.browser
            .client
            .post(format!("{}/auth/google/one-tap", self.browser.address))
            .form(&form)
            .send()
            .await
            .unwrap()
    }
}

fn attribute(page: &str, name: &str) -> Option<String> {
    let start = page.find(&format!("{name}=\""))? + name.len() + 2;
    Some(page[start..].split('"').next()?.to_owned())
}

#[tokio::test]
async fn the_index_page_offers_one_tap_with_googles_csp() {
    let app = one_tap_app().await;
    let response = app.browser.get("/").await;
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self' https://accounts.google.com/gsi/client"),
        "{csp}"
    );
    assert!(
        csp.contains("frame-src https://accounts.google.com/gsi/"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let page = response.text().await.unwrap();
    assert_eq!(
        attribute(&page, "data-client_id").as_deref(),
        Some(mock_provider::CLIENT_ID)
    );
    assert_eq!(
        attribute(&page, "data-login_uri"),
        Some(format!(
            "{}/auth/google/one-tap",
            app.settings.public_base()
        ))
    );
    assert!(page.contains("<script src=\"https://accounts.google.com/gsi/client\" async>"));
    // Tabs of one browser share the nonce while it is fresh.
    let again = app.browser.get("/").await.text().await.unwrap();
    assert_eq!(
        attribute(&page, "data-nonce"),
        attribute(&again, "data-nonce")
    );

    // Without one_tap: no Google script, and the strict page CSP.
    let plain = spawn_app_with(Options::default()).await.unwrap();
    let response = plain.browser.get("/").await;
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!csp.contains("accounts.google.com"), "{csp}");
    assert!(!response.text().await.unwrap().contains("g_id_onload"));
    let refused = plain
        .browser
        .client
        .post(format!("{}/auth/mock/one-tap", plain.address))
        .form(&[("credential", "x"), ("g_csrf_token", "c")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_one_tap_credential_signs_the_browser_in() {
    let app = one_tap_app().await;
    let google = GoogleBrowser::new(&app);
    let nonce = google.load_index().await;
    let credential = app
        .provider
        .id_token(&app.provider.claims("one-tap-1", &nonce));
    let posted = google
        .post_credential(&credential, Some("csrf-1"), Some("csrf-1"))
        .await;
    assert_to_preloader(&posted);
    let preloader = location(&posted).to_owned();
    let status = google.browser.wait_for_status("").await;
    assert_eq!(status["status"], "ok", "{status}");
    assert_redirect_to(&google.browser.get_success("").await, "/");
    let me: Value = google.browser.get_me().await.json().await.unwrap();
    assert_eq!(me["providers"], json!(["google"]));
    assert_eq!(me["email_verified"], true);
    assert!(
        app.provider.token_requests().await.is_empty(),
        "no code to exchange"
    );

    // The same credential again, from a fresh page of the same browser: its nonce
    // was spent with the first post, so the replay fails and signs nobody in.
    google.browser.post_logout().await;
    let nonce = google.load_index().await;
    let replay = google
        .post_credential(&credential, Some("c2"), Some("c2"))
        .await;
    assert_to_preloader(&replay);
    assert_ne!(location(&replay), preloader);
    let status = google.browser.wait_for_status("").await;
    assert_eq!(
        status["error"]["code"], "id_token_invalid",
        "{status} (nonce {nonce})"
    );
    assert_eq!(app.count(UserProfile).await, 1);
}

#[tokio::test]
async fn one_tap_credentials_are_checked_like_any_google_id_token() {
    let app = one_tap_app().await;
    let now = chrono::Utc::now().timestamp();
    type Change = fn(&mut Value, i64);
    let cases: [(&str, Change); 3] = [
        // Our iOS client's tokens are fine for the native endpoint, not here.
        ("a native client's audience", |c, _| {
            c["aud"] = json!("ios-client-id")
        }),
        ("another audience", |c, _| c["aud"] = json!("someone-else")),
        ("expired", |c, now| {
            c["iat"] = json!(now - 240);
            c["exp"] = json!(now - 120);
        }),
    ];
    for (what, change) in cases {
        let google = GoogleBrowser::new(&app);
        let nonce = google.load_index().await;
        let mut claims = app.provider.claims("one-tap-bad", &nonce);
        change(&mut claims, now);
        let posted = google
            .post_credential(&app.provider.id_token(&claims), Some("c"), Some("c"))
            .await;
        assert_to_preloader(&posted);
        let status = google.browser.wait_for_status("").await;
        assert_eq!(
            status["error"]["code"], "id_token_invalid",
            "{what}: {status}"
        );
    }
    assert_eq!(app.count(UserProfile).await, 0);
}

#[tokio::test]
async fn a_missing_or_mismatched_csrf_token_or_nonce_records_nothing() {
    let app = one_tap_app().await;
    let google = GoogleBrowser::new(&app);
    let nonce = google.load_index().await;
    let credential = app
        .provider
        .id_token(&app.provider.claims("one-tap-csrf", &nonce));
    for (cookie, field) in [
        (None, Some("c")),
        (Some("c"), None),
        (Some("c"), Some("d")),
        (Some(""), Some("")),
    ] {
        let posted = google.post_credential(&credential, cookie, field).await;
        assert_eq!(
            posted.status(),
            StatusCode::BAD_REQUEST,
            "{cookie:?} {field:?}"
        );
    }
    // A browser that never loaded the page has no nonce to match.
    let stranger = GoogleBrowser::new(&app);
    let posted = stranger
        .post_credential(&credential, Some("c"), Some("c"))
        .await;
    assert_eq!(posted.status(), StatusCode::BAD_REQUEST);
    // Nor does one that started another sign-in (it has a browser key).
    stranger.browser.start_login("google", "").await;
    let posted = stranger
        .post_credential(&credential, Some("c"), Some("c"))
        .await;
    assert_eq!(posted.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count(AsyncOperation).await, 0);
    // The refusals spent nothing: the page's own post still works.
    let posted = google
        .post_credential(&credential, Some("c"), Some("c"))
        .await;
    assert_to_preloader(&posted);
    assert_eq!(google.browser.wait_for_status("").await["status"], "ok");
}
