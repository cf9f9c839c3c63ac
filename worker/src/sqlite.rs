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

use std::{borrow::Cow, collections::BTreeMap, error::Error as StdError, fmt, sync::Arc};

use chrono::{DateTime, FixedOffset, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use rusqlite::{
    Connection,
    types::{Value as Stored, ValueRef},
};
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, ExecResult, MockDatabase, MockExecResult, QueryResult,
    RuntimeErr, Statement, Value,
    sqlx::{self, error::ErrorKind},
};

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

/// `value` as sqlx stores it (see the module's notes).
fn stored(value: &Value) -> Result<Stored, DbErr> {
    fn or_null<T>(value: &Option<T>, store: impl FnOnce(&T) -> Stored) -> Stored {
        value.as_ref().map_or(Stored::Null, store)
    }
    Ok(match value {
        Value::Bool(v) => or_null(v, |v| Stored::Integer(i64::from(*v))),
        Value::TinyInt(v) => or_null(v, |v| Stored::Integer(i64::from(*v))),
        Value::SmallInt(v) => or_null(v, |v| Stored::Integer(i64::from(*v))),
        Value::Int(v) => or_null(v, |v| Stored::Integer(i64::from(*v))),
        Value::BigInt(v) => or_null(v, |v| Stored::Integer(*v)),
        Value::TinyUnsigned(v) => or_null(v, |v| Stored::Integer(i64::from(*v))),
        Value::SmallUnsigned(v) => or_null(v, |v| Stored::Integer(i64::from(*v))),
        Value::Unsigned(v) => or_null(v, |v| Stored::Integer(i64::from(*v))),
        Value::BigUnsigned(Some(v)) => Stored::Integer(
            i64::try_from(*v)
                .map_err(|_| DbErr::Custom(format!("{v} does not fit SQLite's integer")))?,
        ),
        Value::BigUnsigned(None) => Stored::Null,
        Value::Float(v) => or_null(v, |v| Stored::Real(f64::from(*v))),
        Value::Double(v) => or_null(v, |v| Stored::Real(*v)),
        Value::String(v) => or_null(v, |v| Stored::Text(v.clone())),
        Value::Char(v) => or_null(v, |v| Stored::Text(v.to_string())),
        Value::Enum(sea_orm::sea_query::OptionEnum::Some(v)) => Stored::Text(v.value.to_string()),
        Value::Enum(sea_orm::sea_query::OptionEnum::None(_)) => Stored::Null,
        Value::Bytes(v) => or_null(v, |v| Stored::Blob(v.clone())),
        Value::Uuid(v) => or_null(v, |v| Stored::Blob(v.as_bytes().to_vec())),
        Value::Json(v) => or_null(v, |v| Stored::Text(v.to_string())),
        Value::ChronoDate(v) => or_null(v, |v| Stored::Text(v.format("%F").to_string())),
        Value::ChronoTime(v) => or_null(v, |v| Stored::Text(v.format("%T%.f").to_string())),
        Value::ChronoDateTime(v) => or_null(v, |v| Stored::Text(v.format("%F %T%.f").to_string())),
        Value::ChronoDateTimeUtc(v) => or_null(v, |v| Stored::Text(rfc3339(v))),
        Value::ChronoDateTimeLocal(v) => or_null(v, |v| Stored::Text(rfc3339(v))),
        Value::ChronoDateTimeWithTimeZone(v) => or_null(v, |v| Stored::Text(rfc3339(v))),
        other => {
            return Err(DbErr::Custom(format!(
                "the SQLite writer does not store {other:?}"
            )));
        }
    })
}

/// sqlx's text for a timestamp with its zone.
fn rfc3339<Tz: TimeZone>(at: &DateTime<Tz>) -> String
where
    Tz::Offset: fmt::Display,
{
    at.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// A stored value as the type its column declares (see the module's notes).
fn typed(declared: Option<&str>, stored: ValueRef<'_>) -> Result<Value, DbErr> {
    let declared = declared.unwrap_or("");
    let is = |kind: &str| declared.contains(kind);
    Ok(match stored {
        ValueRef::Null => Value::String(None),
        ValueRef::Integer(v) if is("bool") => Value::Bool(Some(v != 0)),
        ValueRef::Integer(v) if is("timestamp") || is("datetime") => {
            Value::ChronoDateTimeUtc(Some(
                Utc.timestamp_opt(v, 0)
                    .single()
                    .ok_or_else(|| DbErr::Type(format!("{v} is not a timestamp")))?,
            ))
        }
        ValueRef::Integer(v) => Value::BigInt(Some(v)),
        ValueRef::Real(v) => Value::Double(Some(v)),
        ValueRef::Text(v) => {
            let text = std::str::from_utf8(v).map_err(|e| DbErr::Type(e.to_string()))?;
            if is("timestamp") || is("datetime") {
                Value::ChronoDateTimeUtc(Some(timestamp(text)?))
            } else if is("json") {
                Value::Json(Some(Box::new(
                    serde_json::from_str(text).map_err(|e| DbErr::Json(e.to_string()))?,
                )))
            } else {
                Value::String(Some(text.to_owned()))
            }
        }
        ValueRef::Blob(v) if is("uuid") => Value::Uuid(Some(
            uuid::Uuid::from_slice(v).map_err(|e| DbErr::Type(e.to_string()))?,
        )),
        ValueRef::Blob(v) => Value::Bytes(Some(v.to_vec())),
    })
}

/// A timestamp in any of the text forms sqlx reads (`sqlx-sqlite`'s chrono
/// decoder), as UTC.
fn timestamp(text: &str) -> Result<DateTime<Utc>, DbErr> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    const FORMATS: [&str; 12] = [
        "%F %T%.f",
        "%F %R",
        "%F %RZ",
        "%F %R%:z",
        "%F %T%.fZ",
        "%F %T%.f%:z",
        "%FT%R",
        "%FT%RZ",
        "%FT%R%:z",
        "%FT%T%.f",
        "%FT%T%.fZ",
        "%FT%T%.f%:z",
    ];
    for format in FORMATS {
        if let Ok(at) = DateTime::<FixedOffset>::parse_from_str(text, format) {
            return Ok(at.with_timezone(&Utc));
        }
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(at.and_utc());
        }
    }
    Err(DbErr::Type(format!("invalid datetime: {text}")))
}

/// A failed statement as sea-orm's sqlx driver shapes it (`DbErr::Exec` or
/// `DbErr::Query` around a `sqlx::Error::Database`), so callers that ask an
/// error its kind (a unique index refused the row) get the same answer as from
/// any other connection.
fn exec_err(error: rusqlite::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(sqlx_error(error))))
}

fn query_err(error: rusqlite::Error) -> DbErr {
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
pub struct SqliteFailure {
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

#[cfg(test)]
mod tests;
