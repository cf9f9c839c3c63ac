//! The audit log: one row per security-relevant event (sign-in started, succeeded or
//! failed, linked, unlinked, password failure, session revoked, refresh-token reuse),
//! with the client's IP address and user agent. Users read their own; old rows are
//! deleted after `audit.retention`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuthEvent::Table)
                    .if_not_exists()
                    .col(uuid(AuthEvent::Id).primary_key())
                    .col(uuid_null(AuthEvent::UserId))
                    .col(string_len(AuthEvent::Kind, 32))
                    .col(string_len_null(AuthEvent::Provider, 64))
                    .col(string_len_null(AuthEvent::Code, 64))
                    .col(uuid_null(AuthEvent::OperationId))
                    .col(uuid_null(AuthEvent::SessionId))
                    .col(string_len_null(AuthEvent::Ip, 64))
                    .col(string_len_null(AuthEvent::UserAgent, 512))
                    .col(timestamp_with_time_zone(AuthEvent::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_auth_event_user_created")
                    .table(AuthEvent::Table)
                    .col(AuthEvent::UserId)
                    .col(AuthEvent::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_auth_event_created")
                    .table(AuthEvent::Table)
                    .col(AuthEvent::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuthEvent::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AuthEvent {
    Table,
    Id,
    UserId,
    Kind,
    Provider,
    Code,
    OperationId,
    SessionId,
    Ip,
    UserAgent,
    CreatedAt,
}
