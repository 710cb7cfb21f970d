//! Accounts (RFC 8555 §7.3): create, find, update, deactivate, key change,
//! and everything signed with the account key (orders, revocation).
//!
//! With an ACME v1 CA the account is a registration: `new-reg` (409 with
//! the registration's URL for a known key), updates through the
//! registration URL, every request signed with the key's JWK.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::dialect::DialectImpl;
use super::replaces::ReplacesRefusal;
use super::{CertificateChain, Client, NewOrder, Order};
use crate::crypto::jws::KeyId;
use crate::crypto::{AccountKey, ExternalAccountKey, b64};
use crate::error::{Error, ErrorClass, ProblemType, Result};
use crate::protocol::{AccountResource, Dialect, v2};
use crate::retry::Retrying;
use crate::transport::{Endpoint, Response};

/// What to register an account with.
///
/// ```
/// use sturdy_acme::AccountOptions;
///
/// let options = AccountOptions::agreeing_to_terms().with_contact("ops@example.com");
/// assert_eq!(options.contact(), ["mailto:ops@example.com"]);
/// assert!(options.terms_of_service_agreed() && options.external_account().is_none());
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AccountOptions {
    pub(crate) contact: Vec<String>,
    pub(crate) terms_of_service_agreed: bool,
    pub(crate) external_account: Option<ExternalAccountKey>,
}

impl AccountOptions {
    /// Options that agree to the terms, with no contact.
    pub fn agreeing_to_terms() -> Self {
        Self {
            terms_of_service_agreed: true,
            ..Self::default()
        }
    }

    /// Contact URLs, e.g. `mailto:admin@example.com`.
    pub fn contact(&self) -> &[String] {
        &self.contact
    }

    /// Adds a contact URL (`mailto:` is added to a bare e-mail address).
    pub fn with_contact(mut self, contact: impl Into<String>) -> Self {
        let contact = contact.into();
        self.contact.push(if contact.contains(':') {
            contact
        } else {
            format!("mailto:{contact}")
        });
        self
    }

    /// Whether the CA's terms of service are agreed to (most CAs require it).
    pub fn terms_of_service_agreed(&self) -> bool {
        self.terms_of_service_agreed
    }

    /// Sets [`AccountOptions::terms_of_service_agreed`].
    pub fn with_terms_of_service_agreed(mut self, agreed: bool) -> Self {
        self.terms_of_service_agreed = agreed;
        self
    }

    /// The external account binding, for CAs that require one.
    pub fn external_account(&self) -> Option<&ExternalAccountKey> {
        self.external_account.as_ref()
    }

    /// Sets [`AccountOptions::external_account`].
    pub fn with_external_account(mut self, eab: ExternalAccountKey) -> Self {
        self.external_account = Some(eab);
        self
    }
}

/// CRL reason codes a revocation may give (RFC 5280 §5.3.1).
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use sturdy_acme_testca::TestCa;
/// use sturdy_acme::{AccountKey, AccountOptions, CertificateKey, Csr, KeyAlgorithm, NewOrder, RevocationReason};
///
/// let ca = TestCa::start().await?;
/// let account = ca
///     .client()
///     .await?
///     .create_account(AccountKey::generate(KeyAlgorithm::Es256)?, &AccountOptions::agreeing_to_terms())
///     .await?;
/// let mut order = account.new_order(&NewOrder::for_names(&["revoked.example"])?).await?;
/// for authz in order.authorizations().await? {
///     let mut challenge = authz.challenges().remove(0);
///     challenge.respond().await?; // the test CA validates nothing by default
/// }
/// order.wait_ready().await?;
/// order.finalize(Csr::Key(&CertificateKey::generate(Default::default())?)).await?;
/// let chain = order.certificate().await?;
/// account.revoke_certificate(chain.leaf_der(), Some(RevocationReason::KeyCompromise)).await?;
/// assert_eq!(ca.ledger().certificates[0].revoked, Some(RevocationReason::KeyCompromise.code()));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevocationReason {
    /// unspecified (0)
    Unspecified,
    /// keyCompromise (1)
    KeyCompromise,
    /// cACompromise (2)
    CaCompromise,
    /// affiliationChanged (3)
    AffiliationChanged,
    /// superseded (4)
    Superseded,
    /// cessationOfOperation (5)
    CessationOfOperation,
    /// certificateHold (6)
    CertificateHold,
    /// removeFromCRL (8)
    RemoveFromCrl,
    /// privilegeWithdrawn (9)
    PrivilegeWithdrawn,
    /// aACompromise (10)
    AaCompromise,
}

