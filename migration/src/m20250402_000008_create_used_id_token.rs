//! ID tokens apps sent for native sign-in, by hash, so a leaked one cannot be
//! replayed while it is still valid. Rows are deleted once past `expires_at`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsedIdToken::Table)
                    .if_not_exists()
                    .col(string_len(UsedIdToken::TokenHash, 64).primary_key())
                    .col(uuid(UsedIdToken::OperationId))
                    .col(timestamp_with_time_zone(UsedIdToken::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_used_id_token_expires")
                    .table(UsedIdToken::Table)
                    .col(UsedIdToken::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UsedIdToken::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum UsedIdToken {
    Table,
    TokenHash,
    OperationId,
    ExpiresAt,
}
