//! The typed protocol API: [`Client`] (one CA), [`Account`], [`Order`],
//! [`Authorization`], [`Challenge`], [`CertificateChain`].
//!
//! The same types speak both ACME dialects ([`Dialect`]): RFC 8555 (v2)
//! and the pre-RFC v1 that Boulder served at `acme-v01`. The client learns
//! the dialect from the directory. In v1 an order is client-side (one
//! `new-authz` per identifier, then `new-cert`); what v1 lacks (orders
//! lists, account lookup without registering, external account binding,
//! IP identifiers, wildcards, notBefore/notAfter) is refused with
//! [`Error::Unsupported`]. See [`CertificateFinder`] and
//! [`ClientBuilder::new_cert_budget`] for v1's lost-response trap.

mod account;
mod authorization;
mod build;
mod certificate;
mod dialect;
mod order;
mod poll;
mod renewal_info;
mod replaces;

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

pub use account::{Account, AccountOptions, RawAnswer, RevocationReason};
pub(crate) use account::{LOST_ANSWER_PAGES, REPLACEMENT_SEARCH_PAGES};
pub use authorization::{Authorization, Challenge};
pub use certificate::{CertificateChain, ChainPreference};
#[cfg(feature = "v1")]
pub use dialect::v1::{CertificateFinder, FindFuture};
pub(crate) use order::RepeatGate;
pub use order::{MAX_ALTERNATE_CHAINS, NewOrder, Order};
pub use poll::PollPolicy;
pub use replaces::ReplacesRefusal;

use crate::crypto::jws::KeyId;
use crate::crypto::{AccountKey, CertificateKey};
use crate::error::{Error, Result};
use crate::protocol::{Dialect, Directory};
use crate::retry::{Event, Events, RetryPolicy};
use crate::transport::{
    Endpoint, GovernorPolicy, GovernorStats, Http, RequestStats, Transport, TransportConfig,
};
use dialect::{DialectImpl, DialectSettings};

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// The user agent every request carries (RFC 8555 §6.1).
pub const USER_AGENT: &str = concat!("sturdy-acme/", env!("CARGO_PKG_VERSION"));

/// The `Accept-Language` every request carries unless
/// [`ClientBuilder::accept_language`] says otherwise (RFC 8555 §6.1).
pub const DEFAULT_ACCEPT_LANGUAGE: &str = "en";

/// A connection to one ACME CA, built from its directory URL.
///
/// Cheap to clone; clones share the HTTP connection pool, the nonce pool and
/// the request counters.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use sturdy_acme_testca::TestCa;
/// use sturdy_acme::{Client, Danger, Dialect};
///
/// let ca = TestCa::start().await?;
/// // Against a real CA: `Client::new(sturdy_acme::LETS_ENCRYPT_STAGING).await?`.
/// let client = Client::builder(ca.directory_url())
///     .root_certificates_pem(ca.root_pem())
///     .danger(Danger::new()) // nothing weakened
///     .build()
///     .await?;
/// assert_eq!(client.dialect(), Dialect::V2);
/// assert!(!client.directory().new_order.is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<ClientInner>,
}

#[derive(Debug)]
struct ClientInner {
    transport: Transport,
    directory: Directory,
    directory_url: String,
    poll: PollPolicy,
    poll_learner: poll::PollLearner,
    /// Profiles the CA refused with `invalidProfile` since its directory
    /// was read (withdrawn).
    withdrawn_profiles: std::sync::Mutex<std::collections::BTreeSet<String>>,
    dialect: Arc<dyn DialectImpl>,
    clock: crate::Clock,
}

/// Settings that make a [`Client`] less safe, for tests: set with
/// [`ClientBuilder::danger`]. Every one is off by default.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use sturdy_acme::{Client, Danger, Error};
///
/// // A plain-http directory is refused unless asked for.
/// let refused = Client::builder("http://127.0.0.1:9/dir").build().await.unwrap_err();
/// assert!(matches!(refused, Error::InvalidInput(_)));
/// let _tests_only = Client::builder("http://127.0.0.1:9/dir")
///     .danger(Danger::new().accept_plain_http().no_timeouts());
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Danger {
    accept_plain_http: bool,
    no_timeouts: bool,
}

impl Danger {
    /// Nothing weakened (the default).
    pub const fn new() -> Self {
        Self {
            accept_plain_http: false,
            no_timeouts: false,
        }
    }

