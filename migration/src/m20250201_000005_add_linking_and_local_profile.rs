//! Explicit account linking records which user an operation links to; profile
//! fields a user edits locally are remembered so sign-ins stop overwriting them.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite allows a single ADD COLUMN per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(AsyncOperation::Table)
                    .add_column(uuid_null(AsyncOperation::LinkUserId))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(UserProfile::Table)
                    .add_column(string_len(UserProfile::LockedFields, 255).default(""))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(UserProfile::Table)
                    .drop_column(UserProfile::LockedFields)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AsyncOperation::Table)
                    .drop_column(AsyncOperation::LinkUserId)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum AsyncOperation {
    Table,
    LinkUserId,
}

#[derive(DeriveIden)]
enum UserProfile {
    Table,
    LockedFields,
}
