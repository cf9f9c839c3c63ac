//! What each provider kind brings before configuration: label, scopes, issuer and
//! endpoints. Configuration overrides any of it; OIDC kinds discover the rest.

use url::Url;

use crate::config::ProviderKind;

/// Defaults of one kind.
#[derive(Debug, Clone, Default)]
pub struct Preset {
    pub display_name: Option<&'static str>,
    pub scopes: &'static [&'static str],
    pub issuer: Option<openidconnect::IssuerUrl>,
    pub authorize_url: Option<Url>,
    pub token_url: Option<Url>,
    pub userinfo_url: Option<Url>,
    pub jwks_url: Option<Url>,
}

/// The demo provider's OAuth client: it only ever runs on loopback.
pub const DEMO_CLIENT_ID: &str = "social-signin-demo";
/// The demo client's secret, checked by the demo token endpoint.
pub const DEMO_CLIENT_SECRET: &str = "social-signin-demo-secret";
/// Graph API version used by the Facebook preset.
const FACEBOOK_GRAPH: &str = "v19.0";

/// The preset of `kind`; the demo provider lives under `public_base`.
pub fn preset(kind: ProviderKind, public_base: &str) -> Preset {
    let url = |s: &str| Some(Url::parse(s).expect("preset URLs are valid"));
    let issuer =
        |s: &str| Some(openidconnect::IssuerUrl::new(s.to_owned()).expect("preset URLs are valid"));
    match kind {
        ProviderKind::Google => Preset {
            display_name: Some("Google"),
            scopes: &["openid", "email", "profile"],
            issuer: issuer("https://accounts.google.com"),
            ..Preset::default()
        },
        // Sign in with Apple publishes no discovery-driven userinfo: the ID token and
        // the first sign-in's `user` form field are all there is.
        ProviderKind::Apple => Preset {
            display_name: Some("Apple"),
            scopes: &["name", "email"],
            issuer: issuer("https://appleid.apple.com"),
            authorize_url: url("https://appleid.apple.com/auth/authorize"),
            token_url: url("https://appleid.apple.com/auth/token"),
            jwks_url: url("https://appleid.apple.com/auth/keys"),
            ..Preset::default()
        },
        ProviderKind::Facebook => Preset {
            display_name: Some("Facebook"),
            scopes: &["email", "public_profile"],
            authorize_url: url(&format!(
                "https://www.facebook.com/{FACEBOOK_GRAPH}/dialog/oauth"
            )),
            token_url: url(&format!(
                "https://graph.facebook.com/{FACEBOOK_GRAPH}/oauth/access_token"
            )),
            userinfo_url: url(&format!("https://graph.facebook.com/{FACEBOOK_GRAPH}/me")),
            ..Preset::default()
        },
        ProviderKind::Github => Preset {
            display_name: Some("GitHub"),
            scopes: &["read:user", "user:email"],
            authorize_url: url("https://github.com/login/oauth/authorize"),
            token_url: url("https://github.com/login/oauth/access_token"),
            userinfo_url: url("https://api.github.com/user"),
            ..Preset::default()
        },
        ProviderKind::Oidc => Preset {
            scopes: &["openid", "email", "profile"],
            ..Preset::default()
        },
        ProviderKind::Oauth2 => Preset::default(),
        ProviderKind::Demo => Preset {
            display_name: Some("Demo"),
            scopes: &["profile", "email"],
            authorize_url: url(&format!("{public_base}/demo-provider/authorize")),
            token_url: url(&format!("{public_base}/demo-provider/token")),
            userinfo_url: url(&format!("{public_base}/demo-provider/userinfo")),
            ..Preset::default()
        },
    }
}
