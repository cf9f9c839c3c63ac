//! The plans of the statements a sign-in runs on `async_operation`: a statement keyed
//! by id never walks an index of statuses (on a new PostgreSQL database, before any
//! `ANALYZE`, the generic plan of the success route's redeem used to scan every `ok`
//! operation ever made), and the pending-operation queries use the partial index of
//! pending operations.

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};

use crate::helpers::{Backend, spawn_app_without_worker_on};

/// The redeem (`worker::operations::redeem`) and the finish (`mark_ok`), as sea-orm
/// writes them: every value bound, the status too.
const REDEEM: &str = "UPDATE async_operation SET redeemed_at = $1, updated_at = $1 \
    WHERE id = $2 AND redeemer_hash = $3 AND status = $4 AND redeemed_at IS NULL \
    AND updated_at > $5";
const FINISH: &str = "UPDATE async_operation SET status = $3, updated_at = $4 \
    WHERE id = $1 AND status = $2";
/// The admission cap's count and the timeout sweep, with the literal status of
/// `worker::operations::is_pending`.
const PENDING: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM async_operation \
    WHERE \"status\" = 'pending' AND created_at < $1 LIMIT 100) AS capped";

async fn plan(db: &impl ConnectionTrait, sql: &str) -> String {
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap();
    let lines: Vec<String> = rows
        .iter()
        .map(|row| {
            // PostgreSQL's column is `QUERY PLAN`, SQLite's `detail` (the 4th).
            row.try_get_by_index::<String>(0)
                .or_else(|_| row.try_get_by_index::<String>(3))
                .unwrap()
        })
        .collect();
    lines.join(" | ")
}

/// Whether `plan` looks operations up by status (an index condition on it).
fn by_status(plan: &str) -> bool {
    plan.contains("Index Cond: ((status)") || plan.contains("(status=?")
}

#[tokio::test]
async fn statements_keyed_by_id_take_no_status_index_on_sqlite() {
    let app = spawn_app_without_worker_on(Backend::Sqlite).await.unwrap();
    let sqlite = |sql: &str| format!("EXPLAIN QUERY PLAN {}", sql.replace('$', "?"));
    for statement in [REDEEM, FINISH] {
        let plan = plan(&app.db, &sqlite(statement)).await;
        assert!(plan.contains("(id=?)"), "{statement}: {plan}");
        assert!(!by_status(&plan), "{statement}: {plan}");
    }
    let plan = plan(&app.db, &sqlite(PENDING)).await;
    assert!(plan.contains("idx_async_operation_pending"), "{plan}");
}

#[tokio::test]
async fn generic_plans_of_statements_keyed_by_id_take_no_status_index_on_postgres() {
    let Some(app) = spawn_app_without_worker_on(Backend::Postgres).await else {
        return;
    };
    // A new database, no statistics: the generic plan PostgreSQL caches for a
    // prepared statement after five runs, forced here from the first.
    let db: &DatabaseConnection = &app.db;
    let tx = db.begin().await.unwrap();
    tx.execute_unprepared("SET LOCAL plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    tx.execute_unprepared(&format!(
        "PREPARE redeem (timestamptz, uuid, text, text, timestamptz) AS {REDEEM}; \
         PREPARE finish (uuid, text, text, timestamptz) AS {FINISH}; \
         PREPARE pending (timestamptz) AS {PENDING}"
    ))
    .await
    .unwrap();
    let redeem = plan(
        &tx,
        "EXPLAIN EXECUTE redeem (now(), gen_random_uuid(), 'h', 'ok', now())",
    )
    .await;
    let finish = plan(
        &tx,
        "EXPLAIN EXECUTE finish (gen_random_uuid(), 'pending', 'ok', now())",
    )
    .await;
    let pending = plan(&tx, "EXPLAIN EXECUTE pending (now())").await;
    tx.execute_unprepared("DEALLOCATE ALL").await.unwrap();
    tx.rollback().await.unwrap();
    for plan in [&redeem, &finish] {
        assert!(plan.contains("Index Scan"), "{plan}");
        assert!(!by_status(plan), "{plan}");
    }
    assert!(pending.contains("idx_async_operation_pending"), "{pending}");
}
