//! SQLite's query planner stability guarantee (`SQLITE_DBCONFIG_ENABLE_QPSG`), on
//! every connection we open.
//!
//! Without it, SQLite (3.51, bundled by `libsqlite3-sys`) plans `LIMIT ?` as if the
//! bound value were a constant, and marks the statement to be prepared again the
//! next time that parameter is bound, whatever the value. sea-orm binds the `1` of
//! every `.one()`, so each of those reads was parsed and planned anew on every run:
//! `sqlite3Reprepare` under `sqlite3_step` was 11% of the api's CPU in a sign-in
//! benchmark (docs/benchmarks.md, 2026-11-30). With the guarantee on, a plan never
//! depends on bound values, and sqlx's statement cache is used as intended.

use std::ffi::c_int;

use sea_orm::sqlx::{self, SqliteConnection};

/// Turns the guarantee on for `conn`.
pub(super) async fn enable(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    match db_config_qpsg(conn, 1).await? {
        true => Ok(()),
        false => Err(config_error("SQLite kept the query planner guarantee off")),
    }
}

/// Whether the guarantee is on for `conn`.
pub async fn is_enabled(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    db_config_qpsg(conn, -1).await
}

/// `sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_QPSG, value, &state)`: `value` 1
/// turns it on, 0 off, -1 leaves it; returns the state after the call.
async fn db_config_qpsg(conn: &mut SqliteConnection, value: c_int) -> Result<bool, sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    let mut state: c_int = 0;
    // SAFETY: `lock_handle` keeps the connection's own thread off the handle until
    // `handle` drops, so nothing else calls into this `sqlite3` meanwhile; the op
    // takes exactly an `int` and an `int*` (SQLite's documentation of
    // `sqlite3_db_config`), and `state` outlives the call.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            value,
            &mut state as *mut c_int,
        )
    };
    if rc != libsqlite3_sys::SQLITE_OK {
        return Err(config_error(&format!(
            "sqlite3_db_config(SQLITE_DBCONFIG_ENABLE_QPSG) failed with code {rc}"
        )));
    }
    Ok(state != 0)
}

/// A connection setting SQLite refused, as sqlx reports configuration errors.
pub(super) fn config_error(message: &str) -> sqlx::Error {
    sqlx::Error::Configuration(message.to_owned().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Process,
        db::{Database, DbPool, sqlite_file_settings},
    };

    /// Every connection the pools open, the writer's and each reader's, plans
    /// without looking at bound values.
    #[tokio::test]
    async fn every_sqlite_connection_has_the_planner_guarantee() {
        let dir = tempfile::tempdir().unwrap();
        let settings = sqlite_file_settings(dir.path());
        let db = Database::connect(&settings, Process::Api).await.unwrap();
        let DbPool::Sqlite(writer) = &db.pool else {
            panic!("not SQLite")
        };
        let mut conn = writer.acquire().await.unwrap();
        assert!(is_enabled(&mut conn).await.unwrap(), "the writer");
        // Hold them all at once, so that each is a different connection.
        let readers = db.reader.pool().get_sqlite_connection_pool();
        let mut held = Vec::new();
        for n in 0..readers.options().get_max_connections() {
            let mut conn = readers.acquire().await.unwrap();
            assert!(is_enabled(&mut conn).await.unwrap(), "reader {n}");
            held.push(conn);
        }
    }
}
