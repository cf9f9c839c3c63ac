//! `GET /api/providers`: the configured providers for custom sign-in buttons.

use poem::{
    handler,
    web::{Data, Json},
};
use serde::Serialize;

use crate::state::AppState;

/// One provider button.
#[derive(Debug, Serialize)]
pub struct ProviderInfo {
    pub name: String,
    pub display_name: String,
    pub login_url: String,
}

/// `GET /api/providers` — 200 `[{"name","display_name","login_url"}]`.
#[handler]
pub async fn providers(Data(state): Data<&AppState>) -> Json<Vec<ProviderInfo>> {
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
