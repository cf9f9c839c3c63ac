//! sea-orm entities of social-signin: users, their linked provider accounts, the
//! asynchronous sign-in operations the worker completes, and server-side sessions.

pub mod async_operation;
pub mod auth_event;
pub mod prelude;
pub mod refresh_token;
pub mod session;
pub mod social_account;
pub mod used_id_token;
pub mod user_profile;
