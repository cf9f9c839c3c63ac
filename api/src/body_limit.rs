//! The request-body bound of every route: bodies over [`MAX_BODY`] get 413 (the JSON
//! error `payload_too_large` on JSON routes, the error page elsewhere), whether or
//! not they declare a length, and the connection is closed after it. Smaller
//! bodies are read whole before the route runs, so no route can leave one unread. What the
//! client already sent is read and dropped first (up to [`MAX_DRAIN`], for at most
//! [`DRAIN_TIME`]): closing a socket with unread data resets it, and the client can
//! lose the 413 itself and see only a broken connection.

use std::time::Duration;

use futures::StreamExt;
use poem::{Endpoint, IntoResponse, error::ResponseError};

use crate::error::{ApiError, PageError, is_json_route};

/// The largest body any route takes.
pub const MAX_BODY: usize = 64 * 1024;
/// How much of an oversized body is drained before the 413; a larger declared body
/// is refused at once.
const MAX_DRAIN: usize = 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// The middleware (`.around(limit_body)`).
pub async fn limit_body<E: Endpoint>(
    next: E,
    mut req: poem::Request,
) -> poem::Result<poem::Response> {
    let json = is_json_route(req.uri().path());
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(n) if n > MAX_DRAIN => return Ok(too_large(json)),
        Some(n) if n > MAX_BODY => {
            drain(req.take_body().into_bytes_stream(), 0).await;
            return Ok(too_large(json));
        }
        Some(0) => {}
        None if req.method() == poem::http::Method::GET
            || req.method() == poem::http::Method::HEAD => {}
        // Read whole before the handler runs, even by routes that refuse it unread:
        // hyper closes a connection whose request body was left unread, after a
        // response that did not say so, and the client's next request on it is lost.
        _ => match read_within_limit(req.take_body()).await {
            Some(bytes) => req.set_body(bytes),
            None => return Ok(too_large(json)),
        },
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// A body of undeclared length, whole if it fits in [`MAX_BODY`]; otherwise `None`,
/// after draining what follows.
async fn read_within_limit(body: poem::Body) -> Option<Vec<u8>> {
    let mut stream = body.into_bytes_stream();
    let mut kept = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.ok()?;
        if kept.len() + chunk.len() > MAX_BODY {
            drain(stream, kept.len() + chunk.len()).await;
            return None;
        }
        kept.extend_from_slice(&chunk);
    }
    Some(kept)
}

/// Reads and drops the rest of a body, bounded by [`MAX_DRAIN`] and [`DRAIN_TIME`].
async fn drain<S, B, E>(mut stream: S, mut seen: usize)
where
    S: futures::Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while seen <= MAX_DRAIN {
            match stream.next().await {
                Some(Ok(chunk)) => seen += chunk.as_ref().len(),
                _ => break,
            }
        }
    })
    .await;
}

/// The 413 in the shape its route promises, closing the connection.
fn too_large(json: bool) -> poem::Response {
    let mut response = if json {
        ApiError::PayloadTooLarge.as_response()
    } else {
        PageError::PayloadTooLarge.as_response()
    };
    response.headers_mut().insert(
        poem::http::header::CONNECTION,
        poem::http::HeaderValue::from_static("close"),
    );
    response
}
