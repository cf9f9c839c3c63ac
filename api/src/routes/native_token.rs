//! `POST /api/auth/{provider}/token`: native and SDK social sign-in through the job
//! queue. An app sends what the provider gave it (a code, an ID token, or a
//! Facebook access token), gets 202 and an operation to poll.

use poem::{Request, web::Data};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use uuid::Uuid;
use worker::{
    audit::{self, EventKind},
    config::ProviderKind,
    crypto,
    jobs::{SignInJob, Started},
    operations::{self, NewOperation},
    providers::Provider,
};

use crate::text::Text;
use crate::{
    error::ApiError,
    limits::IpBudget,
    session::{Client, MaybeUser},
    state::AppState,
};

/// Native sign-in, one of three forms: `{code, code_verifier, redirect_uri}` (the
/// app did the authorize step with PKCE), `{id_token, nonce}` (Google and Apple
/// SDKs, Facebook Limited Login) or `{access_token}` (Facebook's SDK).
#[derive(Debug, Object)]
pub struct NativeTokenRequest {
    #[oai(validator(max_length = 4096))]
    #[oai(nullable)]
    pub code: Option<Text>,
    #[oai(validator(min_length = 43, max_length = 128))]
    #[oai(nullable)]
    pub code_verifier: Option<Text>,
    #[oai(validator(max_length = 2048))]
    #[oai(nullable)]
    pub redirect_uri: Option<Text>,
    #[oai(validator(max_length = 8192))]
    #[oai(nullable)]
    pub id_token: Option<Text>,
    #[oai(validator(max_length = 512))]
    #[oai(nullable)]
    pub nonce: Option<Text>,
    /// Facebook: the user access token the SDK gave the app.
    #[oai(validator(min_length = 1, max_length = 4096))]
    #[oai(nullable)]
    pub access_token: Option<Text>,
    /// Link the provider account to the signed-in user (send the bearer token)
    /// instead of signing in.
    #[oai(nullable)]
    pub link: Option<bool>,
}

/// A started native sign-in: poll `status_url` with the `poll_secret`.
#[derive(Debug, Object)]
pub struct OperationStarted {
    pub operation_id: Uuid,
    /// Send as `X-Poll-Secret` when polling; it is shown only once.
    pub poll_secret: String,
    pub status_url: String,
}

