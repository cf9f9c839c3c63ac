//! How far a sign-in job got with the provider, so a re-run after a worker crash
//! never presents a code twice: when the token request was sent, and the token
//! response (sealed) once it arrived. Both are cleared when the operation finishes.

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
                    .add_column(timestamp_with_time_zone_null(
                        AsyncOperation::ExchangeStartedAt,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AsyncOperation::Table)
                    .add_column(text_null(AsyncOperation::TokenResponse))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            AsyncOperation::TokenResponse,
            AsyncOperation::ExchangeStartedAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AsyncOperation::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum AsyncOperation {
    Table,
    ExchangeStartedAt,
    TokenResponse,
}
