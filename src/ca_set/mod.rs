//! Several CAs, one certificate: a [`CaSet`] chooses the CA of each
//! issuance and fails over to another without ever issuing twice.
//!
//! A set holds one [`Issuer`] per CA ([`CaMember`]), all on one store, in
//! order of preference. [`CaSet::ensure`] keeps the issuer's promise across
//! CAs:
//!
//! 1. **Under the set's lease** (`ca-set-…`, one per identifier set,
//!    whatever the CA), every CA's journal and certificate for the names
//!    are read.
//! 2. **An order that may have been finalized anywhere is resolved there
//!    first** (journal at finalize or later): resumed at that CA, and if
//!    that CA cannot answer, the call stops with
//!    [`Error::FailoverBlocked`]; nothing is ordered elsewhere until the
//!    order is downloaded or proven invalid. So no failover ever leaves two
//!    CAs with finalized orders for one set.
//! 3. **The newest certificate anywhere** is returned while it is good
//!    (the issuer of its CA judges it, renewal information included).
//! 4. **The choice**: the CAs the certificate's allow-list names
//!    ([`CertificateOptions::allowed_cas`](crate::CertificateOptions::allowed_cas)),
//!    minus those the customer's CAA records forbid (one pre-flight for
//!    every CA at once, each judged by its own `caaIdentities`), minus
//!    those down or paused, in order of preference. The chosen CA and why
//!    the ones before it were passed over go into the journal
//!    ([`Journal::chosen`](crate::store::Journal::chosen)) and the event
//!    ([`CaSetEvent::Chosen`]).
//! 5. **Failover**: an outage (connect failures and 5xx past the CA's
//!    retry budget, a pause longer than [`CaSetBuilder::max_pause`]), a
//!    rate limit that lasts past when the certificate is needed, or a
//!    refusal of the identifiers (`rejectedIdentifier`, `caa`) passes to
//!    the next CA, once the failed CA holds nothing that may have been
//!    finalized (an order never finalized there is given up: its journal
//!    archived, so nobody finalizes it later). A CA that failed with an
//!    outage is skipped for [`CaSetBuilder::down_for`], then tried again
//!    by one issuance at a time; renewals return to it once it answers.
//!
//! Each CA keeps its own client (governor, nonces, waits), account,
//! rate-limit ledger and renewal information; a certificate's `replaces`,
//! ARI checks and revocation go to the CA that issued it (its issuer's key
//! in the store names the CA), never to another.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sturdy_acme::Error> {
//! use std::sync::Arc;
//! use sturdy_acme::ca_set::{CaMember, CaSet};
//! use sturdy_acme::solver::http01::Http01Solver;
//! use sturdy_acme::store::FileStore;
//! use sturdy_acme::{CertificateOptions, EnsureOptions, Issuer};
//! use sturdy_acme_testca::TestCa;
//!
//! let (primary, backup) = (TestCa::start().await?, TestCa::start().await?);
//! let dir = std::env::temp_dir().join(format!("sturdy-doc-caset-{}", std::process::id()));
//! let store = FileStore::open(&dir)?;
//! let issuer = |client| {
//!     Issuer::builder(client, store.clone())
//!         .solver(Arc::new(Http01Solver::unserved()))
//!         .build()
//! };
//! let set = CaSet::builder()
//!     .ca(CaMember::new("primary", issuer(primary.client().await?)))
//!     .ca(CaMember::new("backup", issuer(backup.client().await?)))
//!     .build()?;
//!
//! // The customer allows only the backup CA for this certificate.
//! let options = EnsureOptions::default()
//!     .with_certificate(CertificateOptions::default().with_allowed_cas(["backup"]));
//! let got = set.ensure(&["shop.example"], &options).await?;
//! assert_eq!(got.ca, "backup");
//! assert_eq!(got.choice.unwrap().skipped[0].ca, "primary");
//! assert!(primary.ledger().certificates.is_empty());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

mod ensure;
mod failover;
mod health;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::caa::{CaaChecker, CaaReport};
use crate::dns::{Dns, DnsConfig};
use crate::error::{Error, Result};
use crate::issuer::{EnsureOptions, Ensured, Issuer};
use crate::store::{CaChoice, Store, StoredCertificate};
use health::Health;

