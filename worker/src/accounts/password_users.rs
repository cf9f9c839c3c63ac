//! Password users: registration, the password sign-in's lookup and setting a
//! password. An email is the password login of one user only (a unique index on
//! `lower(email)` where a password is set); its violation is `EmailInUse` here,
//! next to the queries.

use chrono::Utc;
use entity::user_profile::{self, Entity as UserProfile};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, TransactionTrait,
};
use uuid::Uuid;

/// A new password account, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    Created(user_profile::Model),
    /// Some user already has this email (sign in with that provider and set a
    /// password from the account instead).
    EmailInUse,
}

/// Creates a password user. The email is not verified by registration, so social
/// sign-ins never link to this user through it. A concurrent registration of the
/// same email (PostgreSQL's READ COMMITTED lets both pass the check) meets the unique
/// index on the password users' emails: `EmailInUse` as well.
pub async fn register_password_user(
    db: &DatabaseConnection,
    email: &str,
    password_hash: String,
    first_name: Option<String>,
    last_name: Option<String>,
) -> Result<Registered, DbErr> {
    let txn = db.begin_with_options(crate::writer::immediate()).await?;
    let email = email.trim().to_lowercase();
    if UserProfile::find()
        .filter(user_profile::Column::Email.eq(email.as_str()))
        .one(&txn)
        .await?
        .is_some()
    {
        return Ok(Registered::EmailInUse);
    }
    let now = Utc::now();
    let display_name = match (&first_name, &last_name) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (Some(f), None) => Some(f.clone()),
        _ => None,
    };
    let user = user_profile::ActiveModel {
        id: Set(Uuid::new_v4()),
        email: Set(Some(email)),
        email_verified: Set(false),
        first_name: Set(first_name),
        last_name: Set(last_name),
        display_name: Set(display_name),
        avatar_url: Set(None),
        locked_fields: Set(String::new()),
        password_hash: Set(Some(password_hash)),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await;
    let user = match user {
        Err(error) if is_password_email_taken(&error) => return Ok(Registered::EmailInUse),
        other => other?,
    };
    txn.commit().await?;
    Ok(Registered::Created(user))
}

/// The unique index on the password users' emails refused a row: another user
/// already signs in with a password as this email.
fn is_password_email_taken(error: &DbErr) -> bool {
    crate::writer::is_unique_violation(error)
}

/// How setting a password ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordSet {
    Set,
    /// Another user already signs in with a password as this user's email (two
    /// social users may share an unverified address; only one may add a password).
    EmailInUse,
}

/// The user who signs in with a password as `email`, if any.
pub async fn find_password_user(
    db: &DatabaseConnection,
    email: &str,
) -> Result<Option<user_profile::Model>, DbErr> {
    UserProfile::find()
        .filter(user_profile::Column::Email.eq(email.trim().to_lowercase()))
        .filter(user_profile::Column::PasswordHash.is_not_null())
        .one(db)
        .await
}

/// Sets (or replaces) the user's password hash.
pub async fn set_password(
    db: &DatabaseConnection,
    user_id: Uuid,
    password_hash: String,
) -> Result<PasswordSet, DbErr> {
    let updated = UserProfile::update_many()
        .col_expr(
            user_profile::Column::PasswordHash,
            sea_orm::sea_query::Expr::value(password_hash),
        )
        .col_expr(
            user_profile::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(Utc::now()),
        )
        .filter(user_profile::Column::Id.eq(user_id))
        .exec(db)
        .await;
    match updated {
        Err(error) if is_password_email_taken(&error) => Ok(PasswordSet::EmailInUse),
        Err(error) => Err(error),
        Ok(_) => Ok(PasswordSet::Set),
    }
}

/// A cheap sanity check of an email address (one `@`, a dotted domain, no spaces or
/// control characters, at most 254 bytes). Real verification is the provider's job.
pub fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.chars().count() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
}
