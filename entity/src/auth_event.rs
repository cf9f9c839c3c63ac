//! `auth_event`: the audit log. One row per security-relevant event, with the
//! client's address and user agent when known. Never holds a secret.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auth_event")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The user it concerns, when known (a failed sign-in may have none).
    pub user_id: Option<Uuid>,
    /// `sign_in_started`, `sign_in_succeeded`, `sign_in_failed`, `linked`,
    /// `unlinked`, `password_failure`, `session_revoked`, `refresh_token_reuse`.
    pub kind: String,
    pub provider: Option<String>,
    /// The error code of a failure.
    pub code: Option<String>,
    pub operation_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
