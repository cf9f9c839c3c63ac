//! `static/`, embedded in the binary (so the release build runs from any directory),
//! and the few pages rendered from its templates with escaped values.

use poem::{IntoResponse, Response, endpoint::EmbeddedFilesEndpoint, http::header, web::Html};
use rust_embed::RustEmbed;

/// The files of `static/`, served under `/static/`.
#[derive(RustEmbed)]
#[folder = "../static/"]
pub struct Assets;

/// The endpoint serving [`Assets`].
pub fn endpoint() -> EmbeddedFilesEndpoint<Assets> {
    EmbeddedFilesEndpoint::<Assets>::new()
}

/// `GET /favicon.ico`: browsers ask for it on every site; without it each page
/// load logs a 404 in the console. An SVG (Chromium and Firefox sniff it).
#[poem::handler]
pub fn favicon() -> Response {
    let icon = Assets::get("favicon.svg")
        .map(|f| f.data.into_owned())
        .unwrap_or_default();
    icon.with_content_type("image/svg+xml")
        .with_header(header::CACHE_CONTROL, "public, max-age=86400")
        .into_response()
}

fn template(name: &str) -> String {
    Assets::get(name)
        .map(|file| String::from_utf8_lossy(&file.data).into_owned())
        .unwrap_or_else(|| panic!("static/{name} is embedded at build time"))
}

/// HTML-escapes text for element content and quoted attributes.
pub fn escape(text: &str) -> String {
    html_escape::encode_quoted_attribute(text).into_owned()
}

/// The index page around an already-escaped body.
pub fn index_page(body_html: &str) -> Response {
    no_store(Html(template("index.html").replace("{{body}}", body_html)))
}

/// The preloader page, bound to `operation` (may be empty).
pub fn preloader_page(operation: &str) -> Response {
    no_store(Html(
        template("preloader.html").replace("{{operation}}", &escape(operation)),
    ))
}

/// The error page with a title and a sentence (both escaped here).
pub fn error_page(title: &str, message: &str) -> Response {
    // One pass over the template, so text containing `{{message}}` stays text.
    let page = template("error.html");
    let mut out = String::with_capacity(page.len() + message.len());
    let mut rest = page.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(stripped) = after.strip_prefix("{{title}}") {
            out.push_str(&escape(title));
            rest = stripped;
        } else if let Some(stripped) = after.strip_prefix("{{message}}") {
            out.push_str(&escape(message));
            rest = stripped;
        } else {
            out.push_str("{{");
            rest = &after[2..];
        }
    }
    out.push_str(rest);
    no_store(Html(out))
}

fn no_store(page: impl IntoResponse) -> Response {
    page.with_header(header::CACHE_CONTROL, "no-store")
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn error_page_escapes_and_substitutes_once() {
        let body = error_page("<b>t</b>", "{{title}} & <script>")
            .into_body()
            .into_string()
            .await
            .unwrap();
        assert!(body.contains("&lt;b&gt;t&lt;/b&gt;"));
        assert!(body.contains("{{title}} &amp; &lt;script&gt;"));
        assert!(!body.contains("<script>"));
    }

    #[test]
    fn every_template_is_embedded() {
        for name in [
            "index.html",
            "preloader.html",
            "error.html",
            "preloader.js",
            "style.css",
        ] {
            assert!(Assets::get(name).is_some(), "{name}");
        }
    }
}
