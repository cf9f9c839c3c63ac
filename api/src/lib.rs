//! The poem web tier of social-signin: browser sign-in routes, the JSON API, the
//! demo provider and the embedded worker, over the shared core in `worker`.

pub mod admin;
pub mod assets;
pub mod body_limit;
pub mod browser;
pub mod demo_provider;
pub mod error;
pub mod json_errors;
pub mod limits;
pub mod openapi;
pub mod request_log;
pub mod routes;
pub mod security;
pub mod session;
pub mod shared;
pub mod startup;
pub mod state;
pub mod text;
pub mod tokens;
