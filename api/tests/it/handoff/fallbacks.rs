//! Jobs the process would have run at once but could not: their callback's request
//! was dropped, or their held row could not be written.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use worker::operations::{self, NewOperation};

use super::{holder_registered, is_in_process, job_row, start, wait_for};
use crate::helpers::{code_job, spawn_app};

/// A callback whose request is dropped while its write waits for the writer (the
/// browser went away): the write still commits, and its job still runs, instead of
/// a row held by this process that nothing runs until the operation times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_callback_still_runs_its_job() {
    let app = spawn_app().await;
    let claims = app.provider.claims("dropped", "nonce-dropped");
    app.provider
        .given_token_ok("code-dropped", &app.provider.id_token(&claims))
        .await;
    // Precondition: the job will be held by the process (both slots are free),
    // not queued for the worker's fetch.
    holder_registered(&app.db).await;
    // Hold the writer, so the callback's write waits in its queue.
    let (entered, writer_busy) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let writer = app.state.writer.clone();
    let blocker = tokio::spawn(async move {
        writer
            .run(move |_| {
                Box::pin(async move {
                    let _ = entered.send(());
                    let _ = released.await;
                    Ok(())
                })
            })
            .await
    });
    writer_busy.await.unwrap();
    let new = NewOperation {
        kind: operations::KIND_BROWSER,
        provider: "mock".into(),
        redeemer_hash: "dropped-browser".into(),
        next_path: None,
        link: None,
        state_hash: None,
        client_key: None,
    };
    let job = code_job(
        uuid::Uuid::nil(),
        "code-dropped",
        "verifier",
        Some("nonce-dropped".into()),
    );
    let start = app.state.jobs.start(&app.state.writer, new, job);
    // Precondition: the start was dropped unfinished, its write still queued.
    let dropped = tokio::time::timeout(Duration::from_millis(300), start).await;
    assert!(
        dropped.is_err(),
        "the start finished while the writer was held"
    );
    release.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    // Well inside the test app's 30 s operation timeout.
    let status = wait_for(
        "the operation finished",
        Duration::from_secs(10),
        || async {
            let row = app
                .db
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT status FROM async_operation WHERE redeemer_hash = 'dropped-browser'",
                ))
                .await
                .unwrap()?;
            let status: String = row.try_get("", "status").unwrap();
            (status != "pending").then_some(status)
        },
    )
    .await;
    assert_eq!(status, "ok");
}

/// A job the process would hold, but whose held row cannot be written (a trigger
/// refuses it here), is queued instead. Its operation was written with the exchange
/// marked, for a run that would have started at once: the same write unmarks it,
/// so the run that fetches the job presents the code instead of taking the mark for
/// another run's (and, once the token request's timeout passed, ending the sign-in
/// `exchange_interrupted`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_held_row_fails_is_queued_unmarked_and_signs_in() {
    let app = spawn_app().await;
    holder_registered(&app.db).await;
    app.db
        .execute_unprepared(
            "CREATE TRIGGER refuse_held_rows BEFORE INSERT ON Jobs WHEN NEW.status = 'Running' \
             BEGIN SELECT RAISE(ABORT, 'held rows refused by the test'); END",
        )
        .await
        .unwrap();
    let operation = start(&app, &app.provider, "unheld", Duration::from_secs(1)).await;
    // Precondition: the held row was refused and the job went through the queue,
    // fetched by the worker rather than held by the process.
    let holder = wait_for("the job is fetched", Duration::from_secs(10), || async {
        match job_row(&app.db, &operation).await {
            Some((status, holder)) if status == "Running" => Some(holder),
            _ => None,
        }
    })
    .await;
    assert!(!is_in_process(holder.as_deref()), "{holder:?}");
    let status = app.wait_for_status("").await;
    assert_eq!(status["status"], "ok", "{status}");
    assert_eq!(
        app.provider.token_requests().await.len(),
        1,
        "the code went once"
    );
}
