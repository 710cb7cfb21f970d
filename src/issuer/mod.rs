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

// One concept a file: what `ensure` returns (ensure), when a certificate is
// due (schedule), what an issuance holds (held: lease, fence, journal
// writes, ledger), the account, newOrder (order), one issuance's run from
// its journal (run), the challenges, the CAA pre-flight, a leftover journal
// (settle), the chain check (verify), managing what is kept (manage), and
// what a certificate is ordered with (options).
mod account;
mod challenges;
mod ensure;
mod fence;
mod held;
mod lease;
mod ledger;
pub mod limits;
mod manage;
mod options;
mod order;
mod preflight;
mod run;
mod schedule;
mod settle;
mod verify;
pub(crate) mod within_set;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

pub use limits::{Headroom, Limit, RateLimits, registered_domain};
pub use manage::{CertificateStatus, RevokeWith};
pub use options::{CertificateOptions, EnsureOptions};

use crate::caa::{CaaChecker, CaaContext, CaaVerdict};
use crate::client::{Account, AccountOptions, Client, NewOrder, Order};
use crate::crypto::{AccountKey, CertificateKey, Csr, KeyAlgorithm};
use crate::dns::{Dns, DnsConfig};
use crate::error::{CaaCause, Error, ErrorClass, Result};
use crate::protocol::CertId;
use crate::protocol::{AuthorizationStatus, ChallengeType, Identifier, OrderStatus, timestamp};
use crate::solver::{ChallengeAnswer, Solver};
use crate::store::{
    IdentifierSetKey, Journal, JournalStep, Lease, RenewalSchedule, Store, StoreError,
    StoredAccount, StoredCertificate,
};
use ledger::{Exemption, RateLedger};

/// Pages of the account's orders list read to recover a corrupted journal.
const RECOVERY_ORDER_PAGES: usize = 10;
/// The newest orders looked at to recover a corrupted journal.
const RECOVERY_ORDERS: usize = 100;

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
#[non_exhaustive]
pub struct Ensured {
    /// The certificate and its key.
    pub certificate: StoredCertificate,
    /// Where it came from.
    pub source: CertificateSource,
    /// For a renewal sent as an ARI renewal: the CertID of the certificate
    /// it replaces (the `replaces` of its newOrder).
    pub replaces: Option<String>,
    /// When the certificate it renews was one whose replacement the CA had
    /// asked for early ([`RenewalSchedule::requested_early`](crate::store::RenewalSchedule::requested_early)):
    /// that certificate's schedule (the window the CA moved).
    pub requested_by_ca: Option<RenewalSchedule>,
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
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use std::sync::Arc;
/// use sturdy_acme::solver::http01::Http01Solver;
/// use sturdy_acme::store::FileStore;
/// use sturdy_acme_testca::TestCa;
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
///     .account_options(AccountOptions::agreeing_to_terms().with_contact("ops@example.com"))
///     .rate_limits(RateLimits::none()) // the default follows the directory
///     .renew_after_fraction(0.5)
///     .on_step(move |_, step| seen.lock().unwrap().push(step))
///     .build();
/// issuer.ensure(&["observed.example"], &EnsureOptions::default()).await?;
/// assert!(steps.lock().unwrap().contains(&IssuerStep::Downloaded));
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
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
    window_seed: Option<u64>,
    ari_recheck_max: Duration,
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
    /// for its production and staging directories), else the table the CA
    /// announces in its directory ([`RateLimits::announced`]: the embedded
    /// test CA does when it enforces limits), else none (Pebble). A table
    /// set here that differs from the one the CA announces is used, with a
    /// warning at build.
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

    /// Draws the time inside each suggested window from `seed`, the
    /// certificate's names and its `notBefore` instead of from the
    /// system's randomness: the
    /// same fleet renews at the same times every run (a simulation that is
    /// replayed; `None`, the default, for production).
    pub fn window_seed(mut self, seed: Option<u64>) -> Self {
        self.window_seed = seed;
        self
    }

    /// The longest the CA's renewal information goes unchecked, whatever
    /// its `Retry-After` says (default 6 hours, at least a minute). A CA
    /// that moves windows into the past (a mass revocation, an incident)
    /// is heard within this bound.
    pub fn ari_recheck_max(mut self, max: Duration) -> Self {
        self.ari_recheck_max = max.max(crate::protocol::renewal_info::MIN_RECHECK);
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
        let announced = RateLimits::announced(&self.client.directory().meta);
        let limits = match (self.limits, announced) {
            (Some(set), Some(announced)) => {
                if set != announced {
                    tracing::warn!(
                        target: "sturdy_acme::issuer",
                        directory = self.client.directory_url(),
                        "the rate limits set on this issuer differ from the table the CA \
                         announces in its directory: counting the ones set here"
                    );
                }
                set
            }
            (Some(set), None) => set,
            (None, announced) => {
                let named = RateLimits::for_directory(self.client.directory_url());
                match announced {
                    Some(announced) if named == RateLimits::none() => announced,
                    _ => named,
                }
            }
        };
        Issuer {
            inner: Arc::new(Inner {
                client: self.client,
                store: self.store,
                account_options: self.account_options,
                account_key_algorithm: self.account_key_algorithm,
                solvers: self.solvers,
                renew_after: self.renew_after,
                renew_at_window_start: self.renew_at_window_start,
                window_seed: self.window_seed,
                ari_recheck_max: self.ari_recheck_max,
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
    window_seed: Option<u64>,
    ari_recheck_max: Duration,
    lease_ttl: Duration,
    lease_wait: Duration,
    holder: String,
    observer: Option<StepObserver>,
    caa: Option<CaaChecker>,
    /// The account, once loaded or registered; replaced by a key rollover.
    account: tokio::sync::RwLock<Option<Account>>,
    limits: RateLimits,
    flights: Mutex<HashMap<IdentifierSetKey, Arc<tokio::sync::Mutex<()>>>>,
    fences: Mutex<HashMap<IdentifierSetKey, Arc<fence::LeaseState>>>,
}

/// Ensures certificates exactly once; see the module docs. Cheap to clone.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use std::sync::Arc;
/// use sturdy_acme::solver::http01::Http01Solver;
/// use sturdy_acme::store::FileStore;
/// use sturdy_acme_testca::TestCa;
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
            window_seed: None,
            ari_recheck_max: crate::protocol::renewal_info::DEFAULT_RECHECK,
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
}