impl RevocationReason {
    /// The numeric code.
    pub fn code(&self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::CaCompromise => 2,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::CertificateHold => 6,
            Self::RemoveFromCrl => 8,
            Self::PrivilegeWithdrawn => 9,
            Self::AaCompromise => 10,
        }
    }
}

/// revokeCert, signed by `key` as `key_id`. Not idempotent on the wire (a
/// repeat answers `alreadyRevoked`), so after a failure whose outcome is
/// unknown the request is repeated and `alreadyRevoked` counts as success.
pub(crate) async fn revoke(
    client: &Client,
    key: &AccountKey,
    key_id: KeyId<'_>,
    certificate_der: &[u8],
    reason: Option<RevocationReason>,
) -> Result<()> {
    let payload = serde_json::to_value(v2::Revocation {
        certificate: b64(certificate_der),
        reason: reason.map(|r| r.code()),
    })
    .expect("payload serializes");
    let url = client.directory().revoke_cert.clone();
    if url.is_empty() {
        return Err(Error::Unsupported(
            "this CA's directory has no revocation endpoint".into(),
        ));
    }
    let transport = client.transport();
    let mut retrying = transport.retrying(Endpoint::Revoke, &url);
    let mut outcome_unknown = false;
    loop {
        match transport
            .post_once(&mut retrying, key, key_id, Some(&payload), None)
            .await
            .map_err(|e| client.dialect_impl().revocation_error(e))
        {
            Ok(_) => return Ok(()),
            Err(e) if outcome_unknown && e.problem_type() == Some(&ProblemType::AlreadyRevoked) => {
                tracing::info!(url = %url, "revocation confirmed: alreadyRevoked after a lost response");
                return Ok(());
            }
            Err(e) => {
                outcome_unknown |= e.class() == ErrorClass::Transient;
                retrying.pause_or_fail(e).await?;
            }
        }
    }
}

/// Pages of the account's orders list read for the order a lost newOrder
/// answer created (every lost answer pays them).
pub(crate) const LOST_ANSWER_PAGES: usize = 5;

/// Pages read for this account's earlier replacement order after an
/// `alreadyReplaced` (rare, and the ARI exemption is worth them).
pub(crate) const REPLACEMENT_SEARCH_PAGES: usize = 50;

/// An ACME account: its key and URL (`kid`) at one CA.
///
/// Cheap to clone. Orders, authorizations and challenges obtained through
/// it keep a handle to it.
///
/// Example: the client example on the [crate root](crate).
#[derive(Clone, Debug)]
pub struct Account {
    inner: Arc<AccountInner>,
}

#[derive(Debug)]
struct AccountInner {
    client: Client,
    key: Arc<AccountKey>,
    url: String,
    resource: Mutex<Option<AccountResource>>,
}

impl Account {
    pub(crate) fn from_parts(
        client: Client,
        key: Arc<AccountKey>,
        url: String,
        resource: Option<AccountResource>,
    ) -> Self {
        Self {
            inner: Arc::new(AccountInner {
                client,
                key,
                url,
                resource: Mutex::new(resource),
            }),
        }
    }

    /// The account URL (the `kid` of its requests; for ACME v1 the
    /// registration URL, requests being signed with the JWK).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The dialect of the CA this account lives at.
    pub fn dialect(&self) -> Dialect {
        self.inner.client.dialect()
    }

    /// The account key.
    pub fn key(&self) -> &AccountKey {
        &self.inner.key
    }

