//! Bad input never gives a 500 and never a session.

use entity::prelude::{AsyncOperation, Session};
use reqwest::StatusCode;

use crate::helpers::{location, spawn_app};

#[tokio::test]
async fn absurd_and_duplicate_callback_parameters_are_400() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    let huge = "s".repeat(20_000);
    for query in [
        format!("code=a&code=b&state={}", authorize.state),
        format!("code=a&state={}&state={}", authorize.state, authorize.state),
        format!("code=a&state={huge}"),
        format!("code=a&state={}", "s".repeat(600)),
        format!("code={}&state={}", "c".repeat(5000), authorize.state),
        "state=%FF%FE&code=%00".to_owned(),
        "state=&code=".to_owned(),
        "=&&&==".to_owned(),
    ] {
        let response = app.get_callback("mock", &query).await;
        let status = response.status();
        assert!(
            status.is_client_error(),
            "{status} for {}",
            &query[..query.len().min(80)]
        );
    }
    assert_eq!(app.count(AsyncOperation).await, 0);
    assert_eq!(app.count(Session).await, 0);
}

#[tokio::test]
async fn forged_cookies_are_ignored() {
    let app = spawn_app().await;
    let authorize = app.start_login("mock", "").await;
    let forged = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie_name = format!(
        "signin_attempt_{}",
        &worker::crypto::sha256_hex(&authorize.state)[..16]
    );
    for cookie in [
        format!("{cookie_name}=not-encrypted; signin_browser=AAAA"),
        format!(
            "{cookie_name}={}; signin_browser={}",
            "A".repeat(3000),
            "B".repeat(3000)
        ),
        "signin_session=forged; signin_browser=%%%".to_owned(),
    ] {
        let callback = forged
            .get(format!(
                "{}/auth/mock/callback?code=a&state={}",
                app.address, authorize.state
            ))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(callback.status(), StatusCode::BAD_REQUEST);
        for path in ["/auth/status", "/api/me"] {
            let response = forged
                .get(format!("{}{path}", app.address))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert!(
                response.status().is_client_error(),
                "{path}: {}",
                response.status()
            );
        }
        let success = forged
            .get(format!("{}/auth/success", app.address))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert!(location(&success).starts_with("/auth/error"));
        let index = forged
            .get(format!("{}/", app.address))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(index.status(), StatusCode::OK);
    }
    assert_eq!(app.count(AsyncOperation).await, 0);
}

#[tokio::test]
async fn malformed_status_and_success_queries_are_4xx() {
    let app = spawn_app().await;
    app.start_login("mock", "").await;
    for query in [
        "?wait=abc",
        "?wait=-1",
        "?wait=1&wait=2",
        "?operation=not-a-uuid",
        "?wait=99999999999999999999999",
    ] {
        let response = app.get_status(query).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"]["code"].is_string());
    }
    // A huge wait is clamped, not an error; with no operation it is a 404 at once.
    let started = std::time::Instant::now();
    assert_eq!(
        app.get_status("?wait=3600").await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    for query in ["?operation=zzz", "?operation=1&operation=2"] {
        assert!(location(&app.get_success(query).await).starts_with("/auth/error"));
    }
    let error_page = app
        .get("/auth/error?reason=%3Cscript%3Ealert(1)%3C/script%3E")
        .await;
    assert_eq!(error_page.status(), StatusCode::OK);
    assert!(!error_page.text().await.unwrap().contains("<script>alert"));
}

#[tokio::test]
async fn oversized_bodies_and_unknown_routes_are_4xx() {
    let app = spawn_app().await;
    let big = app
        .client
        .post(format!("{}/auth/logout", app.address))
        .body(vec![b'a'; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        app.get("/no/such/route").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/auth/mock/callback").await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/auth/nope/callback?code=a&state=b").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_oversized_body_gets_413_in_its_routes_error_shape_and_closes_the_connection() {
    let app = spawn_app().await;
    let url = format!("{}/api/auth/register", app.address);
    let response = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(vec![b' '; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.headers()["connection"], "close");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    // A browser route answers with the error page instead.
    let page = app
        .client
        .post(format!("{}/auth/logout", app.address))
        .body(vec![b'a'; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(page.headers()["connection"], "close");
    assert!(page.text().await.unwrap().contains("Request too large"));
}
