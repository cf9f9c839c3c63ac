//! A finished operation redeemed into a new session: the operation marked redeemed
//! and the session inserted together, or neither.
//!
//! On SQLite the two statements share the writer's transaction. On PostgreSQL they
//! are one statement (the redemption's `UPDATE` in a `WITH`, the session's `INSERT`
//! reading from it), sent straight to the pool: atomic by itself, one round trip
//! where a transaction would take four (`BEGIN`, both statements, `COMMIT`).

use std::time::Duration;

use chrono::Utc;
use entity::{
    async_operation::Model,
    session::{self, Entity as Session},
};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult};
use uuid::Uuid;

use crate::{db::with::with_first, linking, operations};

/// A session to start for whoever an operation signed in.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: Uuid,
    /// SHA-256 (hex) of the token the client holds.
    pub token_hash: String,
    /// `browser` or `api`.
    pub kind: &'static str,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub device: Option<String>,
    pub lifetime: chrono::Duration,
}

impl NewSession {
    /// Inserts the session for `user_id`.
    pub async fn insert(self, db: &impl ConnectionTrait, user_id: Uuid) -> Result<(), DbErr> {
        let now = Utc::now();
        Session::insert(session::ActiveModel {
            id: Set(self.id),
            token_hash: Set(self.token_hash),
            user_id: Set(user_id),
            created_at: Set(now),
            last_seen_at: Set(now),
            expires_at: Set(now + self.lifetime),
            revoked_at: Set(None),
            user_agent: Set(self.user_agent),
            ip: Set(self.ip),
            kind: Set(self.kind.to_owned()),
            device: Set(self.device),
        })
        .exec_without_returning(db)
        .await
        .map(|_| ())
    }
}

/// Redeems operation `id` for the browser or app holding `redeemer_hash` (see
/// [`operations::redeem`]) and starts `session` for its user in the same write.
/// `None`, with nothing written, when the operation was not redeemable; a link
/// whose asking session has ended is spent, and starts no session.
pub async fn redeem_into_session(
    db: &impl ConnectionTrait,
    id: Uuid,
    redeemer_hash: &str,
    session_max_lifetime: Duration,
    session: NewSession,
) -> Result<Option<(Model, Uuid)>, DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        return in_one_statement(db, id, redeemer_hash, session_max_lifetime, session).await;
    }
    let Some((operation, user_id)) =
        operations::redeem(db, id, redeemer_hash, session_max_lifetime).await?
    else {
        return Ok(None);
    };
    session.insert(db, user_id).await?;
    Ok(Some((operation, user_id)))
}

/// The session's insert reads the redeemed row, and takes place only when the
/// operation has a user and is no link, or a link whose session is live
/// ([`crate::linking::LinkTo::session_is_live`], the same conditions in SQL). The
/// last `SELECT` returns the redeemed row and the user the session was started for.
const REDEEM_AND_START: &str = "\
, started AS (
  INSERT INTO session (id, token_hash, user_id, created_at, last_seen_at, expires_at,
                       revoked_at, user_agent, ip, kind, device)
  SELECT $V1, $V2, r.user_id, $V3, $V3, $V4, NULL, $V5, $V6, $V7, $V8 FROM redeemed r
  WHERE r.user_id IS NOT NULL AND (r.link_user_id IS NULL OR EXISTS (
    SELECT 1 FROM session s WHERE s.id = r.link_session_id AND s.user_id = r.link_user_id
      AND s.revoked_at IS NULL AND s.expires_at > $V3 AND s.created_at > $V9))
  RETURNING user_id
)
SELECT r.*, (SELECT user_id FROM started) AS session_user_id FROM redeemed r";

async fn in_one_statement(
    db: &impl ConnectionTrait,
    id: Uuid,
    redeemer_hash: &str,
    session_max_lifetime: Duration,
    session: NewSession,
) -> Result<Option<(Model, Uuid)>, DbErr> {
    let now = Utc::now();
    let oldest = linking::oldest_live_start(now, session_max_lifetime);
    let values = vec![
        session.id.into(),
        session.token_hash.into(),
        now.into(),
        (now + session.lifetime).into(),
        session.user_agent.into(),
        session.ip.into(),
        session.kind.into(),
        session.device.into(),
        oldest.into(),
    ];
    let update = operations::redeem_update(now, id, redeemer_hash);
    let statement = with_first("redeemed", &update, REDEEM_AND_START, values);
    let Some(row) = db.query_one_raw(statement).await? else {
        return Ok(None);
    };
    let operation = Model::from_query_result(&row, "")?;
    let started: Option<Uuid> = row.try_get("", "session_user_id")?;
    match (operation.user_id, started) {
        (Some(user_id), Some(_)) => Ok(Some((operation, user_id))),
        (Some(_), None) => {
            tracing::warn!(operation.id = %id, "link redeemed after its session ended: refused");
            Ok(None)
        }
        (None, _) => Ok(None),
    }
}