/// One CA of a [`CaSet`]: its name in the set, its issuer (client,
/// account, ledger) and how the set's intents map to its profile names.
///
/// Example: the [module docs](self).
pub struct CaMember<S: Store> {
    name: String,
    issuer: Issuer<S>,
    profiles: BTreeMap<String, String>,
    caa_identities: Option<Vec<String>>,
    health: Health,
}

impl<S: Store> std::fmt::Debug for CaMember<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaMember")
            .field("name", &self.name)
            .field("directory", &self.issuer.client().directory_url())
            .field("profiles", &self.profiles)
            .finish_non_exhaustive()
    }
}

impl<S: Store> CaMember<S> {
    /// The CA `name` (how certificates' allow-lists and the journal name
    /// it), issuing through `issuer`. Every member of a set must use the
    /// same store.
    pub fn new(name: impl Into<String>, issuer: Issuer<S>) -> Self {
        Self {
            name: name.into(),
            issuer,
            profiles: BTreeMap::new(),
            caa_identities: None,
            health: Health::default(),
        }
    }

    /// A certificate asking for the profile `intent` (say `short`) asks
    /// this CA for `profile` (say `shortlived`); an intent with no mapping
    /// is asked as it is.
    pub fn with_profile(mut self, intent: impl Into<String>, profile: impl Into<String>) -> Self {
        self.profiles.insert(intent.into(), profile.into());
        self
    }

    /// The identities this CA's CAA check matches (default: its
    /// directory's `caaIdentities`), for a CA that announces none.
    pub fn with_caa_identities<I, N>(mut self, identities: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        self.caa_identities = Some(identities.into_iter().map(Into::into).collect());
        self
    }

    /// Its name in the set.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its issuer.
    pub fn issuer(&self) -> &Issuer<S> {
        &self.issuer
    }
}

/// What a [`CaSet`] reports as it works (see [`CaSetBuilder::on_event`]).
///
/// Example: [`CaSetBuilder`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaSetEvent {
    /// An issuance went to a CA, for these reasons (journalled with it).
    Chosen {
        /// The identifier set.
        set: String,
        /// The CA and why.
        choice: CaChoice,
    },
    /// A CA failed with an outage and is skipped for a while.
    Down {
        /// The CA.
        ca: String,
        /// The failure.
        error: String,
        /// For how long.
        skipped_for: Duration,
    },
    /// A CA that was down answered again.
    Up {
        /// The CA.
        ca: String,
    },
    /// An order never finalized at a CA was given up, before another CA
    /// was asked.
    Abandoned {
        /// The identifier set.
        set: String,
        /// The CA.
        ca: String,
    },
    /// A CA holds an order that may have been finalized and cannot answer
    /// now: nothing is ordered elsewhere ([`Error::FailoverBlocked`]).
    FailoverBlocked {
        /// The identifier set.
        set: String,
        /// The CA.
        ca: String,
    },
}

type EventObserver = Arc<dyn Fn(&CaSetEvent) + Send + Sync>;

/// Configures a [`CaSet`]: its CAs in order of preference, the CAA
/// pre-flight for all of them, and when a CA counts as down.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use sturdy_acme::ca_set::{CaMember, CaSet, CaSetEvent};
/// use sturdy_acme::solver::http01::Http01Solver;
/// use sturdy_acme::store::FileStore;
/// use sturdy_acme::{EnsureOptions, Issuer};
/// use sturdy_acme_testca::TestCa;
///
/// let ca = TestCa::start().await?;
/// let dir = std::env::temp_dir().join(format!("sturdy-doc-casetb-{}", std::process::id()));
/// let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
///     .solver(Arc::new(Http01Solver::unserved()))
///     .build();
/// let events = Arc::new(Mutex::new(Vec::new()));
/// let seen = events.clone();
/// let set = CaSet::builder()
///     .ca(CaMember::new("only", issuer).with_profile("short", "shortlived"))
///     .down_for(Duration::from_secs(120))
///     .max_pause(Duration::from_secs(30))
///     .on_event(move |e| seen.lock().unwrap().push(e.clone()))
///     .build()?;
/// set.ensure(&["one.example"], &EnsureOptions::default()).await?;
/// assert!(matches!(&events.lock().unwrap()[0], CaSetEvent::Chosen { choice, .. } if choice.ca == "only"));
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
pub struct CaSetBuilder<S: Store> {
    members: Vec<CaMember<S>>,
    caa: Option<CaaChecker>,
    down_for: Duration,
    max_pause: Duration,
    lease_wait: Duration,
    needed_margin: f64,
    observer: Option<EventObserver>,
}

