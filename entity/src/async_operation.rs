//! `async_operation`: one browser sign-in attempt after the provider redirected back.
//! The web tier inserts it `pending`; the worker moves it to `ok` or `error`; the
//! success route redeems an `ok` one exactly once, for the browser that started it.

use sea_orm::entity::prelude::*;

/// Where an operation stands. Only the worker (or the timeout sweep) leaves `Pending`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum OperationStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "ok")]
    Ok,
    #[sea_orm(string_value = "error")]
    Error,
}

impl OperationStatus {
    /// The lower-case name used in JSON and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "async_operation")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub status: OperationStatus,
    pub provider: String,
    /// The signed-in user, once `ok`.
    pub user_id: Option<Uuid>,
    /// Stable machine-readable reason, once `error`.
    pub error_code: Option<String>,
    /// A sentence for the person, once `error`.
    pub error_message: Option<String>,
    /// SHA-256 (hex) of the browser key (or, for `native`, the poll secret) that may
    /// poll and redeem this operation.
    pub redeemer_hash: String,
    /// `browser` (callback route) or `native` (token exchange by an app).
    pub kind: String,
    /// Validated same-site path to land on after success.
    pub next_path: Option<String>,
    /// For an explicit "link another provider": the signed-in user to link to.
    pub link_user_id: Option<Uuid>,
    /// For an explicit link: the session that started it. The link completes, and
    /// its result is redeemed, only while that session is live.
    pub link_session_id: Option<Uuid>,
    pub redeemed_at: Option<DateTimeUtc>,
    /// When a worker sent the token request for this operation's code. Set while
    /// no token response is stored, a re-run cannot know whether the code was spent.
    pub exchange_started_at: Option<DateTimeUtc>,
    /// The provider's token response, sealed (AES-GCM), from its arrival until the
    /// operation finishes: a re-run resumes from it instead of presenting the code again.
    #[sea_orm(column_type = "Text", nullable)]
    pub token_response: Option<String>,
    /// SHA-256 (hex) of the `state` a browser callback claimed; unique, so one state
    /// makes one operation however often its callback arrives. `None` for others.
    pub state_hash: Option<String>,
    /// The client address that started it: the IPv4 address, or the IPv6 /64
    /// (`2001:db8:1:2::/64`). Counts pending operations per address, whatever
    /// cookies the client keeps. `None` without an address.
    pub client_key: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::user_profile::Entity",
        from = "Column::UserId",
        to = "super::user_profile::Column::Id",
        on_delete = "SetNull"
    )]
    UserProfile,
}

impl Related<super::user_profile::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::UserProfile.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
