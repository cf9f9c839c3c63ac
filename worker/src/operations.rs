//! The `async_operation` lifecycle shared by the web tier and the worker: create
//! pending, finish `ok`/`error` (only from pending, so the first finisher wins),
//! redeem once, expire stale ones, and wake long-polling status requests.

use std::time::Duration;

use chrono::Utc;
use entity::async_operation::{self, Column, Entity as AsyncOperation, Model, OperationStatus};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QueryTrait,
    sea_query::{Asterisk, Expr, InsertStatement, OnConflict, Query},
};
use uuid::Uuid;

use crate::linking::LinkTo;

/// The code and sentence for an operation that ran out of time.
pub const TIMEOUT: (&str, &str) = ("timeout", "Signing in took too long. Please try again.");
/// The code and sentence when the job could not be queued.
pub const QUEUE_UNAVAILABLE: (&str, &str) = (
    "queue_unavailable",
    "We could not start your sign-in right now. Please try again in a moment.",
);

pub use crate::finishes::{FinishWatch, NOTIFY_CHANNEL, OperationEvents, listen_for_finishes};

/// Moves operation `id` from pending to `status`, with what `outcome` sets besides
/// (the user, or the error), drops its stored token response, and returns the
/// finished row: `None` if it was no longer pending. On PostgreSQL the same
/// statement announces the finish (`pg_notify` in its `RETURNING`, evaluated for an
/// updated row only and delivered at commit; see `finishes::ANNOUNCEMENT`): no
/// round trip of its own.
async fn finish(
    db: &impl ConnectionTrait,
    id: Uuid,
    status: OperationStatus,
    outcome: impl FnOnce(sea_orm::UpdateMany<AsyncOperation>) -> sea_orm::UpdateMany<AsyncOperation>,
) -> Result<Option<Model>, DbErr> {
    let update = AsyncOperation::update_many()
        .col_expr(Column::Status, Expr::value(status.as_str()))
        .col_expr(Column::TokenResponse, Expr::value(Option::<String>::None))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(OperationStatus::Pending));
    let update = outcome(update);
    let backend = db.get_database_backend();
    let mut returning = vec![Expr::col(Asterisk)];
    if backend == sea_orm::DatabaseBackend::Postgres {
        returning.push(Expr::cust(crate::finishes::ANNOUNCEMENT));
    }
    let mut query = update.into_query();
    query.returning(Query::returning().exprs(returning));
    AsyncOperation::find()
        .from_raw_sql(backend.build(&query))
        .one(db)
        .await
}

/// Operations started by a browser's callback.
pub const KIND_BROWSER: &str = "browser";
/// Operations started by an app's token exchange (`POST /api/auth/{provider}/token`).
pub const KIND_NATIVE: &str = "native";

/// What a new operation is bound to.
#[derive(Debug, Clone)]
pub struct NewOperation {
    /// [`KIND_BROWSER`] or [`KIND_NATIVE`].
    pub kind: &'static str,
    pub provider: String,
    /// SHA-256 of the browser key or poll secret that may poll and redeem it.
    pub redeemer_hash: String,
    pub next_path: Option<String>,
    /// For an explicit link: the user to link to and the session that asked.
    pub link: Option<LinkTo>,
    /// For a browser callback: SHA-256 of the `state` it claims (unique).
    pub state_hash: Option<String>,
    /// The client address that starts it (see `async_operation.client_key`).
    pub client_key: Option<String>,
}

/// What [`claim_state`] found.
#[derive(Debug)]
pub enum Claim {
    /// The state was free: this new pending operation now holds it.
    New(Model),
    /// An earlier callback with the same state made this operation (same browser).
    Existing(Model),
    /// The state is held by an operation of another browser.
    Foreign,
}

/// Records `new` as the one operation for its `state_hash`: a second callback with
/// the same state gets the first one's operation, never a second row (and so never
/// a second job for the same code). `exchange_started`: the new row is written
/// with its exchange already marked (`exchange_started_at`), for a job this
/// process runs at once (see `jobs::exchange`); a found one is left as it is.
pub async fn claim_state(
    db: &impl ConnectionTrait,
    new: NewOperation,
    exchange_started: bool,
) -> Result<Claim, DbErr> {
    let (_, insert) = claim_insert(&new, exchange_started);
    match Model::find_by_statement(db.get_database_backend().build(&insert))
        .one(db)
        .await?
    {
        Some(model) => Ok(Claim::New(model)),
        None => claimed_by(db, &new).await,
    }
}

/// The insert of [`claim_state`], returning the new row, and that row's id: no row
/// when another operation holds the state (`ON CONFLICT DO NOTHING`, not a caught
/// unique violation: in a PostgreSQL transaction a failed statement would abort
/// the rest of the write).
pub fn claim_insert(new: &NewOperation, exchange_started: bool) -> (Uuid, InsertStatement) {
    let id = Uuid::new_v4();
    let mut insert = AsyncOperation::insert(pending_row(id, new.clone(), exchange_started));
    if new.state_hash.is_some() {
        insert = insert.on_conflict(
            OnConflict::column(Column::StateHash)
                .do_nothing()
                .to_owned(),
        );
    }
    let mut query = insert.into_query();
    query.returning_all();
    (id, query)
}

