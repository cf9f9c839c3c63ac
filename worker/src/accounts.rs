//! Who a sign-in is: in one transaction, find the user by (provider, subject), else
//! link through an email both sides mark verified, else create one; refresh the
//! profile, store the provider tokens encrypted, and mark the operation `ok`.

use chrono::Utc;
use entity::{
    social_account::{self, Entity as SocialAccount},
    user_profile::{self, Entity as UserProfile},
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction,
    DbErr, EntityTrait, IntoActiveModel, QueryFilter, SqliteTransactionMode, TransactionOptions,
    TransactionTrait, TryInsertResult,
};
use uuid::Uuid;

use crate::{operations, providers::Profile};

/// Provider tokens, already encrypted for storage.
#[derive(Debug, Default, Clone)]
pub struct SealedTokens {
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_at: Option<chrono::DateTime<Utc>>,
}

/// How a sign-in ended in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The operation is now `ok` for this user.
    SignedIn { user_id: Uuid },
    /// The operation had already left `pending` (a second run, or it timed out):
    /// nothing was written.
    AlreadyFinished,
}

/// Runs the whole identity step for `operation_id` in one transaction. A concurrent
/// run that links the same account first makes this one re-read and reuse it.
pub async fn sign_in(
    db: &DatabaseConnection,
    operation_id: Uuid,
    provider: &str,
    profile: &Profile,
    tokens: &SealedTokens,
) -> Result<Outcome, DbErr> {
    // Two tries: the second sees the row a concurrent run inserted.
    for _ in 0..2 {
        let txn = db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await?;
        let Some(user_id) = find_link_or_create(&txn, provider, profile, tokens).await? else {
            txn.rollback().await?;
            continue;
        };
        if !operations::mark_ok(&txn, operation_id, user_id).await? {
            txn.rollback().await?;
            return Ok(Outcome::AlreadyFinished);
        }
        txn.commit().await?;
        return Ok(Outcome::SignedIn { user_id });
    }
    Err(DbErr::Custom("social account kept conflicting".to_owned()))
}

/// `None` when a concurrent transaction inserted the same (provider, subject).
async fn find_link_or_create(
    txn: &DatabaseTransaction,
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
    Ok(match inserted {
        TryInsertResult::Inserted(_) => Some(user_id),
        // Another run linked it between our read and our insert.
        TryInsertResult::Conflicted | TryInsertResult::Empty => None,
    })
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
    txn: &DatabaseTransaction,
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

async fn create_user(txn: &DatabaseTransaction, profile: &Profile) -> Result<Uuid, DbErr> {
    let now = Utc::now();
    let user = user_profile::ActiveModel {
        id: Set(Uuid::new_v4()),
        email: Set(profile.email.clone()),
        email_verified: Set(profile.email.is_some() && profile.email_verified),
        first_name: Set(profile.first_name.clone()),
        last_name: Set(profile.last_name.clone()),
        display_name: Set(profile.display_name.clone()),
        avatar_url: Set(profile.avatar_url.clone()),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Ok(user.insert(txn).await?.id)
}

/// Fills the user's profile from the provider: names and avatar the provider gives
/// replace the stored ones; an email is adopted when the user has none or it is the
/// same address now verified.
async fn refresh_profile(
    txn: &DatabaseTransaction,
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
                      new: &Option<String>| {
        if new.is_some() && new != current {
            *field = Set(new.clone());
            changed = true;
        }
    };
    update(
        &mut active.first_name,
        &user.first_name,
        &profile.first_name,
    );
    update(&mut active.last_name, &user.last_name, &profile.last_name);
    update(
        &mut active.display_name,
        &user.display_name,
        &profile.display_name,
    );
    update(
        &mut active.avatar_url,
        &user.avatar_url,
        &profile.avatar_url,
    );
    if user.email.is_none() && profile.email.is_some() {
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
