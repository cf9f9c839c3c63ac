use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UserProfile::Table)
                    .if_not_exists()
                    .col(uuid(UserProfile::Id).primary_key())
                    .col(string_null(UserProfile::Email))
                    .col(boolean(UserProfile::EmailVerified).default(false))
                    .col(string_null(UserProfile::FirstName))
                    .col(string_null(UserProfile::LastName))
                    .col(string_null(UserProfile::DisplayName))
                    .col(text_null(UserProfile::AvatarUrl))
                    .col(timestamp_with_time_zone(UserProfile::CreatedAt))
                    .col(timestamp_with_time_zone(UserProfile::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_user_profile_email")
                    .table(UserProfile::Table)
                    .col(UserProfile::Email)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(UserProfile::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum UserProfile {
    Table,
    Id,
    Email,
    EmailVerified,
    FirstName,
    LastName,
    DisplayName,
    AvatarUrl,
    CreatedAt,
    UpdatedAt,
}