/// 202 with where to poll.
#[derive(ApiResponse)]
pub enum Accepted {
    /// The sign-in is queued.
    #[oai(status = 202)]
    Accepted(Json<OperationStarted>, #[oai(header = "Location")] String),
}

/// Native and SDK social sign-in.
#[derive(Default)]
pub struct NativeTokenApi;

#[OpenApi]
impl NativeTokenApi {
    /// Native social sign-in through the job queue: answers 202 at once; poll the
    /// operation for the tokens. 400 `invalid_request` for any other shape of body,
    /// `invalid_redirect_uri` for a redirect URI not in `native_redirect_uris`,
    /// `unsupported_grant` for an ID token to a provider without them, and
    /// `nonce_required` for an OpenID Connect provider's code sent without its nonce.
    #[oai(
        path = "/api/auth/:provider/token",
        method = "post",
        tag = "crate::routes::Tag::Auth"
    )]
    async fn token(
        &self,
        Data(state): Data<&AppState>,
        req: &Request,
        provider: Path<String>,
        MaybeUser(user): MaybeUser,
        body: Json<NativeTokenRequest>,
    ) -> Result<Accepted, ApiError> {
        state.limits.check(IpBudget::NativeSignIn, req).await?;
        let provider = state
            .providers
            .get(&provider.0)
            .ok_or(ApiError::NotFound("No such provider."))?;
        let form = body.0;
        let link = match (form.link.unwrap_or(false), &user) {
            (false, _) => None,
            // A link outlives a password change and "log out everywhere": only a
            // recent sign-in may add one.
            (true, Some(current)) => Some(
                current
                    .link_to()
                    .ok_or(ApiError::ReauthenticationRequired)?,
            ),
            (true, None) => return Err(ApiError::Unauthorized),
        };
        let job = SignInJob {
            provider: provider.name.clone(),
            client: Client::of(req).for_job(),
            ..job_for(provider, form)?
        };
        // The client address's and the queue's pending caps (a poll secret is new
        // each time, so there is no per-browser cap here).
        let client_key = state.limits.pending.admit(&state.reader, req, None).await?;
        let poll_secret = crypto::random_token(32);
        let redeemer_hash = crypto::sha256_hex(&poll_secret);
        let new = NewOperation {
            kind: operations::KIND_NATIVE,
            provider: provider.name.clone(),
            redeemer_hash,
            next_path: None,
            link,
            state_hash: None,
            client_key,
        };
        let operation = match state.jobs.start(&state.writer, new, job).await? {
            Started::Queued(operation) => operation,
            Started::Unqueued(_) => {
                let (code, message) = operations::QUEUE_UNAVAILABLE;
                return Err(ApiError::Unavailable {
                    code,
                    message: message.to_owned(),
                });
            }
            // Only a claimed `state` can be met again, and this operation has none.
            Started::Existing(_) | Started::Foreign => {
                return Err(sea_orm::DbErr::Custom(
                    "an operation without state was claimed twice".into(),
                )
                .into());
            }
        };
        tracing::info!(provider = %provider.name, operation.id = %operation.id, "native sign-in queued");
        let event = audit::Event::new(EventKind::SignInStarted)
            .user(link.map(|link| link.user_id))
            .provider(&provider.name)
            .operation(operation.id);
        state.audit.record(Client::of(req).audit(event));
        let status_url = format!("/api/operations/{}", operation.id);
        Ok(Accepted::Accepted(
            Json(OperationStarted {
                operation_id: operation.id,
                poll_secret,
                status_url: status_url.clone(),
            }),
            status_url,
        ))
    }
}

/// The job's provider input for the form the app sent: 400 `invalid_request` for
/// any other shape, `invalid_redirect_uri`, `nonce_required` or
/// `unsupported_grant` for a form this provider cannot take.
fn job_for(provider: &Provider, form: NativeTokenRequest) -> Result<SignInJob, ApiError> {
    let unsupported = |message: &str| ApiError::bad_request("unsupported_grant", message);
    let text = |v: Option<Text>| v.map(String::from);
    let fields = (
        text(form.code),
        text(form.code_verifier),
        text(form.redirect_uri),
        text(form.id_token),
        text(form.nonce),
        text(form.access_token),
    );
    Ok(match fields {
        (Some(code), Some(verifier), Some(redirect_uri), None, nonce, None) => {
            if !provider.is_allowed_native_redirect(&redirect_uri) {
                return Err(ApiError::bad_request(
                    "invalid_redirect_uri",
                    "This redirect_uri is not registered for native sign-in.",
                ));
            }
            // The ID token must carry the nonce the app sent to the provider;
            // without it the job could only fail, after queueing.
            if provider.is_oidc() && nonce.is_none() {
                return Err(ApiError::bad_request(
                    "nonce_required",
                    "Send the nonce your app put in the authorization request with the code.",
                ));
            }
            SignInJob {
                code,
                pkce_verifier: verifier,
                redirect_uri: Some(redirect_uri),
                nonce,
                ..SignInJob::default()
            }
        }
        (None, None, None, Some(id_token), Some(nonce), None) => {
            if !provider.takes_id_tokens() {
                return Err(unsupported(
                    "This provider issues no ID tokens; send a code.",
                ));
            }
            SignInJob {
                id_token: Some(id_token),
                nonce: Some(nonce),
                ..SignInJob::default()
            }
        }
        (None, None, None, None, None, Some(access_token)) => {
            if provider.kind != ProviderKind::Facebook {
                return Err(unsupported(
                    "Only Facebook sign-in takes an access token; send a code or an ID token.",
                ));
            }
            SignInJob {
                access_token: Some(access_token),
                ..SignInJob::default()
            }
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "Send one of: code, code_verifier and redirect_uri; id_token and nonce; access_token.",
            ));
        }
    })
}
