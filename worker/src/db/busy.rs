//! How a SQLite connection waits for another's write lock.
//!
//! SQLite's own busy handler (what `busy_timeout` installs) sleeps 1, 2, 5, 10, 15,
//! 20, 25, 25, 25, 50, 50 ms and then 100 ms at a time between tries, whatever the
//! holder does meanwhile: a write that found the lock taken three times had slept
//! 8 ms, and the lock is usually free again within a millisecond. With separate
//! worker processes on one file, the api and the workers take turns on that lock
//! for every sign-in; strace of one worker under load counted a second of such
//! sleeps every four seconds (docs/benchmarks.md, tenth sitting). This handler
//! tries again after 100 µs for the first [`SHORT_TRIES`] tries, then every
//! millisecond, and gives up after the same [`super::BUSY_TIMEOUT`] in all.

use std::{
    ffi::{c_int, c_void},
    time::Duration,
};

use sea_orm::sqlx::{self, SqliteConnection};

/// Tries after a short pause, before the pauses grow to a millisecond.
const SHORT_TRIES: u32 = 20;
const SHORT_PAUSE: Duration = Duration::from_micros(100);
const LONG_PAUSE: Duration = Duration::from_millis(1);

/// Installs the handler on `conn`, replacing the one `busy_timeout` installed.
pub(super) async fn install(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `lock_handle` keeps the connection's own thread off the handle until
    // `handle` drops; `busy` matches SQLite's `int(*)(void*,int)`, takes no data
    // (a null pointer) and touches nothing but its arguments.
    let rc = unsafe { libsqlite3_sys::sqlite3_busy_handler(db, Some(busy), std::ptr::null_mut()) };
    if rc == libsqlite3_sys::SQLITE_OK {
        Ok(())
    } else {
        Err(super::stable_plans::config_error(&format!(
            "sqlite3_busy_handler failed with code {rc}"
        )))
    }
}

/// SQLite's call when the lock is taken: `tries` is how often it has called
/// before for this statement. Sleeps and asks for another try (non-zero), or gives
/// up (zero: the statement fails with `SQLITE_BUSY`).
unsafe extern "C" fn busy(_data: *mut c_void, tries: c_int) -> c_int {
    c_int::from(wait(tries, super::BUSY_TIMEOUT))
}

/// A busy handler's step for connections that wait at most `budget` in all:
/// sleeps the pause before try `tries + 1` and says to try again, or, once the
/// pauses add up to `budget`, says to give up (the background checkpoints give
/// their `rusqlite` connection the same pauses).
pub(super) fn wait(tries: c_int, budget: Duration) -> bool {
    match pause_within(u32::try_from(tries).unwrap_or(0), budget) {
        Some(pause) => {
            std::thread::sleep(pause);
            true
        }
        None => false,
    }
}

/// The pause before try `tries + 1`, or `None` once the pauses so far add up to
/// `budget`.
fn pause_within(tries: u32, budget: Duration) -> Option<Duration> {
    let short = tries.min(SHORT_TRIES);
    let waited = SHORT_PAUSE * short + LONG_PAUSE * (tries - short);
    if waited >= budget {
        return None;
    }
    Some(if tries < SHORT_TRIES {
        SHORT_PAUSE
    } else {
        LONG_PAUSE
    })
}

#[cfg(test)]
mod tests {
    use std::{path::Path, str::FromStr, time::Instant};

    use sea_orm::sqlx::{
        SqlitePool,
        sqlite::{SqliteConnectOptions, SqlitePoolOptions},
    };

    use super::*;

    /// The pause before try `tries + 1` of a connection with the busy timeout.
    fn pause(tries: u32) -> Option<Duration> {
        pause_within(tries, crate::db::BUSY_TIMEOUT)
    }

    /// How long after another connection's write lock goes a write waiting for it
    /// on `pool` completes (the lock is held 250 ms).
    async fn late_by(pool: &SqlitePool, file: &Path) -> Duration {
        let holder = rusqlite::Connection::open(file).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let waiting = pool.clone();
        let write = tokio::spawn(async move {
            sqlx::query("INSERT INTO t VALUES (1)")
                .execute(&waiting)
                .await
                .map(|_| Instant::now())
        });
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!write.is_finished(), "the write waits for the lock");
        holder.execute_batch("COMMIT").unwrap();
        let released = Instant::now();
        let done = write
            .await
            .unwrap()
            .expect("the write succeeds once the lock goes");
        done.saturating_duration_since(released)
    }

    /// SQLite's own handler, 250 ms into its wait, sleeps until 328 ms: the write
    /// completes at least 78 ms after the lock went. This one tries every
    /// millisecond by then.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_write_follows_the_lock_within_a_pause_not_sqlites_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("busy.db");
        let options =
            SqliteConnectOptions::from_str(&format!("sqlite://{}?mode=rwc", file.display()))
                .unwrap()
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(crate::db::BUSY_TIMEOUT);
        let ours = crate::db::sqlite_pool(options.clone(), 1).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&ours)
            .await
            .unwrap();
        let sqlites = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        let sqlites_late = late_by(&sqlites, &file).await;
        let ours_late = late_by(&ours, &file).await;
        assert!(
            sqlites_late >= Duration::from_millis(70),
            "SQLite's backoff: {sqlites_late:?}"
        );
        assert!(
            ours_late < sqlites_late,
            "ours {ours_late:?}, SQLite's {sqlites_late:?}"
        );
    }

    #[test]
    fn short_pauses_first_then_a_millisecond_until_the_timeout() {
        assert_eq!(pause(0), Some(SHORT_PAUSE));
        assert_eq!(pause(SHORT_TRIES - 1), Some(SHORT_PAUSE));
        assert_eq!(pause(SHORT_TRIES), Some(LONG_PAUSE));
        // The pauses add up to the timeout, and then it gives up.
        let mut waited = Duration::ZERO;
        let mut tries = 0;
        while let Some(p) = pause(tries) {
            waited += p;
            tries += 1;
            assert!(tries < 1_000_000, "it gives up");
        }
        assert!(waited >= crate::db::BUSY_TIMEOUT, "{waited:?}");
        assert!(
            waited < crate::db::BUSY_TIMEOUT + LONG_PAUSE * 2,
            "{waited:?}"
        );
    }
}
