//! Who a sign-in is: in one transaction, find the user by (provider, subject), else
//! link through an email both sides mark verified, else create one; refresh the
//! profile (except fields the user set locally), store the provider tokens
//! encrypted, and mark the operation `ok`. An explicit link attaches the provider
//! account to the signed-in user instead.

use chrono::Utc;
use entity::{
    social_account::{self, Entity as SocialAccount},
    user_profile::{self, Entity as UserProfile},
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, IntoActiveModel, QueryFilter, TransactionTrait, TryInsertResult,
};
use uuid::Uuid;

use crate::{linking::LinkTo, operations, providers::Profile, writer::WriteConn};

mod password_users;
pub use password_users::{
    PasswordSet, Registered, find_password_user, is_plausible_email, register_password_user,
    set_password,
};

/// Provider tokens, already encrypted for storage.
#[derive(Debug, Default, Clone)]
pub struct SealedTokens {
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_at: Option<chrono::DateTime<Utc>>,
}

/// How a sign-in ended in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The operation is now `ok` for this user; `finished` is its row as committed.
    SignedIn {
        user_id: Uuid,
        finished: Box<entity::async_operation::Model>,
    },
    /// The operation had already left `pending` (a second run, or it timed out):
    /// nothing was written.
    AlreadyFinished,
    /// An explicit link found the provider account linked to another user.
    AccountInUse,
    /// The session that asked for an explicit link has ended: nothing was linked.
    LinkSessionEnded,
}

/// What an identity step is for: a plain sign-in, or a link asked for by a
/// session that must still be live (at most `max_lifetime` old).
#[derive(Debug, Clone, Copy)]
pub enum Intent {
    SignIn,
    Link {
        to: LinkTo,
        max_lifetime: std::time::Duration,
    },
}

/// Runs the whole identity step for `operation_id` in one transaction. A concurrent
/// run that links the same account first makes this one re-read and reuse it.
pub async fn sign_in(
    db: &WriteConn<'_>,
    operation_id: Uuid,
    provider: &str,
    profile: &Profile,
    tokens: &SealedTokens,
    intent: Intent,
) -> Result<Outcome, DbErr> {
    // Two tries: the second sees the row a concurrent run inserted.
    for _ in 0..2 {
        let txn = db.begin().await?;
        let found = match intent {
            // Read inside the transaction: a revocation committed before it counts.
            Intent::Link { to, max_lifetime } => {
                if !to.session_is_live(&txn, max_lifetime).await? {
                    txn.rollback().await?;
                    return Ok(Outcome::LinkSessionEnded);
                }
                link_to_user(&txn, to.user_id, provider, profile, tokens).await?
            }
            Intent::SignIn => find_link_or_create(&txn, provider, profile, tokens)
                .await?
                .map(Ok),
        };
        let user_id = match found {
            None => {
                // Another run inserted (provider, subject) between our read and our
                // insert: read again, and find it.
                tracing::info!(
                    provider,
                    "identity conflict with a concurrent run; reading again"
                );
                metrics::counter!("signin_identity_conflicts_total").increment(1);
                txn.rollback().await?;
                continue;
            }
            Some(Err(outcome)) => {
                txn.rollback().await?;
                return Ok(outcome);
            }
            Some(Ok(user_id)) => user_id,
        };
        let Some(finished) = operations::mark_ok(&txn, operation_id, user_id).await? else {
            txn.rollback().await?;
            return Ok(Outcome::AlreadyFinished);
        };
        txn.commit().await?;
        return Ok(Outcome::SignedIn {
            user_id,
            finished: Box::new(finished),
        });
    }
    Err(DbErr::Custom("social account kept conflicting".to_owned()))
}

/// `None` when a concurrent transaction inserted the same (provider, subject).
async fn find_link_or_create(
    txn: &impl ConnectionTrait,
    provider: &str,
    profile: &Profile,
    tokens: &SealedTokens,
) -> Result<Option<Uuid>, DbErr> {
    let now = Utc::now();
    if let Some(account) = find_account(txn, provider, &profile.subject).await? {
        let user_id = account.user_id;
        let mut account = account.into_active_model();
        account.email = Set(profile.email.clone());
        account.email_verified = Set(profile.email_verified);
        set_tokens(&mut account, tokens);
        account.updated_at = Set(now);
        account.update(txn).await?;
        refresh_profile(txn, user_id, profile).await?;
        return Ok(Some(user_id));
    }
    let user_id = match find_user_by_verified_email(txn, profile).await? {
        Some(user) => {
            refresh_profile(txn, user.id, profile).await?;
            user.id
        }
        None => create_user(txn, profile).await?,
    };
    Ok(insert_account(txn, user_id, provider, profile, tokens)
        .await?
        .then_some(user_id))
}