    /// The client (CA) this account lives at.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The account object as last seen (None if never fetched).
    pub fn resource(&self) -> Option<AccountResource> {
        self.inner
            .resource
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn remember(&self, resource: &AccountResource) {
        *self
            .inner
            .resource
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(resource.clone());
    }

    /// A signed POST sent once (badNonce aside), for requests that are not
    /// idempotent.
    pub(crate) async fn post_once(
        &self,
        retrying: &mut Retrying<'_>,
        payload: Option<&Value>,
    ) -> Result<Response> {
        self.inner
            .client
            .transport()
            .post_once(
                retrying,
                &self.inner.key,
                KeyId::Kid(&self.inner.url),
                payload,
                None,
            )
            .await
    }

    /// A signed request the typed API does not cover (a CA's extension, a
    /// conformance probe): `payload` `None` is a POST-as-GET. It is sent
    /// once: only `badNonce` is retried (the CA did nothing), because the
    /// library cannot know whether repeating it is safe; a failure whose
    /// outcome is unknown comes back as it is. An error status is an
    /// [`Error`](crate::Error) carrying the CA's problem, as everywhere.
    /// It bypasses the client's memory of 429s and the issuer's rate-limit
    /// ledger: a newOrder sent this way is counted by neither.
    ///
    /// ```no_run
    /// # async fn run(account: sturdy_acme::Account) -> sturdy_acme::Result<()> {
    /// use sturdy_acme::Endpoint;
    ///
    /// let url = account.url().to_owned();
    /// let answer = account.post_raw(Endpoint::Account, &url, None).await?;
    /// assert_eq!(answer.status(), 200);
    /// let account_object: serde_json::Value = answer.json()?;
    /// # let _ = account_object; Ok(()) }
    /// ```
    pub async fn post_raw(
        &self,
        endpoint: Endpoint,
        url: &str,
        payload: Option<&Value>,
    ) -> Result<RawAnswer> {
        let transport = self.inner.client.transport();
        let mut retrying = transport.retrying(endpoint, url);
        let response = transport
            .post_once(
                &mut retrying,
                &self.inner.key,
                KeyId::Kid(&self.inner.url),
                payload,
                None,
            )
            .await?;
        Ok(RawAnswer(response))
    }

    /// An idempotent signed POST whose JSON answer is parsed inside the
    /// retry loop (an answer cut short is retried; a complete one that does
    /// not parse is a protocol error).
    pub(crate) async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        url: &str,
        payload: Option<&Value>,
    ) -> Result<(T, Response)> {
        self.inner
            .client
            .transport()
            .post_parsed(
                endpoint,
                url,
                &self.inner.key,
                KeyId::Kid(&self.inner.url),
                payload,
                None,
                |r| r.json::<T>(),
            )
            .await
    }

    /// Fetches the account object (POST-as-GET; ACME v1: a POST of
    /// `{"resource": "reg"}` to the registration URL).
    pub async fn refresh(&self) -> Result<AccountResource> {
        self.dialect_impl().post_account(self, None).await
    }

    /// Replaces the contact list (RFC 8555 §7.3.2).
    pub async fn update_contacts(&self, contact: &[String]) -> Result<AccountResource> {
        let payload = serde_json::to_value(v2::AccountUpdate {
            contact: Some(contact),
            status: None,
        })
        .expect("payload serializes");
        self.dialect_impl().post_account(self, Some(&payload)).await
    }

    /// Deactivates the account (RFC 8555 §7.3.6). The CA refuses every later
    /// request signed by it.
    pub async fn deactivate(&self) -> Result<AccountResource> {
        let payload = json!({"status": "deactivated"});
        self.dialect_impl().post_account(self, Some(&payload)).await
    }

    /// Rolls the account over to `new_key` (RFC 8555 §7.3.5) and returns the
    /// account as signed by the new key. This `Account` (old key) stops working.
    ///
    /// Not idempotent: after a failure whose outcome is unknown, the CA is
    /// asked whether the new key already owns the account before the
    /// request is sent again. ACME v1: Boulder's key-change (the inner JWS,
    /// signed by the new key, carries `{account, newKey}`).
    pub async fn change_key(&self, new_key: AccountKey) -> Result<Account> {
        let dialect = self.dialect_impl();
        let (url, inner) = dialect.key_change(self, &new_key)?;
        let mut retrying = self
            .inner
            .client
            .transport()
            .retrying(Endpoint::KeyChange, &url);
        loop {
            match self.post_once(&mut retrying, Some(&inner)).await {
                Ok(_) => break,
                Err(e) => {
                    let unknown = e.class() == ErrorClass::Transient;
                    retrying.pause_or_fail(e).await?;
                    if unknown && dialect.key_owns_account(self, &new_key).await? {
                        break;
                    }
                }
            }
        }
        tracing::info!(account = %self.inner.url, "account key changed");
        Ok(Self::from_parts(
            self.inner.client.clone(),
            Arc::new(new_key),
            self.inner.url.clone(),
            self.resource(),
        ))
    }

