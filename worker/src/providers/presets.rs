//! What each provider kind brings before configuration: label, scopes, issuer and
//! endpoints. Configuration overrides any of it; OIDC kinds discover the rest.

use url::Url;

use crate::config::{FACEBOOK_GRAPH_VERSION, ProviderKind, ProviderSettings};

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
    /// Facebook: `{graph_url}/{graph_version}`, the base of every Graph call.
    pub graph_base: Option<Url>,
}

/// The demo provider's OAuth client: it only ever runs on loopback.
pub const DEMO_CLIENT_ID: &str = "social-signin-demo";
/// The demo client's secret, checked by the demo token endpoint.
pub const DEMO_CLIENT_SECRET: &str = "social-signin-demo-secret";
/// Where the Graph API is unless `graph_url` says otherwise.
const FACEBOOK_GRAPH_URL: &str = "https://graph.facebook.com";

/// The preset of `kind`; the demo provider lives under `public_base`; Facebook's
/// Graph base comes from `config`.
pub fn preset(kind: ProviderKind, public_base: &str, config: &ProviderSettings) -> Preset {
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
        // Facebook Login is OAuth 2 on the web; its Limited Login (iOS SDK) hands the
        // app an OpenID Connect ID token, checked against this issuer and JWKS.
        ProviderKind::Facebook => {
            let version = config
                .graph_version
                .as_deref()
                .unwrap_or(FACEBOOK_GRAPH_VERSION);
            let graph = config
                .graph_url
                .as_ref()
                .map_or(FACEBOOK_GRAPH_URL, Url::as_str);
            let graph = format!("{}/{version}", graph.trim_end_matches('/'));
            Preset {
                display_name: Some("Facebook"),
                scopes: &["email", "public_profile"],
                issuer: issuer("https://www.facebook.com"),
                authorize_url: url(&format!("https://www.facebook.com/{version}/dialog/oauth")),
                token_url: url(&format!("{graph}/oauth/access_token")),
                userinfo_url: url(&format!("{graph}/me")),
                jwks_url: url("https://limited.facebook.com/.well-known/oauth/openid/jwks/"),
                graph_base: url(&graph),
            }
        }
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
