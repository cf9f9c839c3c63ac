//! The writer stores and reads values exactly as sqlx does: the same row written
//! through both is the same bytes, and reads back as the same values.

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, Value};
use uuid::Uuid;

use crate::writer::{Writer, is_unique_violation};

/// Declared as sea-orm's migrations declare them on SQLite.
const TABLE: &str = "CREATE TABLE v (
    via varchar NOT NULL, at_case integer NOT NULL, id uuid_text,
    at timestamp_with_timezone_text, flag boolean, s varchar, b blob, i bigint,
    j json_text, r double, PRIMARY KEY (via, at_case))";

/// Timestamps whose text differs in its fractional digits, and one in another zone.
fn timestamps() -> Vec<DateTime<Utc>> {
    let base = Utc.with_ymd_and_hms(2026, 11, 30, 19, 0, 0).unwrap();
    let offset = FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
    vec![
        base,
        base + chrono::Duration::milliseconds(120),
        base + chrono::Duration::microseconds(123_456),
        base + chrono::Duration::nanoseconds(123_456_789),
        offset
            .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .unwrap()
            .to_utc(),
    ]
}

fn row(via: &str, at_case: i64, at: DateTime<Utc>) -> Statement {
    let values: Vec<Value> = vec![
        via.into(),
        at_case.into(),
        Uuid::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677 + at_case as u128).into(),
        at.into(),
        (at_case % 2 == 0).into(),
        format!("text ' \" é {at_case}").into(),
        vec![0u8, 255, at_case as u8].into(),
        (i64::MAX - at_case).into(),
        serde_json::json!({"n": at_case, "a": [1, "x"]}).into(),
        (0.1 + at_case as f64).into(),
    ];
    Statement::from_sql_and_values(
        DbBackend::Sqlite,
        "INSERT INTO v VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        values,
    )
}

async fn both_ways() -> (Writer, DatabaseConnection) {
    let conn = Database::connect("sqlite::memory:").await.unwrap();
    conn.execute_unprepared(TABLE).await.unwrap();
    let writer = Writer::new(conn.clone());
    for (at_case, at) in timestamps().into_iter().enumerate() {
        let at_case = at_case as i64;
        conn.execute_raw(row("sqlx", at_case, at)).await.unwrap();
        writer
            .run(move |db| {
                Box::pin(async move { db.execute_raw(row("writer", at_case, at)).await })
            })
            .await
            .unwrap();
    }
    (writer, conn)
}

/// Each column of each row as SQLite holds it: storage class and bytes.
async fn stored(conn: &DatabaseConnection, via: &str) -> Vec<Vec<String>> {
    let columns = ["id", "at", "flag", "s", "b", "i", "j", "r"];
    let select = columns
        .iter()
        .map(|c| format!("typeof({c}) || ':' || quote({c}) AS {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!("SELECT {select} FROM v WHERE via = ? ORDER BY at_case"),
            [via.into()],
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| row.try_get::<String>("", c).unwrap())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn the_writer_stores_every_value_byte_for_byte_as_sqlx_does() {
    let (_writer, conn) = both_ways().await;
    let (sqlx, writer) = (stored(&conn, "sqlx").await, stored(&conn, "writer").await);
    assert_eq!(sqlx.len(), timestamps().len());
    assert_eq!(writer, sqlx);
    // What the comparison covers: a UUID as 16 bytes, a timestamp as text.
    assert!(sqlx[0][0].starts_with("blob:X'"), "{}", sqlx[0][0]);
    assert_eq!(sqlx[3][1], "text:'2026-11-30T19:00:00.123456789+00:00'");
}

/// One row read back in every type the entities use, and more.
#[derive(Debug, PartialEq)]
struct Read {
    id: Uuid,
    at: DateTime<Utc>,
    flag: bool,
    s: String,
    b: Vec<u8>,
    i: i64,
    j: serde_json::Value,
    r: f64,
    missing: Option<String>,
    count: i64,
}

fn read(row: &sea_orm::QueryResult) -> Read {
    Read {
        id: row.try_get("", "id").unwrap(),
        at: row.try_get("", "at").unwrap(),
        flag: row.try_get("", "flag").unwrap(),
        s: row.try_get("", "s").unwrap(),
        b: row.try_get("", "b").unwrap(),
        i: row.try_get("", "i").unwrap(),
        j: row.try_get("", "j").unwrap(),
        r: row.try_get("", "r").unwrap(),
        missing: row.try_get("", "missing").unwrap(),
        count: row.try_get("", "count").unwrap(),
    }
}

fn select_all() -> Statement {
    Statement::from_string(
        DbBackend::Sqlite,
        "SELECT id, at, flag, s, b, i, j, r, NULL AS missing, \
         (SELECT COUNT(*) FROM v) AS count FROM v WHERE via = 'sqlx' ORDER BY at_case",
    )
}

#[tokio::test]
async fn the_writer_reads_rows_back_as_sqlx_does() {
    let (writer, conn) = both_ways().await;
    let by_sqlx: Vec<Read> = conn
        .query_all_raw(select_all())
        .await
        .unwrap()
        .iter()
        .map(read)
        .collect();
    let by_writer: Vec<Read> = writer
        .run(|db| Box::pin(async move { db.query_all_raw(select_all()).await }))
        .await
        .unwrap()
        .iter()
        .map(read)
        .collect();
    assert_eq!(by_sqlx.len(), timestamps().len());
    assert_eq!(by_writer, by_sqlx);
    // Through RETURNING too, and one row of several.
    let returned = writer
        .run(|db| {
            Box::pin(async move {
                db.query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "UPDATE v SET s = s WHERE via = 'sqlx' RETURNING id, at, flag, s, b, i, j, r, \
                     NULL AS missing, 10 AS count",
                ))
                .await
            })
        })
        .await
        .unwrap()
        .expect("a row");
    let first = read(&returned);
    assert!(by_sqlx.iter().any(|r| r.id == first.id && r.at == first.at));
}

#[tokio::test]
async fn a_refused_row_is_a_unique_violation_as_sqlx_reports_it() {
    let (writer, conn) = both_ways().await;
    let at = timestamps()[0];
    let by_sqlx = conn.execute_raw(row("sqlx", 0, at)).await.unwrap_err();
    let by_writer = writer
        .run(move |db| Box::pin(async move { db.execute_raw(row("writer", 0, at)).await }))
        .await
        .unwrap_err();
    assert!(is_unique_violation(&by_sqlx), "{by_sqlx}");
    assert!(is_unique_violation(&by_writer), "{by_writer}");
    let other = writer
        .run(|db| {
            Box::pin(async move {
                db.execute_unprepared("INSERT INTO nowhere VALUES (1)")
                    .await
            })
        })
        .await
        .unwrap_err();
    assert!(!is_unique_violation(&other), "{other}");
}
