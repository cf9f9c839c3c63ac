//! `GET /`: the provider buttons, or "Hi, {first name}" and a Logout form. With a
//! Google provider's `one_tap` on, also Google's button and One Tap prompt.

use poem::{
    IntoResponse, Response, handler,
    http::header,
    web::{Data, cookie::CookieJar},
};
use worker::providers::Provider;

use crate::{assets, browser, session::MaybeUser, state::AppState};

/// `GET /` — 200 HTML.
#[handler]
pub async fn index(
    Data(state): Data<&AppState>,
    MaybeUser(user): MaybeUser,
    jar: &CookieJar,
) -> Response {
    let one_tap = state.providers.iter().find(|p| p.one_tap);
    let body = match user {
        Some(current) => format!(
            "<p class=\"greeting\">Hi, {}</p>\
             <form method=\"post\" action=\"/auth/logout\"><button type=\"submit\">Log out</button></form>",
            assets::escape(&first_name(&current.user))
        ),
        None if state.providers.iter().next().is_none() => {
            "<p>No sign-in provider is configured.</p>".to_owned()
        }
        None => {
            let links: String = state
                .providers
                .iter()
                .map(|p| {
                    format!(
                        "<li><a href=\"/auth/{}/login\" class=\"btn\">Sign in with {}</a></li>",
                        assets::escape(&p.name),
                        assets::escape(&p.display_name)
                    )
                })
                .collect();
            let prompt = one_tap
                .map(|google| one_tap_markup(state, jar, google))
                .unwrap_or_default();
            format!("<ul class=\"providers\">{links}</ul>{prompt}")
        }
    };
    match one_tap {
        Some(_) => assets::index_page(&body)
            .with_header(
                header::CONTENT_SECURITY_POLICY,
                crate::security::ONE_TAP_PAGE_CSP,
            )
            // Google's script checks the page's origin against the client's.
            .with_header(header::REFERRER_POLICY, "strict-origin-when-cross-origin")
            .into_response(),
        None => assets::index_page(&body),
    }
}

/// Google's HTML API for the button and the One Tap prompt: Google's script reads
/// these elements, and posts the ID token (`credential`) with its double-submit
/// `g_csrf_token` to `login_uri` from this page. The nonce is this browser's.
fn one_tap_markup(state: &AppState, jar: &CookieJar, google: &Provider) -> String {
    browser::ensure_browser_key(jar, &state.settings);
    let nonce = browser::one_tap_nonce(jar, &state.settings);
    let login_uri = format!(
        "{}/auth/{}/one-tap",
        state.settings.public_base(),
        google.name
    );
    format!(
        "<div id=\"g_id_onload\" data-client_id=\"{}\" data-login_uri=\"{}\" data-nonce=\"{}\" \
         data-ux_mode=\"popup\" data-auto_prompt=\"true\" data-context=\"signin\"></div>\
         <div class=\"g_id_signin\" data-type=\"standard\" data-text=\"signin_with\"></div>\
         <script src=\"{GOOGLE_SCRIPT}\" async></script>",
        assets::escape(&google.client_id),
        assets::escape(&login_uri),
        assets::escape(&nonce),
    )
}

/// Google Identity Services' script.
const GOOGLE_SCRIPT: &str = "https://accounts.google.com/gsi/client";

/// What to greet the user as: first name, else the first word of the display name,
/// else the email's local part.
pub fn first_name(user: &entity::user_profile::Model) -> String {
    user.first_name
        .clone()
        .or_else(|| {
            user.display_name
                .as_deref()
                .and_then(|n| n.split_whitespace().next())
                .map(str::to_owned)
        })
        .or_else(|| {
            user.email
                .as_deref()
                .and_then(|e| e.split('@').next())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "there".to_owned())
}
