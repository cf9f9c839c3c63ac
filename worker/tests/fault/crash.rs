//! No sign-in lost to a crash, against a provider whose codes are single-use: a
//! real `worker` is SIGKILLed at one step of one sign-in, a second worker takes the
//! job over once the dead one's heartbeats lapse, and the test checks what the
//! person ends with and how often the code reached the token endpoint.
//!
//! Each test first proves its precondition: the mock holds the request of the step
//! (or the test observes the step in the database) before the kill, so the killed
//! worker provably held the job there.

use std::{sync::atomic::AtomicUsize, time::Duration};

use entity::async_operation::OperationStatus;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;
use uuid::Uuid;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::helpers::{
    Counted, HOLD, Harness, SingleUseTokens, discovery_document, job, mount_jwks, requests_to,
    userinfo, wait_until,
};

const DISCOVERY: &str = "/.well-known/openid-configuration";
/// Heartbeats lapse after about 15 s; then the job runs again.
const TAKEOVER: Duration = Duration::from_secs(60);
const STEP: Duration = Duration::from_secs(30);

async fn mount_discovery(server: &MockServer) {
    Mock::given(matchers::method("GET"))
        .and(matchers::path(DISCOVERY))
        .respond_with(ResponseTemplate::new(200).set_body_json(discovery_document(&server.uri())))
        .mount(server)
        .await;
}

async fn mount_userinfo(server: &MockServer) {
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/userinfo"))
        .respond_with(userinfo)
        .mount(server)
        .await;
}

/// Waits until `id` left `pending` (on the second worker).
async fn finished(harness: &Harness, id: Uuid) -> entity::async_operation::Model {
    wait_until("the operation finished", TAKEOVER, || async {
        harness.operation(id).await.status != OperationStatus::Pending
    })
    .await;
    harness.operation(id).await
}

