//! `social_account`: a user's identity at one provider, unique on (provider, subject).
//! Provider tokens are stored encrypted (see `worker::crypto`), never in clear.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "social_account")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// Configured provider name (`google`, `corp`, `demo`, …).
    pub provider: String,
    /// The provider's stable identifier for the person (`sub`, GitHub `id`, …).
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    /// AEAD-encrypted access token, base64url.
    pub access_token_enc: Option<String>,
    /// AEAD-encrypted refresh token, base64url.
    pub refresh_token_enc: Option<String>,
    pub token_expires_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::user_profile::Entity",
        from = "Column::UserId",
        to = "super::user_profile::Column::Id",
        on_delete = "Cascade"
    )]
    UserProfile,
}

impl Related<super::user_profile::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::UserProfile.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
