//! Orders (RFC 8555 §7.4): create, poll, finalize, download.
//!
//! An ACME v1 order is client-side: its authorizations (one `new-authz`
//! per identifier), then `new-cert`; see [`Order`].

use serde_json::Value;
use time::OffsetDateTime;

use super::poll::Poller;
use super::{Account, Authorization, CertificateChain, v1};
use crate::crypto::{Csr, b64};
use crate::error::{Error, ErrorClass, Result, RetryAfter};
use crate::protocol::v1::OrderRef;
use crate::protocol::{
    AuthorizationResource, AuthorizationStatus, Dialect, Identifier, OrderResource, OrderStatus, v2,
};
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

    /// True when notBefore or notAfter was asked for.
    pub(crate) fn has_validity_window(&self) -> bool {
        self.not_before.is_some() || self.not_after.is_some()
    }

    /// The newOrder payload; a notBefore/notAfter that RFC 3339 cannot
    /// spell (a year outside 0..=9999, an offset with seconds) is
    /// [`Error::InvalidInput`].
    pub(crate) fn payload(&self) -> Result<Value> {
        serde_json::to_value(v2::NewOrder {
            identifiers: &self.identifiers,
            not_before: self.not_before,
            not_after: self.not_after,
        })
        .map_err(|e| Error::InvalidInput(format!("the order's notBefore/notAfter: {e}")))
    }
}

/// An order at the CA, with its last known state.
///
/// With an ACME v1 CA ([`Order::dialect`]) the order is the client's own:
/// v1 has no order resource, so the state is synthesized from the
/// order's authorizations (any failed: `invalid`; all valid: `ready`;
/// else `pending`; issued: `valid`), `finalize` is the CA's `new-cert`
/// URL, and [`Order::url`] is a `urn:sturdy-acme:v1-order:...` reference
/// (naming the authorizations, and the certificate once issued) from which
/// [`Account::order`] rebuilds the order. The
/// methods behave the same; see [`Order::finalize`] for what v1's
/// synchronous issuance changes.
#[derive(Debug, Clone)]
pub struct Order {
    account: Account,
    url: String,
    state: OrderResource,
    last_retry_after: Option<RetryAfter>,
    v1: Option<V1Order>,
    /// newOrder requests sent to create it (0: loaded, or ACME v1).
    pub(crate) new_order_requests: u32,
}

/// What a v1 order keeps beyond the synthesized order object.
#[derive(Debug, Clone)]
struct V1Order {
    reference: OrderRef,
    /// The last seen status of each authorization (same order as the URLs).
    statuses: Vec<AuthorizationStatus>,
    /// What new-cert answered (or the finder found).
    issued: Option<v1::Issued>,
    /// The assembled chain, once built.
    chain: Option<CertificateChain>,
}

impl Order {
    pub(crate) fn new(account: Account, url: String, state: OrderResource) -> Self {
        Self {
            account,
            url,
            state,
            last_retry_after: None,
            v1: None,
            new_order_requests: 0,
        }
    }

    /// A v1 order made of these authorizations.
    pub(crate) fn new_v1(
        account: Account,
        reference: OrderRef,
        states: &[AuthorizationResource],
    ) -> Self {
        let statuses = states.iter().map(|a| a.status).collect::<Vec<_>>();
        let expires = states.iter().filter_map(|a| a.expires).min();
        let state = v1::order_resource(account.client(), &reference, &statuses, expires);
        Self {
            url: reference.to_url(),
            account,
            state,
            last_retry_after: None,
            v1: Some(V1Order {
                reference,
                statuses,
                issued: None,
                chain: None,
            }),
            new_order_requests: 0,
        }
    }

    /// A v1 order rebuilt from its [`Order::url`].
    pub(crate) async fn load_v1(account: Account, url: &str) -> Result<Self> {
        let reference = OrderRef::parse(url).ok_or_else(|| {
            Error::InvalidInput(format!(
                "{url:?} is not an ACME v1 order reference (v1 has no order URLs; \
                 use the Order::url() of an order made through this crate)"
            ))
        })?;
        let issued = reference.certificate.is_some();
        let n = reference.authorizations.len();
        let status = if issued {
            AuthorizationStatus::Valid
        } else {
            AuthorizationStatus::Pending
        };
        let statuses = vec![status; n];
        let state = v1::order_resource(account.client(), &reference, &statuses, None);
        let mut order = Self {
            url: reference.to_url(),
            account,
            state,
            last_retry_after: None,
            v1: Some(V1Order {
                reference,
                statuses,
                issued: None,
                chain: None,
            }),
            new_order_requests: 0,
        };
        if !issued {
            order.refresh().await?;
        }
        Ok(order)
    }

