//! Each operation remembers the client address that started it
//! (`async_operation.client_key`: the IPv4 address, or the IPv6 /64), so the pending
//! cap per address can be counted from the database, whatever browser key or poll
//! secret the client brings. Indexed with `status` for that count. Operations from
//! before this migration, and from clients without an address, leave it empty.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AsyncOperation::Table)
                    .add_column(string_len_null(AsyncOperation::ClientKey, 64))
                    .to_owned(),
            )
            .await?;
        // `client_key = ? AND status = 'pending'` is a range of this index: the
        // count reads only that client's pending rows, never the table.
        manager
            .create_index(
                Index::create()
                    .name("idx_async_operation_client_key")
                    .table(AsyncOperation::Table)
                    .col(AsyncOperation::ClientKey)
                    .col(AsyncOperation::Status)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_async_operation_client_key")
                    .table(AsyncOperation::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AsyncOperation::Table)
                    .drop_column(AsyncOperation::ClientKey)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum AsyncOperation {
    Table,
    ClientKey,
    Status,
}
