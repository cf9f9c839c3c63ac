//! sea-orm's statements on rusqlite connections (the SQLite writer's and the hot
//! readers'), with values stored exactly as sqlx stores them and rows read back
//! as sea-orm reads sqlx's.
//!
//! apalis and other processes' connections still go through sqlx, and timestamps
//! are compared as text in SQL (`expires_at > ?`), so a value written here must be
//! byte for byte what sea-orm's sqlx binding writes (`sea-query-sqlx`,
//! `sqlx-sqlite`'s encoders): a UUID as its 16 bytes, a boolean as 0 or 1, a
//! timestamp with its zone as RFC 3339 with as many fractional digits as it needs,
//! JSON as its text. The tests write every type both ways and compare the bytes.
//!
//! A row comes back as sea-orm values, which must carry the type the reader asks
//! for; SQLite knows a column's declared type (`uuid_text`,
//! `timestamp_with_timezone_text`, `boolean`, as sea-orm's migrations declare
//! them), also through `RETURNING`, and that picks the type. A column without one
//! (`COUNT(*)`) keeps its storage class. Read by name, as sea-orm's models read:
//! such a row orders its columns by name, so a read by position is only right
//! for one column.

mod failure;
mod values;

pub use failure::is_busy;

use std::collections::BTreeMap;

use failure::{exec_err, query_err};
use rusqlite::Connection;
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, ExecResult, MockDatabase, MockExecResult, QueryResult,
    Statement, Value,
};
use values::{stored, typed};

/// Prepared statements a rusqlite connection keeps: more than the writes or the hot
/// reads use (rusqlite keeps 16 by default, fewer than a sign-in's distinct ones).
pub const STATEMENT_CACHE: usize = 64;

/// A row read: its columns by name.
pub type Row = BTreeMap<String, Value>;

/// Runs `stmt`, returning what it changed.
pub fn execute(db: &Connection, stmt: &Statement) -> Result<MockExecResult, DbErr> {
    logged(&stmt.sql);
    let mut prepared = db.prepare_cached(&stmt.sql).map_err(exec_err)?;
    bind(&mut prepared, stmt)?;
    prepared.raw_execute().map_err(exec_err)?;
    Ok(MockExecResult {
        last_insert_id: u64::try_from(db.last_insert_rowid()).unwrap_or(0),
        rows_affected: db.changes(),
    })
}

/// Runs `stmt` and reads up to `limit` of its rows (all of them with `None`). The
/// statement always runs to its end, so an `UPDATE … RETURNING` changes every row
/// it matches whatever is read.
pub fn query(db: &Connection, stmt: &Statement, limit: Option<usize>) -> Result<Vec<Row>, DbErr> {
    logged(&stmt.sql);
    let mut prepared = db.prepare_cached(&stmt.sql).map_err(query_err)?;
    bind(&mut prepared, stmt)?;
    let columns: Vec<(String, Option<String>)> = prepared
        .columns()
        .iter()
        .map(|c| {
            (
                c.name().to_owned(),
                c.decl_type().map(str::to_ascii_lowercase),
            )
        })
        .collect();
    let mut rows = prepared.raw_query();
    let mut read = Vec::new();
    while let Some(row) = rows.next().map_err(query_err)? {
        if limit.is_some_and(|limit| read.len() >= limit) {
            continue;
        }
        let mut values = BTreeMap::new();
        for (at, (name, declared)) in columns.iter().enumerate() {
            let stored = row.get_ref(at).map_err(query_err)?;
            values.insert(name.clone(), typed(declared.as_deref(), stored)?);
        }
        read.push(values);
    }
    Ok(read)
}

/// `rows` as sea-orm's query results. sea-orm builds results (and
/// [`ExecResult`]s) from values only through its mock connection: its proxy rows,
/// the API meant for this, do not compile beside `sqlx-sqlite` in sea-orm 2.0.4
/// (`driver/sqlx_sqlite.rs` boxes its values). So they pass through one.
pub async fn results(rows: Vec<Row>) -> Result<Vec<QueryResult>, DbErr> {
    MockDatabase::new(DbBackend::Sqlite)
        .append_query_results([rows])
        .into_connection()
        .query_all_raw(nothing())
        .await
}

/// `done` as sea-orm's result of a statement (see [`results`]).
pub async fn exec_result(done: MockExecResult) -> Result<ExecResult, DbErr> {
    MockDatabase::new(DbBackend::Sqlite)
        .append_exec_results([done])
        .into_connection()
        .execute_raw(nothing())
        .await
}

/// What the mock connection is asked to run: it only logs it.
fn nothing() -> Statement {
    Statement::from_string(DbBackend::Sqlite, String::new())
}

/// Runs `sql`, one statement without values (`BEGIN`, `SAVEPOINT write`).
pub fn batch(db: &Connection, sql: &str) -> Result<(), DbErr> {
    logged(sql);
    let mut prepared = db.prepare_cached(sql).map_err(exec_err)?;
    prepared.raw_execute().map(drop).map_err(exec_err)
}

/// Logs `sql` as sqlx logs the statements it runs (target, level, the first four
/// words as `summary`), so `sqlx::query=debug` shows every statement, whichever
/// connection runs it (`signin_bench --count-statements` counts them so).
fn logged(sql: &str) {
    tracing::debug!(
        target: "sqlx::query",
        summary = %sql.split_whitespace().take(4).collect::<Vec<_>>().join(" "),
        db.statement = sql,
    );
}

fn bind(prepared: &mut rusqlite::CachedStatement<'_>, stmt: &Statement) -> Result<(), DbErr> {
    let Some(values) = &stmt.values else {
        return Ok(());
    };
    for (at, value) in values.0.iter().enumerate() {
        prepared
            .raw_bind_parameter(at + 1, stored(value)?)
            .map_err(exec_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
