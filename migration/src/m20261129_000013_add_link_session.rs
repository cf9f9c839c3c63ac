//! An explicit link remembers the session that started it
//! (`async_operation.link_session_id`): the worker links only while that session is
//! still live, and the result is redeemed only then, so a link started with a
//! stolen session that its owner has since revoked never completes.

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
                    .add_column(uuid_null(AsyncOperation::LinkSessionId))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AsyncOperation::Table)
                    .drop_column(AsyncOperation::LinkSessionId)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum AsyncOperation {
    Table,
    LinkSessionId,
}
