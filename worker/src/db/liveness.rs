//! When a PostgreSQL connection is checked before the pool hands it out.
//!
//! sqlx's default (`test_before_acquire`) pings every idle connection it hands out:
//! a `Sync` message and the server's `ReadyForQuery`, one more round trip (and one
//! more wake-up of the server's backend process) before every statement run on the
//! pool. A connection used a moment ago was working a moment ago, so only one
//! that sat idle longer than [`ALIVE_BYPASS`] is pinged (the rule HikariCP keeps
//! with its `aliveBypassWindowMs`, and sqlx's own `before_acquire` example). A
//! ping that fails closes the connection and the pool hands out another, as
//! before; one that broke within the window fails the statement that finds it.

use std::time::Duration;

use sea_orm::sqlx::{
    Connection, Error, PgConnection, pool::PoolConnectionMetadata, postgres::PgPoolOptions,
};

/// A connection idle at most this long is handed out without a ping.
pub const ALIVE_BYPASS: Duration = Duration::from_millis(500);

/// `options` with the pings limited to connections idle past [`ALIVE_BYPASS`].
pub fn ping_when_idle(options: PgPoolOptions) -> PgPoolOptions {
    options.test_before_acquire(false).before_acquire(
        |conn: &mut PgConnection, meta: PoolConnectionMetadata| {
            Box::pin(async move {
                if needs_ping(meta.idle_for) {
                    conn.ping().await?;
                }
                Ok::<_, Error>(true)
            })
        },
    )
}

/// Whether a connection idle for `idle_for` is pinged before it is handed out.
fn needs_ping(idle_for: Duration) -> bool {
    idle_for > ALIVE_BYPASS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_connection_idle_past_the_window_is_pinged() {
        assert!(!needs_ping(Duration::ZERO));
        assert!(!needs_ping(ALIVE_BYPASS));
        assert!(needs_ping(ALIVE_BYPASS + Duration::from_millis(1)));
        assert!(needs_ping(Duration::from_secs(60)));
    }
}