    /// Accept a plain `http://` directory (and then `http://` URLs from the
    /// CA), which lets anyone on the path read and change every exchange.
    /// Off by default: an `http://` directory is refused with
    /// [`Error::InvalidInput`]. Meant for test servers on loopback.
    pub const fn accept_plain_http(mut self) -> Self {
        self.accept_plain_http = true;
        self
    }

    /// Disable the request and connect timeouts and the connection pool's
    /// idle timer (and ACME v1's new-cert timeout): no timer runs while a
    /// request waits for the CA. Meant for tests on tokio's paused clock
    /// (where any armed timer fires at once while waiting for I/O); a CA
    /// that never answers then hangs the client.
    pub const fn no_timeouts(mut self) -> Self {
        self.no_timeouts = true;
        self
    }
}

/// Builds a [`Client`]; see [`Client::builder`].
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use sturdy_acme_testca::TestCa;
/// use sturdy_acme::{Event, PollPolicy, RetryPolicy};
///
/// let ca = TestCa::start().await?;
/// let exchanges = Arc::new(AtomicU64::new(0));
/// let counter = exchanges.clone();
/// let client = ca
///     .client_builder()
///     .timeout(Duration::from_secs(20))
///     .retry_policy(RetryPolicy::default().with_rate_limit_max_wait(Duration::from_secs(5)))
///     .poll_policy(PollPolicy::default().with_timeout(Duration::from_secs(60)))
///     .on_event(move |e| {
///         if let Event::Exchange { .. } = e {
///             counter.fetch_add(1, Ordering::Relaxed);
///         }
///     })
///     .build()
///     .await?;
/// assert_eq!(exchanges.load(Ordering::Relaxed), 1); // the directory
/// # drop(client);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    directory_url: String,
    extra_roots_pem: Vec<Vec<u8>>,
    built_in_roots: bool,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent_suffix: Option<String>,
    accept_language: String,
    transport: TransportConfig,
    poll: PollPolicy,
    dialect: Option<Dialect>,
    dialect_settings: DialectSettings,
    danger: Danger,
    bad_nonce_retries: Option<u32>,
    clock: crate::Clock,
    http_client: Option<Arc<dyn crate::transport::HttpClient>>,
}

impl ClientBuilder {
    /// The calendar this client and the [`Issuer`](crate::Issuer) built on
    /// it read (default [`Clock::system`](crate::Clock::system)):
    /// [`Clock::tokio`](crate::Clock::tokio) for a simulation on tokio's
    /// paused clock.
    pub fn clock(mut self, clock: crate::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sends every request through this [`HttpClient`](crate::HttpClient)
    /// instead of the built-in HTTPS client (reqwest with rustls): an
    /// embedded test CA in this process, a proxy, a recorder. The
    /// governor, nonces, signing, timeouts (handed to the hook as
    /// [`HttpRequest::timeout`](crate::HttpRequest::timeout)), body caps and
    /// retries stay the client's; the root certificates and connect
    /// settings of this builder are then the hook's business.
    pub fn http_client(mut self, client: Arc<dyn crate::transport::HttpClient>) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Also trusts the certificates in this PEM text (e.g. a test CA's root).
    pub fn root_certificates_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.extra_roots_pem.push(pem.as_ref().to_vec());
        self
    }

    /// Whether to trust the Mozilla root store (default true). Turn off to
    /// trust only the roots given with [`ClientBuilder::root_certificates_pem`].
    pub fn built_in_roots(mut self, enabled: bool) -> Self {
        self.built_in_roots = enabled;
        self
    }

    /// The overall timeout of one HTTP exchange (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The TCP + TLS connect timeout (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Text appended to the `sturdy-acme/<version>` user agent.
    pub fn user_agent(mut self, suffix: impl Into<String>) -> Self {
        self.user_agent_suffix = Some(suffix.into());
        self
    }

    /// The `Accept-Language` sent with every request (RFC 8555 §6.1: the
    /// language the CA's problem details should be written in; default
    /// [`DEFAULT_ACCEPT_LANGUAGE`], `"en"`). An empty value sends none; a
    /// value that is not a valid header value is refused by
    /// [`ClientBuilder::build`].
    pub fn accept_language(mut self, tags: impl Into<String>) -> Self {
        self.accept_language = tags.into();
        self
    }

    /// The largest response body accepted (default 1 MiB).
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.transport.max_body = bytes;
        self
    }