/// Who holds `new`'s state, once its claim inserted nothing: an earlier callback
/// of the same browser, or another browser.
pub async fn claimed_by(db: &impl ConnectionTrait, new: &NewOperation) -> Result<Claim, DbErr> {
    let Some(state_hash) = &new.state_hash else {
        return Err(DbErr::RecordNotInserted);
    };
    Ok(
        match find_by_state(db, state_hash, &new.redeemer_hash).await? {
            Some(model) => Claim::Existing(model),
            None => Claim::Foreign,
        },
    )
}

/// The operation that claimed `state_hash`, if it is bound to `redeemer_hash`.
pub async fn find_by_state(
    db: &impl ConnectionTrait,
    state_hash: &str,
    redeemer_hash: &str,
) -> Result<Option<Model>, DbErr> {
    AsyncOperation::find()
        .filter(Column::StateHash.eq(state_hash))
        .filter(Column::RedeemerHash.eq(redeemer_hash))
        .one(db)
        .await
}

/// Records a new pending operation.
pub async fn create_pending(db: &impl ConnectionTrait, new: NewOperation) -> Result<Model, DbErr> {
    insert_pending(db, new, false).await
}

async fn insert_pending(
    db: &impl ConnectionTrait,
    new: NewOperation,
    exchange_started: bool,
) -> Result<Model, DbErr> {
    AsyncOperation::insert(pending_row(Uuid::new_v4(), new, exchange_started))
        .exec_with_returning(db)
        .await
}

/// The row of a new pending operation, its exchange marked as begun now if
/// `exchange_started`.
fn pending_row(
    id: Uuid,
    new: NewOperation,
    exchange_started: bool,
) -> async_operation::ActiveModel {
    let now = Utc::now();
    async_operation::ActiveModel {
        id: Set(id),
        status: Set(OperationStatus::Pending),
        provider: Set(new.provider),
        user_id: Set(None),
        error_code: Set(None),
        error_message: Set(None),
        redeemer_hash: Set(new.redeemer_hash),
        kind: Set(new.kind.to_owned()),
        next_path: Set(new.next_path),
        link_user_id: Set(new.link.map(|link| link.user_id)),
        link_session_id: Set(new.link.map(|link| link.session_id)),
        redeemed_at: Set(None),
        exchange_started_at: Set(exchange_started.then_some(now)),
        token_response: Set(None),
        state_hash: Set(new.state_hash),
        client_key: Set(new.client_key),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// The operation `id` if this browser may see it, else this browser's latest one.
pub async fn find_for_browser(
    db: &impl ConnectionTrait,
    redeemer_hash: &str,
    id: Option<Uuid>,
) -> Result<Option<Model>, DbErr> {
    let query = AsyncOperation::find().filter(Column::RedeemerHash.eq(redeemer_hash));
    match id {
        Some(id) => query.filter(Column::Id.eq(id)).one(db).await,
        None => query.order_by_desc(Column::CreatedAt).one(db).await,
    }
}

/// How many operations bound to `redeemer_hash` are still pending.
pub async fn count_pending_for(
    db: &impl ConnectionTrait,
    redeemer_hash: &str,
) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    AsyncOperation::find()
        .filter(Column::RedeemerHash.eq(redeemer_hash))
        .filter(Column::Status.eq(OperationStatus::Pending))
        .count(db)
        .await
}

/// How many operations started from `client_key` are still pending (an index
/// range: `idx_async_operation_client_key`).
pub async fn count_pending_from(db: &impl ConnectionTrait, client_key: &str) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    AsyncOperation::find()
        .filter(Column::ClientKey.eq(client_key))
        .filter(Column::Status.eq(OperationStatus::Pending))
        .count(db)
        .await
}

/// `status = 'pending'` with the value written into the SQL rather than bound: only
/// then can a plan use the partial index of pending operations
/// (`idx_async_operation_pending`, whose predicate it repeats), on SQLite and in the
/// generic plans PostgreSQL caches for prepared statements alike.
const PENDING: &str = "\"status\" = 'pending'";

/// [`PENDING`] as a filter.
pub fn is_pending() -> Expr {
    Expr::cust(PENDING)
}

