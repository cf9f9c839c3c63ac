//! The JSON routes' one error shape, applied once around every route.

use poem::{Endpoint, IntoResponse};

use crate::openapi;

/// JSON routes answer every error in one shape, `{"error":{"code","message"}}`,
/// including the ones poem and poem-openapi produce themselves (a body that does
/// not parse, an unknown path, a wrong method), and are never cached.
pub async fn json_errors<E: Endpoint>(
    next: E,
    req: poem::Request,
    allowed: std::sync::Arc<openapi::AllowedMethods>,
) -> poem::Result<poem::Response> {
    let is_json_route = crate::error::is_json_route(req.uri().path());
    // Kept for a 405's `Allow` (a `Uri` clone shares its bytes).
    let uri = is_json_route.then(|| req.uri().clone());
    let mut parse_code = None;
    let response = match next.call(req).await {
        Ok(response) => response.into_response(),
        Err(error) => {
            parse_code = crate::error::parse_error_code(&error);
            error.into_response()
        }
    };
    if !is_json_route {
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(
        poem::http::header::CACHE_CONTROL,
        poem::http::HeaderValue::from_static("no-store"),
    );
    if parts.status == poem::http::StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = uri
            .as_ref()
            .and_then(|uri| allowed.of(uri.path()))
            .and_then(|a| poem::http::HeaderValue::from_str(a).ok())
    {
        parts.headers.insert(poem::http::header::ALLOW, allow);
    }
    let is_json = parts
        .headers
        .get(poem::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if parts.status.is_success() || parts.status.is_redirection() || is_json {
        return Ok(poem::Response::from_parts(parts, body));
    }
    if let Some((code, message)) = parse_code.filter(|_| parts.status == 400) {
        return Ok(json_error(parts, code, message.to_owned()));
    }
    let text = body.into_string().await.unwrap_or_default();
    let code = match parts.status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        _ => "error",
    };
    let message = if text.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_owned()
    } else {
        text
    };
    Ok(json_error(parts, code, message))
}

/// `parts` with the body `{"error":{"code","message"}}`.
fn json_error(mut parts: poem::ResponseParts, code: &str, message: String) -> poem::Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    parts.headers.insert(
        poem::http::header::CONTENT_TYPE,
        poem::http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    parts.headers.remove(poem::http::header::CONTENT_LENGTH);
    poem::Response::from_parts(parts, poem::Body::from_json(body).unwrap_or_default())
}
