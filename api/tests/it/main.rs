//! Integration tests: the real app on a random port, driven over HTTP with cookie
//! jars, against a mock OpenID Provider served over real HTTP. One binary.

mod access_tokens;
mod apalis_layout;
mod api_auth;
mod audit;
mod bad_input;
mod callback;
mod cors;
mod demo;
mod facebook_sdk;
mod flow;
mod fuzz;
mod handoff;
mod helpers;
mod identity_race;
mod instances;
mod issuer;
mod leaks;
mod limits;
mod link_reauth;
mod linking;
mod login;
mod me;
mod metrics;
mod one_tap;
mod outage;
mod password_email;
mod presets;
/// The worker's proptest configuration, shared by path (it is test-only there).
#[path = "../../../worker/src/proptest_config.rs"]
mod proptest_config;
mod query_plans;
mod redeem;
mod refresh;
mod security;
mod session_cookie;
mod shared_redis;
mod sign_in_job;
mod status;
mod status_memory;
mod success;
mod sweep;
mod writes;
