//! The issuer: "ensure a valid certificate for these names", exactly once.
//!
//! [`Issuer::ensure`] returns a stored certificate while it is not due for
//! renewal, without a request. Otherwise it resumes the in-flight order of
//! a journal left by an earlier run (a crash, a timeout, a restart), or
//! runs a new order. Every step is written to the [`Store`] before the
//! request that depends on it:
//!
//! 1. the journal (`Ordering`) before newOrder, the order URL as soon as it
//!    is known (`OrderCreated`);
//! 2. `ChallengesAnswered` once the challenges are answered;
//! 3. the certificate key before finalize (`Finalizing`), so a lost finalize
//!    response is resumed with the key the CA certified;
//! 4. the certificate URL (`CertificateUrlKnown`), the downloaded chain
//!    (`Downloaded`), then the certificate itself, and the journal is removed.
//!
//! A process killed anywhere resumes the same order: the CA issues one
//! certificate per identifier set, not one per attempt.
//!
//! Concurrent `ensure` calls for the same names share one issuance
//! in-process; across processes the store's lease makes the second wait
//! and then reuse the first one's certificate. A client-side ledger counts
//! the CA's published rate limits ([`RateLimits`], the table its directory
//! URL names: Let's Encrypt's for Let's Encrypt, none for other CAs) and remembers its 429s, refusing locally what the CA would
//! refuse, across restarts.

mod lease;
mod ledger;
pub mod limits;
mod manage;
mod settle;
mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

pub use limits::{Headroom, Limit, RateLimits, registered_domain};
pub use manage::{CertificateStatus, RevokeWith};

use crate::caa::{CaaChecker, CaaContext, CaaVerdict};
use crate::client::{Account, AccountOptions, Client, NewOrder, Order};
use crate::crypto::{AccountKey, CertificateKey, CertificateKeyType, Csr, KeyAlgorithm};
use crate::dns::{Dns, DnsConfig};
use crate::error::{CaaCause, Error, ErrorClass, Result};
use crate::protocol::CertId;
use crate::protocol::{AuthorizationStatus, ChallengeType, Identifier, OrderStatus, timestamp};
use crate::solver::{ChallengeAnswer, Solver};
use crate::store::{
    IdentifierSetKey, Journal, JournalStep, Lease, RateLimitRecord, RenewalSchedule, Store,
    StoreError, StoredAccount, StoredCertificate,
};
use ledger::{Exemption, RateLedger};

/// Pages of the account's orders list read to recover a corrupted journal.
const RECOVERY_ORDER_PAGES: usize = 10;
/// The newest orders looked at to recover a corrupted journal.
const RECOVERY_ORDERS: usize = 100;

/// What `ensure` is asked for beyond the names.
///
/// # Example
///
/// ```
/// # #[cfg(feature = "testing")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use std::sync::Arc;
/// use sturdy_acme::solver::http01::Http01Solver;
/// use sturdy_acme::store::FileStore;
/// use sturdy_acme::testing::TestCa;
/// use sturdy_acme::{CertificateSource, EnsureOptions, Issuer};
///
/// let ca = TestCa::start().await?;
/// let dir = std::env::temp_dir().join(format!("sturdy-doc-{}-{}", line!(), std::process::id()));
/// use sturdy_acme::CertificateKeyType;
///
/// let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
///     .solver(Arc::new(Http01Solver::unserved()))
///     .build();
/// let options = EnsureOptions { key_type: CertificateKeyType::P384, ..EnsureOptions::default() };
/// let first = issuer.ensure(&["p384.example"], &options).await?;
/// // `force_new` orders again although the stored one is still good.
/// let again = issuer.ensure(&["p384.example"], &EnsureOptions { force_new: true, ..options }).await?;
/// assert_eq!(again.source, CertificateSource::New);
/// assert_ne!(again.certificate.serial, first.certificate.serial);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// # #[cfg(not(feature = "testing"))]
/// # fn main() {}
/// ```
#[derive(Debug, Clone, Default)]
pub struct EnsureOptions {
    /// The certificate key type (P-256 by default).
    pub key_type: CertificateKeyType,
    /// Challenge types in order of preference (empty: the solvers' order).
    pub challenge_types: Vec<ChallengeType>,
    /// Prefer the chain to this root (issuer common name).
    pub preferred_chain: Option<String>,
    /// Order a new certificate even if a stored one is still good (a
    /// deliberate duplicate; the rate-limit ledger still applies).
    pub force_new: bool,
    /// The certificate profile to ask for (`meta.profiles`: Let's
    /// Encrypt's `classic`, `tlsserver`, `shortlived`); `None`: the CA's
    /// default.
    pub profile: Option<String>,
    /// How long to wait while another process holds this set's lease
    /// (`None`: [`IssuerBuilder::lease_wait`]); `Some(Duration::ZERO)`
    /// tries once and fails with [`StoreError::LeaseHeld`](crate::store::StoreError)
    /// at once, as a renewer sharing the work with other nodes wants.
    pub lease_wait: Option<Duration>,
}

/// Where the certificate `ensure` returned came from.
///
/// Example: [`Issuer`] and [`EnsureOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateSource {
    /// The store had a certificate not yet due for renewal: no request.
    Stored,
    /// An interrupted order was resumed from its journal.
    Resumed,
    /// A new order.
    New,
}

/// The result of [`Issuer::ensure`].
///
/// Example: [`Issuer`] and [`EnsureOptions`].
#[derive(Debug, Clone)]
pub struct Ensured {
    /// The certificate and its key.
    pub certificate: StoredCertificate,
    /// Where it came from.
    pub source: CertificateSource,
    /// For a renewal sent as an ARI renewal: the CertID of the certificate
    /// it replaces (the `replaces` of its newOrder).
    pub replaces: Option<String>,
}

/// A step of an issuance, reported to [`IssuerBuilder::on_step`] right
/// after it is durable (journalled) or done.
///
/// Example: [`IssuerBuilder`] (`on_step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssuerStep {
    /// A journal was found and is being resumed.
    Resumed(JournalStep),
    /// The order exists and its URL is journalled.
    OrderCreated,
    /// The challenges were answered (journalled).
    ChallengesAnswered,
    /// Finalize was sent and answered (the key was journalled before).
    FinalizeSent,
    /// The certificate URL is journalled.
    CertificateUrlKnown,
    /// The chain is downloaded and journalled, not yet stored.
    Downloaded,
    /// The certificate is stored and the journal removed.
    Stored,
    /// The stored certificate record was corrupted: the store kept a copy
    /// aside (reported at ERROR) and it is treated as absent.
    CorruptedCertificateIgnored,
    /// The journal was corrupted (a copy is kept aside); the order it was
    /// for was found in the account's orders list and is resumed.
    CorruptedJournalRecovered,
    /// A journal left beside the stored certificate (its own, whose delete
    /// never happened, or an older certificate's) was settled instead of
    /// resumed: the stored certificate, revoked or not, wins.
    LeftoverJournalSettled,
}

type StepObserver = Arc<dyn Fn(&IdentifierSetKey, IssuerStep) + Send + Sync>;

/// Configures an [`Issuer`].
///
/// # Example
///
/// ```
/// # #[cfg(feature = "testing")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use std::sync::Arc;
/// use sturdy_acme::solver::http01::Http01Solver;
/// use sturdy_acme::store::FileStore;
/// use sturdy_acme::testing::TestCa;
/// use sturdy_acme::{CertificateSource, EnsureOptions, Issuer};
///
/// let ca = TestCa::start().await?;
/// let dir = std::env::temp_dir().join(format!("sturdy-doc-{}-{}", line!(), std::process::id()));
/// use std::sync::Mutex;
/// use sturdy_acme::{AccountOptions, IssuerStep, RateLimits};
///
/// let steps = Arc::new(Mutex::new(Vec::new()));
/// let seen = steps.clone();
/// let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
///     .solver(Arc::new(Http01Solver::unserved()))
///     .account_options(AccountOptions::agreeing_to_terms().contact("ops@example.com"))
///     .rate_limits(RateLimits::none()) // the default follows the directory
///     .renew_after_fraction(0.5)
///     .on_step(move |_, step| seen.lock().unwrap().push(step))
///     .build();
/// issuer.ensure(&["observed.example"], &EnsureOptions::default()).await?;
/// assert!(steps.lock().unwrap().contains(&IssuerStep::Downloaded));
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// # #[cfg(not(feature = "testing"))]
/// # fn main() {}
/// ```
pub struct IssuerBuilder<S: Store> {
    client: Client,
    store: S,
    account_options: AccountOptions,
    account_key_algorithm: KeyAlgorithm,
    solvers: Vec<Arc<dyn Solver>>,
    limits: Option<RateLimits>,
    renew_after: Option<f64>,
    renew_at_window_start: bool,
    lease_ttl: Duration,
    lease_wait: Duration,
    holder: String,
    observer: Option<StepObserver>,
    caa: Option<CaaChecker>,
}

