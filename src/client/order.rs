//! Orders (RFC 8555 §7.4): create, poll, finalize, download.
//!
//! An ACME v1 order is client-side: its authorizations (one `new-authz`
//! per identifier), then `new-cert`; see [`Order`].

use std::time::SystemTime;

use serde_json::Value;
use time::OffsetDateTime;

use super::dialect::OrderWire;
use super::poll::Poller;
use super::{Account, Authorization, CertificateChain, ChainPreference};
use crate::crypto::Csr;
use crate::error::{Error, Result, RetryAfter};
use crate::protocol::{
    AuthorizationStatus, CertId, Dialect, Identifier, OrderResource, OrderStatus, v2,
};
use crate::transport::{Endpoint, PEM_CHAIN, links};

/// What to order: identifiers and an optional validity window.
///
/// # Example
///
/// ```
/// use sturdy_acme::{Identifier, NewOrder};
///
/// let order = NewOrder::for_names(&["Example.com.", "*.example.com", "192.0.2.1", "example.com"])?;
/// assert_eq!(order.identifiers().len(), 3); // normalized, duplicates removed
/// assert_eq!(order.identifiers()[2], Identifier::ip("192.0.2.1".parse().unwrap()));
/// assert!(NewOrder::for_names(&["*.co.uk"]).is_err()); // a CA would refuse it
/// # Ok::<(), sturdy_acme::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct NewOrder {
    identifiers: Vec<Identifier>,
    not_before: Option<OffsetDateTime>,
    not_after: Option<OffsetDateTime>,
    replaces: Option<CertId>,
    profile: Option<String>,
    repeat_gate: Option<RepeatGate>,
}

/// Asked before a newOrder is sent once more (its earlier answer was lost
/// and its order not found, or the CA refused its `replaces`): the CA
/// counts every newOrder it receives against the account's limit, so the
/// issuer spends a token from its ledger for each repeat first, and a
/// refusal stops the repeats (the journal keeps the order to look for).
/// The argument says whether the repeat names the certificate it replaces.
/// Whether one more newOrder may go (its argument: whether it names the
/// certificate it replaces).
pub(crate) type RepeatAllowed = dyn Fn(bool) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>
    + Send
    + Sync;

#[derive(Clone)]
pub(crate) struct RepeatGate(pub(crate) std::sync::Arc<RepeatAllowed>);

