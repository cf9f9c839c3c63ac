//! `GET|POST /demo-provider/authorize`: the consent form (name and email) and its
//! submission, which redirects back with a code or `error=access_denied`.

use std::sync::Arc;

use chrono::Utc;
use poem::{
    IntoResponse, Response, handler,
    http::{StatusCode, Uri, header},
    web::{Data, Form, Html, Redirect},
};
use serde::Deserialize;
use url::Url;

use super::{CODE_TTL, CodeClaims, DemoProvider};
use crate::{assets, error::PageError, routes::QueryParams, state::AppState};

/// The request parameters carried from the authorize URL through the form.
#[derive(Debug, Default, Deserialize)]
pub struct AuthorizeRequest {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
    #[serde(default)]
    scope: String,
}

/// The submitted form.
#[derive(Debug, Deserialize)]
pub struct AuthorizeForm {
    #[serde(flatten)]
    request: AuthorizeRequest,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    action: String,
}

fn demo(state: &AppState) -> Result<&Arc<DemoProvider>, PageError> {
    state.demo.as_ref().ok_or(PageError::UnknownProvider)
}

/// `GET /demo-provider/authorize` — 200 the form; 400 page for an unknown client or
/// redirect URI; 303 back with `error=invalid_request` for a bad PKCE request.
#[handler]
pub async fn authorize_form(
    Data(state): Data<&AppState>,
    uri: &Uri,
) -> Result<Response, PageError> {
    let demo = demo(state)?;
    let keys = [
        ("client_id", 256),
        ("redirect_uri", 2048),
        ("response_type", 32),
        ("state", 512),
        ("code_challenge", 128),
        ("code_challenge_method", 16),
        ("scope", 256),
    ];
    let params = QueryParams::parse(uri, &keys)
        .map_err(|_| PageError::BadRequest("Malformed authorization request."))?;
    let get = |k: &str| params.get(k).unwrap_or_default().to_owned();
    let request = AuthorizeRequest {
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        response_type: get("response_type"),
        state: get("state"),
        code_challenge: get("code_challenge"),
        code_challenge_method: get("code_challenge_method"),
        scope: get("scope"),
    };
    check_client(demo, &request)?;
    if let Some(error) = request_error(&request) {
        return Ok(redirect_back(
            &request,
            &[("error", "invalid_request"), ("error_description", error)],
        ));
    }
    Ok(form_page(&request, "", "", None))
}

/// `POST /demo-provider/authorize` — 303 back to the client with a code (allow) or
/// `error=access_denied` (deny); 400 with the form again for an invalid name or email.
#[handler]
pub async fn authorize_submit(
    Data(state): Data<&AppState>,
    Form(form): Form<AuthorizeForm>,
) -> Result<Response, PageError> {
    let demo = demo(state)?;
    let request = &form.request;
    check_client(demo, request)?;
    if let Some(error) = request_error(request) {
        return Ok(redirect_back(
            request,
            &[("error", "invalid_request"), ("error_description", error)],
        ));
    }
    if form.action != "allow" {
        return Ok(redirect_back(request, &[("error", "access_denied")]));
    }
    let name = form.name.trim();
    let email = form.email.trim().to_lowercase();
    let problem = if name.is_empty() || name.chars().count() > 100 {
        Some("Enter a name of 1 to 100 characters.")
    } else if !worker::accounts::is_plausible_email(&email) {
        Some("Enter an email address like ada@example.com.")
    } else {
        None
    };
    if let Some(problem) = problem {
        return Ok(form_page(request, name, &email, Some(problem))
            .with_status(StatusCode::BAD_REQUEST)
            .into_response());
    }
    let code = demo.seal(&CodeClaims {
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        scope: request.scope.clone(),
        name: name.to_owned(),
        email,
        exp: Utc::now().timestamp() + CODE_TTL,
    });
    Ok(redirect_back(request, &[("code", &code)]))
}

/// Never redirect to a client or URI we do not know (RFC 6749 4.1.2.1).
fn check_client(demo: &DemoProvider, request: &AuthorizeRequest) -> Result<(), PageError> {
    if request.client_id != demo.client_id || request.redirect_uri != demo.redirect_uri {
        return Err(PageError::BadRequest("Unknown client or redirect URI."));
    }
    Ok(())
}

fn request_error(request: &AuthorizeRequest) -> Option<&'static str> {
    if request.response_type != "code" {
        Some("response_type must be code")
    } else if request.code_challenge_method != "S256" || request.code_challenge.len() != 43 {
        Some("PKCE with S256 is required")
    } else if request.state.is_empty() || request.state.len() > 512 {
        Some("state is required")
    } else {
        None
    }
}

fn redirect_back(request: &AuthorizeRequest, params: &[(&str, &str)]) -> Response {
    let mut url = Url::parse(&request.redirect_uri).expect("checked against the registered URI");
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in params {
            query.append_pair(k, v);
        }
        query.append_pair("state", &request.state);
    }
    Redirect::see_other(url.as_str())
        .with_header(header::REFERRER_POLICY, "no-referrer")
        .into_response()
}

fn form_page(
    request: &AuthorizeRequest,
    name: &str,
    email: &str,
    problem: Option<&str>,
) -> Response {
    let hidden = |k: &str, v: &str| {
        format!(
            "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
            assets::escape(v)
        )
    };
    let problem = problem
        .map(|p| {
            format!(
                "<div class=\"error-box\" role=\"alert\"><p>{}</p></div>",
                assets::escape(p)
            )
        })
        .unwrap_or_default();
    let page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Demo provider — sign in</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head>\
         <body><main class=\"card\"><h1>Demo provider</h1>\
         <p>This stands in for Google or GitHub on a development machine. Pick any name and email.</p>{problem}\
         <form method=\"post\" action=\"/demo-provider/authorize\">{}{}{}{}{}{}{}\
         <p><label for=\"name\">Name</label><br><input id=\"name\" name=\"name\" required maxlength=\"100\" autocomplete=\"name\" value=\"{}\"></p>\
         <p><label for=\"email\">Email</label><br><input id=\"email\" name=\"email\" type=\"email\" required maxlength=\"254\" autocomplete=\"email\" value=\"{}\"></p>\
         <div class=\"actions\"><button type=\"submit\" name=\"action\" value=\"allow\" class=\"btn btn-primary\">Sign in</button>\
         <button type=\"submit\" name=\"action\" value=\"deny\" formnovalidate class=\"btn\">Cancel</button></div>\
         </form></main></body></html>",
        hidden("client_id", &request.client_id),
        hidden("redirect_uri", &request.redirect_uri),
        hidden("response_type", &request.response_type),
        hidden("state", &request.state),
        hidden("code_challenge", &request.code_challenge),
        hidden("code_challenge_method", &request.code_challenge_method),
        hidden("scope", &request.scope),
        assets::escape(name),
        assets::escape(email),
    );
    Html(page)
        .with_header(header::CACHE_CONTROL, "no-store")
        .into_response()
}
