//! Provider tokens for the application: `access_token` returns a user's current
//! access token at a provider, refreshing it with the stored refresh token when it
//! has expired. Tokens stay encrypted at rest and never reach the browser.

use chrono::Utc;
use entity::social_account::{self, Entity as SocialAccount};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter,
};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::{WorkerState, providers::ProviderError};

/// A token is treated as expired this long before it really is.
const EXPIRY_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the user has no account at provider `{0}`")]
    NotLinked(String),
    #[error("provider `{0}` is not configured")]
    UnknownProvider(String),
    #[error("the access token expired and there is no refresh token; the user must sign in again")]
    Expired,
    #[error(
        "the stored token cannot be decrypted (was secret_key rotated without previous_secret_keys?)"
    )]
    Undecryptable,
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// The user's access token at `provider`, refreshed first when it has expired.
pub async fn access_token(
    state: &WorkerState,
    user_id: Uuid,
    provider: &str,
) -> Result<SecretString, TokenError> {
    let account = SocialAccount::find()
        .filter(social_account::Column::UserId.eq(user_id))
        .filter(social_account::Column::Provider.eq(provider))
        .one(&state.db)
        .await?
        .ok_or_else(|| TokenError::NotLinked(provider.to_owned()))?;
    let fresh = account
        .token_expires_at
        .is_none_or(|at| at - EXPIRY_MARGIN > Utc::now());
    if let (true, Some(sealed)) = (fresh, &account.access_token_enc) {
        return open(state, sealed);
    }
    let refresh_token = match &account.refresh_token_enc {
        Some(sealed) => open(state, sealed)?,
        None => return Err(TokenError::Expired),
    };
    let client = state
        .providers
        .get(provider)
        .ok_or_else(|| TokenError::UnknownProvider(provider.to_owned()))?;
    let tokens = client.refresh(refresh_token.expose_secret()).await?;
    let seal = |t: &SecretString| state.keys.tokens.seal(t.expose_secret().as_bytes());
    let mut active = account.clone().into_active_model();
    active.access_token_enc = Set(Some(seal(&tokens.access_token)));
    active.token_expires_at = Set(tokens
        .expires_in
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .map(|d| Utc::now() + d));
    // Providers that rotate refresh tokens send a new one; keep the old one otherwise.
    active.refresh_token_enc = Set(Some(
        tokens
            .refresh_token
            .as_ref()
            .map_or_else(|| seal(&refresh_token), seal),
    ));
    active.updated_at = Set(Utc::now());
    active.update(&state.db).await?;
    tracing::info!(user.id = %user_id, provider, "provider access token refreshed");
    Ok(tokens.access_token)
}

fn open(state: &WorkerState, sealed: &str) -> Result<SecretString, TokenError> {
    let bytes = state
        .keys
        .open_token(sealed)
        .ok_or(TokenError::Undecryptable)?;
    String::from_utf8(bytes)
        .map(SecretString::from)
        .map_err(|_| TokenError::Undecryptable)
}
