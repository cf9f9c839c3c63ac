//! The writer: batches, savepoints, commits and failures.

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

use super::*;

async fn table() -> (Writer, DatabaseConnection) {
    let conn = Database::connect("sqlite::memory:").await.unwrap();
    conn.execute_unprepared("CREATE TABLE t (n INTEGER PRIMARY KEY)")
        .await
        .unwrap();
    (Writer::new(conn.clone()), conn)
}

fn insert(n: i64) -> Statement {
    Statement::from_sql_and_values(
        DbBackend::Sqlite,
        "INSERT INTO t (n) VALUES (?)",
        [n.into()],
    )
}

async fn rows(conn: &DatabaseConnection) -> Vec<i64> {
    conn.query_all_raw(Statement::from_string(
        DbBackend::Sqlite,
        "SELECT n FROM t ORDER BY n",
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<i64>("", "n").unwrap())
    .collect()
}

/// Runs `write(n)` for every `n` of `ns` at once, so that they queue together.
async fn all_at_once<T, F>(
    writer: &Writer,
    ns: std::ops::Range<i64>,
    write: impl Fn(i64) -> F,
) -> Vec<Result<T, DbErr>>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c WriteConn<'c>) -> BoxFuture<'c, Result<T, DbErr>> + Send + 'static,
{
    futures::future::join_all(ns.map(|n| writer.run(write(n)))).await
}

/// Holds the owner of the writer inside a write of its own until the returned
/// sender is used (or dropped): writes sent meanwhile queue up together.
async fn hold_the_owner(writer: &Writer) -> std::sync::mpsc::Sender<()> {
    let (started, owner_inside) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let writer = writer.clone();
    tokio::spawn(async move {
        writer
            .run(move |_| {
                Box::pin(async move {
                    // Blocks the owner's own thread: only a test may.
                    let _ = started.send(());
                    let _ = released.recv_timeout(std::time::Duration::from_secs(10));
                    Ok(())
                })
            })
            .await
    });
    tokio::task::spawn_blocking(move || {
        owner_inside.recv_timeout(std::time::Duration::from_secs(10))
    })
    .await
    .unwrap()
    .expect("the owner runs the holding write");
    release
}

/// Writes queued together share a transaction, and a write that fails halfway
/// leaves nothing behind while the writes beside it commit. The owner is held
/// until all 64 are queued, so they make exactly one batch.
#[tokio::test]
async fn writes_queued_together_commit_together_and_a_failing_one_rolls_back_alone() {
    let (writer, conn) = table().await;
    let release = hold_the_owner(&writer).await;
    let all = all_at_once(&writer, 0..64, |n| {
        move |db| {
            Box::pin(async move {
                db.execute_raw(insert(n)).await?;
                if n % 2 == 1 {
                    // Odd writes insert, then fail (n is already there).
                    db.execute_raw(insert(n)).await?;
                }
                Ok(n)
            })
        }
    });
    let mut all = std::pin::pin!(all);
    // The first poll queues every write (each is sent when first polled).
    assert!(futures::poll!(&mut all).is_pending());
    release.send(()).unwrap();
    let results = all.await;
    for (n, result) in results.iter().enumerate() {
        assert_eq!(result.is_ok(), n % 2 == 0, "write {n}: {result:?}");
    }
    assert_eq!(rows(&conn).await, (0..64).step_by(2).collect::<Vec<_>>());
    assert_eq!(
        writer.transactions(),
        2,
        "the holding write's transaction, then one for the 64 queued at once"
    );
}

/// A caller hears of its write only once it is committed: a transaction that
/// cannot commit fails every write in it, and none of them is kept.
#[tokio::test]
async fn a_batch_that_cannot_commit_fails_every_write_in_it() {
    let (writer, conn) = table().await;
    conn.execute_unprepared(
        "CREATE TABLE child (n INTEGER REFERENCES t (n) DEFERRABLE INITIALLY DEFERRED)",
    )
    .await
    .unwrap();
    conn.execute_unprepared("PRAGMA foreign_keys = ON")
        .await
        .unwrap();
    let result = writer
        .run(|db| {
            Box::pin(async move {
                db.execute_raw(insert(1)).await?;
                // Checked at COMMIT: no parent row 99.
                db.execute_unprepared("INSERT INTO child (n) VALUES (99)")
                    .await?;
                Ok(())
            })
        })
        .await;
    let error = result.expect_err("the commit fails");
    assert!(error.to_string().contains("did not commit"), "{error}");
    assert!(rows(&conn).await.is_empty());
    // The failed transaction was rolled back: the next write gets a fresh one.
    writer
        .run(|db| Box::pin(async move { db.execute_raw(insert(2)).await }))
        .await
        .unwrap();
    assert_eq!(rows(&conn).await, [2]);
}

/// A write's savepoint goes to SQLite in front of its first statement, and
/// SQLite reports a `SAVEPOINT`'s change count as the previous statement's: the
/// count a write sees is still its own statement's.
#[tokio::test]
async fn a_write_counts_only_the_rows_its_own_statement_changed() {
    let (writer, _conn) = table().await;
    all_at_once(&writer, 0..3, |n| {
        move |db| Box::pin(async move { db.execute_raw(insert(n)).await })
    })
    .await;
    let (inserted, untouched) = writer
        .run(|db| {
            Box::pin(async move {
                let inserted = db.execute_raw(insert(10)).await?.rows_affected();
                let untouched = db
                    .execute_unprepared("UPDATE t SET n = n WHERE n = 99")
                    .await?
                    .rows_affected();
                Ok((inserted, untouched))
            })
        })
        .await
        .unwrap();
    assert_eq!((inserted, untouched), (1, 0));
}

/// The same holds for a statement sent unprepared as a write's first.
#[tokio::test]
async fn an_unprepared_first_statement_counts_only_its_own_rows() {
    let (writer, _conn) = table().await;
    writer
        .run(|db| Box::pin(async move { db.execute_raw(insert(1)).await }))
        .await
        .unwrap();
    let untouched = writer
        .run(|db| {
            Box::pin(async move {
                db.execute_unprepared("UPDATE t SET n = n WHERE n = 99")
                    .await
            })
        })
        .await
        .unwrap();
    assert_eq!(untouched.rows_affected(), 0);
}

/// The owner keeps the writer connection while writes keep coming, but lends it
/// to others (the job queue takes its jobs through it) every few batches: a
/// reader queued behind a stream of writes gets it before the stream ends. More
/// writers than a batch holds keep the queue from ever running dry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_stream_of_writes_still_lends_the_connection() {
    let (writer, conn) = table().await;
    let writers = 2 * MAX_BATCH as i64;
    let streams_done = Arc::new(AtomicU64::new(0));
    let streams: Vec<_> = (0..writers)
        .map(|stream| {
            let (writer, done) = (writer.clone(), streams_done.clone());
            tokio::spawn(async move {
                for i in 0..40i64 {
                    let n = stream * 1000 + i;
                    writer
                        .run(move |db| Box::pin(async move { db.execute_raw(insert(n)).await }))
                        .await
                        .unwrap();
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    // Let the stream start, then ask for the connection.
    while writer.transactions() < 2 {
        tokio::task::yield_now().await;
    }
    conn.execute_unprepared("SELECT 1").await.unwrap();
    let transactions = writer.transactions();
    assert_eq!(
        streams_done.load(Ordering::Relaxed),
        0,
        "the read waited for the whole stream ({transactions} transactions)"
    );
    for stream in streams {
        stream.await.unwrap();
    }
    assert_eq!(rows(&conn).await.len(), writers as usize * 40);
}