/// How many operations are pending in all, counting no further than `limit`: the
/// inner `LIMIT` stops the scan of `idx_async_operation_pending` there, so the
/// cost is bounded by `limit` however full the queue is, and the table itself is
/// never read.
pub async fn count_pending_up_to(db: &impl ConnectionTrait, limit: u64) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let placeholder = match backend {
        sea_orm::DatabaseBackend::Postgres => "$1",
        _ => "?",
    };
    let sql = format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM async_operation WHERE {PENDING} \
         LIMIT {placeholder}) AS capped"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let row = db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            sql,
            [limit.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("COUNT(*) returned no row".into()))?;
    let count: i64 = row.try_get_by_index(0)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Loads one operation by id.
pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Model>, DbErr> {
    AsyncOperation::find_by_id(id).one(db).await
}

/// Moves a pending operation to `ok` with its user; returns the finished row
/// (`RETURNING`, no second read), or `None` if it was no longer pending.
pub async fn mark_ok(
    db: &impl ConnectionTrait,
    id: Uuid,
    user_id: Uuid,
) -> Result<Option<Model>, DbErr> {
    finish(db, id, OperationStatus::Ok, |update| {
        update.col_expr(Column::UserId, Expr::value(user_id))
    })
    .await
}

/// Moves a pending operation to `error`. False if it was no longer pending.
pub async fn mark_error(
    db: &impl ConnectionTrait,
    id: Uuid,
    code: &str,
    message: &str,
) -> Result<bool, DbErr> {
    let finished = finish(db, id, OperationStatus::Error, |update| {
        update
            .col_expr(Column::ErrorCode, Expr::value(code))
            .col_expr(Column::ErrorMessage, Expr::value(message))
    })
    .await?;
    Ok(finished.is_some())
}

/// How long after it finished `ok` an operation can be redeemed. The preloader and
/// the apps redeem at once; an `ok` left waiting on a shared computer must not hand
/// the next person at that browser the previous one's session.
pub const REDEEM_WINDOW: chrono::Duration = chrono::Duration::minutes(5);

/// Marks `id` redeemed if it is `ok` (within [`REDEEM_WINDOW`]), unredeemed and
/// bound to this browser; returns it and its user then. Atomic: of two concurrent redemptions
/// exactly one gets `Some`. A link whose asking session has ended (see
/// [`LinkTo::session_is_live`]; sessions older than `session_max_lifetime` count as
/// ended) is spent but yields nothing: it must not mint a session.
pub async fn redeem(
    db: &impl ConnectionTrait,
    id: Uuid,
    redeemer_hash: &str,
    session_max_lifetime: Duration,
) -> Result<Option<(Model, Uuid)>, DbErr> {
    // One statement (`RETURNING`): on SQLite each statement waits its turn for the
    // single writer connection.
    let result = Model::find_by_statement(db.get_database_backend().build(&redeem_update(
        Utc::now(),
        id,
        redeemer_hash,
    )))
    .one(db)
    .await?;
    let Some((operation, user_id)) =
        result.and_then(|operation| operation.user_id.map(|user_id| (operation, user_id)))
    else {
        return Ok(None);
    };
    if let Some(link) = LinkTo::of(&operation)
        && !link.session_is_live(db, session_max_lifetime).await?
    {
        tracing::warn!(operation.id = %id, "link redeemed after its session ended: refused");
        return Ok(None);
    }
    Ok(Some((operation, user_id)))
}

/// The redemption itself: `id` marked redeemed at `now` if it is `ok` (finished
/// within [`REDEEM_WINDOW`]), unredeemed and bound to `redeemer_hash`, returning
/// the row.
pub fn redeem_update(
    now: chrono::DateTime<Utc>,
    id: Uuid,
    redeemer_hash: &str,
) -> sea_orm::sea_query::UpdateStatement {
    AsyncOperation::update_many()
        .col_expr(Column::RedeemedAt, Expr::value(now))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(Column::RedeemerHash.eq(redeemer_hash))
        .filter(Column::Status.eq(OperationStatus::Ok))
        .filter(Column::RedeemedAt.is_null())
        .filter(Column::UpdatedAt.gt(now - REDEEM_WINDOW))
        .into_query()
        .returning_all()
        .to_owned()
}

/// Whether a pending operation has outlived `timeout`.
pub fn is_stale(operation: &Model, timeout: Duration) -> bool {
    operation.status == OperationStatus::Pending
        && Utc::now()
            .signed_duration_since(operation.created_at)
            .to_std()
            .unwrap_or_default()
            >= timeout
}

/// Ends every pending operation older than `timeout` with `error` (`timeout`).
pub async fn expire_stale(db: &impl ConnectionTrait, timeout: Duration) -> Result<u64, DbErr> {
    let cutoff = Utc::now() - chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
    let result = AsyncOperation::update_many()
        .col_expr(Column::Status, Expr::value(OperationStatus::Error.as_str()))
        .col_expr(Column::ErrorCode, Expr::value(TIMEOUT.0))
        .col_expr(Column::ErrorMessage, Expr::value(TIMEOUT.1))
        .col_expr(Column::TokenResponse, Expr::value(Option::<String>::None))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(is_pending())
        .filter(Column::CreatedAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
