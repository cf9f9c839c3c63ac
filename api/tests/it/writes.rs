//! How writes reach PostgreSQL: a write of several statements in a transaction of
//! its own, a write of one statement without `BEGIN` and `COMMIT` around it, and a
//! write that begins its own transaction without a savepoint inside another.

use futures::future::BoxFuture;
use sea_orm::{ConnectionTrait, DbErr};
use worker::writer::{WriteConn, Writer};

use crate::helpers::{Backend, spawn_app_without_worker_on};

/// `VACUUM`, which PostgreSQL refuses inside a transaction block: it succeeds
/// only when no `BEGIN` was sent before it.
async fn vacuum(db: &WriteConn<'_>) -> Result<(), DbErr> {
    db.execute_unprepared("VACUUM async_operation")
        .await
        .map(drop)
}

/// `SET TRANSACTION ISOLATION LEVEL`, which PostgreSQL refuses in a subtransaction:
/// it succeeds only when the transaction the write began is a real one, not a
/// savepoint inside a transaction begun for it.
async fn own_transaction(db: &WriteConn<'_>) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    txn.execute_unprepared("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        .await?;
    txn.commit().await
}

/// `write` succeeds through `Writer::run_atomic` and is refused through
/// `Writer::run` with an error that says `refusal`.
async fn atomic_alone_but_not_in_run<F>(write: F, refusal: &str)
where
    F: for<'c> Fn(&'c WriteConn<'c>) -> BoxFuture<'c, Result<(), DbErr>> + Copy + Send + 'static,
{
    let Some(app) = spawn_app_without_worker_on(Backend::Postgres).await else {
        return;
    };
    let writer = Writer::new(app.db.clone());
    let alone = writer.run_atomic(write).await;
    assert!(
        alone.is_ok(),
        "run_atomic sent BEGIN or SAVEPOINT first: {alone:?}"
    );
    let wrapped = writer.run(write).await;
    let refused = wrapped.expect_err("run did not wrap the write in a transaction");
    assert!(refused.to_string().contains(refusal), "{refused}");
}

#[tokio::test]
async fn a_write_of_one_statement_skips_begin_and_commit_on_postgres() {
    atomic_alone_but_not_in_run(|db| Box::pin(vacuum(db)), "transaction block").await;
}

#[tokio::test]
async fn a_write_that_begins_its_own_transaction_gets_no_savepoint_on_postgres() {
    atomic_alone_but_not_in_run(|db| Box::pin(own_transaction(db)), "subtransaction").await;
}
