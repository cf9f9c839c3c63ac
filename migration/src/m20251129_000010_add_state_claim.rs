//! The callback claims its `state` on the server: `async_operation.state_hash`
//! (SHA-256 of the `state` the browser came back with) is unique, so a
//! double-submitted or re-posted callback finds the operation the first one made
//! instead of queueing a second exchange of the same code. Operations that did not
//! come from a browser callback leave it empty.

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
                    .add_column(string_len_null(AsyncOperation::StateHash, 64))
                    .to_owned(),
            )
            .await?;
        // NULLs never collide, in SQLite and PostgreSQL alike.
        manager
            .create_index(
                Index::create()
                    .name("idx_async_operation_state_hash")
                    .table(AsyncOperation::Table)
                    .col(AsyncOperation::StateHash)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_async_operation_state_hash")
                    .table(AsyncOperation::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AsyncOperation::Table)
                    .drop_column(AsyncOperation::StateHash)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum AsyncOperation {
    Table,
    StateHash,
}
