//! The in-process holder's statements, on SQLite and on PostgreSQL.

use sea_orm::{DbBackend, Statement, Value};

/// The holder's statements on one database: its row as apalis registers a worker
/// of the queue, its heartbeat, a failed run's acknowledgement as apalis writes
/// it, and the deletion of done jobs (their ids as a JSON array).
pub(super) struct Sql {
    backend: DbBackend,
    pub(super) register: &'static str,
    pub(super) keep_alive: &'static str,
    pub(super) ack_failed: &'static str,
    pub(super) delete_done: &'static str,
}

pub(super) const SQLITE: Sql = Sql {
    backend: DbBackend::Sqlite,
    register: "INSERT INTO Workers (id, worker_type, storage_name, layers, last_seen, started_at) \
         VALUES (?, ?, 'SqliteStorage', 'in-process hand-over', strftime('%s', 'now'), strftime('%s', 'now'))",
    keep_alive: "UPDATE Workers SET last_seen = strftime('%s', 'now') WHERE id = ?",
    ack_failed: "UPDATE Jobs SET status = ?, attempts = 1, last_result = ?, \
         done_at = strftime('%s', 'now') WHERE id = ? AND lock_by = ?",
    delete_done: "DELETE FROM Jobs WHERE lock_by = ? AND id IN (SELECT value FROM json_each(?))",
};

pub(super) const POSTGRES: Sql = Sql {
    backend: DbBackend::Postgres,
    register: "INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen, started_at) \
         VALUES ($1, $2, 'PostgresStorage', 'in-process hand-over', now(), now())",
    keep_alive: "UPDATE apalis.workers SET last_seen = now() WHERE id = $1",
    ack_failed: "UPDATE apalis.jobs SET status = $1, attempts = 1, last_result = $2::jsonb, \
         done_at = now() WHERE id = $3 AND lock_by = $4",
    delete_done: "DELETE FROM apalis.jobs WHERE lock_by = $1 \
         AND id IN (SELECT jsonb_array_elements_text($2::jsonb))",
};

impl Sql {
    /// `sql` (one of this database's statements above) with `values`.
    pub(super) fn statement(&self, sql: &'static str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(self.backend, sql, values)
    }
}