/// Attaches (provider, subject) to `user_id`: `Ok` when it is now linked to them,
/// `Err(AccountInUse)` when it belongs to someone else, `None` on a concurrent insert.
async fn link_to_user(
    txn: &impl ConnectionTrait,
    user_id: Uuid,
    provider: &str,
    profile: &Profile,
    tokens: &SealedTokens,
) -> Result<Option<Result<Uuid, Outcome>>, DbErr> {
    match find_account(txn, provider, &profile.subject).await? {
        Some(account) if account.user_id != user_id => Ok(Some(Err(Outcome::AccountInUse))),
        Some(account) => {
            let mut account = account.into_active_model();
            set_tokens(&mut account, tokens);
            account.updated_at = Set(Utc::now());
            account.update(txn).await?;
            Ok(Some(Ok(user_id)))
        }
        None => {
            if UserProfile::find_by_id(user_id).one(txn).await?.is_none() {
                return Err(DbErr::RecordNotFound(format!("user_profile {user_id}")));
            }
            refresh_profile(txn, user_id, profile).await?;
            Ok(insert_account(txn, user_id, provider, profile, tokens)
                .await?
                .then_some(Ok(user_id)))
        }
    }
}

/// Inserts the account; false when a concurrent run inserted (provider, subject) first.
async fn insert_account(
    txn: &impl ConnectionTrait,
    user_id: Uuid,
    provider: &str,
    profile: &Profile,
    tokens: &SealedTokens,
) -> Result<bool, DbErr> {
    let now = Utc::now();
    let mut account = social_account::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(user_id),
        provider: Set(provider.to_owned()),
        subject: Set(profile.subject.clone()),
        email: Set(profile.email.clone()),
        email_verified: Set(profile.email_verified),
        access_token_enc: Set(None),
        refresh_token_enc: Set(None),
        token_expires_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    set_tokens(&mut account, tokens);
    let inserted = SocialAccount::insert(account)
        .on_conflict_do_nothing_on([
            social_account::Column::Provider,
            social_account::Column::Subject,
        ])
        .exec(txn)
        .await?;
    // Conflicted: another run linked it between our read and our insert.
    Ok(matches!(inserted, TryInsertResult::Inserted(_)))
}

/// The account of (provider, subject), if linked.
pub async fn find_account(
    db: &impl sea_orm::ConnectionTrait,
    provider: &str,
    subject: &str,
) -> Result<Option<social_account::Model>, DbErr> {
    SocialAccount::find()
        .filter(social_account::Column::Provider.eq(provider))
        .filter(social_account::Column::Subject.eq(subject))
        .one(db)
        .await
}

/// Only a verified address on both sides links accounts: linking on an unverified
/// one would let anyone who registers the address elsewhere take the account over.
async fn find_user_by_verified_email(
    txn: &impl ConnectionTrait,
    profile: &Profile,
) -> Result<Option<user_profile::Model>, DbErr> {
    match (&profile.email, profile.email_verified) {
        (Some(email), true) => {
            UserProfile::find()
                .filter(user_profile::Column::Email.eq(email.as_str()))
                .filter(user_profile::Column::EmailVerified.eq(true))
                .one(txn)
                .await
        }
        _ => Ok(None),
    }
}

