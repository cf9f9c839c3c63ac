//! `DELETE /api/me/providers/{name}`: unlinks a provider account, unless it is the
//! user's last way to sign in.

use poem::{
    IntoResponse, Response, handler,
    http::StatusCode,
    web::{Data, Path},
};
use worker::accounts::{self, Unlinked};

use crate::{error::ApiError, session::CurrentUser, state::AppState};

/// `DELETE /api/me/providers/{name}` — 204 unlinked; 404 not linked; 409 when it is
/// the last sign-in method; 401 without a session.
#[handler]
#[tracing::instrument(skip_all, fields(provider = %provider, user.id = %current.user.id))]
pub async fn unlink(
    Data(state): Data<&AppState>,
    Path(provider): Path<String>,
    current: CurrentUser,
) -> Result<Response, ApiError> {
    match accounts::unlink(&state.db, current.user.id, &provider).await? {
        Unlinked::Removed => {
            tracing::info!("provider unlinked");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Unlinked::NotLinked => Err(ApiError::NotFound("No account at that provider is linked.")),
        Unlinked::LastMethod => Err(ApiError::Conflict {
            code: "last_sign_in_method",
            message: "This is your only way to sign in; link another provider before removing it."
                .to_owned(),
        }),
    }
}
