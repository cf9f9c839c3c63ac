//! The schema of social-signin as sea-orm migrations. One set serves SQLite and
//! PostgreSQL; `api` and `worker` apply it at start, and the `migration` binary can too.

pub use sea_orm_migration::prelude::*;

mod m20250101_000001_create_user_profile;
mod m20250101_000002_create_social_account;
mod m20250101_000003_create_async_operation;
mod m20250101_000004_create_session;
mod m20250201_000005_add_linking_and_local_profile;
mod m20250301_000006_add_passwords_and_api_sessions;
mod m20250401_000007_create_auth_event;
mod m20250402_000008_create_used_id_token;
mod m20251129_000009_add_exchange_progress;
mod m20251129_000010_add_state_claim;
mod m20261129_000011_add_client_key;
mod m20261129_000012_unique_password_email;
mod m20261129_000013_add_link_session;
mod m20261130_000014_jobs_ack_plan;
mod m20261130_000015_pending_index;

/// Every migration, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_create_user_profile::Migration),
            Box::new(m20250101_000002_create_social_account::Migration),
            Box::new(m20250101_000003_create_async_operation::Migration),
            Box::new(m20250101_000004_create_session::Migration),
            Box::new(m20250201_000005_add_linking_and_local_profile::Migration),
            Box::new(m20250301_000006_add_passwords_and_api_sessions::Migration),
            Box::new(m20250401_000007_create_auth_event::Migration),
            Box::new(m20250402_000008_create_used_id_token::Migration),
            Box::new(m20251129_000009_add_exchange_progress::Migration),
            Box::new(m20251129_000010_add_state_claim::Migration),
            Box::new(m20261129_000011_add_client_key::Migration),
            Box::new(m20261129_000012_unique_password_email::Migration),
            Box::new(m20261129_000013_add_link_session::Migration),
            Box::new(m20261130_000014_jobs_ack_plan::Migration),
            Box::new(m20261130_000015_pending_index::Migration),
        ]
    }
}
