//! The renewer: keeps a standing set of certificates valid, forever, within
//! the CA's limits.
//!
//! A [`Renewer`] holds [`CertificateSpec`]s (added and removed at run time,
//! kept in the store so a restarted node, or every node sharing the store,
//! has them) and runs [`Issuer::ensure`] for each when its time comes:
//!
//! - **When.** A certificate is looked at again at
//!   [`Issuer::next_check_at`]: its ARI renewal time or lifetime rule, or
//!   sooner the next renewal information check. A new one at once.
//! - **In which order.** Of those whose time has come, renewals that would
//!   otherwise expire go first (soonest expiry first), then the
//!   replacements the CA asked for early and new certificates (first
//!   added, first served), taking turns, then other renewals; at most
//!   [`RenewerPolicy::concurrency`] run at once.
//! - **Within the limits.** The issuer's rate-limit ledger refuses an
//!   order locally before the CA would; the renewer then holds back every
//!   certificate that would spend the same bucket (the account's new
//!   orders, a registered domain's certificates, an identifier's failed
//!   authorizations) until it refills, so a burst of a thousand new
//!   certificates is spread over the buckets' refill instead of refused. A
//!   renewal Let's Encrypt exempts (ARI, or the exact set renewed) does not
//!   wait behind the new-order budget.
//! - **Failures by class.** Validation and CAA failures back off per
//!   identifier (30 minutes, then 1 h, 2 h, ... up to a day for
//!   validation: far from 5 failed authorizations per identifier per hour
//!   and from the consecutive-failure pause; 10 minutes up to 6 hours for
//!   CAA); transient failures are retried after a minute, doubling up to an
//!   hour; a 503 with Retry-After pauses every start until then; another
//!   node holding the set's lease means it is doing the work.
//!
//! Everything is on the client's [`Clock`](crate::Clock), so on tokio's
//! paused clock a fleet's months run in seconds (`benches/fleet_sim.rs`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sturdy_acme::Error> {
//! use std::sync::Arc;
//! use sturdy_acme::renewer::{CertificateSpec, ManagedState, Renewer};
//! use sturdy_acme::solver::http01::Http01Solver;
//! use sturdy_acme::store::FileStore;
//! use sturdy_acme_testca::TestCa;
//! use sturdy_acme::Issuer;
//!
//! let ca = TestCa::builder().start_in_process()?;
//! let dir = std::env::temp_dir().join(format!("sturdy-doc-renewer-{}", std::process::id()));
//! let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
//!     .solver(Arc::new(Http01Solver::unserved()))
//!     .build();
//! let renewer = Renewer::builder(issuer).build();
//! renewer.add(CertificateSpec::new(["shop.example", "www.shop.example"])?).await?;
//! renewer.add(CertificateSpec::new(["blog.example"])?).await?;
//!
//! // Run it beside the service; here, until both are valid.
//! let running = tokio::spawn({
//!     let renewer = renewer.clone();
//!     async move { renewer.run().await }
//! });
//! while renewer.status().count(ManagedState::Valid) < 2 {
//!     tokio::time::sleep(std::time::Duration::from_millis(20)).await;
//! }
//! renewer.shutdown();
//! running.await.unwrap()?;
//! assert_eq!(ca.ledger().certificates.len(), 2);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

mod on_demand;
mod outcome;
mod policy;
mod queue;
mod report;
mod revocation;
mod roster;
mod spec;
mod status;
mod through;
mod track;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::ca_set::CaSet;
use crate::error::{Error, ErrorClass, Result, StoreError};
use crate::issuer::{CertificateSource, Ensured, Issuer};
use crate::retry::Rng;
use crate::store::{Store, StoredCertificate};
use through::Through;

pub use policy::{OnDemandIntake, RenewerPolicy};
pub use queue::Urgency;
pub use spec::CertificateSpec;
pub use status::{
    LastError, ManagedCertificate, ManagedState, RenewerEvent, RenewerStatus, metric,
};

use queue::{Block, Budget, Entry, Queue, backoff_delay};
use roster::{Classed, Roster};
use spec::{Failures, Stored, from_ms, to_ms};

type Observer = Arc<dyn Fn(&RenewerEvent) + Send + Sync>;

