//! The entities under short names, for `use entity::prelude::*`.

pub use super::async_operation::{Entity as AsyncOperation, OperationStatus};
pub use super::auth_event::Entity as AuthEvent;
pub use super::refresh_token::Entity as RefreshToken;
pub use super::session::Entity as Session;
pub use super::social_account::Entity as SocialAccount;
pub use super::user_profile::Entity as UserProfile;
