//! Rows written straight into the database with chosen timestamps, for tests of
//! what happens to old rows (the sweeps) without waiting days.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use entity::{
    async_operation::{self, OperationStatus},
    prelude::{AsyncOperation, RefreshToken, Session, UserProfile},
    refresh_token, session, user_profile,
};
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait};
use uuid::Uuid;

/// Sets `column` of every `E` row to `value`: a clock moved back for one table, so
/// a test need not wait out a period.
pub async fn set_on_all<E: EntityTrait>(
    db: &DatabaseConnection,
    column: E::Column,
    value: DateTime<Utc>,
) {
    E::update_many()
        .col_expr(column, sea_orm::sea_query::Expr::value(value))
        .exec(db)
        .await
        .unwrap();
}

/// `days` days before now.
pub fn ago(days: i64) -> DateTime<Utc> {
    Utc::now() - Duration::days(days)
}

/// `days` days after now.
pub fn ahead(days: i64) -> DateTime<Utc> {
    Utc::now() + Duration::days(days)
}

/// An operation in `status` that last changed at `updated_at` (and was redeemed
/// then, if `redeemed`).
pub async fn create_operation(
    db: &DatabaseConnection,
    status: OperationStatus,
    updated_at: DateTime<Utc>,
    redeemed: bool,
) -> Uuid {
    let model = operation(status, updated_at, redeemed);
    let id = model.id.clone().unwrap();
    AsyncOperation::insert(model).exec(db).await.unwrap();
    id
}

/// The row [`create_operation`] inserts, for `insert_many`.
pub fn operation(
    status: OperationStatus,
    updated_at: DateTime<Utc>,
    redeemed: bool,
) -> async_operation::ActiveModel {
    let id = Uuid::new_v4();
    async_operation::ActiveModel {
        id: Set(id),
        status: Set(status),
        provider: Set("mock".into()),
        user_id: Set(None),
        error_code: Set((status == OperationStatus::Error).then(|| "invalid_grant".into())),
        error_message: Set(None),
        redeemer_hash: Set(id.simple().to_string()),
        kind: Set("browser".into()),
        next_path: Set(None),
        link_user_id: Set(None),
        link_session_id: Set(None),
        redeemed_at: Set(redeemed.then_some(updated_at)),
        exchange_started_at: Set(None),
        token_response: Set(None),
        state_hash: Set(None),
        client_key: Set(None),
        created_at: Set(updated_at - Duration::seconds(5)),
        updated_at: Set(updated_at),
    }
}

/// A user with no profile fields.
pub async fn create_user(db: &DatabaseConnection) -> Uuid {
    let id = Uuid::new_v4();
    UserProfile::insert(user_profile::ActiveModel {
        id: Set(id),
        email: Set(None),
        email_verified: Set(false),
        first_name: Set(None),
        last_name: Set(None),
        display_name: Set(None),
        avatar_url: Set(None),
        locked_fields: Set(String::new()),
        password_hash: Set(None),
        created_at: Set(ago(200)),
        updated_at: Set(ago(200)),
    })
    .exec(db)
    .await
    .unwrap();
    id
}

/// An API session of `user_id` with the given lifetime marks.
pub async fn create_session(
    db: &DatabaseConnection,
    user_id: Uuid,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
) -> Uuid {
    let id = Uuid::new_v4();
    Session::insert(session::ActiveModel {
        id: Set(id),
        token_hash: Set(id.simple().to_string()),
        user_id: Set(user_id),
        created_at: Set(created_at),
        last_seen_at: Set(created_at),
        expires_at: Set(expires_at),
        revoked_at: Set(revoked_at),
        user_agent: Set(None),
        ip: Set(None),
        kind: Set("api".into()),
        device: Set(None),
    })
    .exec(db)
    .await
    .unwrap();
    id
}

/// A refresh token of `session_id`, issued 30 days before `expires_at`.
pub async fn create_refresh_token(
    db: &DatabaseConnection,
    session_id: Uuid,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
) -> Uuid {
    let id = Uuid::new_v4();
    RefreshToken::insert(refresh_token::ActiveModel {
        id: Set(id),
        session_id: Set(session_id),
        token_hash: Set(id.simple().to_string()),
        created_at: Set(expires_at - Duration::days(30)),
        expires_at: Set(expires_at),
        used_at: Set(used_at),
    })
    .exec(db)
    .await
    .unwrap();
    id
}

/// The ids of every row of the table.
pub async fn operation_ids(db: &DatabaseConnection) -> BTreeSet<Uuid> {
    let rows = AsyncOperation::find().all(db).await.unwrap();
    rows.into_iter().map(|row| row.id).collect()
}

pub async fn session_ids(db: &DatabaseConnection) -> BTreeSet<Uuid> {
    let rows = Session::find().all(db).await.unwrap();
    rows.into_iter().map(|row| row.id).collect()
}

pub async fn refresh_token_ids(db: &DatabaseConnection) -> BTreeSet<Uuid> {
    let rows = RefreshToken::find().all(db).await.unwrap();
    rows.into_iter().map(|row| row.id).collect()
}
