//! Values as sqlx stores them, and stored values as the types their columns
//! declare (see [`super`]).

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use rusqlite::types::{Value as Stored, ValueRef};
use sea_orm::{DbErr, Value};

/// `value` as sqlx stores it (see the module's notes).
pub(super) fn stored(value: &Value) -> Result<Stored, DbErr> {
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
pub(super) fn typed(declared: Option<&str>, stored: ValueRef<'_>) -> Result<Value, DbErr> {
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