    /// True when `key` already finds this account at the CA
    /// (onlyReturnExisting): used to settle a key change whose outcome is
    /// unknown.
    pub(crate) async fn key_owns(&self, key: &AccountKey) -> Result<bool> {
        self.dialect_impl().key_owns_account(self, key).await
    }

    /// Creates an order (RFC 8555 §7.4).
    ///
    /// Refused locally while an earlier 429 for the same scope (account,
    /// identifier set, registered domain) has not expired. newOrder is not
    /// idempotent: after a failure whose outcome is unknown it is repeated,
    /// which a Boulder-style CA answers with the order it already created
    /// (it hands back a pending order for the same names).
    ///
    /// ACME v1: one `new-authz` per identifier (DNS names only: IP
    /// identifiers, wildcards and notBefore/notAfter are
    /// [`Error::Unsupported`]); the order is the client's own (see [`Order`]).
    ///
    /// A [`NewOrder::profile`] the directory does not list is refused
    /// locally ([`Error::InvalidInput`]); [`NewOrder::replaces`] is sent
    /// only to a CA with `renewalInfo`, and dropped (once, with
    /// [`Event::ReplacesDropped`](crate::Event::ReplacesDropped)) when the
    /// CA refuses it.
    pub async fn new_order(&self, order: &NewOrder) -> Result<Order> {
        let order = self.client().fit_new_order(order)?;
        match self.dialect_impl().new_order(self, &order).await {
            Err(e) if order.replaces().is_some() && ReplacesRefusal::of(&e).is_some() => {
                let cause = ReplacesRefusal::of(&e).unwrap_or(ReplacesRefusal::Other);
                self.replaces_dropped(&order, cause, &e, "ordering once more without it");
                // If an earlier attempt of the first newOrder did create
                // the order (its answer lost, the repeat refused), that
                // order is the one: never a second.
                if let Some(found) = self.find_pending_order(&order, LOST_ANSWER_PAGES).await {
                    return Ok(found);
                }
                self.dialect_impl()
                    .new_order(self, &order.without_replaces())
                    .await
            }
            other => other,
        }
    }

    /// Sends newOrder as it is (after the directory's checks), `replaces`
    /// included: a refusal of `replaces` is returned, for a caller that
    /// resolves it itself (the issuer).
    pub(crate) async fn new_order_as_sent(&self, order: &NewOrder) -> Result<Order> {
        let order = self.client().fit_new_order(order)?;
        self.dialect_impl().new_order(self, &order).await
    }

    /// Logs and reports ([`Event::ReplacesDropped`](crate::Event::ReplacesDropped))
    /// that the CA refused `order`'s `replaces` for `cause`.
    pub(crate) fn replaces_dropped(
        &self,
        order: &NewOrder,
        cause: ReplacesRefusal,
        error: &Error,
        resolution: &str,
    ) {
        let id = order
            .replaces()
            .map(ToString::to_string)
            .unwrap_or_default();
        let problem = error
            .problem()
            .map(|p| format!("{}: {}", p.kind, p.detail.as_deref().unwrap_or_default()))
            .unwrap_or_else(|| error.to_string());
        tracing::warn!(cert_id = %id, %cause, %problem, remedy = cause.remedy(), "the CA refused replaces; {resolution} (not an ARI renewal)");
        self.client().emit(crate::Event::ReplacesDropped {
            cert_id: id,
            problem,
            cause,
        });
    }

