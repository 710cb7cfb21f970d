//! Authorizations and challenges (RFC 8555 §7.5, §8).
//!
//! ACME v1 reads both with a plain GET and spells a challenge's URL `uri`;
//! the same types carry them.

use super::Account;
use super::poll::Poller;
use crate::crypto::challenge::{self, TlsAlpn01Certificate};
use crate::error::{Error, Result, RetryAfter};
use crate::protocol::{
    AuthorizationResource, AuthorizationStatus, ChallengeResource, ChallengeStatus, ChallengeType,
    Identifier,
};
use crate::transport::Endpoint;

/// An authorization: the CA's record of proving control of one identifier.
///
/// Example: the client example on the [crate root](crate).
#[derive(Debug, Clone)]
pub struct Authorization {
    account: Account,
    url: String,
    state: AuthorizationResource,
    last_retry_after: Option<RetryAfter>,
}

impl Authorization {
    pub(crate) async fn fetch(account: Account, url: &str) -> Result<Self> {
        let (state, response) = account
            .client()
            .dialect_impl()
            .read_authorization(&account, url)
            .await?;
        Ok(Self {
            state,
            last_retry_after: response.retry_after(),
            account,
            url: url.to_owned(),
        })
    }

    /// The authorization URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The authorization object as last seen.
    pub fn state(&self) -> &AuthorizationResource {
        &self.state
    }

    /// The status as last seen.
    pub fn status(&self) -> AuthorizationStatus {
        self.state.status
    }

    /// The identifier as the order named it (`*.` restored for wildcards).
    pub fn identifier(&self) -> Identifier {
        let mut id = self.state.identifier.clone();
        if self.state.wildcard && !id.value.starts_with("*.") {
            id.value = format!("*.{}", id.value);
        }
        id
    }

    /// Every challenge offered.
    pub fn challenges(&self) -> Vec<Challenge> {
        self.state
            .challenges
            .iter()
            .map(|c| Challenge {
                account: self.account.clone(),
                identifier: self.state.identifier.clone(),
                state: c.clone(),
            })
            .collect()
    }

    /// The challenge of type `kind`, if offered.
    pub fn challenge(&self, kind: &ChallengeType) -> Option<Challenge> {
        self.challenges()
            .into_iter()
            .find(|c| &c.state.kind == kind)
    }

    /// Fetches the authorization again.
    pub async fn refresh(&mut self) -> Result<&AuthorizationResource> {
        let (state, response) = self
            .account
            .client()
            .dialect_impl()
            .read_authorization(&self.account, &self.url)
            .await?;
        self.state = state;
        self.last_retry_after = response.retry_after();
        Ok(&self.state)
    }

    /// Polls until the authorization leaves `pending`; `valid` is success,
    /// anything else [`Error::ValidationFailed`] with the challenge's problem.
    pub async fn wait_valid(&mut self) -> Result<()> {
        let policy = *self.account.client().poll_policy();
        let url = self.url.clone();
        let client = self.account.client().clone();
        let mut poller = Poller::learning(
            &policy,
            client.poll_learner(),
            "authorization",
            "pending",
            &url,
            client.round_trip(),
        );
        while self.state.status == AuthorizationStatus::Pending {
            poller.wait("pending", self.last_retry_after).await?;
            self.refresh().await?;
        }
        poller.done();
        match self.state.status {
            AuthorizationStatus::Valid => Ok(()),
            _ => Err(self.failure()),
        }
    }

    /// Deactivates the authorization (RFC 8555 §7.5.2).
    pub async fn deactivate(&mut self) -> Result<()> {
        self.state = self
            .account
            .client()
            .dialect_impl()
            .deactivate_authorization(&self.account, &self.url)
            .await?;
        Ok(())
    }

    /// The error describing why this authorization is not valid.
    pub(crate) fn failure(&self) -> Error {
        let problem = self
            .state
            .challenges
            .iter()
            .find_map(|c| c.error.clone())
            .map(Box::new);
        Error::ValidationFailed {
            identifier: self.identifier(),
            problem,
        }
    }
}

/// One challenge of an authorization, with what answering it takes.
///
/// Example: the client example on the [crate root](crate).
#[derive(Debug, Clone)]
pub struct Challenge {
    account: Account,
    identifier: Identifier,
    state: ChallengeResource,
}