/// Configures a [`Renewer`].
///
/// Example: [the module](self).
pub struct RenewerBuilder<S: Store> {
    through: Through<S>,
    policy: RenewerPolicy,
    observer: Option<Observer>,
    on_demand: Option<OnDemandIntake>,
}

impl<S: Store> RenewerBuilder<S> {
    /// Takes up the names edges request on demand
    /// ([`serve::OnDemand`](crate::serve::OnDemand)) while it runs: each
    /// becomes a spec ordered as `intake` says (see
    /// [`store::request`](crate::store::request)).
    pub fn on_demand(mut self, intake: OnDemandIntake) -> Self {
        self.on_demand = Some(intake);
        self
    }

    /// Pacing and retries (example: [`RenewerPolicy`]).
    pub fn policy(mut self, policy: RenewerPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Called with every decision (from the renewer's task: keep it short).
    pub fn on_event(mut self, f: impl Fn(&RenewerEvent) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// The renewer (call [`Renewer::run`] to start it).
    pub fn build(self) -> Renewer<S> {
        let rng = Rng::new(self.policy.seed);
        Renewer {
            inner: Arc::new(Inner {
                through: self.through,
                policy: self.policy,
                observer: self.observer,
                on_demand: self.on_demand,
                rng,
                crl: crate::crl::CrlCache::new(),
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                stop: AtomicBool::new(false),
            }),
        }
    }
}

/// Keeps a standing set of certificates valid (see [the module](self)).
///
/// Example: [the module](crate::renewer).
pub struct Renewer<S: Store> {
    inner: Arc<Inner<S>>,
}

impl<S: Store> Clone for Renewer<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: Store> std::fmt::Debug for Renewer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renewer")
            .field("issuer", self.inner.through.home())
            .field("ca_set", &self.inner.through.set())
            .finish_non_exhaustive()
    }
}

struct Inner<S: Store> {
    through: Through<S>,
    policy: RenewerPolicy,
    observer: Option<Observer>,
    on_demand: Option<OnDemandIntake>,
    rng: Rng,
    crl: crate::crl::CrlCache,
    state: Mutex<State>,
    wake: Notify,
    stop: AtomicBool,
}

/// The current certificate, as far as scheduling needs it.
#[derive(Debug, Clone)]
struct Current {
    /// The CA that holds it (an index into the set; 0 for one issuer):
    /// its issuer schedules it.
    ca: usize,
    serial: String,
    not_before: SystemTime,
    not_after: SystemTime,
    revoked: bool,
    /// The CA asked for its replacement early (a window moved into the
    /// past): [`Urgency::Requested`], an exempt ARI renewal.
    requested_early: bool,
    /// Its chain: the intermediate that issued it and the root it leads to
    /// (issuer common names), to notice a renewal under another chain.
    chain: ChainNames,
    /// A hash of its chain's text (with the serial, what tells a check of
    /// the same certificate from a new one).
    chain_hash: u64,
    /// Halfway from its renewal time to its expiry: past it, a renewal is
    /// [`Urgency::Expiring`].
    urgent_at: SystemTime,
    /// Where its revocation is published (shared by every certificate of
    /// one shard).
    crl: Option<Arc<CrlSource>>,
}

/// The common names of the intermediate that issued a certificate and of
/// the root its chain leads to.
type ChainNames = (Option<String>, Option<String>);

/// A revocation list and the issuer certificate (DER) it is verified with
/// (checked in `revocation.rs`).
#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct CrlSource {
    /// The CA whose client fetches it.
    ca: usize,
    url: String,
    issuer: Vec<u8>,
}

#[derive(Debug)]
struct Tracked {
    stored: Stored,
    current: Option<Current>,
    state: ManagedState,
    running: bool,
    /// Removed while running: dropped when the attempt ends.
    removed: bool,
    /// Its next attempt asks the CA's renewal information again, whatever
    /// the stored schedule says ([`Renewer::recheck_all`]).
    recheck: bool,
}

impl Classed for Tracked {
    type Class = ManagedState;
    fn class(&self) -> ManagedState {
        self.state
    }
}

#[derive(Debug, Default)]
struct State {
    /// Counted by state as they change: the gauges never walk it.
    tracked: Roster<Tracked>,
    queue: Queue,
    loaded: bool,
    /// Attempts running that spend the new-order budget ...
    budget_in_flight: usize,
    /// ... and each registered domain's.
    domains_in_flight: HashMap<String, usize>,
    /// The revocation lists the certificates name, each held once.
    crl_sources: std::collections::HashSet<Arc<CrlSource>>,
    /// The ledger's levels as last read, reused until they may have
    /// changed (`None`: read them again).
    levels: Option<Levels>,
}

