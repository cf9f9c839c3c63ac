//! A password signs in exactly one user: a unique index on `lower(email)` over the
//! `user_profile` rows that have a password. Social users without a password may
//! still share an (unverified) address, as the identity rules require. The
//! registration's check-then-insert raced under READ COMMITTED; the index makes the
//! second insert fail, and the registration answers 409 `email_in_use`.
//!
//! Existing duplicates stop the migration with a message naming the users, since
//! which one keeps the password is the operator's call.

use sea_orm_migration::{
    prelude::*,
    sea_orm::{ConnectionTrait, DatabaseBackend, Statement},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "idx_user_profile_password_email";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = manager.get_database_backend();
        let duplicates = find_duplicates(db, backend).await?;
        if !duplicates.is_empty() {
            return Err(DbErr::Migration(format!(
                "{INDEX}: several users sign in with a password as the same email, so a \
                 password sign-in could pick any of them. Keep the password of one user per \
                 email and remove the others' (UPDATE user_profile SET password_hash = NULL \
                 WHERE id IN (...)), then start again. Users sharing an email: {}",
                duplicates.join("; ")
            )));
        }
        db.execute_unprepared(&format!(
            "CREATE UNIQUE INDEX {INDEX} ON user_profile (lower(email)) \
             WHERE password_hash IS NOT NULL"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!("DROP INDEX IF EXISTS {INDEX}"))
            .await?;
        Ok(())
    }
}

/// The ids of the password users of each email that has several, one group per
/// email (`"a, b"`); emails themselves stay out of the message and the log.
async fn find_duplicates(
    db: &SchemaManagerConnection<'_>,
    backend: DatabaseBackend,
) -> Result<Vec<String>, DbErr> {
    // SQLite keeps UUIDs as 16-byte blobs; PostgreSQL has a uuid type.
    let id = match backend {
        DatabaseBackend::Sqlite => "CASE typeof(id) WHEN 'blob' THEN lower(hex(id)) ELSE id END",
        _ => "CAST(id AS TEXT)",
    };
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            format!(
                "SELECT {id} AS id, lower(email) AS email FROM user_profile \
                 WHERE password_hash IS NOT NULL AND lower(email) IN ( \
                   SELECT lower(email) FROM user_profile WHERE password_hash IS NOT NULL \
                   GROUP BY lower(email) HAVING COUNT(*) > 1) \
                 ORDER BY lower(email), created_at"
            ),
        ))
        .await?;
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for row in rows {
        let email: String = row.try_get("", "email")?;
        let id = as_uuid(&row.try_get::<String>("", "id")?);
        match groups.last_mut() {
            Some((last, ids)) if *last == email => ids.push(id),
            _ => groups.push((email, vec![id])),
        }
    }
    Ok(groups.into_iter().map(|(_, ids)| ids.join(", ")).collect())
}

/// `0123…` (32 hex digits, SQLite) as `01234567-89ab-…`; anything else unchanged.
fn as_uuid(id: &str) -> String {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return id.to_owned();
    }
    format!(
        "{}-{}-{}-{}-{}",
        &id[..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..]
    )
}