impl<S: Store> std::fmt::Debug for IssuerBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerBuilder")
            .field("directory", &self.client.directory_url())
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl<S: Store> IssuerBuilder<S> {
    /// Options for the account the issuer registers when the store has none
    /// (default: agree to the terms).
    pub fn account_options(mut self, options: AccountOptions) -> Self {
        self.account_options = options;
        self
    }

    /// Algorithm of a new account key (default ES256).
    pub fn account_key_algorithm(mut self, alg: KeyAlgorithm) -> Self {
        self.account_key_algorithm = alg;
        self
    }

    /// Adds a challenge solver.
    pub fn solver(mut self, solver: Arc<dyn Solver>) -> Self {
        self.solvers.push(solver);
        self
    }

    /// The CA's rate limits to count locally. Default: the table the
    /// directory URL names ([`RateLimits::for_directory`]: Let's Encrypt's
    /// for its production and staging directories, none for other CAs,
    /// the embedded test CA and Pebble included).
    pub fn rate_limits(mut self, limits: RateLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Renew as soon as the CA's suggested window opens, instead of at a
    /// uniformly random time inside it (RFC 9773's recommendation, the
    /// default, which spreads a fleet's renewals over the window). For a
    /// tool run by hand, and for tests.
    pub fn renew_at_window_start(mut self, enabled: bool) -> Self {
        self.renew_at_window_start = enabled;
        self
    }

    /// Renew once this fraction of the lifetime has passed, when the CA
    /// offers no renewal information (default 2/3, or 1/2 for a lifetime of
    /// 10 days or less; set here, it applies to every lifetime).
    pub fn renew_after_fraction(mut self, fraction: f64) -> Self {
        self.renew_after = Some(fraction.clamp(0.0, 1.0));
        self
    }

    /// Lease time-to-live (default 60 s; renewed while the issuance runs).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// How long to wait for another process's lease (default 10 minutes).
    pub fn lease_wait(mut self, wait: Duration) -> Self {
        self.lease_wait = wait;
        self
    }

    /// A label for this process in leases (default none). The holder name
    /// is always `label@host-pid-start time-random`: two processes given
    /// the same label never share a lease.
    pub fn holder(mut self, label: impl Into<String>) -> Self {
        self.holder = crate::store::unique_holder(Some(&label.into()));
        self
    }

    /// Calls `f` after each durable step of every issuance (for logs,
    /// metrics and crash tests).
    pub fn on_step(
        mut self,
        f: impl Fn(&IdentifierSetKey, IssuerStep) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// The DNS the issuer may ask, which turns on the CAA pre-flight
    /// ([`crate::caa`]) with its defaults: before each newOrder, every name's
    /// CAA records are read at the domain's authoritative nameservers. A
    /// forbidding record fails the order at once; a nameserver that does
    /// not answer is asked again on the CAA schedule, then fails with
    /// [`ErrorClass::Caa`] / [`CaaCause::LookupFailed`](crate::CaaCause)
    /// naming it, and no order, authorization or finalize is spent.
    ///
    /// The set's lease is held (and renewed) while the pre-flight waits:
    /// another process ensuring the same set waits its `lease_wait`
    /// (10 minutes by default, less than the CAA schedule's 15) and then
    /// returns a lease error rather than asking the same DNS again.
    pub fn dns(mut self, config: DnsConfig) -> Self {
        self.caa = Some(CaaChecker::new(Dns::new(config)));
        self
    }

    /// Replaces the CAA pre-flight's checker (`Some`), or turns the
    /// pre-flight off (`None`).
    pub fn caa_preflight(mut self, checker: Option<CaaChecker>) -> Self {
        self.caa = checker;
        self
    }

    /// The issuer.
    pub fn build(self) -> Issuer<S> {
        let limits = self
            .limits
            .unwrap_or_else(|| RateLimits::for_directory(self.client.directory_url()));
        Issuer {
            inner: Arc::new(Inner {
                client: self.client,
                store: self.store,
                account_options: self.account_options,
                account_key_algorithm: self.account_key_algorithm,
                solvers: self.solvers,
                renew_after: self.renew_after,
                renew_at_window_start: self.renew_at_window_start,
                lease_ttl: self.lease_ttl,
                lease_wait: self.lease_wait,
                holder: self.holder,
                observer: self.observer,
                caa: self.caa,
                account: tokio::sync::RwLock::new(None),
                limits,
                flights: Mutex::new(HashMap::new()),
                fences: Mutex::new(HashMap::new()),
            }),
        }
    }
}

struct Inner<S: Store> {
    client: Client,
    store: S,
    account_options: AccountOptions,
    account_key_algorithm: KeyAlgorithm,
    solvers: Vec<Arc<dyn Solver>>,
    renew_after: Option<f64>,
    renew_at_window_start: bool,
    lease_ttl: Duration,
    lease_wait: Duration,
    holder: String,
    observer: Option<StepObserver>,
    caa: Option<CaaChecker>,
    /// The account, once loaded or registered; replaced by a key rollover.
    account: tokio::sync::RwLock<Option<Account>>,
    limits: RateLimits,
    flights: Mutex<HashMap<IdentifierSetKey, Arc<tokio::sync::Mutex<()>>>>,
    fences: Mutex<HashMap<IdentifierSetKey, Arc<lease::LeaseState>>>,
}

/// Ensures certificates exactly once; see the module docs. Cheap to clone.
///
/// # Example
///
/// ```
/// # #[cfg(feature = "testing")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use std::sync::Arc;
/// use sturdy_acme::solver::http01::Http01Solver;
/// use sturdy_acme::store::FileStore;
/// use sturdy_acme::testing::TestCa;
/// use sturdy_acme::{CertificateSource, EnsureOptions, Issuer};
///
/// let ca = TestCa::start().await?;
/// let dir = std::env::temp_dir().join(format!("sturdy-doc-{}-{}", line!(), std::process::id()));
/// let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
///     .solver(Arc::new(Http01Solver::unserved())) // the test CA validates nothing by default
///     .build();
/// let ensured = issuer.ensure(&["shop.example", "www.shop.example"], &EnsureOptions::default()).await?;
/// assert_eq!(ensured.source, CertificateSource::New);
/// assert!(ensured.certificate.chain_pem.starts_with("-----BEGIN CERTIFICATE-----"));
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// # #[cfg(not(feature = "testing"))]
/// # fn main() {}
/// ```
pub struct Issuer<S: Store> {
    inner: Arc<Inner<S>>,
}

impl<S: Store> Clone for Issuer<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Store> std::fmt::Debug for Issuer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("directory", &self.inner.client.directory_url())
            .field("holder", &self.inner.holder)
            .finish_non_exhaustive()
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl<S: Store> Issuer<S> {
    /// An issuer for the CA of `client`, keeping its state in `store`.
    pub fn builder(client: Client, store: S) -> IssuerBuilder<S> {
        IssuerBuilder {
            client,
            store,
            account_options: AccountOptions::agreeing_to_terms(),
            account_key_algorithm: KeyAlgorithm::Es256,
            solvers: Vec::new(),
            limits: None,
            renew_after: None,
            renew_at_window_start: false,
            lease_ttl: Duration::from_secs(60),
            lease_wait: Duration::from_secs(600),
            holder: crate::store::unique_holder(None),
            observer: None,
            caa: None,
        }
    }

    /// Now, on the client's calendar ([`ClientBuilder::clock`](crate::ClientBuilder::clock)).
    fn now(&self) -> SystemTime {
        self.inner.client.clock().now()
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    fn observe(&self, key: &IdentifierSetKey, step: IssuerStep) {
        tracing::debug!(set = %key, ?step, "issuer step");
        if let Some(f) = &self.inner.observer {
            f(key, step);
        }
    }

    /// [`Issuer::ensure`] for many identifier sets, at most `concurrency`
    /// at a time (at least one); the results come back in the order of
    /// `sets`, one per set, and one set's failure does not stop the others.
    ///
    /// Concurrent calls are safe whatever the names: calls for the same
    /// names share one issuance, calls for different names run side by
    /// side, and the first account is registered once (under a lease in
    /// the store) and shared by all. The rate-limit ledger is shared too, so
    /// a burst is refused locally once a limit is spent rather than sent.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sturdy_acme::Error> {
    /// use std::sync::Arc;
    /// use sturdy_acme::solver::http01::Http01Solver;
    /// use sturdy_acme::store::FileStore;
    /// use sturdy_acme::testing::TestCa;
    /// use sturdy_acme::{EnsureOptions, Issuer};
    ///
    /// let (builder, responder) = TestCa::builder().with_http01_responder().await?;
    /// let ca = builder.start().await?;
    /// let dir = std::env::temp_dir().join(format!("sturdy-doc-batch-{}", std::process::id()));
    /// let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
    ///     .solver(Arc::new(Http01Solver::for_responder(&responder)))
    ///     .build();
    /// let customers: Vec<Vec<String>> = (0..6)
    ///     .map(|i| vec![format!("shop{i}.example"), format!("www.shop{i}.example")])
    ///     .collect();
    /// let results = issuer.ensure_all(customers, &EnsureOptions::default(), 3).await;
    /// assert!(results.iter().all(|r| r.is_ok()));
    /// assert_eq!(ca.ledger().certificates.len(), 6);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub async fn ensure_all<I, N>(
        &self,
        sets: I,
        options: &EnsureOptions,
        concurrency: usize,
    ) -> Vec<Result<Ensured>>
    where
        I: IntoIterator<Item = N>,
        N: IntoIterator,
        N::Item: Into<String>,
    {
        let sets: Vec<Vec<String>> = sets
            .into_iter()
            .map(|set| set.into_iter().map(Into::into).collect())
            .collect();
        let mut results: Vec<Option<Result<Ensured>>> = (0..sets.len()).map(|_| None).collect();
        let mut running = tokio::task::JoinSet::new();
        let mut pending = sets.into_iter().enumerate();
        let limit = concurrency.max(1);
        loop {
            while running.len() < limit {
                let Some((i, names)) = pending.next() else {
                    break;
                };
                let issuer = self.clone();
                let options = options.clone();
                running.spawn(async move { (i, issuer.ensure(&names, &options).await) });
            }
            match running.join_next().await {
                Some(Ok((i, result))) => results[i] = Some(result),
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Some(Err(e)) => {
                    // Cancelled: only when the runtime shuts down.
                    tracing::warn!(error = %e, "an ensure task was cancelled");
                }
                None => break,
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(Error::InvalidInput(
                        "the ensure task was cancelled (runtime shutting down)".into(),
                    ))
                })
            })
            .collect()
    }

    /// When `cert` is due for renewal: at once when it was revoked; at the
    /// time chosen in the CA's suggested window when its renewal
    /// information said one ([`StoredCertificate::renewal`]); else at 2/3
    /// of its lifetime, or 1/2 when the lifetime is 10 days or less (or the
    /// fraction set with [`IssuerBuilder::renew_after_fraction`]).
    ///
    /// ```
    /// # use std::time::{Duration, UNIX_EPOCH};
    /// # use sturdy_acme::store::StoredCertificate;
    /// # async fn run(issuer: sturdy_acme::Issuer<sturdy_acme::store::FileStore>, mut cert: StoredCertificate) {
    /// // A 160-hour (shortlived) certificate is renewed after 80 hours.
    /// cert.not_before = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    /// cert.not_after = cert.not_before + Duration::from_secs(160 * 3600);
    /// assert_eq!(issuer.renewal_due_at(&cert), cert.not_before + Duration::from_secs(80 * 3600));
    /// # }
    /// ```
    pub fn renewal_due_at(&self, cert: &StoredCertificate) -> SystemTime {
        if cert.revoked.is_some() {
            return cert.not_before.min(self.now());
        }
        let lifetime = cert
            .not_after
            .duration_since(cert.not_before)
            .unwrap_or_default();
        if let Some(at) = cert.renewal.as_ref().and_then(|r| r.renew_at) {
            // Never later than 90% of the lifetime, whatever was stored.
            let latest = cert
                .not_after
                .checked_sub(lifetime / 10)
                .unwrap_or(cert.not_after);
            return at.min(latest);
        }
        let fraction =
            self.inner
                .renew_after
                .unwrap_or(if lifetime <= Duration::from_secs(10 * 24 * 3600) {
                    0.5
                } else {
                    2.0 / 3.0
                });
        cert.not_before + lifetime.mul_f64(fraction)
    }

    /// When an [`Issuer::ensure`] for `cert`'s set would next do more than
    /// return it: its renewal time, or sooner the time to ask the CA's
    /// renewal information again (when the CA offers it). A renewer sleeps
    /// until then.
    pub fn next_check_at(&self, cert: &StoredCertificate) -> SystemTime {
        let due = self.renewal_due_at(cert).min(cert.not_after);
        if cert.revoked.is_some() || !self.inner.client.offers_renewal_info() {
            return due;
        }
        match &cert.renewal {
            Some(r) => due.min(r.check_again_at),
            None => self.now(),
        }
    }

    /// The certificate stored for `names` at this issuer's CA and account
    /// (registering the account on first use), without any request about
    /// the certificate; a corrupted record counts as none.
    pub async fn stored_certificate<N: AsRef<str>>(
        &self,
        names: &[N],
    ) -> Result<Option<StoredCertificate>> {
        let ids = names
            .iter()
            .map(|n| Identifier::parse(n.as_ref()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let account_url = self.account().await?.url().to_owned();
        let key =
            IdentifierSetKey::for_account(self.inner.client.directory_url(), account_url, &ids);
        self.stored(&key).await
    }

    /// What is left of each rate limit this issuer's account has spent
    /// from, as its ledger in the store counts it now (the account's
    /// new-order bucket always included). For metrics and dashboards.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sturdy_acme::Error> {
    /// use std::sync::Arc;
    /// use sturdy_acme::solver::http01::Http01Solver;
    /// use sturdy_acme::store::FileStore;
    /// use sturdy_acme::testing::TestCa;
    /// use sturdy_acme::{EnsureOptions, Issuer, RateLimits};
    ///
    /// let ca = TestCa::builder().start_in_process()?;
    /// let dir = std::env::temp_dir().join(format!("sturdy-doc-headroom-{}", std::process::id()));
    /// let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
    ///     .solver(Arc::new(Http01Solver::unserved()))
    ///     .rate_limits(RateLimits::lets_encrypt())
    ///     .build();
    /// issuer.ensure(&["shop.example"], &EnsureOptions::default()).await?;
    /// let left = issuer.rate_limit_headroom().await?;
    /// let orders = left.iter().find(|h| h.bucket.starts_with("orders:")).unwrap();
    /// assert_eq!(orders.tokens.floor(), 299.0); // 300 per 3 hours, one spent
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub async fn rate_limit_headroom(&self) -> Result<Vec<Headroom>> {
        let account = self.account().await?.url().to_owned();
        let directory = self.inner.client.directory_url().to_owned();
        let now = self.now();
        let current = self.inner.store.load_ledger(&directory).await?;
        let mut ledger = RateLedger::load(self.inner.limits.clone(), current.map(|r| r.state), now);
        Ok(ledger.headroom(&account, now))
    }

    /// The account's new-order bucket as its ledger counts it now (`None`:
    /// no new-order limit is configured): a renewer starts no more new
    /// certificates than its whole tokens.
    pub async fn new_order_headroom(&self) -> Result<Option<Headroom>> {
        if self.inner.limits.new_orders_per_account.is_none() {
            return Ok(None);
        }
        let account = self.account().await?.url().to_owned();
        let orders = format!("orders:{account}");
        Ok(self
            .rate_limit_headroom()
            .await?
            .into_iter()
            .find(|h| h.bucket == orders))
    }

    /// What `cert` means for an ensure now.
    fn judge(&self, cert: &StoredCertificate) -> Verdict {
        let now = self.now();
        // An expired certificate is renewed, not polled for (RFC 9773).
        if now >= cert.not_after {
            return Verdict::Due;
        }
        if cert.revoked.is_none()
            && self.inner.client.offers_renewal_info()
            && cert
                .renewal
                .as_ref()
                .is_none_or(|r| now >= r.check_again_at)
        {
            return Verdict::Recheck;
        }
        if now >= self.renewal_due_at(cert) {
            Verdict::Due
        } else {
            Verdict::Usable
        }
    }

    /// Fetches the CA's renewal information for `cert` and stores the
    /// schedule it gives (under the issuance's lease). An answer that
    /// cannot be used falls back to the lifetime rule until the next check
    /// (6 hours), logged once per certificate.
    async fn refresh_renewal_info(
        &self,
        key: &IdentifierSetKey,
        mut cert: StoredCertificate,
    ) -> Result<StoredCertificate> {
        let now = self.now();
        let fallback = |why: String, cert: &StoredCertificate| {
            let recheck = now + crate::protocol::renewal_info::DEFAULT_RECHECK;
            // A window already known stays (and its chosen time) until an
            // answer replaces it.
            if let Some(old) = cert.renewal.as_ref().filter(|r| r.window_start.is_some()) {
                tracing::warn!(set = %key, reason = %why, "renewal information unavailable; keeping the window known so far until the next check");
                return RenewalSchedule {
                    check_again_at: recheck,
                    ..old.clone()
                };
            }
            if cert.renewal.is_none() {
                tracing::warn!(set = %key, reason = %why, "no usable renewal information; renewing by the certificate's lifetime until the next check");
            }
            RenewalSchedule {
                window_start: None,
                window_end: None,
                renew_at: None,
                check_again_at: recheck,
                explanation_url: None,
            }
        };
        let schedule = match CertId::from_pem(&cert.chain_pem) {
            Err(why) => fallback(why, &cert),
            Ok(id) => match self.inner.client.renewal_info(&id).await {
                Ok(info) => {
                    // The chosen time stays while the window does.
                    let renew_at = match &cert.renewal {
                        Some(old)
                            if old.window_start == Some(info.window_start)
                                && old.window_end == Some(info.window_end)
                                && old.renew_at.is_some() =>
                        {
                            old.renew_at
                        }
                        _ => Some(info.renewal_time(
                            if self.inner.renew_at_window_start {
                                0.0
                            } else {
                                crate::protocol::renewal_info::random_fraction()
                            },
                            now,
                        )),
                    };
                    if let Some(url) = &info.explanation_url {
                        tracing::info!(set = %key, explanation = %url, "the CA explains this certificate's renewal window");
                    }
                    RenewalSchedule {
                        window_start: Some(info.window_start),
                        window_end: Some(info.window_end),
                        renew_at,
                        check_again_at: info.check_again_at,
                        explanation_url: info.explanation_url,
                    }
                }
                Err(e) => fallback(e.to_string(), &cert),
            },
        };
        // A window a broken or hostile CA puts at or past the expiry would
        // let the certificate expire: never later than 90% of its life.
        let lifetime = cert
            .not_after
            .duration_since(cert.not_before)
            .unwrap_or_default();
        let latest = cert
            .not_after
            .checked_sub(lifetime / 10)
            .unwrap_or(cert.not_after);
        let mut schedule = schedule;
        if let Some(at) = schedule.renew_at
            && at > latest
        {
            tracing::warn!(set = %key, "the CA's suggested window ends too close to (or after) the expiry; renewing at 90% of the lifetime instead");
            schedule.renew_at = Some(latest.max(now));
        }
        cert.renewal = Some(schedule);
        self.fence(key).await?;
        self.inner.store.save_certificate(key, &cert).await?;
        Ok(cert)
    }

    /// Which renewal exemption an order renewing `previous` has, as Let's
    /// Encrypt counts them.
    fn exemption(&self, previous: Option<&StoredCertificate>, journal: &Journal) -> Exemption {
        let Some(prev) = previous.filter(|p| p.revoked.is_none()) else {
            return Exemption::None;
        };
        let now = self.now();
        let in_window = prev.renewal.as_ref().is_some_and(
            |r| matches!((r.window_start, r.window_end), (Some(s), Some(e)) if s <= now && now < e),
        );
        if journal.replaces.is_some() && self.inner.client.offers_renewal_info() && in_window {
            return Exemption::Ari;
        }
        const EXACT_SET_WINDOW: Duration = Duration::from_secs(120 * 24 * 3600);
        if now.duration_since(prev.not_before).unwrap_or_default() < EXACT_SET_WINDOW {
            return Exemption::ExactSetRenewal;
        }
        Exemption::None
    }

    /// Returns a valid certificate for `names`: the stored one if it is not
    /// due for renewal, else the one an interrupted order already got, else
    /// a new one. Never orders twice for the same set by accident.
    pub async fn ensure<N: AsRef<str>>(
        &self,
        names: &[N],
        options: &EnsureOptions,
    ) -> Result<Ensured> {
        let ids = names
            .iter()
            .map(|n| Identifier::parse(n.as_ref()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            return Err(Error::InvalidInput("ensure needs at least one name".into()));
        }
        self.check_challenge_types(&ids, options)?;
        // Every record is this CA's and this account's: a store shared with
        // another CA (staging and production) never mixes them.
        let account_url = self.account().await?.url().to_owned();
        let key =
            IdentifierSetKey::for_account(self.inner.client.directory_url(), account_url, &ids);

        // One issuance per set in this process.
        let flight = {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(flights.entry(key.clone()).or_default())
        };
        let _flight = flight.lock().await;
        let mut taken = None;
        if !options.force_new
            && let Some(cert) = self.stored(&key).await?
        {
            let stored = |cert| Ensured {
                certificate: cert,
                source: CertificateSource::Stored,
                replaces: None,
            };
            match self.judge(&cert) {
                Verdict::Usable => return Ok(stored(cert)),
                // Renewal information to refresh, on a certificate not due
                // on what is known: worth one try at the lease, not a wait
                // (a node holding it is refreshing or renewing it).
                Verdict::Recheck if self.now() < self.renewal_due_at(&cert) => {
                    match self
                        .inner
                        .store
                        .acquire_lease(
                            &format!("cert-{}", key.file_stem()),
                            &self.inner.holder,
                            self.inner.lease_ttl,
                        )
                        .await
                    {
                        Ok(lease) => taken = Some(lease),
                        Err(StoreError::LeaseHeld { .. }) => return Ok(stored(cert)),
                        Err(e) => return Err(e.into()),
                    }
                }
                _ => {}
            }
        }

        // One issuance per set across processes sharing the store.
        let lease = match taken {
            Some(lease) => lease,
            None => {
                let wait = options.lease_wait.unwrap_or(self.inner.lease_wait);
                self.acquire_named_lease(format!("cert-{}", key.file_stem()), wait)
                    .await?
            }
        };
        self.with_held_lease(&key, lease, async {
            // Another process may have finished while we waited; renewal
            // information is refreshed under the lease.
            let mut previous = self.stored(&key).await?;
            if let Some(cert) = previous.take() {
                let cert = match self.judge(&cert) {
                    Verdict::Recheck => match self.refresh_renewal_info(&key, cert.clone()).await {
                        Ok(fresh) => fresh,
                        Err(e) => {
                            // Still good on what was known.
                            tracing::warn!(set = %key, error = %e, "could not record the renewal information; deciding on what was known");
                            cert
                        }
                    },
                    _ => cert,
                };
                let usable = match self.judge(&cert) {
                    Verdict::Usable => true,
                    Verdict::Due => false,
                    Verdict::Recheck => self.now() < self.renewal_due_at(&cert),
                };
                if !options.force_new && usable {
                    return Ok(Ensured {
                        certificate: cert,
                        source: CertificateSource::Stored,
                        replaces: None,
                    });
                }
                previous = Some(cert);
            }
            let result = self.issue(&key, options, previous.as_ref()).await;
            if let Err(e) = &result {
                self.record_error(&key, e).await;
            }
            result
        })
        .await
    }

    /// Runs `work` while `lease` (the lease of `key`'s issuance) is held:
    /// renewed in the background and registered as the fence every journal
    /// write of `key` checks; released when `work` is done.
    async fn with_held_lease<T>(
        &self,
        key: &IdentifierSetKey,
        lease: Lease,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let held = lease::HeldLease::start(Arc::clone(&self.inner), lease);
        self.inner
            .fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), held.state());
        let result = work.await;
        self.inner
            .fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        held.release().await;
        result
    }

    /// The certificate stored for `names`, its renewal information asked
    /// again first when its recheck time has come (RFC 9773; the CA's
    /// `Retry-After`), so [`Issuer::renewal_due_at`] judges it as
    /// [`Issuer::ensure`] would, without renewing anything. The refresh runs
    /// under the set's lease, tried once: while another process holds it
    /// (renewing, or refreshing), the certificate is returned as stored.
    /// `None` when nothing is stored.
    ///
    /// ```
    /// # #[cfg(feature = "testing")]
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sturdy_acme::Error> {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use sturdy_acme::solver::http01::Http01Solver;
    /// use sturdy_acme::store::FileStore;
    /// use sturdy_acme::testing::TestCa;
    /// use sturdy_acme::{EnsureOptions, Issuer};
    ///
    /// // The CA's window opens at issuance: due at once.
    /// let ca = TestCa::builder().renewal_info(Some(Duration::ZERO)).start().await?;
    /// let dir = std::env::temp_dir().join(format!("sturdy-doc-{}-{}", line!(), std::process::id()));
    /// let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
    ///     .solver(Arc::new(Http01Solver::unserved()))
    ///     .renew_at_window_start(true)
    ///     .build();
    /// issuer.ensure(&["shop.example"], &EnsureOptions::default()).await?;
    /// let cert = issuer.checked_certificate(&["shop.example"]).await?.unwrap();
    /// assert!(cert.renewal.is_some());
    /// assert!(issuer.renewal_due_at(&cert) <= std::time::SystemTime::now());
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// # #[cfg(not(feature = "testing"))]
    /// # fn main() {}
    /// ```
    pub async fn checked_certificate<N: AsRef<str>>(
        &self,
        names: &[N],
    ) -> Result<Option<StoredCertificate>> {
        let ids = names
            .iter()
            .map(|n| Identifier::parse(n.as_ref()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let account_url = self.account().await?.url().to_owned();
        let key =
            IdentifierSetKey::for_account(self.inner.client.directory_url(), account_url, &ids);
        let Some(cert) = self.stored(&key).await? else {
            return Ok(None);
        };
        if self.judge(&cert) != Verdict::Recheck {
            return Ok(Some(cert));
        }
        let flight = {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(flights.entry(key.clone()).or_default())
        };
        let _flight = flight.lock().await;
        let lease = match self
            .inner
            .store
            .acquire_lease(
                &format!("cert-{}", key.file_stem()),
                &self.inner.holder,
                self.inner.lease_ttl,
            )
            .await
        {
            Ok(lease) => lease,
            Err(StoreError::LeaseHeld { .. }) => return Ok(Some(cert)),
            Err(e) => return Err(e.into()),
        };
        self.with_held_lease(&key, lease, async {
            // Read again under the lease: another process may have renewed.
            let Some(cert) = self.stored(&key).await? else {
                return Ok(None);
            };
            if self.judge(&cert) != Verdict::Recheck {
                return Ok(Some(cert));
            }
            self.refresh_renewal_info(&key, cert).await.map(Some)
        })
        .await
    }

    /// Fails with [`Error::LeaseLost`] unless this process still holds the
    /// lease of `key`'s issuance: called before every journal write and
    /// every non-idempotent request.
    async fn fence(&self, key: &IdentifierSetKey) -> Result<()> {
        self.lease_state(key)?.fence(&self.inner.store).await
    }

    /// The fenced lease state of `key`'s issuance in this process.
    fn lease_state(&self, key: &IdentifierSetKey) -> Result<Arc<lease::LeaseState>> {
        let state = self
            .inner
            .fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned();
        state.ok_or_else(|| Error::LeaseLost {
            name: format!("cert-{}", key.file_stem()),
            token: 0,
            reason: "no lease is held for this issuance".into(),
        })
    }

    /// A wildcard can only be validated with dns-01: refused before any
    /// order is created when no dns-01 solver may be used.
    fn check_challenge_types(&self, ids: &[Identifier], options: &EnsureOptions) -> Result<()> {
        let Some(wildcard) = ids.iter().find(|i| i.is_wildcard()) else {
            return Ok(());
        };
        let dns01 = self
            .inner
            .solvers
            .iter()
            .any(|s| s.challenge_type() == ChallengeType::Dns01)
            && (options.challenge_types.is_empty()
                || options.challenge_types.contains(&ChallengeType::Dns01));
        if dns01 {
            return Ok(());
        }
        Err(Error::InvalidInput(format!(
            "{} is a wildcard, which only dns-01 can validate, and no dns-01 solver is allowed \
             (http-01 and tls-alpn-01 cannot prove a wildcard)",
            wildcard.value
        )))
    }

    /// The stored certificate (a corrupted record counts as none).
    async fn stored(&self, key: &IdentifierSetKey) -> Result<Option<StoredCertificate>> {
        match self.inner.store.load_certificate(key).await {
            Ok(cert) => Ok(cert),
            // The store kept the bad record aside; a certificate can always
            // be issued again, so renewal proceeds instead of failing until
            // the certificate expires.
            Err(StoreError::Corrupted { path, reason }) => {
                tracing::error!(set = %key, path = %path.display(), %reason, "the stored certificate is corrupted; treating it as absent");
                self.observe(key, IssuerStep::CorruptedCertificateIgnored);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes the lease of `key`'s issuance, waiting up to the issuer's
    /// `lease_wait`.
    pub(super) async fn acquire_lease(&self, key: &IdentifierSetKey) -> Result<Lease> {
        self.acquire_named_lease(format!("cert-{}", key.file_stem()), self.inner.lease_wait)
            .await
    }

    /// Takes the store lease `name`, waiting up to `wait` for another
    /// holder.
    async fn acquire_named_lease(&self, name: String, wait: Duration) -> Result<Lease> {
        let started = tokio::time::Instant::now();
        loop {
            match self
                .inner
                .store
                .acquire_lease(&name, &self.inner.holder, self.inner.lease_ttl)
                .await
            {
                Ok(lease) => return Ok(lease),
                Err(StoreError::LeaseHeld { holder, until, .. }) => {
                    if started.elapsed() >= wait {
                        return Err(Error::Store(StoreError::LeaseHeld {
                            name,
                            holder,
                            until,
                        }));
                    }
                    tracing::debug!(lease = %name, %holder, "waiting for another issuer's lease");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The issuer's account at its CA: loaded from the store, or
    /// registered on first use (under a store lease, so processes starting
    /// together on an empty store share one account). A key rollover that
    /// a crash left undecided is settled here, by asking the CA which key
    /// owns the account.
    pub async fn account(&self) -> Result<Account> {
        if let Some(account) = self.inner.account.read().await.as_ref() {
            return Ok(account.clone());
        }
        let mut slot = self.inner.account.write().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let directory = self.inner.client.directory_url().to_owned();
        if let Some(stored) = self.inner.store.load_account(&directory).await?
            && !stored.url.is_empty()
            && stored.next_key_pem.is_none()
        {
            let key = AccountKey::from_pkcs8_pem(&stored.key_pem)?;
            let account = self.inner.client.account_from_url(key, stored.url.clone());
            *slot = Some(account.clone());
            return Ok(account);
        }
        let lease = self.account_lease().await?;
        let result = self.load_or_register_account(&directory).await;
        self.release_named_lease(&lease).await;
        let account = result?;
        *slot = Some(account.clone());
        Ok(account)
    }

    /// Gives up a store lease taken with [`Self::acquire_named_lease`]; a
    /// failure is logged (the lease expires on its own).
    async fn release_named_lease(&self, lease: &Lease) {
        if let Err(e) = self.inner.store.release_lease(lease).await {
            tracing::warn!(lease = %lease.name, error = %e, "could not release a lease");
        }
    }

    /// The store lease that serialises registering and re-keying the
    /// account of this CA.
    async fn account_lease(&self) -> Result<Lease> {
        let directory = self.inner.client.directory_url();
        let digest = ring::digest::digest(&ring::digest::SHA256, directory.as_bytes());
        let name: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.acquire_named_lease(format!("account-{name}"), self.inner.lease_wait)
            .await
    }

    async fn load_or_register_account(&self, directory: &str) -> Result<Account> {
        let inner = &self.inner;
        let stored = match inner.store.load_account(directory).await? {
            Some(s) => s,
            None => {
                // The key is saved before newAccount, so a crash in
                // between finds the same account again.
                let key = AccountKey::generate(inner.account_key_algorithm)?;
                let stored = StoredAccount {
                    url: String::new(),
                    key_pem: key.to_pkcs8_pem(),
                    next_key_pem: None,
                };
                inner.store.save_account(directory, &stored).await?;
                stored
            }
        };
        let key = AccountKey::from_pkcs8_pem(&stored.key_pem)?;
        if !stored.url.is_empty() {
            let account = inner.client.account_from_url(key, stored.url.clone());
            return self.settle_rollover(directory, &stored, account).await;
        }
        let account = inner
            .client
            .create_account(key, &inner.account_options)
            .await?;
        inner
            .store
            .save_account(
                directory,
                &StoredAccount {
                    url: account.url().to_owned(),
                    key_pem: stored.key_pem.clone(),
                    next_key_pem: None,
                },
            )
            .await?;
        Ok(account)
    }

    /// Runs `f` on the ledger as the store holds it now and writes the
    /// result back, in one atomic update (see [`Store::update_ledger`]), so
    /// issuers sharing a store see each other's spending. `f` returns its
    /// result and whether the ledger changed (nothing is written if not);
    /// it may run more than once if the store retries.
    async fn with_ledger<T>(
        &self,
        mut f: impl FnMut(&mut RateLedger) -> (T, bool) + Send,
    ) -> Result<T>
    where
        T: Send,
    {
        let directory = self.inner.client.directory_url().to_owned();
        let limits = self.inner.limits.clone();
        let now = self.now();
        let mut out = None;
        self.inner
            .store
            .update_ledger(&directory, &mut |current| {
                let mut ledger =
                    RateLedger::load(limits.clone(), current.map(|r| r.state.clone()), now);
                let (result, changed) = f(&mut ledger);
                out = Some(result);
                changed.then(|| RateLimitRecord {
                    state: ledger.to_value(now),
                })
            })
            .await?;
        out.ok_or_else(|| {
            Error::Store(StoreError::Other(
                "the store returned from a ledger update without running it".into(),
            ))
        })
    }

    /// [`Self::with_ledger`] for a change that always writes.
    async fn spend_ledger(&self, mut f: impl FnMut(&mut RateLedger) + Send) -> Result<()> {
        self.with_ledger(|l| {
            f(l);
            ((), true)
        })
        .await
    }

    /// Deletes the journal under the issuance's lease: refused with
    /// [`Error::LeaseLost`] once another process holds it (the newer
    /// holder's journal may name a finalized order).
    async fn delete_journal(&self, key: &IdentifierSetKey) -> Result<()> {
        self.lease_state(key)?
            .delete_journal(&self.inner.store, key)
            .await
    }

    /// Writes the journal under the issuance's lease: refused with
    /// [`Error::LeaseLost`] once another process holds it.
    async fn save_journal(&self, key: &IdentifierSetKey, journal: &Journal) -> Result<()> {
        self.lease_state(key)?
            .save_journal(&self.inner.store, key, journal)
            .await
    }

    async fn issue(
        &self,
        key: &IdentifierSetKey,
        options: &EnsureOptions,
        previous: Option<&StoredCertificate>,
    ) -> Result<Ensured> {
        let account = self.account().await?;
        // A renewal names the certificate it replaces (sent only where the
        // CA offers renewal information).
        // (Not for a deliberate duplicate: the stored one stays in use.)
        let replaces = previous
            .filter(|_| !options.force_new)
            .filter(|_| self.inner.client.offers_renewal_info())
            .and_then(|p| CertId::from_pem(&p.chain_pem).ok())
            .map(|id| id.as_str().to_owned());
        let directory = self.inner.client.directory_url().to_owned();
        let fresh = || Journal {
            replaces: replaces.clone(),
            ..Journal::new(
                directory.clone(),
                account.url(),
                key.identifiers().to_vec(),
                now_unix(),
            )
        };
        let loaded = match self.inner.store.load_journal(key).await {
            Ok(loaded) => loaded,
            Err(StoreError::Corrupted { path, reason }) => {
                Some(self.recover_journal(key, &account, path, reason).await?)
            }
            Err(e) => return Err(e.into()),
        };
        let (mut journal, mut source) = match loaded {
            Some(j) if j.directory == directory && j.account_url == account.url() => {
                match settle::judge(&j, previous) {
                    settle::Leftover::Resume => {
                        tracing::info!(set = %key, step = ?j.step, order = ?j.order_url, "resuming an interrupted order");
                        self.observe(key, IssuerStep::Resumed(j.step));
                        (j, CertificateSource::Resumed)
                    }
                    leftover => {
                        self.settle_leftover(key, &j, leftover).await?;
                        (fresh(), CertificateSource::New)
                    }
                }
            }
            Some(stale) => {
                // Never overwritten: it may hold a certified key.
                tracing::warn!(set = %key, directory = %stale.directory, account = %stale.account_url, "archiving a journal of another CA or account");
                self.inner.store.archive_journal(key, &stale).await?;
                (fresh(), CertificateSource::New)
            }
            None => (fresh(), CertificateSource::New),
        };
        if journal.step == JournalStep::Downloaded && journal.chain_pem.is_some() {
            return self.store_certificate(key, &journal, source).await;
        }

        let mut restarts = 0;
        loop {
            // Once finalize may have been sent, the CA may have issued a
            // certificate for the journalled key: this order is only ever
            // given up on the CA's definitive `invalid`.
            let committed = journal.step >= JournalStep::Finalizing && journal.key_pem.is_some();
            if committed && let Some(url) = journal.certificate_url.clone() {
                // A known certificate URL first: the certificate may be
                // downloadable even when the order no longer is.
                match account
                    .certificate_chain(&url, options.preferred_chain.as_deref())
                    .await
                {
                    Ok(chain) => {
                        self.journal_chain(key, &mut journal, &chain).await?;
                        return self.store_certificate(key, &journal, source).await;
                    }
                    Err(e) => {
                        tracing::warn!(set = %key, certificate = %url, error = %e, "could not download the journalled certificate; reading its order");
                    }
                }
            }
            let mut order = match journal.order_url.clone() {
                Some(url) => match account.order(&url).await {
                    Ok(o) => o,
                    Err(e) if committed => {
                        tracing::error!(set = %key, order = %url, error = %e, "a finalized order could not be read; journal and key kept for the next attempt");
                        return Err(Error::OrderUnresolved {
                            url,
                            source: Box::new(e),
                        });
                    }
                    Err(e) if e.class() == ErrorClass::Permanent && restarts == 0 => {
                        // Finalize was never sent for it: no certificate
                        // can exist, so a new order is safe.
                        tracing::warn!(set = %key, error = %e, "journalled order is gone before finalize; ordering anew");
                        restarts += 1;
                        self.supersede(key, &mut journal).await?;
                        source = CertificateSource::New;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                None => {
                    self.new_order(key, &account, &mut journal, options, previous)
                        .await?
                }
            };
            check_order_identifiers(key, &order)?;
            match self.drive(key, &mut order, &mut journal, options).await {
                Ok(()) => return self.store_certificate(key, &journal, source).await,
                Err(DriveError::Restart) if restarts == 0 => {
                    restarts += 1;
                    self.supersede(key, &mut journal).await?;
                    source = CertificateSource::New;
                }
                Err(DriveError::Restart) => {
                    return Err(Error::OrderInvalid {
                        url: order.url().to_owned(),
                        problem: order.state().error.clone().map(Box::new),
                    });
                }
                Err(DriveError::Failed(e)) => return Err(e),
            }
        }
    }

    /// A corrupted journal is never taken for "no order in flight": it may
    /// name a finalized order. The store kept a copy aside; the order is
    /// looked for among the account's orders for the same identifiers. A
    /// pending or ready one is resumed (no certificate exists yet); one that
    /// is processing or valid was finalized with the key the journal held,
    /// and no order at all may mean newOrder was in flight: both stop with
    /// the typed error naming the file, for a human to recover the key.
    async fn recover_journal(
        &self,
        key: &IdentifierSetKey,
        account: &Account,
        path: std::path::PathBuf,
        reason: String,
    ) -> Result<Journal> {
        let stop = |found: String| {
            Error::Store(StoreError::Corrupted {
                path: path.clone(),
                reason: format!("{reason}; {found}"),
            })
        };
        let urls = match account.order_urls(RECOVERY_ORDER_PAGES).await {
            Ok(urls) => urls,
            Err(e) => {
                return Err(stop(format!(
                    "the account's orders could not be listed ({e})"
                )));
            }
        };
        // Every order for these names is looked at: one that may hold a
        // certificate (processing, valid) or that cannot be read stops the
        // recovery; only then is a pending or ready one resumed.
        let mut resumable = None;
        let mut unreadable = 0;
        for url in urls.iter().rev().take(RECOVERY_ORDERS) {
            let order = match account.order(url).await {
                Ok(order) => order,
                Err(e) => {
                    tracing::warn!(order = %url, error = %e, "recovering a corrupted journal: an order could not be read");
                    unreadable += 1;
                    continue;
                }
            };
            if IdentifierSetKey::new(order.identifiers()).identifiers() != key.identifiers() {
                continue;
            }
            match order.status() {
                OrderStatus::Processing | OrderStatus::Valid => {
                    return Err(stop(format!(
                        "its order {url} was finalized with the key the journal held; \
                         recover the key from the copy before ordering again"
                    )));
                }
                OrderStatus::Pending | OrderStatus::Ready => {
                    resumable.get_or_insert(url.clone());
                }
                OrderStatus::Invalid => {}
            }
        }
        if unreadable > 0 || urls.len() > RECOVERY_ORDERS {
            return Err(stop(format!(
                "{unreadable} of the account's orders could not be read and {} were not looked at, \
                 so a finalized order for these names cannot be ruled out",
                urls.len().saturating_sub(RECOVERY_ORDERS)
            )));
        }
        let Some(url) = resumable else {
            return Err(stop(
                "no order for these identifiers in the account's orders list".into(),
            ));
        };
        tracing::warn!(set = %key, order = %url, "corrupted journal: resuming its order found in the account's orders");
        self.observe(key, IssuerStep::CorruptedJournalRecovered);
        Ok(Journal {
            step: JournalStep::OrderCreated,
            order_url: Some(url),
            order_attempts: 1,
            ..Journal::new(
                self.inner.client.directory_url(),
                account.url(),
                key.identifiers().to_vec(),
                now_unix(),
            )
        })
    }

    /// Removes a journal [`settle::judge`] found to be no issuance to
    /// finish: the stored certificate's own leftover is deleted, an older
    /// certificate's journal archived first (it holds a key). Under the
    /// issuance's fenced lease.
    async fn settle_leftover(
        &self,
        key: &IdentifierSetKey,
        journal: &Journal,
        leftover: settle::Leftover,
    ) -> Result<()> {
        if leftover == settle::Leftover::Superseded {
            self.inner.store.archive_journal(key, journal).await?;
        }
        tracing::warn!(set = %key, ?leftover, step = ?journal.step, "a journal left beside the stored certificate is settled, not resumed");
        self.delete_journal(key).await?;
        self.observe(key, IssuerStep::LeftoverJournalSettled);
        Ok(())
    }

    /// Starts a new order in place of the journalled one, which the CA said
    /// is invalid or gone. A journal that holds a certificate key is
    /// archived first: a key is never overwritten.
    async fn supersede(&self, key: &IdentifierSetKey, journal: &mut Journal) -> Result<()> {
        if journal.key_pem.is_some() {
            self.inner.store.archive_journal(key, journal).await?;
        }
        // A reservation made for this journal stays with it for the next
        // order: the order superseded is invalid (the CA's definitive word
        // that it yields no certificate, a finalize sent to it included: a
        // CAA recheck that failed at finalize fails the order) or was gone
        // before finalize, so no certificate used it.
        journal.step = JournalStep::Ordering;
        journal.order_url = None;
        journal.key_pem = None;
        journal.certificate_url = None;
        journal.chain_pem = None;
        journal.finalize_sent_at = None;
        journal.finalize_attempts = 0;
        journal.caa_methods.clear();
        Ok(())
    }

    async fn new_order(
        &self,
        key: &IdentifierSetKey,
        account: &Account,
        journal: &mut Journal,
        options: &EnsureOptions,
        previous: Option<&StoredCertificate>,
    ) -> Result<Order> {
        let ids = key.identifiers().to_vec();
        let account_url = account.url().to_owned();
        let now = self.now();
        // A journal left at Ordering by an earlier process: its newOrder may
        // have been sent. Look for the order it created before sending one.
        if journal.step == JournalStep::Ordering && journal.order_attempts > 0 {
            let wanted = NewOrder::new(ids.clone())?;
            if let Some(order) = account
                .find_pending_order(&wanted, crate::client::LOST_ANSWER_PAGES)
                .await
            {
                tracing::info!(set = %key, order = %order.url(), "the interrupted newOrder's order was found in the account's orders list");
                journal.order_url = Some(order.url().to_owned());
                journal.step = JournalStep::OrderCreated;
                self.save_journal(key, journal).await?;
                self.observe(key, IssuerStep::OrderCreated);
                return Ok(order);
            }
        }
        // Before anything is spent: would the CA's CAA check pass? (First
        // a dry run of the ledger, nothing written: a set it would refuse
        // now is refused before the pre-flight can spend minutes on DNS.)
        let reserve_certificate = !journal.certificate_reserved;
        let exemption = self.exemption(previous, journal);
        let reserve = |l: &mut RateLedger, now| {
            l.reserve_new_order(&account_url, &ids, now, reserve_certificate, exemption)
        };
        let now = if let Some(checker) = &self.inner.caa {
            self.with_ledger(|l| (reserve(l, now).map(drop), false))
                .await??;
            journal.caa_methods = self.caa_preflight(checker, key, account, options).await?;
            // The pre-flight may have waited minutes for a nameserver.
            self.now()
        } else {
            now
        };
        // Checked and counted in one atomic ledger update: the order and,
        // unless this journal already holds one, the certificate it is for.
        self.with_ledger(|l| {
            let reserved = reserve(l, now);
            let changed = reserved.is_ok();
            (reserved, changed)
        })
        .await??;
        if reserve_certificate {
            journal.reserved_as = exemption.name().map(str::to_owned);
        }
        journal.certificate_reserved = true;
        journal.step = JournalStep::Ordering;
        journal.order_attempts += 1;
        // A failure from here on keeps what was spent: the journal write may
        // have landed (reserved) even if its answer was lost, and giving the
        // reservation back then would let the order be finalized uncounted.
        self.save_journal(key, journal).await?;
        self.fence(key).await?;
        let mut request = NewOrder::new(ids.clone())?;
        if let Some(profile) = &options.profile {
            request = request.profile(profile.clone());
        }
        if let Some(id) = journal.replaces.as_deref().and_then(CertId::parse) {
            tracing::info!(set = %key, replaces = %id, ?exemption, "renewal: the order names the certificate it replaces");
            request = request.replaces(id);
        }
        let (result, refused) = self.send_new_order(key, account, journal, &request).await;
        // Every newOrder sent counts, the repeats after a lost answer and a
        // request whose `replaces` the CA refused too.
        let extra = refused
            + match &result {
                Ok(order) => order.new_order_requests.saturating_sub(1),
                Err(Error::GaveUp { attempts, .. }) => attempts.saturating_sub(1),
                Err(_) => 0,
            };
        if extra > 0 {
            self.spend_ledger(|l| {
                for _ in 0..extra {
                    l.spend_order(&account_url, now);
                }
            })
            .await?;
        }
        match result {
            Ok(order) => {
                // Reserved as an ARI renewal, but the CA did not take it as
                // one (it refused `replaces`, or does not echo it): counted
                // as the order it is after all.
                let reserved = Exemption::from_name(journal.reserved_as.as_deref());
                if reserved == Exemption::Ari && !order.state().extra.contains_key("replaces") {
                    let as_now = match self.exemption(
                        previous,
                        &Journal {
                            replaces: None,
                            ..journal.clone()
                        },
                    ) {
                        Exemption::Ari => Exemption::None,
                        other => other,
                    };
                    tracing::info!(set = %key, ?as_now, "the order is not an ARI renewal at the CA; counted as one");
                    self.spend_ledger(|l| l.spend_as(&account_url, &ids, now, as_now, true))
                        .await?;
                    journal.reserved_as = as_now.name().map(str::to_owned);
                    journal.replaces = None;
                }
                journal.order_url = Some(order.url().to_owned());
                journal.step = JournalStep::OrderCreated;
                self.save_journal(key, journal).await?;
                self.observe(key, IssuerStep::OrderCreated);
                Ok(order)
            }
            Err(e) => {
                if e.is_rate_limited() {
                    let now = self.now();
                    self.spend_ledger(|l| l.record_server_limit(&account_url, &ids, &e, now))
                        .await?;
                }
                Err(e)
            }
        }
    }

    /// Sends newOrder; when the CA refuses its `replaces`
    /// ([`ReplacesRefusal`](crate::ReplacesRefusal)), resolves the refusal
    /// instead of dodging it: on `alreadyReplaced` this account's own
    /// earlier replacement order (an answer lost, an order left pending)
    /// is looked for and resumed, keeping the ARI exemption; otherwise, or
    /// when none is found, the refusal is journalled (never met twice for
    /// this issuance) and the order sent without `replaces`. Returns the
    /// outcome and the number of refused requests sent before it.
    async fn send_new_order(
        &self,
        key: &IdentifierSetKey,
        account: &Account,
        journal: &mut Journal,
        request: &NewOrder,
    ) -> (Result<Order>, u32) {
        let first = account.new_order_as_sent(request).await;
        let (Some(cert_id), Err(e)) = (request.replaced(), &first) else {
            return (first, 0);
        };
        let Some(cause) = crate::ReplacesRefusal::of(e) else {
            return (first, 0);
        };
        let cert_id = cert_id.to_string();
        if cause == crate::ReplacesRefusal::AlreadyReplaced
            && let Some(order) = account
                .find_pending_order(request, crate::client::REPLACEMENT_SEARCH_PAGES)
                .await
        {
            tracing::info!(set = %key, %cert_id, order = %order.url(), "alreadyReplaced: resuming this account's earlier replacement order");
            self.inner.client.emit(crate::Event::ReplacementResumed {
                cert_id,
                order_url: order.url().to_owned(),
            });
            return (Ok(order), 1);
        }
        let resolution = match cause {
            crate::ReplacesRefusal::AlreadyReplaced => {
                "no pending or ready replacement order of this account was found (the CA may \
                 list no orders); ordering without it"
            }
            _ => "ordering without it",
        };
        journal.replaces = None;
        journal.replaces_refused = Some(cause.name().to_owned());
        if let Err(e) = self.save_journal(key, journal).await {
            return (Err(e), 1);
        }
        if let Err(e) = self.fence(key).await {
            return (Err(e), 1);
        }
        let second = account.new_order_as_sent(&request.without_replaces()).await;
        // A CA that hands back a pending order for the same names (Boulder)
        // answers with the earlier replacement order itself: resumed.
        let echoed = second.as_ref().ok().and_then(|order| {
            order
                .state()
                .extra
                .get("replaces")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        });
        if cause == crate::ReplacesRefusal::AlreadyReplaced && echoed.as_deref() == Some(&cert_id) {
            let url = second
                .as_ref()
                .map(|o| o.url().to_owned())
                .unwrap_or_default();
            tracing::info!(set = %key, %cert_id, order = %url, "alreadyReplaced: the CA handed back this account's earlier replacement order");
            journal.replaces = Some(cert_id.clone());
            journal.replaces_refused = None;
            self.inner.client.emit(crate::Event::ReplacementResumed {
                cert_id,
                order_url: url,
            });
        } else {
            account.replaces_dropped(request, cause, e, resolution);
        }
        (second, 1)
    }

    /// Takes an order from whatever state it is in to a downloaded chain.
    async fn drive(
        &self,
        key: &IdentifierSetKey,
        order: &mut Order,
        journal: &mut Journal,
        options: &EnsureOptions,
    ) -> std::result::Result<(), DriveError> {
        // Once finalize may have been sent, the order's dialect decides what
        // that means (ACME v1, whose order is the client's own, hands the
        // earlier attempts to its new-cert guard: certificate finder and
        // budget before anything is repeated).
        if journal.step >= JournalStep::Finalizing {
            let sent = match (journal.step, journal.finalize_sent_at) {
                (JournalStep::Finalizing, Some(at)) => Some((
                    UNIX_EPOCH + Duration::from_secs(at.max(0) as u64),
                    journal.finalize_attempts,
                )),
                _ => None,
            };
            order.resume_after_finalize(sent);
        }
        let lease = self.lease_state(key)?;
        loop {
            lease.check_local()?;
            match order.status() {
                OrderStatus::Pending => {
                    self.answer_challenges(key, order, journal, options).await?;
                }
                OrderStatus::Ready => {
                    let cert_key = match &journal.key_pem {
                        Some(pem) => CertificateKey::from_pkcs8_pem(pem)?,
                        None => CertificateKey::generate(options.key_type)?,
                    };
                    // Counted first (a crash after it over-counts, never
                    // under-counts); then the fenced journal write, and the
                    // request right after it.
                    // (A journal that reserved the certificate with its
                    // newOrder spent it then.)
                    if !journal.certificate_reserved {
                        let ids = key.identifiers().to_vec();
                        let as_ = Exemption::from_name(journal.reserved_as.as_deref());
                        self.spend_ledger(|l| l.spend_as("", &ids, self.now(), as_, false))
                            .await?;
                    }
                    journal.key_pem = Some(cert_key.to_pkcs8_pem());
                    journal.step = JournalStep::Finalizing;
                    journal.finalize_sent_at = Some(now_unix());
                    journal.finalize_attempts = journal.finalize_attempts.saturating_add(1);
                    self.save_journal(key, journal).await?;
                    if let Err(e) = order.finalize(Csr::Key(&cert_key)).await {
                        self.after_refused_new_cert(key, order, journal, &e).await?;
                        return Err(e.into());
                    }
                    // v1: the order's URL now names its certificate; journal
                    // it at once so a crash from here on downloads instead
                    // of sending new-cert again.
                    if journal.order_url.as_deref() != Some(order.url()) {
                        journal.order_url = Some(order.url().to_owned());
                        // A chain in hand (found by the certificate finder)
                        // has no URL to download it again from: journalled
                        // in the same write.
                        if let Some(chain) = order.chain_in_hand() {
                            verify::check_chain(
                                chain,
                                &cert_key.to_pkcs8_pem(),
                                key.identifiers(),
                            )?;
                            journal.chain_pem = Some(chain.pem().to_owned());
                            journal.certificate_url = order.state().certificate.clone();
                            journal.step = JournalStep::Downloaded;
                        }
                        self.save_journal(key, journal).await?;
                    }
                    self.observe(key, IssuerStep::FinalizeSent);
                    if journal.step == JournalStep::Downloaded {
                        self.observe(key, IssuerStep::Downloaded);
                        return Ok(());
                    }
                }
                OrderStatus::Processing => {
                    order.wait_certificate().await?;
                }
                OrderStatus::Valid => {
                    if journal.key_pem.is_none() {
                        // Finalized by someone else: another process that
                        // took this set over (then this one lost its lease).
                        self.fence(key).await?;
                        return Err(DriveError::Failed(Error::InvalidInput(format!(
                            "order {} is valid but its certificate key is not in the journal",
                            order.url()
                        ))));
                    }
                    let url = order.wait_certificate().await?;
                    if journal.certificate_url.as_deref() != Some(url.as_str()) {
                        journal.certificate_url = Some(url);
                        // (v1: the order's URL now carries its certificate.)
                        journal.order_url = Some(order.url().to_owned());
                        journal.step = JournalStep::CertificateUrlKnown;
                        self.save_journal(key, journal).await?;
                        self.observe(key, IssuerStep::CertificateUrlKnown);
                    }
                    let chain = order
                        .certificate_chain(options.preferred_chain.as_deref())
                        .await?;
                    self.journal_chain(key, journal, &chain).await?;
                    return Ok(());
                }
                OrderStatus::Invalid => {
                    tracing::warn!(set = %key, order = %order.url(), error = ?order.state().error, "order is invalid");
                    self.count_unseen_failures(key, order, journal).await;
                    return Err(DriveError::Restart);
                }
            }
        }
    }

    /// An order found invalid when it is read (a resume) may have failed
    /// validation while no process was waiting for it: killed between a
    /// challenge answer and its validation, the solver gone with it. The
    /// CA counted each failed authorization (Let's Encrypt: 5 per
    /// identifier per account per hour), so the ledger counts them now,
    /// unless the attempt that saw the failure counted it (its error is
    /// journalled as a validation failure). An authorization that cannot be
    /// read counts as failed: over-counting only waits longer.
    async fn count_unseen_failures(
        &self,
        key: &IdentifierSetKey,
        order: &Order,
        journal: &Journal,
    ) {
        if journal.step < JournalStep::OrderCreated
            || journal
                .last_error
                .as_ref()
                .is_some_and(|e| e.class == "validation")
        {
            return;
        }
        let failed: Vec<String> = match order.authorizations().await {
            Ok(authzs) => authzs
                .iter()
                .filter(|a| a.status() == AuthorizationStatus::Invalid)
                .map(|a| a.identifier().value.clone())
                .collect(),
            Err(e) => {
                tracing::warn!(set = %key, error = %e, "the invalid order's authorizations could not be read; counting each identifier as failed");
                key.identifiers().iter().map(|i| i.value.clone()).collect()
            }
        };
        if failed.is_empty() {
            return;
        }
        tracing::warn!(set = %key, order = %order.url(), failed = ?failed, "validation failed while no process waited for it; counted in the ledger");
        let account_url = order.account().url().to_owned();
        let now = self.now();
        if let Err(e) = self
            .spend_ledger(|l| {
                for name in &failed {
                    l.spend_failed_authorization(&account_url, name, now);
                }
            })
            .await
        {
            tracing::warn!(set = %key, error = %e, "could not count the failed authorizations");
        }
    }

    /// ACME v1: a new-cert the CA refused (a problem document with a 4xx
    /// status, or refused locally before sending) issued nothing, so the journal goes back to
    /// before it; otherwise every later run would take it for a request
    /// whose answer was lost. Kept as it is whenever any new-cert for the
    /// set may have issued a certificate.
    async fn after_refused_new_cert(
        &self,
        key: &IdentifierSetKey,
        order: &Order,
        journal: &mut Journal,
        error: &Error,
    ) -> Result<()> {
        if !order.refusal_issued_nothing(error) {
            return Ok(());
        }
        journal.step = JournalStep::ChallengesAnswered;
        journal.finalize_sent_at = None;
        journal.finalize_attempts = journal.finalize_attempts.saturating_sub(1);
        self.save_journal(key, journal).await
    }

    async fn answer_challenges(
        &self,
        key: &IdentifierSetKey,
        order: &mut Order,
        journal: &mut Journal,
        options: &EnsureOptions,
    ) -> std::result::Result<(), DriveError> {
        let account = order.account().clone();
        // An authorization already invalid before this attempt answered
        // anything failed an earlier attempt (a CA may leave such an order
        // `pending`, as acme2certifier does): the order is dead, so it is
        // superseded as an invalid one is, its failures counted once.
        let authorizations = order.authorizations().await?;
        if authorizations
            .iter()
            .any(|a| a.status() == AuthorizationStatus::Invalid)
        {
            tracing::warn!(set = %key, order = %order.url(), "an authorization of the order is invalid: the order is dead although the CA says pending");
            self.count_unseen_failures(key, order, journal).await;
            return Err(DriveError::Restart);
        }
        let mut presented: Vec<(Arc<dyn Solver>, ChallengeAnswer)> = Vec::new();
        let result: Result<()> = async {
            // Every answer is presented before any challenge is answered:
            // presenting can take long (a dns-01 record waits for every
            // nameserver), so the presentations run side by side, and the
            // CA validates none of them half-done.
            let mut to_answer = Vec::new();
            for authz in authorizations {
                if authz.status() != AuthorizationStatus::Pending {
                    continue;
                }
                let (solver, challenge) = self.pick(&authz, options, journal)?;
                let token = challenge.token()?.to_owned();
                let key_authorization = challenge.key_authorization()?;
                let answer = ChallengeAnswer {
                    identifier: challenge.identifier().clone(),
                    kind: challenge.kind().clone(),
                    dns_name: challenge.dns01_record_name(),
                    dns_value: crate::crypto::challenge::dns01_txt_value(&key_authorization),
                    token,
                    key_authorization,
                };
                to_answer.push((solver, challenge, answer));
            }
            let outcomes = present_all(&to_answer).await;
            let mut first_error = None;
            for ((solver, _, answer), outcome) in to_answer.iter().zip(outcomes) {
                match outcome {
                    Ok(()) => presented.push((Arc::clone(solver), answer.clone())),
                    Err(e) => {
                        // Presented or not, it is cleaned up below.
                        presented.push((Arc::clone(solver), answer.clone()));
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
            for (_, challenge, _) in &mut to_answer {
                challenge.respond().await?;
            }
            journal.step = JournalStep::ChallengesAnswered;
            self.save_journal(key, journal).await?;
            self.observe(key, IssuerStep::ChallengesAnswered);
            order.wait_ready().await?;
            Ok(())
        }
        .await;
        for (solver, answer) in &presented {
            if let Err(e) = solver.cleanup(answer).await {
                tracing::warn!(identifier = %answer.identifier, error = %e, "challenge cleanup failed");
            }
        }
        if let Err(e) = &result
            && let ErrorClass::Validation { problems } = e.class()
        {
            let account_url = account.url().to_owned();
            let now = self.now();
            self.spend_ledger(|l| {
                for (id, _) in &problems {
                    l.spend_failed_authorization(&account_url, &id.value, now);
                }
            })
            .await?;
            // The order is invalid now (finalize was never sent for it):
            // this journal is done, if it is still ours; only once it is
            // gone does its reserved certificate go back (a refund while
            // the journal still says "reserved" would let it be finalized
            // uncounted).
            let refund = journal.certificate_reserved && journal.step < JournalStep::Finalizing;
            self.delete_journal(key).await?;
            if refund {
                let ids = key.identifiers().to_vec();
                let as_ = Exemption::from_name(journal.reserved_as.as_deref());
                self.spend_ledger(|l| l.refund_certificate(&ids, now, as_))
                    .await?;
            }
        }
        result.map_err(DriveError::Failed)
    }

    /// The CAA pre-flight of a set before its newOrder: forbidden (or a
    /// lookup that cannot succeed soon) fails at once; unreachable and
    /// inconsistent are asked again on the checker's schedule, then fail.
    /// Returns the validation methods CAA leaves each name (RFC 8657
    /// `validationmethods`; wildcards only dns-01), for [`Self::pick`]. IP
    /// identifiers have no CAA (RFC 8738 §7 leaves it undefined).
    async fn caa_preflight(
        &self,
        checker: &CaaChecker,
        key: &IdentifierSetKey,
        account: &Account,
        options: &EnsureOptions,
    ) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
        let names: Vec<String> = key
            .identifiers()
            .iter()
            .filter(|i| i.kind == "dns")
            .map(|i| i.value.clone())
            .collect();
        if names.is_empty() {
            return Ok(Default::default());
        }
        let methods = self.preference(options);
        let ctx = CaaContext {
            ca_identities: checker.identities_override().map_or_else(
                || self.inner.client.directory().meta.caa_identities.clone(),
                <[String]>::to_vec,
            ),
            account_uri: Some(account.url().to_owned()),
            validation_methods: methods.iter().map(ToString::to_string).collect(),
        };
        let backoff = *checker.retry_backoff();
        let started = std::time::Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let reports = checker.check(&names, &ctx).await;
            for report in &reports {
                tracing::info!(set = %key, name = %report.name, verdict = %report.summary(), "CAA pre-flight");
            }
            let failed: Vec<&crate::caa::CaaReport> =
                reports.iter().filter(|r| !r.verdict.may_issue()).collect();
            if failed.is_empty() {
                return caa_methods(&reports);
            }
            let forbidden = failed
                .iter()
                .any(|r| matches!(r.verdict, CaaVerdict::Forbidden { .. }));
            let error = Error::CaaPreflight {
                names: failed.iter().map(|r| r.name.clone()).collect(),
                cause: if forbidden {
                    CaaCause::Forbidden
                } else {
                    CaaCause::LookupFailed
                },
                summary: failed
                    .iter()
                    .map(|r| r.summary())
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            // Forbidden, or a lookup asking again soon will not fix.
            if failed.iter().any(|r| !r.verdict.is_transient()) {
                return Err(error);
            }
            let delay = backoff.nominal_delay(attempt - 1);
            if attempt >= backoff.max_attempts()
                || started.elapsed().saturating_add(delay) > backoff.budget()
            {
                return Err(if attempt > 1 {
                    Error::GaveUp {
                        attempts: attempt,
                        elapsed: started.elapsed(),
                        source: Box::new(error),
                    }
                } else {
                    error
                });
            }
            tracing::warn!(set = %key, error = %error, retry_in = ?delay, "CAA pre-flight: a nameserver did not answer; no order until it does");
            tokio::time::sleep(delay).await;
        }
    }

    /// The challenge types in the order they are tried: the options', else
    /// the solvers'.
    fn preference(&self, options: &EnsureOptions) -> Vec<ChallengeType> {
        if options.challenge_types.is_empty() {
            self.inner
                .solvers
                .iter()
                .map(|s| s.challenge_type())
                .collect()
        } else {
            options.challenge_types.clone()
        }
    }

    /// The solver and challenge for `authz`: the first of the preferred
    /// types the CA offers and CAA leaves it (the journal's
    /// `caa_methods`).
    fn pick(
        &self,
        authz: &crate::client::Authorization,
        options: &EnsureOptions,
        journal: &Journal,
    ) -> Result<(Arc<dyn Solver>, crate::client::Challenge)> {
        let caa = journal.caa_methods.get(&authz.identifier().value);
        let preference: Vec<ChallengeType> = self
            .preference(options)
            .into_iter()
            .filter(|kind| caa.is_none_or(|allowed| allowed.contains(&kind.to_string())))
            .collect();
        for kind in &preference {
            let solver = self
                .inner
                .solvers
                .iter()
                .find(|s| &s.challenge_type() == kind);
            if let (Some(solver), Some(challenge)) = (solver, authz.challenge(kind)) {
                return Ok((Arc::clone(solver), challenge));
            }
        }
        let offered: Vec<String> = authz
            .challenges()
            .iter()
            .map(|c| c.kind().to_string())
            .collect();
        Err(Error::Unsupported(format!(
            "no solver for the challenges the CA offers for {} ({})",
            authz.identifier(),
            offered.join(", ")
        )))
    }

    /// Journals `chain` as downloaded once it is checked against the
    /// journal: the leaf certifies the journalled key, for exactly the
    /// ordered identifiers, chained to the issuers it names. Otherwise
    /// [`Error::CertificateMismatch`] and the journal is left as it was.
    async fn journal_chain(
        &self,
        key: &IdentifierSetKey,
        journal: &mut Journal,
        chain: &crate::client::CertificateChain,
    ) -> Result<()> {
        let key_pem = journal.key_pem.clone().ok_or_else(|| {
            Error::InvalidInput("a chain was downloaded for a journal without a key".into())
        })?;
        if let Err(e) = verify::check_chain(chain, &key_pem, key.identifiers()) {
            tracing::error!(set = %key, certificate = %chain.url(), error = %e, "the CA's certificate does not match the order; not stored, the journal and its key kept");
            return Err(e);
        }
        journal.chain_pem = Some(chain.pem().to_owned());
        journal.step = JournalStep::Downloaded;
        self.save_journal(key, journal).await?;
        self.observe(key, IssuerStep::Downloaded);
        Ok(())
    }

    async fn store_certificate(
        &self,
        key: &IdentifierSetKey,
        journal: &Journal,
        source: CertificateSource,
    ) -> Result<Ensured> {
        let chain_pem = journal
            .chain_pem
            .clone()
            .ok_or_else(|| Error::InvalidInput("journal without a chain".into()))?;
        let key_pem = journal
            .key_pem
            .clone()
            .ok_or_else(|| Error::InvalidInput("journal without a certificate key".into()))?;
        let chain = crate::client::CertificateChain::from_pem(
            journal.certificate_url.as_deref().unwrap_or(""),
            &chain_pem,
            Vec::new(),
        )
        .map_err(Error::InvalidInput)?;
        let (not_before, not_after) = chain.validity().unwrap_or((now_unix(), now_unix()));
        let (not_before, not_after) = (
            timestamp::from_unix(not_before),
            timestamp::from_unix(not_after),
        );
        let certificate = StoredCertificate {
            identifiers: key.identifiers().to_vec(),
            chain_pem,
            key_pem: Zeroizing::new(key_pem.to_string()),
            url: journal.certificate_url.clone().unwrap_or_default(),
            not_before,
            not_after,
            serial: chain.serial_hex().unwrap_or_default(),
            revoked: None,
            renewal: None,
        };
        // Only the lease holder replaces the stored certificate; the chain
        // stays journalled (Downloaded) for it otherwise.
        self.fence(key).await?;
        self.inner.store.save_certificate(key, &certificate).await?;
        self.delete_journal(key).await?;
        self.observe(key, IssuerStep::Stored);
        tracing::info!(set = %key, serial = %certificate.serial, ?source, "certificate stored");
        Ok(Ensured {
            certificate,
            source,
            replaces: journal.replaces.clone(),
        })
    }
}

/// The CA's order must be for exactly the identifiers that were ordered:
/// solvers are never shown, and no key is certified for, anything else.
fn check_order_identifiers(key: &IdentifierSetKey, order: &Order) -> Result<()> {
    let theirs = IdentifierSetKey::new(order.identifiers());
    if theirs.identifiers() == key.identifiers() {
        return Ok(());
    }
    Err(Error::ProtocolViolation {
        url: order.url().to_owned(),
        reason: format!("the order is for {theirs}, but {key} was ordered"),
    })
}

/// What a stored certificate means for an ensure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Not due: returned as it is.
    Usable,
    /// Due for renewal.
    Due,
    /// The CA's renewal information is to be fetched (again) first.
    Recheck,
}

enum DriveError {
    /// The order is invalid: start a new one (once).
    Restart,
    /// A failure to return.
    Failed(Error),
}

impl From<Error> for DriveError {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

/// The validation methods each name's CAA verdict leaves (wildcards: only
/// dns-01, the one method a CA validates them with), or the error when
/// one is left none.
fn caa_methods(
    reports: &[crate::caa::CaaReport],
) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    let mut methods = std::collections::BTreeMap::new();
    let mut none_left = Vec::new();
    for report in reports {
        let mut left = report.methods.clone();
        if report.name.starts_with("*.") {
            left.retain(|m| m == ChallengeType::Dns01.as_str());
        }
        if left.is_empty() {
            none_left.push(report);
        }
        methods.insert(report.name.clone(), left);
    }
    if none_left.is_empty() {
        return Ok(methods);
    }
    Err(Error::CaaPreflight {
        names: none_left.iter().map(|r| r.name.clone()).collect(),
        cause: CaaCause::Forbidden,
        summary: none_left
            .iter()
            .map(|r| {
                format!(
                    "{}; CAA validationmethods leaves none of the challenge types we would use{}",
                    r.summary(),
                    if r.name.starts_with("*.") {
                        " (a wildcard is validated by dns-01 only)"
                    } else {
                        ""
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// Presents every answer: side by side, except that dns-01 answers at one
/// record name (a wildcard and its apex) go one after another (see
/// [`Solver::present`]). The outcomes, in `to_answer`'s order.
async fn present_all(
    to_answer: &[(Arc<dyn Solver>, crate::client::Challenge, ChallengeAnswer)],
) -> Vec<Result<()>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_name: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, (_, _, answer)) in to_answer.iter().enumerate() {
        if answer.kind == ChallengeType::Dns01 {
            if let Some(&g) = by_name.get(answer.dns_name.as_str()) {
                groups[g].push(i);
                continue;
            }
            by_name.insert(answer.dns_name.as_str(), groups.len());
        }
        groups.push(vec![i]);
    }
    let done = futures_util::future::join_all(groups.into_iter().map(|group| async move {
        let mut outcomes = Vec::with_capacity(group.len());
        for i in group {
            let (solver, _, answer) = &to_answer[i];
            outcomes.push((i, solver.present(answer).await));
        }
        outcomes
    }))
    .await;
    let mut outcomes: Vec<(usize, Result<()>)> = done.into_iter().flatten().collect();
    outcomes.sort_by_key(|(i, _)| *i);
    outcomes.into_iter().map(|(_, outcome)| outcome).collect()
}
