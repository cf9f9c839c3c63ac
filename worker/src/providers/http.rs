//! The one HTTP client every provider call goes through (token, userinfo, discovery,
//! JWKS): no redirects, a per-provider timeout, a 1 MiB cap on responses, and errors
//! classified by whether the request provably never reached the provider.

use std::{future::Future, pin::Pin, time::Duration};

use oauth2::{HttpRequest, HttpResponse};

/// Largest provider response we read; larger ones fail the sign-in.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why a provider request failed, in the terms the retry rules need.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The connection was refused or broke before the request was sent: safe to retry.
    #[error("could not connect")]
    NotSent(#[source] reqwest::Error),
    /// No answer within the provider's timeout, after the request went out.
    #[error("timed out")]
    Timeout,
    /// The request may have arrived; the answer was lost.
    #[error("connection failed after the request was sent")]
    Broken(#[source] reqwest::Error),
    /// 5xx or 429: the provider says try later.
    #[error("answered HTTP {0}")]
    Unavailable(u16),
    /// The body exceeded [`MAX_RESPONSE_BYTES`].
    #[error("response larger than 1 MiB")]
    TooLarge,
    /// The request could not even be built (a bad URL in configuration).
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// A reqwest client bound to one provider's timeout; also the `oauth2` HTTP client.
#[derive(Clone, Debug)]
pub struct ProviderHttp {
    client: reqwest::Client,
    timeout: Duration,
}

impl ProviderHttp {
    /// Wraps a shared client; `timeout` bounds each whole request.
    pub fn new(client: reqwest::Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    /// The bound on each whole request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Builds the process-wide client: no redirects (SSRF advice of the oauth2 docs).
    pub fn build_client() -> anyhow::Result<reqwest::Client> {
        crate::telemetry::install_crypto_provider();
        Ok(reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("social-signin/", env!("CARGO_PKG_VERSION")))
            .build()?)
    }

    /// Sends `request` and reads at most 1 MiB of the answer. 5xx and 429 are errors;
    /// other statuses are returned for the caller to interpret.
    pub async fn send(
        &self,
        mut request: reqwest::Request,
    ) -> Result<HttpResponse, TransportError> {
        *request.timeout_mut() = Some(self.timeout);
        let response = self.client.execute(request).await.map_err(classify)?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(TransportError::Unavailable(status.as_u16()));
        }
        let mut builder = oauth2::http::Response::builder().status(status.as_u16());
        for (name, value) in response.headers() {
            builder = builder.header(name.as_str(), value.as_bytes());
        }
        let body = read_capped(response).await?;
        builder
            .body(body)
            .map_err(|e| TransportError::Invalid(e.to_string()))
    }

    /// GET `url` with a bearer token and `Accept: application/json`.
    pub async fn get_json(
        &self,
        url: &url::Url,
        bearer: Option<&str>,
    ) -> Result<HttpResponse, TransportError> {
        let mut builder = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            builder = builder.bearer_auth(token);
        }
        let request = builder
            .build()
            .map_err(|e| TransportError::Invalid(e.to_string()))?;
        self.send(request).await
    }
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, TransportError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(TransportError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(classify)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(TransportError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn classify(error: reqwest::Error) -> TransportError {
    // Query strings carry tokens (Graph's `input_token`): keep URLs out of errors.
    let error = error.without_url();
    if error.is_timeout() {
        TransportError::Timeout
    } else if error.is_connect() {
        TransportError::NotSent(error)
    } else if error.is_builder() {
        TransportError::Invalid(error.to_string())
    } else {
        TransportError::Broken(error)
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for ProviderHttp {
    type Error = TransportError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, TransportError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)
                .map_err(|e| TransportError::Invalid(e.to_string()))?;
            self.send(request).await
        })
    }
}