impl<S: Store> std::fmt::Debug for CaSetBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaSetBuilder")
            .field("members", &self.members)
            .field("down_for", &self.down_for)
            .field("max_pause", &self.max_pause)
            .finish_non_exhaustive()
    }
}

impl<S: Store> CaSetBuilder<S> {
    /// Adds a CA, after those already added (the order is the preference).
    pub fn ca(mut self, member: CaMember<S>) -> Self {
        self.members.push(member);
        self
    }

    /// The DNS the set may ask, which turns on its CAA pre-flight: before
    /// a CA is chosen, every name's CAA records are read once at the
    /// domain's authoritative nameservers and judged for every CA (a
    /// forbidden CA is never tried). Without it, each issuer's own
    /// pre-flight (if any) runs, and a CA it finds forbidden is passed
    /// over.
    pub fn dns(mut self, config: DnsConfig) -> Self {
        self.caa = Some(CaaChecker::new(Dns::new(config)));
        self
    }

    /// Replaces the set's CAA checker (`Some`), or turns the set's
    /// pre-flight off (`None`).
    pub fn caa_preflight(mut self, checker: Option<CaaChecker>) -> Self {
        self.caa = checker;
        self
    }

    /// How long a CA that failed an issuance with an outage is skipped
    /// before one issuance tries it again (default 5 minutes). While that
    /// probe runs, the set's other issuances wait for its outcome (at most
    /// [`CaSetBuilder::max_pause`]) instead of going elsewhere.
    pub fn down_for(mut self, down_for: Duration) -> Self {
        self.down_for = down_for;
        self
    }

    /// A CA that asked for a pause longer than this (503 or a request-rate
    /// 429 with `Retry-After`) is passed over until the pause ends
    /// (default 1 minute; a shorter pause is waited out). It is set on
    /// every member's client: a request there that such a pause would hold
    /// fails at once with [`Error::Paused`], also in an issuance already
    /// under way (so share a member's client only with work that accepts
    /// that).
    pub fn max_pause(mut self, max_pause: Duration) -> Self {
        self.max_pause = max_pause;
        self
    }

    /// How long to wait for another process's lease of the set (default
    /// 10 minutes).
    pub fn lease_wait(mut self, wait: Duration) -> Self {
        self.lease_wait = wait;
        self
    }

    /// A renewal is needed by its certificate's expiry minus this share of
    /// its lifetime (default 1/3): a CA whose rate limit ends before then
    /// is waited for (its renewal keeps its `replaces` and exemptions),
    /// one whose limit lasts longer is passed over. A new set is needed
    /// now.
    pub fn needed_margin(mut self, share: f64) -> Self {
        self.needed_margin = share.clamp(0.0, 1.0);
        self
    }

    /// Calls `f` with each [`CaSetEvent`].
    pub fn on_event(mut self, f: impl Fn(&CaSetEvent) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// The set; [`Error::InvalidInput`] without a CA, or with two of one
    /// name or one directory.
    pub fn build(self) -> Result<CaSet<S>> {
        if self.members.is_empty() {
            return Err(Error::InvalidInput("a CA set needs at least one CA".into()));
        }
        let twice = |what: &str, mut values: Vec<&str>| -> Result<()> {
            values.sort_unstable();
            match values.windows(2).find(|w| w[0] == w[1]) {
                Some(w) => Err(Error::InvalidInput(format!(
                    "two CAs of a set share the {what} {:?}: one CA is one member",
                    w[0]
                ))),
                None => Ok(()),
            }
        };
        twice(
            "name",
            self.members.iter().map(|m| m.name.as_str()).collect(),
        )?;
        twice(
            "directory",
            self.members
                .iter()
                .map(|m| m.issuer.client().directory_url())
                .collect(),
        )?;
        // A pause longer than the set waits fails the request at once
        // (another CA serves), also in an issuance already under way.
        for m in &self.members {
            m.issuer.client().set_pause_hold_limit(Some(self.max_pause));
        }
        Ok(CaSet {
            inner: Arc::new(Inner {
                members: self.members,
                caa: self.caa,
                down_for: self.down_for,
                max_pause: self.max_pause,
                lease_wait: self.lease_wait,
                needed_margin: self.needed_margin,
                observer: self.observer,
            }),
        })
    }
}

struct Inner<S: Store> {
    members: Vec<CaMember<S>>,
    caa: Option<CaaChecker>,
    down_for: Duration,
    max_pause: Duration,
    lease_wait: Duration,
    needed_margin: f64,
    observer: Option<EventObserver>,
}

/// What [`CaSet::ensure`] returns: the certificate, the CA that holds it,
/// and the choice when an issuance ran.
///
/// Example: the [module docs](self).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CaEnsured {
    /// The CA's name in the set.
    pub ca: String,
    /// The certificate, as that CA's issuer returned it.
    pub ensured: Ensured,
    /// The choice, when this call ran (or resumed) an issuance.
    pub choice: Option<CaChoice>,
}

