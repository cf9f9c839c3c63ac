use sea_orm_migration::{prelude::*, schema::*};

use super::m20250101_000001_create_user_profile::UserProfile;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AsyncOperation::Table)
                    .if_not_exists()
                    .col(uuid(AsyncOperation::Id).primary_key())
                    .col(string_len(AsyncOperation::Status, 16))
                    .col(string_len(AsyncOperation::Provider, 64))
                    .col(uuid_null(AsyncOperation::UserId))
                    .col(string_len_null(AsyncOperation::ErrorCode, 64))
                    .col(text_null(AsyncOperation::ErrorMessage))
                    .col(string_len(AsyncOperation::RedeemerHash, 64))
                    .col(text_null(AsyncOperation::NextPath))
                    .col(timestamp_with_time_zone_null(AsyncOperation::RedeemedAt))
                    .col(timestamp_with_time_zone(AsyncOperation::CreatedAt))
                    .col(timestamp_with_time_zone(AsyncOperation::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_async_operation_user")
                            .from(AsyncOperation::Table, AsyncOperation::UserId)
                            .to(UserProfile::Table, UserProfile::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        // The status route finds "this browser's latest operation".
        manager
            .create_index(
                Index::create()
                    .name("idx_async_operation_redeemer")
                    .table(AsyncOperation::Table)
                    .col(AsyncOperation::RedeemerHash)
                    .col(AsyncOperation::CreatedAt)
                    .to_owned(),
            )
            .await?;
        // The timeout sweep finds old pending operations.
        manager
            .create_index(
                Index::create()
                    .name("idx_async_operation_status_created")
                    .table(AsyncOperation::Table)
                    .col(AsyncOperation::Status)
                    .col(AsyncOperation::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AsyncOperation::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AsyncOperation {
    Table,
    Id,
    Status,
    Provider,
    UserId,
    ErrorCode,
    ErrorMessage,
    RedeemerHash,
    NextPath,
    RedeemedAt,
    CreatedAt,
    UpdatedAt,
}