    /// How many times one request is re-sent after `badNonce` (default 9,
    /// i.e. 10 attempts; same as `RetryPolicy::bad_nonce_attempts - 1`).
    ///
    /// Applied over [`ClientBuilder::retry_policy`] whichever is called
    /// first.
    pub fn bad_nonce_retries(mut self, retries: u32) -> Self {
        self.bad_nonce_retries = Some(retries);
        self
    }

    /// The transport settings with every override applied.
    fn transport_config(&self) -> TransportConfig {
        let mut config = self.transport.clone();
        config.clock = self.clock;
        if let Some(retries) = self.bad_nonce_retries {
            config.retry = config
                .retry
                .with_bad_nonce_attempts(retries.saturating_add(1));
        }
        config
    }

    /// The retry policy per error class (see [`RetryPolicy`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.transport.retry = policy;
        self
    }

    /// Calls `f` for every exchange and every retry decision (for metrics).
    /// Keep it fast: it runs inline.
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.transport.events.subscribe(Arc::new(f));
        self
    }

    /// How the request governor paces this client's requests: the cap on
    /// requests in flight (default 64) and per-endpoint request rates
    /// (default: the CA's published ones, Let's Encrypt's for its
    /// directories). Shared by every clone of the client and every order.
    pub fn governor(mut self, policy: GovernorPolicy) -> Self {
        self.transport.governor = policy;
        self
    }

    /// How many unused nonces are kept (default 32; never fewer than the
    /// governor's requests in flight).
    pub fn nonce_pool_size(mut self, size: usize) -> Self {
        self.transport.nonce_pool_size = size;
        self
    }

    /// How orders and authorizations are polled.
    pub fn poll_policy(mut self, poll: PollPolicy) -> Self {
        self.poll = poll;
        self
    }

    /// Speak this dialect instead of detecting it from the directory (the
    /// directory must still have the dialect's endpoints).
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = Some(dialect);
        self
    }

    /// The timeout of an ACME v1 `new-cert` (default 90 s, certbot's
    /// issuance timeout). v1 issues synchronously inside that one request,
    /// and an answer lost to a timeout cannot be read back from the CA, so
    /// it gets longer than [`ClientBuilder::timeout`]. Not applied with
    /// [`Danger::no_timeouts`].
    #[cfg(feature = "v1")]
    pub fn new_cert_timeout(mut self, timeout: Duration) -> Self {
        self.dialect_settings.v1.new_cert_timeout = Some(timeout);
        self
    }

    /// How many ACME v1 `new-cert` requests this client sends for one exact
    /// set of identifiers within `window` (default 5 per 7 days, Let's
    /// Encrypt's duplicate-certificate limit). Every attempt is recorded
    /// before it is sent; one whose answer was lost counts, since the CA may
    /// have issued the certificate. Past the budget, [`Order::finalize`]
    /// refuses with [`Error::RateLimitedLocally`] (scope `ExactSet`) instead
    /// of walking into the CA's limit. Kept in memory, per client.
    #[cfg(feature = "v1")]
    pub fn new_cert_budget(mut self, max_requests: u32, window: Duration) -> Self {
        self.dialect_settings.v1.new_cert_budget = (max_requests, window);
        self
    }

    /// How many times an ACME v1 `new-cert` whose answer was lost may be
    /// sent again when no [`CertificateFinder`] found its certificate
    /// (default 0: never; the request fails with [`Error::OutcomeUnknown`]
    /// instead). Each repeat may issue a duplicate certificate.
    #[cfg(feature = "v1")]
    pub fn new_cert_blind_repeats(mut self, repeats: u32) -> Self {
        self.dialect_settings.v1.new_cert_blind_repeats = repeats;
        self
    }

    /// How to find a certificate the CA issued although the answer to the
    /// ACME v1 `new-cert` was lost (e.g. a Certificate Transparency
    /// search); consulted before any `new-cert` is repeated. See
    /// [`CertificateFinder`].
    #[cfg(feature = "v1")]
    pub fn certificate_finder(mut self, finder: Arc<dyn CertificateFinder>) -> Self {
        self.dialect_settings.v1.finder = Some(dialect::v1::Finder(finder));
        self
    }

    /// Settings that make the client less safe, all in one place
    /// ([`Danger`]); meant for tests. Replaces any earlier `danger` call.
    pub fn danger(mut self, danger: Danger) -> Self {
        self.danger = danger;
        self
    }
}