/// Several CAs behind one `ensure`; see the [module docs](self). Cheap to
/// clone.
///
/// Example: the [module docs](self).
pub struct CaSet<S: Store> {
    inner: Arc<Inner<S>>,
}

impl<S: Store> Clone for CaSet<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Store> std::fmt::Debug for CaSet<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaSet")
            .field("members", &self.inner.members)
            .finish_non_exhaustive()
    }
}

impl<S: Store> CaSet<S> {
    /// A builder with no CA yet.
    pub fn builder() -> CaSetBuilder<S> {
        CaSetBuilder {
            members: Vec::new(),
            caa: None,
            down_for: Duration::from_secs(300),
            max_pause: Duration::from_secs(60),
            lease_wait: Duration::from_secs(600),
            needed_margin: 1.0 / 3.0,
            observer: None,
        }
    }

    /// The CAs, in order of preference.
    pub fn members(&self) -> &[CaMember<S>] {
        &self.inner.members
    }

    /// The CA named `name`.
    pub fn member(&self, name: &str) -> Option<&CaMember<S>> {
        self.inner.members.iter().find(|m| m.name == name)
    }

    /// Whether the CA `name` is marked down now (an outage within
    /// [`CaSetBuilder::down_for`]).
    pub fn is_down(&self, name: &str) -> bool {
        self.member(name).is_some_and(|m| m.health.is_down())
    }

    /// The newest certificate any CA of the set holds for `names`, and
    /// that CA's name, without any request (a CA whose account is not
    /// known holds nothing).
    pub async fn current<N: AsRef<str>>(
        &self,
        names: &[N],
    ) -> Result<Option<(String, StoredCertificate)>> {
        let ids = ensure::parse_names(names)?;
        let mut newest: Option<(String, StoredCertificate)> = None;
        for m in &self.inner.members {
            let Some(key) = m.issuer.known_key(&ids).await? else {
                continue;
            };
            if let Some(cert) = m.issuer.stored_for(&key).await?
                && newest.as_ref().is_none_or(|(_, n)| ensure::newer(&cert, n))
            {
                newest = Some((m.name.clone(), cert));
            }
        }
        Ok(newest)
    }

    /// The CAA verdicts of `names` for every CA of the set, read once (the
    /// set's checker; `None` when the set has none), judged for a
    /// certificate ordered with `options` (its challenge types, for RFC
    /// 8657 `validationmethods`): what `acme issue --check` prints.
    pub async fn caa_verdicts<N: AsRef<str>>(
        &self,
        names: &[N],
        options: &EnsureOptions,
    ) -> Option<Vec<(String, Vec<CaaReport>)>> {
        let checker = self.inner.caa.as_ref()?;
        let names: Vec<String> = names.iter().map(|n| n.as_ref().to_owned()).collect();
        let mut contexts = Vec::new();
        for m in &self.inner.members {
            contexts.push(
                m.issuer
                    .caa_context(m.caa_identities.as_deref(), &self.mapped(m, options))
                    .await,
            );
        }
        let each = checker.check_each(&names, &contexts).await;
        Some(
            self.inner
                .members
                .iter()
                .map(|m| m.name.clone())
                .zip(each)
                .collect(),
        )
    }

    /// `options` as the set asks CA `ca` (an index into
    /// [`CaSet::members`]): profile intents mapped to that CA's names.
    pub(crate) fn options_for(&self, ca: usize, options: &EnsureOptions) -> EnsureOptions {
        match self.inner.members.get(ca) {
            Some(m) => self.mapped(m, options),
            None => options.clone(),
        }
    }

    fn emit(&self, event: CaSetEvent) {
        if let Some(f) = &self.inner.observer {
            f(&event);
        }
    }
}
