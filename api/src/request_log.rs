//! One log line and the request metrics per request, applied once around every
//! route.

use poem::{Endpoint, IntoResponse};

/// One line per request: method, path (never the query: it carries codes and
/// state), status and latency.
pub async fn log_request<E: Endpoint>(next: E, req: poem::Request) -> poem::Result<poem::Response> {
    // Labels are static strings where they can be: this runs on every request.
    let method = method_label(req.method());
    let started = std::time::Instant::now();
    let span = tracing::info_span!("request", http.method = method, http.path = %req.uri().path());
    let result = tracing::Instrument::instrument(next.call(req), span.clone()).await;
    let response = match result {
        Ok(response) => response.into_response(),
        Err(error) => error.into_response(),
    };
    let _enter = span.enter();
    let status = status_label(response.status());
    let route = route_label(&response);
    metrics::counter!("signin_http_requests_total", "method" => method, "route" => route.clone(), "status" => status.clone())
        .increment(1);
    metrics::histogram!("signin_http_request_duration_seconds", "method" => method, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    tracing::info!(
        http.status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(response)
}

fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The status as a label, without an allocation for the common ones.
fn status_label(status: poem::http::StatusCode) -> std::borrow::Cow<'static, str> {
    let common = match status.as_u16() {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        303 => "303",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        410 => "410",
        429 => "429",
        500 => "500",
        503 => "503",
        other => return std::borrow::Cow::Owned(other.to_string()),
    };
    std::borrow::Cow::Borrowed(common)
}

/// The route template poem matched (its `PathPattern`, left on the response), so
/// metric labels stay few: `:provider` becomes `{provider}`, and a request no route
/// matched is `other`.
fn route_label(response: &poem::Response) -> std::borrow::Cow<'static, str> {
    match response.data::<poem::PathPattern>() {
        Some(pattern) => std::borrow::Cow::Owned(template(&pattern.0)),
        None => std::borrow::Cow::Borrowed("other"),
    }
}

/// `/auth/:provider/login` as `/auth/{provider}/login`.
fn template(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for (i, segment) in pattern.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        match segment.strip_prefix(':') {
            Some(name) => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
            None => out.push_str(segment),
        }
    }
    if out.is_empty() { "/".to_owned() } else { out }
}
