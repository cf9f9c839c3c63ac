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
        Apis::default(),
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

/// Objects whose parser refuses unknown fields (`deny_unknown_fields`), which the
/// derive does not write into the document.
const CLOSED_OBJECTS: &[&str] = &["ProfileUpdate"];

/// The document as served: poem-openapi's, plus what its derive cannot say: the
/// error codes (`ERROR_CODES`) and the objects closed to unknown fields.
pub fn document(api: &OpenApiService<Apis, ()>) -> String {
    let mut document: serde_json::Value =
        serde_json::from_str(&api.spec()).expect("poem-openapi writes JSON");
    let code = &mut document["components"]["schemas"]["ErrorDetail"]["properties"]["code"];
    assert!(code.is_object(), "ErrorDetail.code is in the document");
    code["enum"] = serde_json::json!(crate::error::ERROR_CODES);
    for name in CLOSED_OBJECTS {
        let schema = &mut document["components"]["schemas"][*name];
        assert!(schema.is_object(), "{name} is in the document");
        schema["additionalProperties"] = serde_json::Value::Bool(false);
    }
    document.to_string()
}

/// `GET /api/openapi.json`: [`document`], made once.
pub fn document_endpoint(document: String) -> impl poem::Endpoint {
    let document: std::sync::Arc<str> = document.into();
    poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(document.to_string())
    })
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
        let statuses: [(u16, &'static str); 10] = [
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
            (
                415,
                "The body is not of the declared content type, or has none (`unsupported_media_type`)",
            ),
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

/// The methods each path of the document answers, for the `Allow` header a 405
/// must carry (RFC 9110 15.5.6).
#[derive(Debug, Default)]
pub struct AllowedMethods(Vec<(Vec<Option<String>>, String)>);

impl AllowedMethods {
    /// From the document's `paths`: `{id}` segments match any one segment.
    pub fn from_spec(spec: &str) -> Self {
        let spec: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        let Some(paths) = spec["paths"].as_object() else {
            return Self::default();
        };
        let routes = paths
            .iter()
            .map(|(path, operations)| {
                let segments = path
                    .split('/')
                    .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
                    .collect();
                let methods: Vec<String> = operations
                    .as_object()
                    .map(|ops| ops.keys().map(|m| m.to_uppercase()).collect())
                    .unwrap_or_default();
                (segments, methods.join(", "))
            })
            .collect();
        Self(routes)
    }

    /// The `Allow` value for `path`, if the document has it.
    pub fn of(&self, path: &str) -> Option<&str> {
        let segments: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .find(|(pattern, _)| {
                pattern.len() == segments.len()
                    && pattern
                        .iter()
                        .zip(&segments)
                        .all(|(p, s)| p.as_deref().is_none_or(|p| p == *s))
            })
            .map(|(_, methods)| methods.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typescript_client_knows_exactly_the_documents_error_codes() {
        let document: serde_json::Value =
            serde_json::from_str(&document(&service("http://127.0.0.1:8080"))).unwrap();
        let listed: Vec<&str> =
            document["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]
                .as_array()
                .expect("the document lists the error codes")
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
        assert_eq!(listed, crate::error::ERROR_CODES);
        let types = include_str!("../../static/signin-client.d.ts");
        let union = types
            .split("export type ServerErrorCode =")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .expect("ServerErrorCode in signin-client.d.ts");
        let mut in_types: Vec<&str> = union
            .split('|')
            .map(|member| member.trim().trim_matches('\''))
            .filter(|member| !member.is_empty())
            .collect();
        in_types.sort_unstable();
        assert_eq!(
            in_types, listed,
            "static/signin-client.d.ts ServerErrorCode"
        );
    }

    #[test]
    fn a_405_names_the_methods_of_its_path() {
        let allowed = AllowedMethods::from_spec(&document(&service("http://127.0.0.1:8080")));
        assert_eq!(allowed.of("/api/me"), Some("GET, PATCH"));
        let session = allowed.of("/api/sessions/0b6e5b9e-1c52-4c55-9d36-9b6b3d1c2a11");
        assert_eq!(session, Some("DELETE"));
        assert_eq!(allowed.of("/api/nowhere"), None);
    }
}