async fn create_user(txn: &impl ConnectionTrait, profile: &Profile) -> Result<Uuid, DbErr> {
    let now = Utc::now();
    let user = user_profile::ActiveModel {
        id: Set(Uuid::new_v4()),
        email: Set(profile.email.clone()),
        email_verified: Set(profile.email.is_some() && profile.email_verified),
        first_name: Set(profile.first_name.clone()),
        last_name: Set(profile.last_name.clone()),
        display_name: Set(profile.display_name.clone()),
        avatar_url: Set(profile.avatar_url.clone()),
        locked_fields: Set(String::new()),
        password_hash: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Ok(user.insert(txn).await?.id)
}

/// Fills the user's profile from the provider: names and avatar the provider gives
/// replace the stored ones, except fields the user set locally; an email is adopted
/// when the user has none (and no password: a password user's email is their sign-in
/// name, unique among password users) or it is the same address now verified.
async fn refresh_profile(
    txn: &impl ConnectionTrait,
    user_id: Uuid,
    profile: &Profile,
) -> Result<(), DbErr> {
    let Some(user) = UserProfile::find_by_id(user_id).one(txn).await? else {
        return Err(DbErr::RecordNotFound(format!("user_profile {user_id}")));
    };
    let mut active = user.clone().into_active_model();
    let mut changed = false;
    let mut update = |field: &mut sea_orm::ActiveValue<Option<String>>,
                      current: &Option<String>,
                      new: &Option<String>,
                      name: &str| {
        if new.is_some() && new != current && !user.is_locked(name) {
            *field = Set(new.clone());
            changed = true;
        }
    };
    update(
        &mut active.first_name,
        &user.first_name,
        &profile.first_name,
        "first_name",
    );
    update(
        &mut active.last_name,
        &user.last_name,
        &profile.last_name,
        "last_name",
    );
    update(
        &mut active.display_name,
        &user.display_name,
        &profile.display_name,
        "display_name",
    );
    update(
        &mut active.avatar_url,
        &user.avatar_url,
        &profile.avatar_url,
        "avatar_url",
    );
    if user.email.is_none() && profile.email.is_some() && user.password_hash.is_none() {
        active.email = Set(profile.email.clone());
        active.email_verified = Set(profile.email_verified);
        changed = true;
    } else if user.email == profile.email && profile.email_verified && !user.email_verified {
        active.email_verified = Set(true);
        changed = true;
    }
    if changed {
        active.updated_at = Set(Utc::now());
        active.update(txn).await?;
    }
    Ok(())
}

fn set_tokens(account: &mut social_account::ActiveModel, tokens: &SealedTokens) {
    if tokens.access_token.is_some() {
        account.access_token_enc = Set(tokens.access_token.clone());
        account.token_expires_at = Set(tokens.expires_at);
    }
    // Providers often send a refresh token only on the first consent; keep the old one.
    if tokens.refresh_token.is_some() {
        account.refresh_token_enc = Set(tokens.refresh_token.clone());
    }
}

/// How an unlink request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlinked {
    Removed,
    /// The user has no account at that provider.
    NotLinked,
    /// It is the user's last way to sign in.
    LastMethod,
}

/// Removes the user's account at `provider` unless it is their last way to sign in.
/// The user row is locked (PostgreSQL) or the write lock taken (SQLite) first, so two
/// concurrent unlinks cannot remove both of the last two accounts.
pub async fn unlink(
    db: &DatabaseConnection,
    user_id: Uuid,
    provider: &str,
) -> Result<Unlinked, DbErr> {
    use sea_orm::{ConnectionTrait, DatabaseBackend, PaginatorTrait, QuerySelect};
    let txn = db.begin_with_options(crate::writer::immediate()).await?;
    let mut user = UserProfile::find_by_id(user_id);
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        user = user.lock_exclusive();
    }
    let Some(user) = user.one(&txn).await? else {
        return Ok(Unlinked::NotLinked);
    };
    let Some(account) = find_account_of_user(&txn, user_id, provider).await? else {
        return Ok(Unlinked::NotLinked);
    };
    let methods = SocialAccount::find()
        .filter(social_account::Column::UserId.eq(user_id))
        .count(&txn)
        .await?;
    // A password is a way to sign in too.
    if methods + u64::from(user.password_hash.is_some()) <= 1 {
        return Ok(Unlinked::LastMethod);
    }
    SocialAccount::delete_by_id(account.id).exec(&txn).await?;
    txn.commit().await?;
    Ok(Unlinked::Removed)
}

async fn find_account_of_user(
    db: &impl sea_orm::ConnectionTrait,
    user_id: Uuid,
    provider: &str,
) -> Result<Option<social_account::Model>, DbErr> {
    SocialAccount::find()
        .filter(social_account::Column::UserId.eq(user_id))
        .filter(social_account::Column::Provider.eq(provider))
        .one(db)
        .await
}

/// Profile fields a user may set locally.
#[derive(Debug, Default, Clone)]
pub struct ProfileEdit {
    pub first_name: Option<Option<String>>,
    pub last_name: Option<Option<String>>,
    pub display_name: Option<Option<String>>,
}

/// Sets the given fields and locks them against provider updates.
pub async fn edit_profile(
    db: &DatabaseConnection,
    user_id: Uuid,
    edit: ProfileEdit,
) -> Result<Option<user_profile::Model>, DbErr> {
    let Some(user) = UserProfile::find_by_id(user_id).one(db).await? else {
        return Ok(None);
    };
    let mut locked: Vec<String> = user
        .locked_fields
        .split(',')
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    let mut active = user.into_active_model();
    for (name, value, field) in [
        ("first_name", edit.first_name, &mut active.first_name),
        ("last_name", edit.last_name, &mut active.last_name),
        ("display_name", edit.display_name, &mut active.display_name),
    ] {
        if let Some(value) = value {
            *field = Set(value);
            if !locked.iter().any(|f| f == name) {
                locked.push(name.to_owned());
            }
        }
    }
    active.locked_fields = Set(locked.join(","));
    active.updated_at = Set(Utc::now());
    Ok(Some(active.update(db).await?))
}
