//! The JSON API as an OpenAPI document (poem-openapi): every JSON route is an
//! operation of one service, served with its spec at `/api/openapi.json` and an
//! interactive page at `/api/docs`. Errors share one shape, `ErrorBody`.

use poem_openapi::{
    ApiResponse, Object, OpenApiService,
    payload::Json,
    registry::{MetaResponse, MetaResponses, Registry},
};

use crate::{
    error::ApiError,
    routes::{
        auth::status::StatusApi, auth_api::AuthApi, introspect::IntrospectApi, me::MeApi,
        native_token::NativeTokenApi, operations::OperationsApi, providers::ProvidersApi,
        sessions::SessionsApi,
    },
};

/// Every operation of the JSON API.
pub type Apis = (
    ProvidersApi,
    MeApi,
    AuthApi,
    NativeTokenApi,
    IntrospectApi,
    SessionsApi,
    OperationsApi,
    StatusApi,
);

/// The service for `public_url`.
pub fn service(public_base: &str) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            ProvidersApi,
            MeApi,
            AuthApi,
            NativeTokenApi,
            IntrospectApi,
            SessionsApi,
            OperationsApi,
            StatusApi,
        ),
        "social-signin",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Sign-in API for web and mobile apps. Authenticate with `Authorization: Bearer <access token>` \
         (from register, login, refresh or a native token exchange) or with the browser session cookie. \
         Every error has the shape `{\"error\":{\"code\",\"message\"}}`.",
    )
    .server(public_base.to_owned())
}

/// `{"error":{"code","message"}}`.
#[derive(Debug, Object)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// A stable machine-readable code and a sentence for people.
#[derive(Debug, Object)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// An empty success.
#[derive(ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        let statuses: [(u16, &'static str); 9] = [
            (400, "Malformed request"),
            (401, "Missing, invalid or expired credentials"),
            (
                403,
                "Sent from another site with the session cookie, or needs a recent sign-in",
            ),
            (404, "No such resource (or not yours)"),
            (409, "Conflicts with the current state"),
            (410, "Already consumed"),
            (413, "The request body is over 64 KiB (`payload_too_large`)"),
            (429, "Too many attempts; see Retry-After"),
            (
                503,
                "A dependency is unavailable (`database_unavailable`, `queue_unavailable`), or the \
                 server is too busy to take the request now (`busy`: every password-hashing slot \
                 is taken, or the sign-in queue is full); retry after Retry-After",
            ),
        ];
        MetaResponses {
            responses: statuses
                .into_iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(status),
                    status_range: None,
                    content: <Json<ErrorBody> as ApiResponse>::meta()
                        .responses
                        .remove(0)
                        .content,
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        <Json<ErrorBody> as ApiResponse>::register(registry);
    }
}
