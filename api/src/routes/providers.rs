//! `GET /api/providers`: the configured providers for custom sign-in buttons.

use poem::web::Data;
use poem_openapi::{Object, OpenApi, payload::Json};

use crate::state::AppState;

/// One provider button.
#[derive(Debug, Object)]
pub struct ProviderInfo {
    pub name: String,
    pub display_name: String,
    /// Where a browser starts signing in.
    pub login_url: String,
}

/// Provider discovery.
#[derive(Default)]
pub struct ProvidersApi;

#[OpenApi]
impl ProvidersApi {
    /// The configured sign-in providers.
    #[oai(
        path = "/api/providers",
        method = "get",
        tag = "crate::routes::Tag::Providers"
    )]
    async fn providers(&self, Data(state): Data<&AppState>) -> Json<Vec<ProviderInfo>> {
        Json(
            state
                .providers
                .iter()
                .map(|p| ProviderInfo {
                    name: p.name.clone(),
                    display_name: p.display_name.clone(),
                    login_url: format!("/auth/{}/login", p.name),
                })
                .collect(),
        )
    }
}
