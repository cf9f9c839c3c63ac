//! `user_profile`: one row per person. Named so because `user` is reserved in many
//! databases. Profile fields are refreshed from the provider on each sign-in.

use sea_orm::entity::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "user_profile")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Lower-cased email address, when any provider gave one.
    pub email: Option<String>,
    /// True once a provider asserted the address is verified.
    pub email_verified: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    /// Comma-separated profile fields the user set locally; sign-ins leave them be.
    #[serde(skip)]
    pub locked_fields: String,
    /// Argon2id PHC string, for users who set a password.
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::social_account::Entity")]
    SocialAccount,
    #[sea_orm(has_many = "super::session::Entity")]
    Session,
}

impl Related<super::social_account::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::SocialAccount.def()
    }
}

impl Related<super::session::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Session.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// Whether the user set `field` (`first_name`, …) locally.
    pub fn is_locked(&self, field: &str) -> bool {
        self.locked_fields.split(',').any(|f| f == field)
    }
}