impl Client {
    /// Starts building a client for the CA whose directory is at `directory_url`.
    pub fn builder(directory_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            directory_url: directory_url.into(),
            extra_roots_pem: Vec::new(),
            built_in_roots: true,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            user_agent_suffix: None,
            accept_language: DEFAULT_ACCEPT_LANGUAGE.to_owned(),
            transport: TransportConfig {
                max_body: 1 << 20,
                nonce_pool_size: 32,
                allow_http: false,
                retry: RetryPolicy::default(),
                events: Events::default(),
                governor: GovernorPolicy::default(),
                clock: crate::Clock::system(),
            },
            poll: PollPolicy::default(),
            dialect: None,
            dialect_settings: DialectSettings::default(),
            danger: Danger::default(),
            bad_nonce_retries: None,
            clock: crate::Clock::system(),
            http_client: None,
        }
    }

    /// A client with default settings.
    pub async fn new(directory_url: impl Into<String>) -> Result<Self> {
        Self::builder(directory_url).build().await
    }

    /// The directory.
    ///
    /// For an ACME v1 CA it is filled from the v1 directory: `new_nonce` is
    /// empty (v1 has none), `new_account` is `new-reg`, `new_order` is
    /// `new-authz`, `revoke_cert` and `key_change` are `revoke-cert` and
    /// `key-change` (empty when absent), `meta.terms_of_service` comes from
    /// `meta.terms-of-service`, and every v1 member is also kept verbatim
    /// in `extra` (`extra["new-cert"]` is the new-cert URL).
    pub fn directory(&self) -> &Directory {
        &self.inner.directory
    }

    /// The dialect the CA speaks (detected from the directory or forced
    /// with [`ClientBuilder::dialect`]).
    pub fn dialect(&self) -> Dialect {
        self.inner.dialect.dialect()
    }

    /// The calendar this client reads ([`ClientBuilder::clock`]).
    pub fn clock(&self) -> crate::Clock {
        self.inner.clock
    }

    /// The directory URL this client was built from.
    pub fn directory_url(&self) -> &str {
        &self.inner.directory_url
    }

    /// How many requests were sent so far, per endpoint.
    pub fn request_stats(&self) -> RequestStats {
        self.inner.transport.stats()
    }

    /// What the request governor did so far: the peak of requests in
    /// flight, requests admitted, and the time they spent waiting.
    pub fn governor_stats(&self) -> GovernorStats {
        self.inner.transport.governor_stats()
    }

    /// Registers an account for `key` (or returns the existing one for that
    /// key: RFC 8555 §7.3 answers 200 instead of 201).
    ///
    /// ACME v1: `new-reg` (a registered key answers 409 with its
    /// registration's URL); agreeing to the terms sends the agreement
    /// (`meta.terms-of-service`, or the answer's
    /// `Link: rel="terms-of-service"`) in new-reg or, for an existing
    /// registration, to the registration URL.
    pub async fn create_account(
        &self,
        key: AccountKey,
        options: &AccountOptions,
    ) -> Result<Account> {
        self.dialect_impl()
            .create_account(self.clone(), key, options)
            .await
    }

    /// Looks up the account of `key` without creating one
    /// (`onlyReturnExisting`); `accountDoesNotExist` if there is none.
    ///
    /// ACME v1 has no such lookup: [`Error::Unsupported`] (there,
    /// [`Client::create_account`] with a registered key returns its
    /// registration).
    pub async fn find_account(&self, key: AccountKey) -> Result<Account> {
        self.dialect_impl().find_account(self.clone(), key).await
    }

    /// An account already known by its URL, without a request.
    pub fn account_from_url(&self, key: AccountKey, url: impl Into<String>) -> Account {
        Account::from_parts(self.clone(), Arc::new(key), url.into(), None)
    }

    /// Revokes a certificate with a JWS signed by the certificate's own key
    /// (RFC 8555 §7.6), no account needed.
    pub async fn revoke_with_certificate_key(
        &self,
        certificate_der: &[u8],
        key: &CertificateKey,
        reason: Option<RevocationReason>,
    ) -> Result<()> {
        let signer = key.to_signing_key()?;
        account::revoke(self, &signer, KeyId::Jwk, certificate_der, reason).await
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// Emits an event to the client's subscribers.
    pub(crate) fn emit(&self, event: Event) {
        self.inner.transport.emit(event);
    }

    /// The certificate profiles the CA offers (`meta.profiles`: name →
    /// description); empty when it lists none.
    pub fn profiles(&self) -> Vec<(String, String)> {
        self.directory()
            .meta
            .profiles
            .iter()
            .map(|(name, description)| {
                let text = description
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| description.to_string());
                (name.clone(), text)
            })
            .collect()
    }

    /// Whether the CA offers the profile `name`: its directory lists it (or
    /// lists none), and it has not refused it as `invalidProfile` since.
    pub(crate) fn offers_profile(&self, name: &str) -> bool {
        let profiles = &self.directory().meta.profiles;
        (profiles.is_empty() || profiles.contains_key(name))
            && !self
                .inner
                .withdrawn_profiles
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(name)
    }

    /// Remembers that the CA refused the profile `name` (`invalidProfile`):
    /// withdrawn since its directory was read.
    pub(crate) fn profile_refused(&self, name: &str) {
        self.inner
            .withdrawn_profiles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned());
    }

    /// `order` as it can be sent to this CA: a profile it does not list is
    /// refused; `replaces` is dropped when it offers no renewal
    /// information (RFC 9773: SHOULD NOT be sent then).
    pub(crate) fn fit_new_order(&self, order: &NewOrder) -> Result<NewOrder> {
        let profiles = &self.directory().meta.profiles;
        if order.profile().is_some() && self.dialect() == Dialect::V1 {
            return Err(Error::Unsupported(
                "ACME v1 has no certificate profiles".into(),
            ));
        }
        if let Some(name) = order.profile()
            && !profiles.is_empty()
            && !profiles.contains_key(name)
        {
            let offered: Vec<&str> = profiles.keys().map(String::as_str).collect();
            return Err(Error::InvalidInput(format!(
                "profile {name:?} is not offered by this CA (it offers: {})",
                offered.join(", ")
            )));
        }
        if order.replaces().is_some() && !self.offers_renewal_info() {
            tracing::debug!("the CA offers no renewal information: replaces not sent");
            return Ok(order.without_replaces());
        }
        Ok(order.clone())
    }

    /// The quickest answered exchange with the CA so far.
    pub(crate) fn round_trip(&self) -> Option<Duration> {
        self.transport().round_trip()
    }

    /// Until when (on this client's clock) a pause the CA asked for holds
    /// some of its requests: an issuance should not start before.
    /// Sets how long a pause the CA asks for may hold one of this client's
    /// requests (`None`: as long as the CA asks); past it the request
    /// fails with [`Error::Paused`](crate::Error::Paused). A CA set sets
    /// its `max_pause` on every member's client.
    pub(crate) fn set_pause_hold_limit(&self, limit: Option<std::time::Duration>) {
        self.transport().set_pause_hold_limit(limit);
    }

    /// How long the pause the CA asked for on newOrder, newNonce or
    /// finalize (or on the whole CA) still runs, on the monotonic clock
    /// (`None`: none): an issuance cannot go through before.
    pub(crate) fn pause_left(&self) -> Option<std::time::Duration> {
        use crate::protocol::Endpoint;
        let waits = self.transport().waits();
        let until = [Endpoint::NewOrder, Endpoint::NewNonce, Endpoint::Finalize]
            .into_iter()
            .filter_map(|e| waits.paused_until(e))
            .max()?;
        Some(until.saturating_duration_since(tokio::time::Instant::now()))
    }

    pub(crate) fn paused_until(&self) -> Option<std::time::SystemTime> {
        let until = self.transport().waits().any_paused_until()?;
        Some(crate::wait::wall_clock(until, self.clock().now()))
    }

    pub(crate) fn poll_learner(&self) -> &poll::PollLearner {
        &self.inner.poll_learner
    }

    pub(crate) fn poll_policy(&self) -> &PollPolicy {
        &self.inner.poll
    }

    pub(crate) fn dialect_impl(&self) -> &dyn DialectImpl {
        self.inner.dialect.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bad_nonce_retries` is not lost to a later `retry_policy` (issue 9).
    #[test]
    fn bad_nonce_retries_survive_a_later_retry_policy() {
        let builder = Client::builder("https://ca.example/dir")
            .bad_nonce_retries(2)
            .retry_policy(RetryPolicy::no_retries());
        assert_eq!(builder.transport_config().retry.bad_nonce_attempts(), 3);
        let builder = Client::builder("https://ca.example/dir")
            .retry_policy(RetryPolicy::no_retries())
            .bad_nonce_retries(4);
        assert_eq!(builder.transport_config().retry.bad_nonce_attempts(), 5);
    }
}
