//! What a sign-in job carries: [`SignInJob`] in memory, [`QueuedJob`] (its secrets
//! sealed) in the queue's table.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::audit;

/// One callback's work. Its `Debug` shows no code or verifier.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct SignInJob {
    pub operation_id: Uuid,
    pub provider: String,
    pub code: String,
    pub pkce_verifier: String,
    pub nonce: Option<String>,
    /// Apple's `user` form field (JSON with the name), sent on the first sign-in only.
    #[serde(default)]
    pub form_user: Option<String>,
    /// Native apps: the redirect URI the app used to get `code`.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// Native apps: an ID token from the provider's SDK, instead of a code.
    #[serde(default)]
    pub id_token: Option<String>,
    /// The ID token came from Google's One Tap or button on our own page: its
    /// audience must be the web client, not one of `native_client_ids`.
    #[serde(default)]
    pub one_tap: bool,
    /// Facebook's SDK: a user access token, checked with `debug_token`.
    #[serde(default)]
    pub access_token: Option<String>,
    /// Who sent the callback, for the audit log.
    #[serde(default)]
    pub client: JobClient,
}

/// What the queue stores for a [`SignInJob`]: the operation and provider in clear
/// (for operators and logs), everything secret or personal sealed with AES-GCM under
/// a key derived from `secret_key`, so the job table, its backups and a database
/// reader see no code, verifier, nonce, ID token or client address.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueuedJob {
    pub operation_id: Uuid,
    pub provider: String,
    sealed: String,
}

impl SignInJob {
    /// Whether the job presents a code at the token endpoint (not an SDK's ID
    /// token or access token): only then does its exchange get marked.
    pub fn exchanges_code(&self) -> bool {
        self.id_token.is_none() && self.access_token.is_none()
    }
}

impl QueuedJob {
    /// Seals `job` for the queue.
    pub fn seal(job: &SignInJob, keys: &crate::crypto::Keys) -> Self {
        let plaintext = serde_json::to_vec(job).expect("a sign-in job serializes");
        Self {
            operation_id: job.operation_id,
            provider: job.provider.clone(),
            sealed: keys.jobs.seal(&plaintext),
        }
    }

    /// The job, or `None` when it was sealed under another `secret_key`.
    pub fn open(&self, keys: &crate::crypto::Keys) -> Option<SignInJob> {
        serde_json::from_slice(&keys.jobs.open(&self.sealed)?).ok()
    }
}

/// The address and user agent of the request that queued a job.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JobClient {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl SignInJob {
    /// `event` about this job: its provider, operation and client.
    pub(super) fn audit(&self, event: audit::Event) -> audit::Event {
        event
            .provider(&self.provider)
            .operation(self.operation_id)
            .client(self.client.ip.as_deref(), self.client.user_agent.as_deref())
    }
}

impl std::fmt::Debug for SignInJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInJob")
            .field("operation_id", &self.operation_id)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_code_and_verifier() {
        let job = SignInJob {
            operation_id: Uuid::nil(),
            provider: "demo".into(),
            code: "SECRET-CODE".into(),
            pkce_verifier: "SECRET-VERIFIER".into(),
            nonce: Some("SECRET-NONCE".into()),
            form_user: Some("SECRET-NAME".into()),
            redirect_uri: None,
            id_token: Some("SECRET-TOKEN".into()),
            access_token: Some("SECRET-ACCESS".into()),
            one_tap: false,
            client: Default::default(),
        };
        let shown = format!("{job:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("demo"));
    }
}