async fn assert_signed_in_once(harness: &Harness, id: Uuid, tokens: &SingleUseTokens, code: &str) {
    let op = finished(harness, id).await;
    assert_eq!(op.status, OperationStatus::Ok, "ended {:?}", op.error_code);
    assert_eq!(
        tokens.presentations(code),
        1,
        "the code reached the token endpoint once"
    );
    assert_eq!(
        harness.users_and_links().await,
        (1, 1),
        "one user, one link"
    );
    assert!(
        op.token_response.is_none(),
        "the stored response is gone once finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_before_the_exchange_loses_no_sign_in() {
    let server = MockServer::start().await;
    let document = discovery_document(&server.uri());
    // Discovery: the worker's warm-up is refused, so the job asks again, and that
    // request (the step before the exchange) is held; later ones are answered.
    Mock::given(matchers::method("GET"))
        .and(matchers::path(DISCOVERY))
        .respond_with(Counted(AtomicUsize::new(0), move |n| match n {
            1 => ResponseTemplate::new(503),
            2 => ResponseTemplate::new(200)
                .set_body_json(document.clone())
                .set_delay(HOLD),
            _ => ResponseTemplate::new(200).set_body_json(document.clone()),
        }))
        .mount(&server)
        .await;
    mount_jwks(&server).await;
    mount_userinfo(&server).await;
    let tokens = SingleUseTokens::mount(&server, None, Duration::ZERO).await;
    let harness = Harness::new(&server).await;

    let mut first = harness.spawn_worker(4);
    wait_until(
        "the worker's warm-up discovery was refused",
        STEP,
        || async { requests_to(&server, DISCOVERY).await >= 1 },
    )
    .await;
    let id = harness.start_sign_in("code-a").await;
    wait_until("the job asked for discovery", STEP, || async {
        requests_to(&server, DISCOVERY).await >= 2
    })
    .await;
    // Precondition: the first worker runs the job, and has not begun the exchange.
    assert!(harness.operation(id).await.exchange_started_at.is_none());
    assert_eq!(tokens.presentations("code-a"), 0);
    first.kill();

    let _second = harness.spawn_worker(4);
    assert_signed_in_once(&harness, id, &tokens, "code-a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_the_token_response_resumes_without_the_code() {
    let server = MockServer::start().await;
    mount_discovery(&server).await;
    mount_jwks(&server).await;
    let tokens = SingleUseTokens::mount(&server, None, Duration::ZERO).await;
    // Userinfo (the step after the stored token response, before the identity
    // transaction): the first request is held, later ones answered.
    let profile =
        json!({"sub": "person-b", "email": "person-b@example.com", "email_verified": true});
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/userinfo"))
        .respond_with(Counted(AtomicUsize::new(0), move |n| {
            let answer = ResponseTemplate::new(200).set_body_json(profile.clone());
            if n == 1 {
                answer.set_delay(HOLD)
            } else {
                answer
            }
        }))
        .mount(&server)
        .await;
    let harness = Harness::new(&server).await;

    let mut first = harness.spawn_worker(4);
    let id = harness.start_sign_in("code-b").await;
    wait_until("the job asked for the profile", STEP, || async {
        requests_to(&server, "/userinfo").await >= 1
    })
    .await;
    // Precondition: the code was spent and its response stored before the kill.
    assert_eq!(tokens.presentations("code-b"), 1);
    assert!(harness.operation(id).await.token_response.is_some());
    first.kill();

    let _second = harness.spawn_worker(4);
    assert_signed_in_once(&harness, id, &tokens, "code-b").await;
}

/// Jobs of the queue not yet finished (not acknowledged).
async fn unfinished_jobs(harness: &Harness) -> i64 {
    let row = harness
        .db
        .conn
        .query_one_raw(Statement::from_string(
            harness.db.conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM Jobs WHERE status IN ('Pending', 'Queued', 'Running')",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_run_again_after_its_commit_changes_nothing() {
    let server = MockServer::start().await;
    mount_discovery(&server).await;
    mount_jwks(&server).await;
    mount_userinfo(&server).await;
    let tokens = SingleUseTokens::mount(&server, None, Duration::ZERO).await;
    let harness = Harness::new(&server).await;

    let mut first = harness.spawn_worker(4);
    let id = harness.start_sign_in("code-c").await;
    let op = finished(&harness, id).await;
    assert_eq!(op.status, OperationStatus::Ok);
    first.kill();
    // A kill between the identity commit and apalis' acknowledgement (microseconds
    // apart, too close to aim at) leaves the operation committed and its job still
    // queued: make exactly that state, whatever the dead worker got to.
    harness
        .db
        .conn
        .execute_unprepared("DELETE FROM Jobs")
        .await
        .unwrap();
    harness.queue.push(job(id, "code-c")).await.unwrap();
    assert_eq!(unfinished_jobs(&harness).await, 1);

    let _second = harness.spawn_worker(4);
    wait_until("the second worker ran the job again", TAKEOVER, || async {
        unfinished_jobs(&harness).await == 0
    })
    .await;
    assert_signed_in_once(&harness, id, &tokens, "code-c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_during_the_token_request_ends_interrupted_and_a_restart_signs_in() {
    let server = MockServer::start().await;
    mount_discovery(&server).await;
    mount_jwks(&server).await;
    mount_userinfo(&server).await;
    // The first presentation of this code is held until the test kills the worker.
    let tokens = SingleUseTokens::mount(&server, Some("code-d"), Duration::ZERO).await;
    let harness = Harness::new(&server).await;

    let mut first = harness.spawn_worker(4);
    let id = harness.start_sign_in("code-d").await;
    wait_until("the code reached the token endpoint", STEP, || async {
        tokens.presentations("code-d") == 1
    })
    .await;
    // Precondition: the worker marked the exchange begun and got no answer.
    let op = harness.operation(id).await;
    assert!(op.exchange_started_at.is_some() && op.token_response.is_none());
    first.kill();

    let _second = harness.spawn_worker(4);
    let op = finished(&harness, id).await;
    assert_eq!(
        op.error_code.as_deref(),
        Some(worker::jobs::EXCHANGE_INTERRUPTED)
    );
    assert_eq!(tokens.presentations("code-d"), 1, "never presented twice");
    assert_eq!(harness.users_and_links().await, (0, 0));

    // The preloader's restart: the provider's session bounces the browser back with
    // a fresh code, and the same person ends signed in (the api side of the restart
    // is `api/tests/it/status.rs::an_interrupted_exchange_offers_one_restart`).
    let restarted = harness.start_sign_in("code-d.2").await;
    let op = finished(&harness, restarted).await;
    assert_eq!(op.status, OperationStatus::Ok, "ended {:?}", op.error_code);
    assert_eq!(
        tokens.presentations("code-d"),
        1,
        "the first code still once"
    );
    assert_eq!(harness.users_and_links().await, (1, 1));
}