impl Challenge {
    /// The challenge type.
    pub fn kind(&self) -> &ChallengeType {
        &self.state.kind
    }

    /// The challenge URL.
    pub fn url(&self) -> &str {
        &self.state.url
    }

    /// The challenge object as last seen.
    pub fn state(&self) -> &ChallengeResource {
        &self.state
    }

    /// The status as last seen.
    pub fn status(&self) -> ChallengeStatus {
        self.state.status
    }

    /// The identifier being validated (without `*.`).
    pub fn identifier(&self) -> &Identifier {
        &self.identifier
    }

    /// The token.
    pub fn token(&self) -> Result<&str> {
        self.state
            .token
            .as_deref()
            .filter(|t| is_safe_token(t))
            .ok_or_else(|| Error::InvalidResponse {
                request: Box::new(crate::error::RequestInfo {
                    method: "POST",
                    url: self.state.url.clone(),
                    status: None,
                    retry_after: None,
                }),
                reason: "challenge without a valid base64url token".into(),
            })
    }

    /// The key authorization (RFC 8555 §8.1): the http-01 response body.
    pub fn key_authorization(&self) -> Result<String> {
        Ok(challenge::key_authorization(
            self.token()?,
            self.account.key(),
        ))
    }

    /// The path the http-01 response is served at.
    pub fn http01_path(&self) -> Result<String> {
        Ok(format!("/.well-known/acme-challenge/{}", self.token()?))
    }

    /// The dns-01 TXT record name (`_acme-challenge.<name>.`).
    pub fn dns01_record_name(&self) -> String {
        challenge::dns01_record_name(&self.identifier)
    }

    /// The dns-01 TXT record value.
    pub fn dns01_txt_value(&self) -> Result<String> {
        Ok(challenge::dns01_txt_value(&self.key_authorization()?))
    }

    /// The tls-alpn-01 certificate to present (RFC 8737).
    pub fn tls_alpn01_certificate(&self) -> Result<TlsAlpn01Certificate> {
        challenge::tls_alpn01_certificate(&self.identifier, &self.key_authorization()?)
    }

    /// Tells the CA the challenge is ready to be validated (POST `{}`).
    ///
    /// After a failure whose outcome is unknown the challenge is read first
    /// and answered again only if it is still `pending`.
    ///
    /// ACME v1: POST `{"resource": "challenge", "type", "keyAuthorization"}`,
    /// answered 202.
    pub async fn respond(&mut self) -> Result<ChallengeStatus> {
        let url = self.state.url.clone();
        let client = self.account.client().clone();
        let dialect = client.dialect_impl();
        let payload = dialect.challenge_answer(self)?;
        let mut retrying = client.transport().retrying(Endpoint::Challenge, &url);
        loop {
            let result = self
                .account
                .post_once(&mut retrying, Some(&payload))
                .await
                .and_then(|r| dialect.parse_challenge(&r));
            match result {
                Ok(state) => {
                    self.state = state;
                    break;
                }
                Err(e) if e.is_unusable_answer() => {
                    // A success answer that is not a challenge: the CA took
                    // the answer; the challenge read back says the rest.
                    tracing::warn!(challenge = %url, error = %e, "the CA's answer to a challenge response is unreadable; reading the challenge");
                    self.refresh().await?;
                    break;
                }
                Err(e) => {
                    let unknown = e.class() == crate::error::ErrorClass::Transient;
                    retrying.pause_or_fail(e).await?;
                    if unknown && self.refresh().await?.status != ChallengeStatus::Pending {
                        break;
                    }
                }
            }
        }
        tracing::info!(
            identifier = %self.identifier,
            challenge = %self.state.kind,
            status = ?self.state.status,
            "challenge answered"
        );
        Ok(self.state.status)
    }

    /// Fetches the challenge again (ACME v1: a plain GET).
    pub async fn refresh(&mut self) -> Result<&ChallengeResource> {
        self.state = self
            .account
            .client()
            .dialect_impl()
            .read_challenge(&self.account, &self.state.url)
            .await?;
        Ok(&self.state)
    }
}

/// A token must be base64url (RFC 8555 §8.3): nothing that could escape a
/// URL path or a file name.
fn is_safe_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