/// What the budget needs of the ledger: read once and reused until an
/// attempt that spent from it ends, the next token is due, or
/// [`RenewerPolicy::headroom_interval`] has passed (another node's spending
/// shows then; meanwhile the ledger itself still refuses an overspend).
#[derive(Debug, Clone)]
struct Levels {
    read_at: SystemTime,
    valid_until: SystemTime,
    /// The account's new orders and the spent registered domains'
    /// certificates.
    buckets: Arc<[crate::Headroom]>,
}

/// The outcome of one attempt, for [`Renewer::finish`].
struct Attempt {
    id: String,
    /// The CA that holds the result.
    ca: usize,
    /// The registered domains whose budget it spends (none: exempt).
    spends: Option<Vec<String>>,
    result: Result<Ensured>,
    took: Duration,
}

impl<S: Store> Renewer<S> {
    /// A renewer over `issuer` with [`RenewerPolicy::default`].
    pub fn builder(issuer: Issuer<S>) -> RenewerBuilder<S> {
        RenewerBuilder {
            through: Through::One(issuer),
            policy: RenewerPolicy::default(),
            observer: None,
            on_demand: None,
        }
    }

    /// A renewer whose issuances go through `set`, which chooses the CA of
    /// each (see [`crate::ca_set`]), with [`RenewerPolicy::default`]. Each
    /// certificate is scheduled by the CA that holds it; the renewer's
    /// records live under the set's first CA. New certificates are not
    /// held back by the first CA's budget: the set passes a spent budget
    /// to another CA, and each CA's ledger refuses locally what it would
    /// overspend.
    pub fn for_set(set: CaSet<S>) -> RenewerBuilder<S> {
        RenewerBuilder {
            through: Through::Set(set),
            policy: RenewerPolicy::default(),
            observer: None,
            on_demand: None,
        }
    }

    /// The issuer: its own, or the first CA's of its set.
    pub fn issuer(&self) -> &Issuer<S> {
        self.inner.through.home()
    }

    /// The set of CAs it issues through, if it was built with
    /// [`Renewer::for_set`].
    pub fn ca_set(&self) -> Option<&CaSet<S>> {
        self.inner.through.set()
    }

    fn now(&self) -> SystemTime {
        self.inner.through.home().client().clock().now()
    }

    fn directory(&self) -> String {
        self.inner
            .through
            .home()
            .client()
            .directory_url()
            .to_owned()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, event: RenewerEvent) {
        tracing::debug!(target: "sturdy_acme::renewer", ?event, "renewer");
        if let Some(f) = &self.inner.observer {
            f(&event);
        }
    }

    /// Adds a certificate to keep valid (or changes the spec of the one
    /// with the same names), durably: it is in the store before this
    /// returns, so every node sharing the store takes it up.
    pub async fn add(&self, spec: CertificateSpec) -> Result<()> {
        self.add_all(vec![spec]).await
    }