impl std::fmt::Debug for RepeatGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RepeatGate")
    }
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
            replaces: None,
            profile: None,
            repeat_gate: None,
        })
    }

    /// An order for these names: IP addresses become `ip` identifiers,
    /// everything else is checked as a DNS name.
    pub fn for_names<S: AsRef<str>>(names: &[S]) -> Result<Self> {
        let ids = names
            .iter()
            .map(|n| Identifier::parse(n.as_ref()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Self::new(ids)
    }

    /// Requests a notBefore (not every CA honours it; Let's Encrypt refuses it).
    pub fn with_not_before(mut self, t: OffsetDateTime) -> Self {
        self.not_before = Some(t);
        self
    }

    /// Requests a notAfter.
    pub fn with_not_after(mut self, t: OffsetDateTime) -> Self {
        self.not_after = Some(t);
        self
    }

    /// Names the certificate this order replaces (RFC 9773 `replaces`:
    /// its [`CertId`]), so the CA can treat it as an ARI renewal (exempt
    /// from Let's Encrypt's rate limits within the suggested window). Sent
    /// only to a CA that offers renewal information; when the CA refuses
    /// it (`alreadyReplaced`, `conflict`, or `malformed` about `replaces`)
    /// the order is sent once more without it and
    /// [`Event::ReplacesDropped`](crate::Event::ReplacesDropped) says so.
    pub fn with_replaces(mut self, id: CertId) -> Self {
        self.replaces = Some(id);
        self
    }

    /// Asks for a certificate profile (`meta.profiles` in the directory,
    /// e.g. Let's Encrypt's `classic`, `tlsserver`, `shortlived`). A name
    /// the directory does not list is refused locally when it lists any.
    pub fn with_profile(mut self, name: impl Into<String>) -> Self {
        self.profile = Some(name.into());
        self
    }

    /// The identifiers.
    pub fn identifiers(&self) -> &[Identifier] {
        &self.identifiers
    }

    /// The certificate this order replaces, if named.
    pub fn replaces(&self) -> Option<&CertId> {
        self.replaces.as_ref()
    }

    /// The profile asked for, if any.
    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }

    /// The same order without `replaces`.
    /// Asks `gate` before sending this order once more.
    pub(crate) fn with_repeat_gate(mut self, gate: RepeatGate) -> Self {
        self.repeat_gate = Some(gate);
        self
    }

    /// Waits for the repeat gate, if any, to allow one more newOrder.
    pub(crate) async fn allow_repeat(&self) -> Result<()> {
        match &self.repeat_gate {
            Some(gate) => (gate.0)(self.replaces.is_some()).await,
            None => Ok(()),
        }
    }

    pub(crate) fn without_replaces(&self) -> Self {
        Self {
            replaces: None,
            ..self.clone()
        }
    }

    /// True when notBefore or notAfter was asked for.
    #[cfg(feature = "v1")]
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
            replaces: self.replaces.as_ref().map(CertId::as_str),
            profile: self.profile.as_deref(),
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
///
/// Example: the client example on the [crate root](crate).
#[derive(Debug, Clone)]
pub struct Order {
    core: OrderCore,
    wire: Box<dyn OrderWire>,
    /// newOrder requests sent to create it (0: loaded, or ACME v1).
    pub(crate) new_order_requests: u32,
}

/// What every order has, whatever the dialect: the dialect's
/// [`OrderWire`] reads and changes it.
#[derive(Debug, Clone)]
pub(crate) struct OrderCore {
    pub(crate) account: Account,
    pub(crate) url: String,
    pub(crate) state: OrderResource,
    pub(crate) last_retry_after: Option<RetryAfter>,
}

impl OrderCore {
    pub(crate) fn new(account: Account, url: String, state: OrderResource) -> Self {
        Self {
            account,
            url,
            state,
            last_retry_after: None,
        }
    }
}

impl Order {
    pub(crate) fn from_parts(core: OrderCore, wire: Box<dyn OrderWire>) -> Self {
        Self {
            core,
            wire,
            new_order_requests: 0,
        }
    }

    /// The order URL (for ACME v1, the client-side order's reference:
    /// `urn:sturdy-acme:v1-order:...`, which also names the certificate
    /// once it is issued).
    pub fn url(&self) -> &str {
        &self.core.url
    }

    /// The dialect of the CA this order lives at.
    pub fn dialect(&self) -> Dialect {
        self.core.account.client().dialect()
    }

    /// The order object as last seen.
    pub fn state(&self) -> &OrderResource {
        &self.core.state
    }

    /// The status as last seen.
    pub fn status(&self) -> OrderStatus {
        self.core.state.status
    }

    /// The identifiers.
    pub fn identifiers(&self) -> &[Identifier] {
        &self.core.state.identifiers
    }

    /// The account the order belongs to.
    pub fn account(&self) -> &Account {
        &self.core.account
    }

    /// Fetches the order (POST-as-GET) and returns its new state.
    ///
    /// ACME v1: fetches the authorizations that are still pending (plain
    /// GET) and recomputes the state; nothing once the certificate is issued.
    pub async fn refresh(&mut self) -> Result<&OrderResource> {
        self.wire.refresh(&mut self.core).await?;
        Ok(&self.core.state)
    }

    /// Fetches every authorization of the order.
    ///
    /// The CA's list is checked first: no more authorizations than the
    /// order has identifiers (a hostile list is never fanned out), and each
    /// authorization must be for one of the order's identifiers, so a
    /// solver is only ever shown what was ordered; otherwise
    /// [`Error::ProtocolViolation`].
    pub async fn authorizations(&self) -> Result<Vec<Authorization>> {
        authorizations(&self.core).await
    }

    /// Polls until the order leaves `pending`. `ready` (or later) is
    /// success; `invalid` fails with the failed authorization's problem
    /// ([`Error::ValidationFailed`]) when one can be found.
    ///
    /// While the order stays `pending` after a poll, its authorizations not
    /// yet seen `valid` are read too (at most 8 per poll, in turns; each
    /// `valid` one once): some CAs
    /// (acme2certifier) mark a failed authorization `invalid` and leave the
    /// order `pending`, contrary to RFC 8555 §7.1.6. An `invalid`
    /// authorization ends the wait at once with the same
    /// [`Error::ValidationFailed`] an invalid order gives (class
    /// [`ErrorClass::Validation`](crate::ErrorClass::Validation)), the
    /// order's status still `pending` as the CA says.
    pub async fn wait_ready(&mut self) -> Result<OrderStatus> {
        self.poll_while(OrderStatus::Pending).await?;
        match self.core.state.status {
            OrderStatus::Invalid => Err(invalid_error(&self.core).await),
            status => Ok(status),
        }
    }

    /// Sends the CSR (RFC 8555 §7.4). The order must be `ready`. The answer
    /// may be `processing` (poll with [`Order::wait_certificate`]) or
    /// already `valid`.
    ///
    /// ACME v1: `new-cert`, which issues synchronously (the answer is the
    /// DER certificate; the order becomes `valid`). It has its own timeout
    /// (`ClientBuilder::new_cert_timeout`), and since v1 has no order to
    /// read back, a lost answer is handled apart: every `new-cert` is
    /// recorded before it is sent; after one whose answer was lost, the
    /// `CertificateFinder` (if any) is asked for the certificate before
    /// anything is repeated; and a repeat past the budget
    /// (`ClientBuilder::new_cert_budget`) is refused with
    /// [`Error::RateLimitedLocally`]. With [`Csr::Der`] the identifiers and
    /// key are read from the CSR.
    pub async fn finalize(&mut self, csr: Csr<'_>) -> Result<OrderStatus> {
        if self.core.state.status != OrderStatus::Ready {
            return Err(Error::InvalidInput(format!(
                "order {} is {}, not ready to finalize",
                self.core.url,
                self.core.state.status.as_str()
            )));
        }
        let der = match csr {
            Csr::Key(key) => {
                if key.to_signing_key()?.jwk() == self.core.account.key().jwk() {
                    return Err(Error::InvalidInput(
                        "the certificate key must not be the account key".into(),
                    ));
                }
                key.csr_der(&self.core.state.identifiers)?
            }
            Csr::Der(der) => der.to_vec(),
        };
        self.wire.finalize(&mut self.core, csr, der).await
    }

    /// The order is resumed after a finalize (ACME v1: new-cert) that may
    /// have been sent: `sent` is when, and how many times, when that was
    /// the last step. For v1, whose order is the client's own, the order
    /// counts as ready again whatever its authorizations now say, and the
    /// earlier attempts go to the new-cert guard (certificate finder, or
    /// `OutcomeUnknown`); an RFC 8555 order's state is the CA's.
    pub(crate) fn resume_after_finalize(&mut self, sent: Option<(SystemTime, u32)>) {
        self.wire.resume_after_finalize(&mut self.core, sent);
    }

    /// True when `error`, the failure of [`Order::finalize`], proves
    /// nothing was issued although the order cannot say so (ACME v1: the
    /// CA's own 4xx, or a local refusal, with no earlier answer lost).
    pub(crate) fn refusal_issued_nothing(&self, error: &Error) -> bool {
        self.wire.refusal_issued_nothing(&self.core, error)
    }

    /// The chain already in hand without a request (ACME v1: one a
    /// certificate finder found after a lost new-cert answer, which the CA
    /// never gave a URL for, so it must be journalled at once).
    pub(crate) fn chain_in_hand(&self) -> Option<&CertificateChain> {
        self.wire.chain_in_hand()
    }

    /// Polls until the order leaves `processing`; returns the certificate URL.
    pub async fn wait_certificate(&mut self) -> Result<String> {
        self.poll_while(OrderStatus::Processing).await?;
        match (&self.core.state.status, &self.core.state.certificate) {
            (OrderStatus::Valid, Some(url)) => Ok(url.clone()),
            (OrderStatus::Invalid, _) => Err(invalid_error(&self.core).await),
            (status, _) => Err(Error::InvalidResponse {
                request: Box::new(crate::error::RequestInfo {
                    method: "POST",
                    url: self.core.url.clone(),
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

    /// Downloads the certificate; with `preferred`, picks the first chain
    /// (default, then each `Link: rel="alternate"`) that leads to that root
    /// ([`CertificateChain::leads_to`]), else the default.
    ///
    /// ACME v1 offers one chain (the leaf, then its `Link: rel="up"`
    /// issuers), so a preference only ever gets the default.
    pub async fn certificate_chain(
        &mut self,
        preferred: Option<&ChainPreference>,
    ) -> Result<CertificateChain> {
        let url = self.wait_certificate().await?;
        let default = self.wire.download(&self.core, &url).await?;
        prefer_chain(&self.core.account, default, preferred).await
    }

    async fn poll_while(&mut self, status: OrderStatus) -> Result<()> {
        let policy = *self.core.account.client().poll_policy();
        let url = self.core.url.clone();
        let client = self.core.account.client().clone();
        let mut poller = Poller::learning(
            &policy,
            client.poll_learner(),
            "order",
            status.as_str(),
            &url,
            client.round_trip(),
        );
        // While pending, the authorizations tell what the order may not.
        let mut watch = (status == OrderStatus::Pending && !self.wire.status_from_authorizations())
            .then(AuthorizationWatch::default);
        while self.core.state.status == status {
            poller
                .wait(status.as_str(), self.core.last_retry_after)
                .await?;
            self.refresh().await?;
            if self.core.state.status == status
                && let Some(watch) = &mut watch
                && let Some(failed) = watch.failed(&self.core).await?
            {
                tracing::warn!(
                    order = %self.core.url,
                    authorization = %failed.url(),
                    "an authorization of a pending order is invalid (the CA left the order pending): the order cannot become ready"
                );
                return Err(failed.failure());
            }
        }
        poller.done();
        Ok(())
    }
}

/// At most this many authorizations are read per poll of a pending order
/// (a large order's are read in turns), so a conformant CA, whose order
/// itself turns `invalid`, is not asked much more than the order.
const WATCHED_PER_POLL: usize = 8;

/// The authorizations of a pending order, read while it is polled: at most
/// [`WATCHED_PER_POLL`] per poll, in turns; the ones seen `valid` are not
/// read again.
#[derive(Debug, Default)]
struct AuthorizationWatch {
    valid: std::collections::HashSet<String>,
    /// Where the next turn starts in the order's list.
    next: usize,
}

impl AuthorizationWatch {
    /// The first authorization read this turn (not yet seen valid) that is
    /// `invalid` now.
    async fn failed(&mut self, order: &OrderCore) -> Result<Option<Authorization>> {
        check_listed(order)?;
        let listed = &order.state.authorizations;
        let watched: Vec<&String> = (0..listed.len())
            .map(|i| &listed[(self.next + i) % listed.len()])
            .filter(|url| !self.valid.contains(*url))
            .take(WATCHED_PER_POLL)
            .collect();
        if let Some(last) = watched.last() {
            let at = listed.iter().position(|u| u == *last).unwrap_or(0);
            self.next = (at + 1) % listed.len();
        }
        for url in watched {
            let authz = Authorization::fetch(order.account.clone(), url).await?;
            match authz.status() {
                AuthorizationStatus::Valid => {
                    self.valid.insert(url.clone());
                }
                AuthorizationStatus::Invalid => return Ok(Some(authz)),
                _ => {}
            }
        }
        Ok(None)
    }
}

/// No more authorizations than the order has identifiers (a hostile list
/// is never fanned out).
fn check_listed(order: &OrderCore) -> Result<()> {
    let listed = order.state.authorizations.len();
    let ordered = order.state.identifiers.len();
    if listed > ordered.max(1) {
        return Err(Error::ProtocolViolation {
            url: order.url.clone(),
            reason: format!("the order lists {listed} authorizations for {ordered} identifiers"),
        });
    }
    Ok(())
}

/// The order's authorizations, checked against what was ordered.
async fn authorizations(order: &OrderCore) -> Result<Vec<Authorization>> {
    check_listed(order)?;
    let mut out = Vec::with_capacity(order.state.authorizations.len());
    for url in &order.state.authorizations {
        let authz = Authorization::fetch(order.account.clone(), url).await?;
        if !covers(order, &authz.state().identifier, authz.state().wildcard) {
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
                    order.url
                ),
            });
        }
        out.push(authz);
    }
    Ok(out)
}

/// True when an authorization for `id` (with the wildcard flag) belongs
/// to the order's identifiers.
fn covers(order: &OrderCore, id: &Identifier, wildcard: bool) -> bool {
    order.state.identifiers.iter().any(|ordered| {
        ordered.kind.eq_ignore_ascii_case(&id.kind)
            && match ordered.value.strip_prefix("*.") {
                Some(base) => wildcard && base.eq_ignore_ascii_case(&id.value),
                None => !wildcard && ordered.value.eq_ignore_ascii_case(&id.value),
            }
    })
}

/// The most useful error for an invalid order: the failed
/// authorization's challenge problem, else the order's own.
pub(crate) async fn invalid_error(order: &OrderCore) -> Error {
    if let Ok(authzs) = authorizations(order).await {
        for authz in authzs {
            if authz.status() == AuthorizationStatus::Invalid {
                return authz.failure();
            }
        }
    }
    Error::OrderInvalid {
        url: order.url.clone(),
        problem: order.state.error.clone().map(Box::new),
    }
}

/// At most this many `Link: rel="alternate"` chains are fetched when
/// looking for a preferred issuer (a hostile CA may list thousands).
pub const MAX_ALTERNATE_CHAINS: usize = 4;

/// `default`, or the first alternate chain (at most
/// [`MAX_ALTERNATE_CHAINS`] are fetched) that leads to the `preferred` root.
pub(crate) async fn prefer_chain(
    account: &Account,
    default: CertificateChain,
    preferred: Option<&ChainPreference>,
) -> Result<CertificateChain> {
    let Some(preferred) = preferred else {
        return Ok(default);
    };
    if default.leads_to(preferred) {
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
        // An alternate chain is the same certificate under other issuers:
        // one with another leaf is never taken.
        if chain.leaf_der() != default.leaf_der() {
            tracing::warn!(url = %alt, "an alternate chain has another leaf than the default chain; ignored");
            continue;
        }
        if chain.leads_to(preferred) {
            tracing::info!(?preferred, url = %alt, "preferred chain selected");
            return Ok(chain);
        }
    }
    tracing::info!(
        ?preferred,
        "no chain leads to the preferred root; using the default"
    );
    Ok(default)
}

/// Downloads a chain; a body cut short is retried, a success answer read in
/// full that is not a valid PEM chain is a protocol error (not retried).
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
