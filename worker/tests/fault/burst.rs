//! A worker SIGKILLed in the middle of a burst of sign-ins, against a provider whose
//! codes are single-use: a second worker takes the jobs over once the dead one's
//! heartbeats lapse. Every operation ends `ok`, except those whose token request was
//! in flight at the kill, which end `exchange_interrupted` (the preloader restarts
//! them); no code reaches the provider twice and no person gets two users.

use std::time::{Duration, Instant};

use entity::{async_operation::OperationStatus, prelude::*};
use sea_orm::EntityTrait;
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

use crate::helpers::{Harness, SingleUseTokens, discovery_document, mount_jwks, userinfo};

const SIGN_INS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_burst_loses_no_sign_in() {
    let server = MockServer::start().await;
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(discovery_document(&server.uri())))
        .mount(&server)
        .await;
    mount_jwks(&server).await;
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/userinfo"))
        .respond_with(userinfo)
        .mount(&server)
        .await;
    // Slow enough that jobs are in flight when the worker dies.
    let tokens = SingleUseTokens::mount(&server, None, Duration::from_millis(400)).await;
    let harness = Harness::new(&server).await;

    let mut first = harness.spawn_worker(4);
    let mut ids = Vec::new();
    for n in 0..SIGN_INS {
        ids.push(harness.start_sign_in(&format!("code-{n}")).await);
    }
    // Let the first worker pick jobs up, then kill it without warning.
    tokio::time::sleep(Duration::from_millis(900)).await;
    first.kill();
    let _second = harness.spawn_worker(4);

    let started = Instant::now();
    let operations = loop {
        let operations = AsyncOperation::find().all(&harness.db.conn).await.unwrap();
        let pending = operations
            .iter()
            .any(|op| op.status == OperationStatus::Pending);
        if !pending || started.elapsed() > Duration::from_secs(75) {
            break operations;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut signed_in = 0;
    for op in &operations {
        match (op.status, op.error_code.as_deref()) {
            (OperationStatus::Ok, _) => signed_in += 1,
            (OperationStatus::Error, Some(worker::jobs::EXCHANGE_INTERRUPTED)) => {}
            other => panic!("operation ended {other:?}"),
        }
    }
    for n in 0..SIGN_INS {
        assert!(
            tokens.presentations(&format!("code-{n}")) <= 1,
            "code-{n} presented twice"
        );
    }
    assert!(signed_in > 0, "the second worker finished the rest");
    assert_eq!(
        harness.users_and_links().await,
        (signed_in, signed_in),
        "one user and one link per signed-in person"
    );
}
