//! SQLite's refusals, shaped as sqlx's (see [`super`]).

use std::{borrow::Cow, error::Error as StdError, fmt, sync::Arc};

use sea_orm::{
    DbErr, RuntimeErr,
    sqlx::{self, error::ErrorKind},
};

/// A failed statement as sea-orm's sqlx driver shapes it (`DbErr::Exec` or
/// `DbErr::Query` around a `sqlx::Error::Database`), so callers that ask an
/// error its kind (a unique index refused the row) get the same answer as from
/// any other connection.
pub(super) fn exec_err(error: rusqlite::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(sqlx_error(error))))
}

pub(super) fn query_err(error: rusqlite::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(sqlx_error(error))))
}

fn sqlx_error(error: rusqlite::Error) -> sqlx::Error {
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            sqlx::Error::Database(Box::new(SqliteFailure {
                code: failure.extended_code,
                message: message.unwrap_or_else(|| failure.to_string()),
            }))
        }
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// SQLite was busy or locked: another connection held a lock the statement needed
/// and the connection's busy timeout ran out.
pub fn is_busy(error: &DbErr) -> bool {
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = error
    else {
        return false;
    };
    e.as_database_error()
        .and_then(|e| e.try_downcast_ref::<SqliteFailure>())
        .is_some_and(|failure| {
            matches!(
                failure.code & 0xff,
                rusqlite::ffi::SQLITE_BUSY | rusqlite::ffi::SQLITE_LOCKED
            )
        })
}

/// SQLite's refusal of a statement: its extended result code and message.
#[derive(Debug)]
pub(super) struct SqliteFailure {
    code: i32,
    message: String,
}

impl fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl StdError for SqliteFailure {}

impl sqlx::error::DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn StdError + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn StdError + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}
