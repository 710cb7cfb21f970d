//! Orders (RFC 8555 §7.4): create, poll, finalize, download.

use serde_json::Value;
use time::OffsetDateTime;
use tokio::time::{Instant, sleep};

use super::{Account, Authorization, CertificateChain};
use crate::crypto::{Csr, b64};
use crate::error::{Error, ErrorClass, Result, RetryAfter};
use crate::protocol::{AuthorizationStatus, Identifier, OrderResource, OrderStatus, v2};
use crate::transport::{Endpoint, PEM_CHAIN, links};

/// What to order: identifiers and an optional validity window.
#[derive(Debug, Clone)]
pub struct NewOrder {
    identifiers: Vec<Identifier>,
    not_before: Option<OffsetDateTime>,
    not_after: Option<OffsetDateTime>,
}

impl NewOrder {
    /// An order for these identifiers (at least one; duplicates removed).
    pub fn new(identifiers: Vec<Identifier>) -> Result<Self> {
        if identifiers.is_empty() {
            return Err(Error::InvalidInput(
                "an order needs at least one identifier".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        let identifiers = identifiers
            .into_iter()
            .filter(|i| seen.insert(i.clone()))
            .collect();
        Ok(Self {
            identifiers,
            not_before: None,
            not_after: None,
        })
    }

    /// An order for these names: IP addresses become `ip` identifiers,
    /// everything else is checked as a DNS name.
    pub fn for_names<S: AsRef<str>>(names: &[S]) -> Result<Self> {
        let ids = names
            .iter()
            .map(|n| Identifier::parse(n.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Self::new(ids)
    }

    /// Requests a notBefore (not every CA honours it; Let's Encrypt refuses it).
    pub fn not_before(mut self, t: OffsetDateTime) -> Self {
        self.not_before = Some(t);
        self
    }

    /// Requests a notAfter.
    pub fn not_after(mut self, t: OffsetDateTime) -> Self {
        self.not_after = Some(t);
        self
    }

    /// The identifiers.
    pub fn identifiers(&self) -> &[Identifier] {
        &self.identifiers
    }

    pub(crate) fn payload(&self) -> Value {
        serde_json::to_value(v2::NewOrder {
            identifiers: &self.identifiers,
            not_before: self.not_before,
            not_after: self.not_after,
        })
        .expect("payload serializes")
    }
}

/// An order at the CA, with its last known state.
#[derive(Debug, Clone)]
pub struct Order {
    account: Account,
    url: String,
    state: OrderResource,
    last_retry_after: Option<RetryAfter>,
}

impl Order {
    pub(crate) fn new(account: Account, url: String, state: OrderResource) -> Self {
        Self {
            account,
            url,
            state,
            last_retry_after: None,
        }
    }

    /// The order URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The order object as last seen.
    pub fn state(&self) -> &OrderResource {
        &self.state
    }

    /// The status as last seen.
    pub fn status(&self) -> OrderStatus {
        self.state.status
    }

    /// The identifiers.
    pub fn identifiers(&self) -> &[Identifier] {
        &self.state.identifiers
    }

    /// The account the order belongs to.
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// Fetches the order (POST-as-GET) and returns its new state.
    pub async fn refresh(&mut self) -> Result<&OrderResource> {
        let (state, response) = self
            .account
            .post_json(Endpoint::Order, &self.url, None)
            .await?;
        self.state = state;
        self.last_retry_after = response.retry_after();
        Ok(&self.state)
    }

    /// Fetches every authorization of the order.
    pub async fn authorizations(&self) -> Result<Vec<Authorization>> {
        let mut out = Vec::with_capacity(self.state.authorizations.len());
        for url in &self.state.authorizations {
            out.push(Authorization::fetch(self.account.clone(), url).await?);
        }
        Ok(out)
    }

    /// Polls until the order leaves `pending`. `ready` (or later) is
    /// success; `invalid` fails with the failed authorization's problem
    /// ([`Error::ValidationFailed`]) when one can be found.
    pub async fn wait_ready(&mut self) -> Result<OrderStatus> {
        self.poll_while(OrderStatus::Pending).await?;
        match self.state.status {
            OrderStatus::Invalid => Err(self.invalid_error().await),
            status => Ok(status),
        }
    }

    /// Sends the CSR (RFC 8555 §7.4). The order must be `ready`. The answer
    /// may be `processing` (poll with [`Order::wait_certificate`]) or
    /// already `valid`.
    pub async fn finalize(&mut self, csr: Csr<'_>) -> Result<OrderStatus> {
        if self.state.status != OrderStatus::Ready {
            return Err(Error::InvalidInput(format!(
                "order {} is {}, not ready to finalize",
                self.url,
                self.state.status.as_str()
            )));
        }
        let der = match csr {
            Csr::Key(key) => {
                if key.to_signing_key()?.jwk() == self.account.key().jwk() {
                    return Err(Error::InvalidInput(
                        "the certificate key must not be the account key".into(),
                    ));
                }
                key.csr_der(&self.state.identifiers)?
            }
            Csr::Der(der) => der.to_vec(),
        };
        let payload = serde_json::to_value(v2::Finalize { csr: b64(&der) }).expect("serializes");
        let url = self.state.finalize.clone();
        let client = self.account.client().clone();
        let mut retrying = client.transport().retrying(Endpoint::Finalize, &url);
        loop {
            let result = self
                .account
                .post_once(Endpoint::Finalize, &url, Some(&payload))
                .await
                .and_then(|r| Ok((r.json::<OrderResource>()?, r.retry_after())));
            match result {
                Ok((state, retry_after)) => {
                    self.state = state;
                    self.last_retry_after = retry_after;
                    tracing::info!(order = %self.url, status = self.state.status.as_str(), "order finalized");
                    return Ok(self.state.status);
                }
                Err(e) => {
                    // Finalize is not idempotent (a second one answers
                    // orderNotReady): when the outcome is unknown, read the
                    // order and continue from what the CA says.
                    let unknown = e.class() == ErrorClass::Transient;
                    retrying.pause_or_fail(e).await?;
                    if unknown {
                        self.refresh().await?;
                        match self.state.status {
                            OrderStatus::Ready => {
                                tracing::info!(order = %self.url, "finalize did not take effect; sending it again");
                            }
                            OrderStatus::Processing | OrderStatus::Valid => {
                                tracing::info!(
                                    order = %self.url,
                                    status = self.state.status.as_str(),
                                    "finalize had taken effect although its response was lost"
                                );
                                return Ok(self.state.status);
                            }
                            OrderStatus::Invalid => return Err(self.invalid_error().await),
                            OrderStatus::Pending => {
                                return Err(Error::InvalidInput(format!(
                                    "order {} went back to pending during finalize",
                                    self.url
                                )));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Polls until the order leaves `processing`; returns the certificate URL.
    pub async fn wait_certificate(&mut self) -> Result<String> {
        self.poll_while(OrderStatus::Processing).await?;
        match (&self.state.status, &self.state.certificate) {
            (OrderStatus::Valid, Some(url)) => Ok(url.clone()),
            (OrderStatus::Invalid, _) => Err(self.invalid_error().await),
            (status, _) => Err(Error::InvalidResponse {
                request: Box::new(crate::error::RequestInfo {
                    method: "POST",
                    url: self.url.clone(),
                    status: None,
                    retry_after: None,
                }),
                reason: format!(
                    "order is {} without a certificate URL after finalize",
                    status.as_str()
                ),
            }),
        }
    }

    /// Downloads the certificate chain the CA offers by default.
    pub async fn certificate(&mut self) -> Result<CertificateChain> {
        self.certificate_chain(None).await
    }

    /// Downloads the certificate; with `preferred_issuer`, picks the first
    /// chain (default, then each `Link: rel="alternate"`) whose topmost
    /// certificate was issued by a CA with that common name, else the default.
    pub async fn certificate_chain(
        &mut self,
        preferred_issuer: Option<&str>,
    ) -> Result<CertificateChain> {
        let url = self.wait_certificate().await?;
        let default = download(&self.account, &url).await?;
        let Some(preferred) = preferred_issuer else {
            return Ok(default);
        };
        if default.top_issuer_common_name().as_deref() == Some(preferred) {
            return Ok(default);
        }
        for alt in default.alternate_urls() {
            let chain = download(&self.account, alt).await?;
            if chain.top_issuer_common_name().as_deref() == Some(preferred) {
                tracing::info!(issuer = preferred, url = %alt, "preferred chain selected");
                return Ok(chain);
            }
        }
        tracing::info!(
            issuer = preferred,
            "no chain from the preferred issuer; using the default"
        );
        Ok(default)
    }

    async fn poll_while(&mut self, status: OrderStatus) -> Result<()> {
        let policy = self.account.client().poll_policy().clone();
        let started = Instant::now();
        let mut attempt = 0;
        while self.state.status == status {
            if started.elapsed() >= policy.timeout {
                return Err(Error::PollTimeout {
                    what: "order",
                    url: self.url.clone(),
                    status: status.as_str().into(),
                    waited: started.elapsed(),
                });
            }
            sleep(policy.delay(attempt, self.last_retry_after)).await;
            attempt += 1;
            self.refresh().await?;
        }
        Ok(())
    }

    /// The most useful error for an invalid order: the failed
    /// authorization's challenge problem, else the order's own.
    async fn invalid_error(&self) -> Error {
        if let Ok(authzs) = self.authorizations().await {
            for authz in authzs {
                if authz.status() == AuthorizationStatus::Invalid {
                    return authz.failure();
                }
            }
        }
        Error::OrderInvalid {
            url: self.url.clone(),
            problem: self.state.error.clone().map(Box::new),
        }
    }
}

/// Downloads a chain; a body that is not a valid PEM chain is retried like
/// any other broken answer.
async fn download(account: &Account, url: &str) -> Result<CertificateChain> {
    let parse = |response: &crate::transport::Response| {
        let text = response.text()?;
        let alternates = links(&response.headers, "alternate");
        CertificateChain::from_pem(url, &text, alternates).map_err(|reason| {
            Error::InvalidResponse {
                request: Box::new(crate::error::RequestInfo {
                    method: "POST",
                    url: url.to_owned(),
                    status: Some(response.status),
                    retry_after: None,
                }),
                reason,
            }
        })
    };
    let (chain, _) = account
        .client()
        .transport()
        .post_parsed(
            Endpoint::Certificate,
            url,
            account.key(),
            crate::crypto::jws::KeyId::Kid(account.url()),
            None,
            Some(PEM_CHAIN),
            parse,
        )
        .await?;
    Ok(chain)
}