    /// [`Renewer::add`] for many at once (one wake-up of the scheduler).
    pub async fn add_all(&self, specs: Vec<CertificateSpec>) -> Result<()> {
        let directory = self.directory();
        for spec in specs {
            let id = spec.id();
            let now = self.now();
            let stored = {
                let state = self.state();
                match state.tracked.get(&id) {
                    Some(t) => Stored {
                        spec,
                        added_at: t.stored.added_at,
                        failures: t.stored.failures.clone(),
                    },
                    None => Stored {
                        spec,
                        added_at: now,
                        failures: Failures::default(),
                    },
                }
            };
            self.inner
                .through
                .home()
                .store()
                .save_managed(&directory, &stored.to_record())
                .await?;
            self.track(stored).await?;
            self.emit(RenewerEvent::Added { id });
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Stops keeping the certificate with these names (its stored
    /// certificate stays in the store). Returns whether it was kept.
    pub async fn remove<N: AsRef<str>>(&self, names: &[N]) -> Result<bool> {
        let id = CertificateSpec::new(names)?.id();
        self.inner
            .through
            .home()
            .store()
            .delete_managed(&self.directory(), &id)
            .await?;
        let found = {
            let mut state = self.state();
            state.queue.forget(&id);
            let running = match state.tracked.get_mut(&id) {
                Some(mut t) if t.running => {
                    t.removed = true;
                    true
                }
                Some(_) => false,
                None => return Ok(false),
            };
            running || state.tracked.remove(&id).is_some()
        };
        if found {
            self.emit(RenewerEvent::Removed { id });
        }
        Ok(found)
    }

    /// Asks the CA's renewal information again for every certificate now,
    /// whatever its stored schedule says: for an operator who read the
    /// CA's announcement of a mass revocation or an incident. A window the
    /// CA moved into the past is then renewed at once
    /// ([`RenewerEvent::ReplacementRequested`]). Returns how many
    /// certificates will be asked (those with a current certificate).
    pub fn recheck_all(&self) -> usize {
        let now = self.now();
        let mut state = self.state();
        let mut asked = Vec::new();
        state.tracked.for_each_mut(|id, t| {
            if t.removed || t.current.is_none() {
                return;
            }
            t.recheck = true;
            // Only what waits for its time is moved up; a certificate
            // backing off keeps its schedule (and asks at that attempt).
            if !t.running && t.state == ManagedState::Valid {
                asked.push(entry(id, &t.stored, t.current.as_ref(), now));
            }
        });
        let n = state.tracked.values().filter(|t| t.recheck).count();
        for e in asked {
            state.queue.schedule(e, now);
        }
        drop(state);
        self.inner.wake.notify_one();
        n
    }

    /// Asks [`Renewer::run`] to return: running attempts are dropped at
    /// their next await (the issuer's journal resumes them later; no
    /// certificate is lost).
    pub fn shutdown(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    /// Runs until [`Renewer::shutdown`]: keeps every certificate valid.
    /// Several `run`s on one store (one per node) share the work through
    /// the issuer's leases.
    pub async fn run(&self) -> Result<()> {
        self.load().await?;
        // Declared before the tasks, so dropped after them: whatever way
        // this run ends (shutdown, an error, its future dropped), the
        // attempts it leaves unfinished are scheduled again.
        let _unfinished = Unfinished(self);
        let mut tasks: JoinSet<Attempt> = JoinSet::new();
        let mut next_refresh = self.now() + self.inner.policy.refresh;
        let mut next_headroom = self.now();
        // The revocation lists are read beside the attempts (a slow list
        // never holds up a renewal), first when the run starts; the set is
        // dropped (its check aborted) with the run.
        let mut next_crl_check = self.inner.policy.crl_check_every.map(|_| self.now());
        let mut crl_checks: JoinSet<()> = JoinSet::new();
        // On-demand requests are taken up beside it, for as long as it runs.
        let mut intake: JoinSet<()> = JoinSet::new();
        if let Some(on_demand) = self.inner.on_demand.clone() {
            let this = self.clone();
            intake.spawn(async move { this.take_requests(&on_demand).await });
        }
        loop {
            if self.inner.stop.load(Ordering::SeqCst) {
                // Attempts already finished are recorded (their backoff
                // kept); only those still running are put back as due.
                while let Some(done) = tasks.try_join_next() {
                    match done {
                        Ok(attempt) => self.finish(attempt).await,
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        Err(_) => {}
                    }
                }
                tasks.shutdown().await;
                self.inner.stop.store(false, Ordering::SeqCst);
                return Ok(());
            }
            let now = self.now();
            if now >= next_refresh {
                if let Err(e) = self.load().await {
                    tracing::warn!(target: "sturdy_acme::renewer", error = %e, "could not read the specs from the store; trying again later");
                }
                next_refresh = now + self.inner.policy.refresh;
            }
            if now >= next_headroom {
                self.record_headroom().await;
                next_headroom = now + self.inner.policy.headroom_interval;
            }
            while crl_checks.try_join_next().is_some() {}
            if let (Some(at), Some(every)) = (next_crl_check, self.inner.policy.crl_check_every)
                && now >= at
            {
                if crl_checks.is_empty() {
                    let this = self.clone();
                    crl_checks.spawn(async move {
                        this.check_crls().await;
                    });
                }
                next_crl_check = Some(now + every);
            }
            let free = self.inner.policy.concurrency.max(1)
                - tasks.len().min(self.inner.policy.concurrency.max(1));
            let (budget, token_at) = self.budget(now).await;
            let (starts, wake) = self.pick(now, free, budget);
            let wake = token_at.map_or(wake, |t| wake.min(t));
            for entry in starts {
                self.start(&mut tasks, entry);
            }
            self.record_gauges(now);
            let wake = wake.min(next_refresh).min(next_headroom);
            let wake = next_crl_check.map_or(wake, |at| wake.min(at));
            let sleep = wake.duration_since(self.now()).unwrap_or_default();
            // Biased: a finished attempt is recorded before anything else
            // is looked at, so one seed gives one run (tokio's random
            // branch order is seeded per runtime from the OS).
            tokio::select! {
                biased;
                Some(done) = tasks.join_next(), if !tasks.is_empty() => match done {
                    Ok(attempt) => self.finish(attempt).await,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => {}
                },
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Puts back every attempt marked running: the run that started them
    /// ended before they did (their tasks were aborted), so their budget is
    /// released and they are due at once (the issuer's journal resumes each
    /// order where it stopped).
    fn abandon_running(&self) {
        let now = self.now();
        let mut state = self.state();
        state.budget_in_flight = 0;
        state.domains_in_flight.clear();
        let running = state.tracked.ids_where(|t| t.running);
        for id in running {
            let Some(mut t) = state.tracked.get_mut(&id) else {
                continue;
            };
            t.running = false;
            if t.removed {
                drop(t);
                state.tracked.remove(&id);
                continue;
            }
            t.state = ManagedState::Due;
            let next = entry(&id, &t.stored, t.current.as_ref(), now);
            drop(t);
            state.queue.schedule(next, now);
            tracing::debug!(target: "sturdy_acme::renewer", %id, "an attempt the run left unfinished is due again");
        }
    }

    /// What new certificates may still spend: the account's new-order
    /// tokens and each spent domain's certificate tokens, less those
    /// running (so a refilling bucket is taken a token at a time instead
    /// of refused in a crowd), and when the next token comes for a bucket
    /// with none left.
    async fn budget(&self, now: SystemTime) -> (Budget, Option<SystemTime>) {
        let (wanted, running, running_domains, cached) = {
            let mut state = self.state();
            state.queue.promote(now);
            (
                state.queue.budget_wanted(),
                state.budget_in_flight,
                state.domains_in_flight.clone(),
                state.levels.clone().filter(|l| now < l.valid_until),
            )
        };
        if !wanted || !self.inner.through.paces_by_ledger() {
            return (Budget::unlimited(), None);
        }
        let levels = match cached {
            Some(levels) => levels,
            None => match self.inner.through.home().pacing_headroom().await {
                Ok(all) => {
                    let buckets: Arc<[crate::Headroom]> = all
                        .into_iter()
                        .filter(|h| {
                            h.bucket.starts_with("orders:") || h.bucket.starts_with("domain:")
                        })
                        .collect();
                    let levels = Levels {
                        read_at: now,
                        valid_until: now + self.inner.policy.headroom_interval,
                        buckets,
                    };
                    self.state().levels = Some(levels.clone());
                    levels
                }
                // The ledger still refuses what would overspend.
                Err(_) => return (Budget::unlimited(), None),
            },
        };
        let mut budget = Budget::unlimited();
        let mut wake: Option<SystemTime> = None;
        let mut left = |h: &crate::Headroom, running: usize| {
            let whole = h.tokens.max(0.0).floor();
            let left = (whole as usize).saturating_sub(running);
            if left == 0 {
                let short = whole + running as f64 + 1.0 - h.tokens;
                let at = levels.read_at
                    + h.limit.refill_interval().mul_f64(short.max(0.0))
                    + Duration::from_millis(1);
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
            left
        };
        for h in levels.buckets.iter() {
            if h.bucket.starts_with("orders:") {
                budget.orders = left(h, running);
            } else if let Some(d) = h.bucket.strip_prefix("domain:") {
                let running = running_domains.get(d).copied().unwrap_or(0);
                budget.domains.insert(d.to_owned(), left(h, running));
            }
        }
        // Read again when the next token is due.
        if let Some(at) = wake {
            let mut state = self.state();
            if let Some(l) = state.levels.as_mut() {
                l.valid_until = l.valid_until.min(at);
            }
        }
        (budget, wake)
    }

    /// What to start now, and when to look again.
    fn pick(&self, now: SystemTime, free: usize, mut budget: Budget) -> (Vec<Entry>, SystemTime) {
        let mut state = self.state();
        let far = now + self.inner.policy.refresh;
        if let Some(until) = self.inner.through.paused_until(now) {
            return (Vec::new(), until);
        }
        let starts = state.queue.take(now, free, &mut budget);
        for e in &starts {
            if e.spends_budget {
                state.budget_in_flight += 1;
                for d in e.domains() {
                    *state.domains_in_flight.entry(d).or_default() += 1;
                }
            }
            if let Some(mut t) = state.tracked.get_mut(&e.id) {
                t.running = true;
                t.state = ManagedState::Running;
            }
        }
        // Ready but not started (no slot, or a limit's bucket): due.
        let wake = state.queue.next_wake().unwrap_or(far).max(now);
        (starts, wake)
    }

    fn start(&self, tasks: &mut JoinSet<Attempt>, entry: Entry) {
        let Some((spec, recheck)) = self
            .state()
            .tracked
            .get_mut(&entry.id)
            .map(|mut t| (t.stored.spec.clone(), std::mem::take(&mut t.recheck)))
        else {
            return;
        };
        self.emit(RenewerEvent::Started {
            id: entry.id.clone(),
            urgency: entry.urgency,
        });
        let through = self.inner.through.clone();
        tasks.spawn(async move {
            let started = tokio::time::Instant::now();
            let options = spec.ensure_options().with_recheck_renewal_info(recheck);
            let (ca, result) = through.ensure(spec.names(), &options).await;
            Attempt {
                ca,
                spends: entry.spends_budget.then(|| entry.domains()),
                id: entry.id,
                result,
                took: started.elapsed(),
            }
        });
    }

    /// Sets the gauges from the counts kept as states change: no walk
    /// over the certificates, whatever their number.
    fn record_gauges(&self, now: SystemTime) {
        let state = self.state();
        for s in ManagedState::ALL {
            metrics::gauge!(metric::CERTIFICATES, "state" => s.as_str())
                .set(state.tracked.count(s) as f64);
        }
        metrics::gauge!(metric::BACKLOG).set(state.queue.backlog() as f64);
        if let Some(next) = state.queue.next_scheduled() {
            let secs = next.duration_since(now).unwrap_or_default().as_secs_f64();
            metrics::gauge!(metric::NEXT_RENEWAL_SECONDS).set(secs);
        }
    }

    async fn record_headroom(&self) {
        match self.inner.through.home().pacing_headroom().await {
            Ok(levels) => {
                for h in levels {
                    let (kind, bucket) = h.bucket.split_once(':').unwrap_or(("", &h.bucket));
                    metrics::gauge!(metric::LIMIT_HEADROOM, "kind" => kind.to_owned(), "bucket" => bucket.to_owned())
                        .set(h.tokens);
                }
            }
            Err(e) => {
                tracing::debug!(target: "sturdy_acme::renewer", error = %e, "could not read the rate-limit headroom");
            }
        }
    }
}

/// The queue entry of a certificate scheduled at `at`.
/// Held by [`Renewer::run`]: its drop puts back the attempts the run
/// leaves unfinished ([`Renewer::abandon_running`]).
struct Unfinished<'a, S: Store>(&'a Renewer<S>);

impl<S: Store> Drop for Unfinished<'_, S> {
    fn drop(&mut self) {
        self.0.abandon_running();
    }
}

fn entry(id: &str, stored: &Stored, current: Option<&Current>, at: SystemTime) -> Entry {
    let (urgency, key) = match current {
        None => (Urgency::New, stored.added_at),
        Some(c) if at >= c.urgent_at => (Urgency::Expiring, c.not_after),
        Some(c) if c.requested_early => (Urgency::Requested, c.not_after),
        Some(c) => (Urgency::Renewal, c.not_after),
    };
    let spends_budget = match current {
        None => true,
        Some(c) => c.revoked || !crate::RateLimits::renews_exact_set(c.not_before, at),
    };
    Entry {
        id: id.to_owned(),
        names: stored.spec.names().to_vec(),
        urgency,
        key,
        spends_budget,
    }
}
