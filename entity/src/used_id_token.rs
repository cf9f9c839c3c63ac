//! `used_id_token`: ID tokens already spent on a native sign-in (SHA-256 only),
//! kept until they would have expired, so none is accepted twice.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "used_id_token")]
pub struct Model {
    /// SHA-256 (hex) of the compact ID token.
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_hash: String,
    /// The operation that spent it (a re-run of that job may see it again).
    pub operation_id: Uuid,
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
