//! `GET /`: the provider buttons, or "Hi, {first name}" and a Logout form.

use poem::{Response, handler, web::Data};

use crate::{assets, session::MaybeUser, state::AppState};

/// `GET /` — 200 HTML.
#[handler]
pub async fn index(Data(state): Data<&AppState>, MaybeUser(user): MaybeUser) -> Response {
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
            format!("<ul class=\"providers\">{links}</ul>")
        }
    };
    assets::index_page(&body)
}

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