    /// A pending or ready order for exactly `wanted`'s identifiers among
    /// the newest in the account's orders list (none where the CA has no
    /// list, or it cannot be read).
    ///
    /// CAs list an account's orders oldest first (Pebble, the test CA), so
    /// the newest are on the last page: `pages` pages are followed (a busy
    /// account's list is long: [`LOST_ANSWER_PAGES`] after a lost newOrder
    /// answer, [`REPLACEMENT_SEARCH_PAGES`] after an `alreadyReplaced`), and
    /// only the newest are read.
    pub(crate) async fn find_pending_order(
        &self,
        wanted: &NewOrder,
        pages: usize,
    ) -> Option<Order> {
        const NEWEST: usize = 20;
        let key = crate::protocol::IdentifierSet::new(wanted.identifiers());
        let urls = match self.order_urls(pages).await {
            Ok(urls) => urls,
            Err(e) => {
                tracing::debug!(error = %e, "the account's orders list could not be read");
                return None;
            }
        };
        for url in urls.iter().rev().take(NEWEST) {
            let Ok(order) = self.order(url).await else {
                continue;
            };
            if matches!(
                order.status(),
                crate::protocol::OrderStatus::Pending | crate::protocol::OrderStatus::Ready
            ) && crate::protocol::IdentifierSet::new(order.identifiers()) == key
            {
                return Some(order);
            }
        }
        None
    }

    /// Loads an existing order by URL (e.g. one recorded before a restart).
    ///
    /// ACME v1: `url` is an [`Order::url`] (the client-side order's
    /// reference); its authorizations are read again.
    pub async fn order(&self, url: &str) -> Result<Order> {
        self.dialect_impl().load_order(self, url).await
    }

    /// Downloads the certificate chain at a certificate URL (an order's
    /// `certificate`, e.g. one journalled before a restart), preferring the
    /// chain to the `preferred` root among the alternates like
    /// [`Order::certificate_chain`]. ACME v1: a plain GET of the certificate
    /// URL, following `Link: rel="up"` to its issuers.
    pub async fn certificate_chain(
        &self,
        url: &str,
        preferred: Option<&super::ChainPreference>,
    ) -> Result<CertificateChain> {
        let default = self.dialect_impl().download_chain(self, url).await?;
        super::order::prefer_chain(self, default, preferred).await
    }

    /// The URLs in the account's orders list (RFC 8555 §7.1.2.1), following
    /// `Link: rel="next"` pages (at most `max_pages`, to bound a hostile
    /// server).
    ///
    /// ACME v1 has no orders list: [`Error::Unsupported`].
    pub async fn order_urls(&self, max_pages: usize) -> Result<Vec<String>> {
        self.dialect_impl().order_urls(self, max_pages).await
    }

    fn dialect_impl(&self) -> &dyn DialectImpl {
        self.inner.client.dialect_impl()
    }

    /// Revokes a certificate issued to this account (RFC 8555 §7.6).
    pub async fn revoke_certificate(
        &self,
        certificate_der: &[u8],
        reason: Option<RevocationReason>,
    ) -> Result<()> {
        revoke(
            &self.inner.client,
            &self.inner.key,
            KeyId::Kid(&self.inner.url),
            certificate_der,
            reason,
        )
        .await
    }
}

/// What the CA answered to [`Account::post_raw`].
///
/// Example: [`Account::post_raw`].
#[derive(Debug)]
pub struct RawAnswer(Response);

impl RawAnswer {
    /// The HTTP status (a success: error statuses are errors).
    pub fn status(&self) -> u16 {
        self.0.status
    }

    /// The response headers (`Location`, `Link`, `Retry-After`, ...).
    pub fn headers(&self) -> &http::HeaderMap {
        &self.0.headers
    }

    /// The body as received.
    pub fn body(&self) -> &[u8] {
        &self.0.body
    }

    /// The body parsed as JSON; a body that does not parse is
    /// [`Error::InvalidResponse`](crate::Error::InvalidResponse).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        self.0.json()
    }

    /// The targets of the `Link` headers with this `rel` (e.g. `"next"`,
    /// `"up"`, `"alternate"`), in the order the CA sent them.
    pub fn links(&self, rel: &str) -> Vec<String> {
        crate::transport::links(&self.0.headers, rel)
    }
}
