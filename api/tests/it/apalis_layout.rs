//! The raw SQL that writes apalis' tables directly (the callback's job row, the
//! in-process hand-over, the sweeper, the queue-depth gauge) relies on apalis 1.0's
//! table layout, and `Cargo.toml` pins apalis to that minor version. If a new
//! apalis changes the layout, these snapshots fail before anything else does.

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::helpers::{Backend, spawn_app_on};

async fn rows(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect()
}

#[tokio::test]
async fn apalis_sqlite_tables_have_the_layout_our_sql_writes() {
    let app = spawn_app_on(Backend::Sqlite).await.unwrap();
    let columns = |table: &str| {
        format!(
            "SELECT name || ' ' || type || CASE WHEN \"notnull\" = 1 THEN ' not null' ELSE '' END \
             FROM pragma_table_info('{table}') ORDER BY cid"
        )
    };
    assert_eq!(
        rows(&app.db, &columns("Jobs")).await,
        [
            "job BLOB not null",
            "id TEXT not null",
            "job_type TEXT not null",
            "status TEXT not null",
            "attempts INTEGER not null",
            "max_attempts INTEGER not null",
            "run_at INTEGER not null",
            "last_result TEXT",
            "lock_at INTEGER",
            "lock_by TEXT",
            "done_at INTEGER",
            "priority INTEGER not null",
            "metadata TEXT",
            "idempotency_key TEXT",
        ]
    );
    assert_eq!(
        rows(&app.db, &columns("Workers")).await,
        [
            "id TEXT not null",
            "worker_type TEXT not null",
            "storage_name TEXT not null",
            "layers TEXT",
            "last_seen INTEGER not null",
            "started_at INTEGER",
        ]
    );
    let indexes = "SELECT name || ' ' || sql FROM sqlite_master WHERE type = 'index' \
                   AND tbl_name IN ('Jobs', 'Workers') AND sql IS NOT NULL ORDER BY name";
    let indexes = rows(&app.db, indexes).await;
    for relied_on in [
        // `ON CONFLICT (job_type, idempotency_key)` in the callback's job insert.
        "idx_jobs_idempotency_key CREATE UNIQUE INDEX idx_jobs_idempotency_key ON Jobs(job_type, idempotency_key)",
        // Migration m20261130_000014 gives this index its statistics by name.
        "LIdx CREATE INDEX LIdx ON Jobs(lock_by)",
    ] {
        assert!(
            indexes.iter().any(|i| i == relied_on),
            "{relied_on}: {indexes:#?}"
        );
    }
}

#[tokio::test]
async fn apalis_postgres_tables_have_the_layout_our_sql_writes() {
    let Some(app) = spawn_app_on(Backend::Postgres).await else {
        return;
    };
    let columns = |table: &str| {
        format!(
            "SELECT column_name || ' ' || udt_name || CASE WHEN is_nullable = 'NO' THEN ' not null' ELSE '' END \
             FROM information_schema.columns WHERE table_schema = 'apalis' AND table_name = '{table}' \
             ORDER BY ordinal_position"
        )
    };
    assert_eq!(
        rows(&app.db, &columns("jobs")).await,
        [
            "job bytea not null",
            "id text not null",
            "job_type text not null",
            "status text not null",
            "attempts int4 not null",
            "max_attempts int4 not null",
            "run_at timestamptz not null",
            "last_result jsonb",
            "lock_at timestamptz",
            "lock_by text",
            "done_at timestamptz",
            "priority int4",
            "idempotency_key text",
            "metadata hstore",
        ]
    );
    assert_eq!(
        rows(&app.db, &columns("workers")).await,
        [
            "id text not null",
            "worker_type text not null",
            "storage_name text not null",
            "layers text not null",
            "last_seen timestamptz not null",
            "started_at timestamptz",
        ]
    );
    let indexes = "SELECT indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = 'apalis' \
                   AND tablename IN ('jobs', 'workers') ORDER BY indexname";
    let indexes = rows(&app.db, indexes).await;
    let relied_on = "idx_jobs_idempotency_key CREATE UNIQUE INDEX idx_jobs_idempotency_key \
                     ON apalis.jobs USING btree (job_type, idempotency_key)";
    assert!(indexes.iter().any(|i| i == relied_on), "{indexes:#?}");
}
