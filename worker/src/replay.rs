//! Native sign-in's replay guard: an ID token from an app's SDK is accepted for one
//! operation only. The nonce is the app's own choice, so without this a token that
//! leaked (a log, a compromised device) could sign someone in again until it expires.

use chrono::{DateTime, Utc};
use entity::used_id_token::{self, Column, Entity as UsedIdToken};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::crypto;

/// How long a spent token is remembered when its expiry is unknown; ID tokens
/// older than this fail the `iat` check anyway.
pub const REMEMBER: chrono::Duration = chrono::Duration::hours(24);

/// What identifies a token for the guard: the SHA-256 of what its issuer signed
/// (`header.payload`). The signature is left out because one signed token has many
/// encodings that all verify: the last base64url character of an RS256 signature
/// carries unused bits the decoder ignores, and ECDSA accepts `(r, n − s)` as well
/// as `(r, s)`.
fn signed_part_hash(id_token: &str) -> String {
    let signed = id_token
        .rsplit_once('.')
        .map_or(id_token, |(signed, _signature)| signed);
    crypto::sha256_hex(signed)
}

/// Records `id_token` as spent by `operation_id`. True when it is this operation's
/// (first use, or a re-run of the same job); false when another operation spent it.
pub async fn claim(
    db: &impl ConnectionTrait,
    id_token: &str,
    operation_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let hash = signed_part_hash(id_token);
    let row = used_id_token::ActiveModel {
        token_hash: Set(hash.clone()),
        operation_id: Set(operation_id),
        expires_at: Set(expires_at),
    };
    UsedIdToken::insert(row)
        .on_conflict_do_nothing()
        .exec(db)
        .await?;
    let owner = UsedIdToken::find_by_id(hash).one(db).await?;
    Ok(owner.is_some_and(|row| row.operation_id == operation_id))
}

/// Forgets tokens past their expiry; returns how many.
pub async fn forget_expired(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let result = UsedIdToken::delete_many()
        .filter(Column::ExpiresAt.lt(Utc::now()))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_of_one_signed_token_share_a_key_and_other_tokens_do_not() {
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        let same_signed_part = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJf";
        let other_payload = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIyIn0.c2lnbmF0dXJl";
        assert_eq!(signed_part_hash(token), signed_part_hash(same_signed_part));
        assert_ne!(signed_part_hash(token), signed_part_hash(other_payload));
    }
}
