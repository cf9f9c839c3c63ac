//! The background checkpoints: they run while the writer does, and restarts
//! keep a busy WAL bounded.

use std::path::Path;

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::{Policy, spawn_with};
use crate::{
    config::Process,
    db::{Database, sqlite_file_settings},
    writer::Writer,
};

/// About 2,500 pages, past SQLite's own 1,000-page checkpoint.
async fn write_ten_megabytes(writer: &Writer) {
    writer
        .run(|w| {
            Box::pin(async move {
                w.execute_unprepared(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
                     WHERE i < 1200) INSERT INTO t SELECT randomblob(8000) FROM n",
                )
                .await
            })
        })
        .await
        .unwrap();
}

/// Waits (boundedly) until the database file holds more than `bytes`.
async fn file_grows_past(file: &Path, bytes: u64) -> u64 {
    let mut size = 0;
    for _ in 0..100 {
        size = std::fs::metadata(file).unwrap().len();
        if size > bytes {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    size
}

/// The WAL header's checkpoint sequence number, which goes up each time the WAL
/// starts over (SQLite's WAL format: bytes 12 to 15, big-endian).
fn wal_restarts(file: &Path) -> u32 {
    let header = std::fs::read(wal_of(file)).unwrap_or_default();
    header
        .get(12..16)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Small writes until one starts the WAL over (a write does once the background
/// checkpoint has copied every frame); fails after 5 s.
async fn the_wal_starts_over(writer: &Writer, file: &Path) {
    let before = wal_restarts(file);
    for _ in 0..100 {
        writer
            .run(|w| {
                Box::pin(async move { w.execute_unprepared("INSERT INTO t VALUES (x'00')").await })
            })
            .await
            .unwrap();
        if wal_restarts(file) != before {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the WAL did not start over within 5 s: no checkpoint completed");
}

/// The WAL file beside the database `file`.
fn wal_of(file: &Path) -> std::ffi::OsString {
    let mut wal = file.as_os_str().to_owned();
    wal.push("-wal");
    wal
}

fn wal_bytes(file: &Path) -> u64 {
    std::fs::metadata(wal_of(file)).map_or(0, |m| m.len())
}

/// The writer never checkpoints; the background checkpoints copy what it wrote
/// into the database file, for as long as the writer runs (the binaries keep
/// the writer and drop the `Database`), so the WAL starts over instead of
/// growing.
#[tokio::test]
async fn the_background_checkpoints_keep_the_wal_bounded_while_the_writer_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&sqlite_file_settings(dir.path()), Process::Api)
        .await
        .unwrap();
    let file = db.sqlite_file().unwrap().to_path_buf();
    let writer = db.writer.clone();
    drop(db);
    let autocheckpoint = writer
        .run(|w| {
            Box::pin(async move {
                w.query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "PRAGMA wal_autocheckpoint",
                ))
                .await
            })
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(autocheckpoint.try_get_by_index::<i64>(0).unwrap(), 0);
    writer
        .run(|w| Box::pin(async move { w.execute_unprepared("CREATE TABLE t (b BLOB)").await }))
        .await
        .unwrap();
    let mut wal_after_first = 0;
    for round in 1..=3_u64 {
        write_ten_megabytes(&writer).await;
        let grown = file_grows_past(&file, round * 9_000_000).await;
        assert!(
            grown > round * 9_000_000,
            "after {round} rounds the database file holds {grown} bytes"
        );
        if round == 1 {
            wal_after_first = wal_bytes(&file);
        }
        // The file grows while the checkpoint still copies (and syncs): the next
        // round starts the WAL over only once it is done. Wait for that restart,
        // seen in the WAL's header, instead of racing it.
        the_wal_starts_over(&writer, &file).await;
    }
    // Three rounds unchecked would leave a WAL of three times the first.
    let wal = wal_bytes(&file);
    assert!(
        wal <= wal_after_first + wal_after_first / 2,
        "the WAL grew from {wal_after_first} to {wal} bytes"
    );
}

/// Steady writes beside overlapping reads, as under load, checkpointed by
/// `policy`; the WAL's size at the end.
async fn wal_after_steady_writes(policy: Policy) -> u64 {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("steady.db");
    let conn = rusqlite::Connection::open(&file).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; \
         PRAGMA synchronous = NORMAL; CREATE TABLE t (b BLOB);",
    )
    .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let running = done.clone();
    spawn_with(file.clone(), policy, move || {
        !running.load(Ordering::Relaxed)
    });
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (file, done) = (file.clone(), done.clone());
            std::thread::spawn(move || {
                let reader = rusqlite::Connection::open(&file).unwrap();
                reader
                    .busy_timeout(std::time::Duration::from_secs(5))
                    .unwrap();
                while !done.load(Ordering::Relaxed) {
                    reader.execute_batch("BEGIN").unwrap();
                    let _: i64 = reader
                        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                        .unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    reader.execute_batch("COMMIT").unwrap();
                }
            })
        })
        .collect();
    let writes = tokio::task::spawn_blocking(move || {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        // About 75 MB of WAL frames, three pages each.
        for _ in 0..6_000 {
            conn.execute("INSERT INTO t VALUES (randomblob(3000))", [])
                .unwrap();
        }
    });
    writes.await.unwrap();
    let bytes = wal_bytes(&file);
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    bytes
}

/// Passive checkpoints alone never start a busy WAL over; with restarts it
/// stays near the restart size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_checkpoints_bound_a_wal_that_passive_ones_let_grow() {
    let every = std::time::Duration::from_millis(20);
    let passive = wal_after_steady_writes(Policy {
        every,
        restart_at_frames: None,
    })
    .await;
    let restarted = wal_after_steady_writes(Policy {
        every,
        restart_at_frames: Some(500),
    })
    .await;
    eprintln!("WAL after steady writes: {passive} bytes passive, {restarted} with restarts");
    // Restarts at 500 frames (2 MB) left 6–11 MB, passive ones all 75 MB. (The
    // file keeps its largest size: passive checkpoints would have to let the
    // WAL start over every 30 MB or so to stay under the first bound.)
    assert!(passive > 30_000_000, "passive only: {passive} bytes");
    assert!(restarted < 20_000_000, "with restarts: {restarted} bytes");
}
