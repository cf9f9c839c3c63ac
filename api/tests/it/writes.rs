//! How writes reach PostgreSQL: a write of several statements in a transaction of
//! its own, a write of one statement without `BEGIN` and `COMMIT` around it, and a
//! write that begins its own transaction without a savepoint inside another.

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

#[tokio::test]
async fn a_write_of_one_statement_skips_begin_and_commit_on_postgres() {
    let Some(app) = spawn_app_without_worker_on(Backend::Postgres).await else {
        return;
    };
    let writer = Writer::new(app.db.clone());
    let single = writer.run_atomic(|db| Box::pin(vacuum(db))).await;
    assert!(single.is_ok(), "run_atomic sent BEGIN first: {single:?}");
    let in_transaction = writer.run(|db| Box::pin(vacuum(db))).await;
    let refused = in_transaction.expect_err("run did not begin a transaction");
    assert!(
        refused.to_string().contains("transaction block"),
        "{refused}"
    );
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

#[tokio::test]
async fn a_write_that_begins_its_own_transaction_gets_no_savepoint_on_postgres() {
    let Some(app) = spawn_app_without_worker_on(Backend::Postgres).await else {
        return;
    };
    let writer = Writer::new(app.db.clone());
    let alone = writer.run_atomic(|db| Box::pin(own_transaction(db))).await;
    assert!(alone.is_ok(), "run_atomic nested the transaction: {alone:?}");
    let nested = writer.run(|db| Box::pin(own_transaction(db))).await;
    let refused = nested.expect_err("run did not nest the transaction");
    assert!(refused.to_string().contains("subtransaction"), "{refused}");
}