    /// The order URL (for ACME v1, the client-side order's reference:
    /// `urn:sturdy-acme:v1-order:...`, which also names the certificate
    /// once it is issued).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The dialect of the CA this order lives at.
    pub fn dialect(&self) -> Dialect {
        self.account.client().dialect()
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
    ///
    /// ACME v1: fetches the authorizations that are still pending (plain
    /// GET) and recomputes the state; nothing once the certificate is issued.
    pub async fn refresh(&mut self) -> Result<&OrderResource> {
        if let Some(v1) = &mut self.v1 {
            let client = self.account.client();
            if v1.reference.certificate.is_none() {
                let mut expires = self.state.expires;
                let mut retry_after = None;
                for (url, status) in v1.reference.authorizations.iter().zip(&mut v1.statuses) {
                    if *status != AuthorizationStatus::Pending {
                        continue;
                    }
                    let (authz, response) = v1::fetch_authorization(client, url).await?;
                    *status = authz.status;
                    expires = match (expires, authz.expires) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    retry_after = response.retry_after().or(retry_after);
                }
                self.last_retry_after = retry_after;
                self.state = v1::order_resource(client, &v1.reference, &v1.statuses, expires);
            }
            return Ok(&self.state);
        }
        let (state, response) = self
            .account
            .post_json(Endpoint::Order, &self.url, None)
            .await?;
        self.state = state;
        self.last_retry_after = response.retry_after();
        Ok(&self.state)
    }

    /// Fetches every authorization of the order.
    ///
    /// The CA's list is checked first: no more authorizations than the
    /// order has identifiers (a hostile list is never fanned out), and each
    /// authorization must be for one of the order's identifiers, so a
    /// solver is only ever shown what was ordered; otherwise
    /// [`Error::ProtocolViolation`].
    pub async fn authorizations(&self) -> Result<Vec<Authorization>> {
        let listed = self.state.authorizations.len();
        let ordered = self.state.identifiers.len();
        if listed > ordered.max(1) {
            return Err(Error::ProtocolViolation {
                url: self.url.clone(),
                reason: format!(
                    "the order lists {listed} authorizations for {ordered} identifiers"
                ),
            });
        }
        let mut out = Vec::with_capacity(listed);
        for url in &self.state.authorizations {
            let authz = Authorization::fetch(self.account.clone(), url).await?;
            if !self.covers(&authz.state().identifier, authz.state().wildcard) {
                return Err(Error::ProtocolViolation {
                    url: url.clone(),
                    reason: format!(
                        "authorization for {} ({}), which order {} does not contain",
                        authz.identifier(),
                        if authz.state().wildcard {
                            "wildcard"
                        } else {
                            "not a wildcard"
                        },
                        self.url
                    ),
                });
            }
            out.push(authz);
        }
        Ok(out)
    }

    /// True when an authorization for `id` (with the wildcard flag) belongs
    /// to this order's identifiers.
    fn covers(&self, id: &Identifier, wildcard: bool) -> bool {
        self.state.identifiers.iter().any(|ordered| {
            ordered.kind.eq_ignore_ascii_case(&id.kind)
                && match ordered.value.strip_prefix("*.") {
                    Some(base) => wildcard && base.eq_ignore_ascii_case(&id.value),
                    None => !wildcard && ordered.value.eq_ignore_ascii_case(&id.value),
                }
        })
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
    ///
    /// ACME v1: `new-cert`, which issues synchronously (the answer is the
    /// DER certificate; the order becomes `valid`). It has its own timeout
    /// ([`ClientBuilder::new_cert_timeout`](crate::ClientBuilder::new_cert_timeout)),
    /// and since v1 has no order to read back, a lost answer is handled
    /// apart: every `new-cert` is recorded before it is sent; after one
    /// whose answer was lost, the [`CertificateFinder`](crate::client::CertificateFinder)
    /// (if any) is asked for the certificate before anything is repeated;
    /// and a repeat past the budget
    /// ([`ClientBuilder::new_cert_budget`](crate::ClientBuilder::new_cert_budget))
    /// is refused with [`Error::RateLimitedLocally`]. With [`Csr::Der`]
    /// the identifiers and key are read from the CSR.
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
        if self.v1.is_some() {
            return self.finalize_v1(csr, der).await;
        }
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
                    if matches!(self.state.status, OrderStatus::Ready | OrderStatus::Pending) {
                        // Sending finalize again would loop for as long as
                        // the CA keeps answering so.
                        return Err(Error::ProtocolViolation {
                            url: url.clone(),
                            reason: format!(
                                "finalize of {} answered with status {} (expected processing or valid)",
                                self.url,
                                self.state.status.as_str()
                            ),
                        });
                    }
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

    async fn finalize_v1(&mut self, csr: Csr<'_>, der: Vec<u8>) -> Result<OrderStatus> {
        let (ids, spki) = match csr {
            Csr::Key(key) => (self.state.identifiers.clone(), key.public_key_der()),
            Csr::Der(der) => v1::csr_contents(der)?,
        };
        let issued = v1::new_cert(&self.account, &der, &ids, &spki).await?;
        let client = self.account.client().clone();
        let v1 = self.v1.as_mut().expect("a v1 order");
        v1.reference.certificate = Some(issued.url.clone());
        v1.chain = issued.chain.clone();
        v1.issued = Some(issued);
        self.url = v1.reference.to_url();
        self.state = v1::order_resource(&client, &v1.reference, &v1.statuses, self.state.expires);
        tracing::info!(order = %self.url, "v1 order issued");
        Ok(self.state.status)
    }

    /// ACME v1: treats a client-side order whose new-cert may already have
    /// been sent as ready again, whatever its authorizations now say
    /// (expired, deactivated): the next [`Order::finalize`] then goes
    /// through the new-cert guard (finder, or `OutcomeUnknown`), never
    /// through new authorizations or a new order. No effect on v2 orders.
    pub(crate) fn resume_v1_new_cert(&mut self) {
        if self.v1.is_some() && self.state.status != OrderStatus::Valid {
            self.state.status = OrderStatus::Ready;
        }
    }

    /// The chain already in hand without a request (ACME v1: one a
    /// certificate finder found after a lost new-cert answer, which the CA
    /// never gave a URL for, so it must be journalled at once).
    pub(crate) fn chain_in_hand(&self) -> Option<&CertificateChain> {
        self.v1.as_ref()?.chain.as_ref()
    }

    /// The v1 chain: cached, else assembled from new-cert's answer, else
    /// downloaded from the certificate URL (following `Link: rel="up"`).
    async fn chain_v1(&mut self, url: &str) -> Result<CertificateChain> {
        let client = self.account.client().clone();
        let v1 = self.v1.as_mut().expect("a v1 order");
        if let Some(chain) = &v1.chain {
            return Ok(chain.clone());
        }
        let chain = match v1.issued.as_ref() {
            Some(v1::Issued {
                leaf_der: Some(leaf),
                up,
                ..
            }) => v1::assemble_chain(&client, url, leaf.clone(), up.clone()).await?,
            _ => v1::download_chain(&client, url).await?,
        };
        v1.chain = Some(chain.clone());
        Ok(chain)
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
    ///
    /// ACME v1 offers one chain (the leaf, then its `Link: rel="up"`
    /// issuers), so a preference only ever gets the default.
    pub async fn certificate_chain(
        &mut self,
        preferred_issuer: Option<&str>,
    ) -> Result<CertificateChain> {
        let url = self.wait_certificate().await?;
        let default = if self.v1.is_some() {
            self.chain_v1(&url).await?
        } else {
            download(&self.account, &url).await?
        };
        prefer_chain(&self.account, default, preferred_issuer).await
    }

    async fn poll_while(&mut self, status: OrderStatus) -> Result<()> {
        let policy = self.account.client().poll_policy().clone();
        let url = self.url.clone();
        let mut poller = Poller::new(&policy, "order", &url);
        while self.state.status == status {
            poller.wait(status.as_str(), self.last_retry_after).await?;
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

/// At most this many `Link: rel="alternate"` chains are fetched when
/// looking for a preferred issuer (a hostile CA may list thousands).
pub const MAX_ALTERNATE_CHAINS: usize = 4;

/// `default`, or the first alternate chain (at most
/// [`MAX_ALTERNATE_CHAINS`] are fetched) whose topmost certificate was
/// issued by `preferred_issuer`.
pub(crate) async fn prefer_chain(
    account: &Account,
    default: CertificateChain,
    preferred_issuer: Option<&str>,
) -> Result<CertificateChain> {
    let Some(preferred) = preferred_issuer else {
        return Ok(default);
    };
    if default.top_issuer_common_name().as_deref() == Some(preferred) {
        return Ok(default);
    }
    let alternates = default.alternate_urls();
    if alternates.len() > MAX_ALTERNATE_CHAINS {
        tracing::warn!(
            offered = alternates.len(),
            fetched = MAX_ALTERNATE_CHAINS,
            "the CA offers more alternate chains than are fetched"
        );
    }
    for alt in alternates.iter().take(MAX_ALTERNATE_CHAINS) {
        let chain = download(account, alt).await?;
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

/// Downloads a chain; a body that is not a valid PEM chain is retried like
/// any other broken answer.
pub(crate) async fn download(account: &Account, url: &str) -> Result<CertificateChain> {
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
