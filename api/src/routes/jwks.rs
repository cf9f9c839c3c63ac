//! `GET /.well-known/jwks.json`: the public keys access tokens are signed with (the
//! current one and the retired ones still configured), for services that verify
//! tokens offline. Empty with an HMAC `tokens.algorithm`.

use poem::{IntoResponse, Response, handler, http::header, web::Data, web::Json};

use crate::state::AppState;

/// `GET /.well-known/jwks.json` — 200 `{"keys":[…]}` (RFC 7517), cacheable for five
/// minutes: a rotated key is published before it signs (see the README).
#[handler]
pub async fn jwks(Data(state): Data<&AppState>) -> Response {
    Json(state.tokens.jwks())
        .with_header(header::CACHE_CONTROL, "public, max-age=300")
        .with_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .into_response()
}
