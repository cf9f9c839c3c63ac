//! `AppState`: everything a handler needs, built once by `Application::build` and
//! added to the route tree with `.data(state)`.

use std::sync::Arc;

use worker::{
    config::Settings, crypto::Keys, jobs::JobQueue, operations::OperationEvents,
    providers::ProviderRegistry,
};

use crate::{demo_provider::DemoProvider, limits::Limits, tokens::TokenIssuer};

/// Shared, cheaply cloned application state.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Writes, transactions and reads that must see them.
    pub db: sea_orm::DatabaseConnection,
    /// The hot writes; see `worker::writer`.
    pub writer: worker::writer::Writer,
    /// Hot reads (status polls, session checks); see `worker::db`.
    pub reader: worker::reader::Reader,
    /// `db`'s pool, for queue statistics.
    pub pool: worker::db::DbPool,
    pub settings: Arc<Settings>,
    pub providers: Arc<ProviderRegistry>,
    pub jobs: JobQueue,
    pub keys: Arc<Keys>,
    /// Wakes long-polling `/auth/status` requests when the embedded worker finishes.
    pub events: OperationEvents,
    /// The built-in authorization server, when it is on.
    pub demo: Option<Arc<DemoProvider>>,
    /// Signs and verifies API access tokens.
    pub tokens: std::sync::Arc<TokenIssuer>,
    /// The audit log's writer.
    pub audit: worker::audit::AuditLog,
    /// Per-IP and per-account request budgets.
    pub limits: Arc<Limits>,
    /// Session lookups cached in Redis, shared by the api instances (`redis_url`).
    pub session_cache: Option<crate::shared::sessions::SessionCache>,
    /// Password hashing, a bounded number at once.
    pub hashing: worker::passwords::Hashing,
}
