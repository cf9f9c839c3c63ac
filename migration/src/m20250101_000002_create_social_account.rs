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
                    .table(SocialAccount::Table)
                    .if_not_exists()
                    .col(uuid(SocialAccount::Id).primary_key())
                    .col(uuid(SocialAccount::UserId))
                    .col(string_len(SocialAccount::Provider, 64))
                    .col(string_len(SocialAccount::Subject, 255))
                    .col(string_null(SocialAccount::Email))
                    .col(boolean(SocialAccount::EmailVerified).default(false))
                    .col(text_null(SocialAccount::AccessTokenEnc))
                    .col(text_null(SocialAccount::RefreshTokenEnc))
                    .col(timestamp_with_time_zone_null(SocialAccount::TokenExpiresAt))
                    .col(timestamp_with_time_zone(SocialAccount::CreatedAt))
                    .col(timestamp_with_time_zone(SocialAccount::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_social_account_user")
                            .from(SocialAccount::Table, SocialAccount::UserId)
                            .to(UserProfile::Table, UserProfile::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_social_account_provider_subject")
                    .table(SocialAccount::Table)
                    .col(SocialAccount::Provider)
                    .col(SocialAccount::Subject)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_social_account_user")
                    .table(SocialAccount::Table)
                    .col(SocialAccount::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SocialAccount::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum SocialAccount {
    Table,
    Id,
    UserId,
    Provider,
    Subject,
    Email,
    EmailVerified,
    AccessTokenEnc,
    RefreshTokenEnc,
    TokenExpiresAt,
    CreatedAt,
    UpdatedAt,
}
