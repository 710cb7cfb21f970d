//! [`OnDemand`]: a name an edge has no certificate for, asked of the
//! issuer fleet through the store, only when the service's policy says
//! yes.
//!
//! A handshake for a name the [`CertificateResolver`] does not serve (once
//! it has loaded its first batch: an edge starting up reports nothing) is
//! answered with the default certificate at once; the name is handed (a
//! non-blocking send, dropped when the queue is full) to [`OnDemand::run`],
//! which, for each name:
//!
//! 1. skips it if it is not one host's DNS name, if a certificate now
//!    serves it, or if it was taken up within the cooldown (one policy
//!    question per name, however many handshakes ask);
//! 2. spends one of this edge's tokens (a steady rate and a burst: a flood
//!    of made-up names asks the policy a bounded number of times; a name
//!    met with no token left is looked at again at its next handshake);
//! 3. asks the service's [`OnDemandPolicy`] (its customer list), bounded
//!    in time;
//! 4. on yes, records a request in the store
//!    ([`Store::request_certificate`]): the store keeps one per name, so
//!    edges that saw the name at once make one request, and the issuer
//!    fleet's renewers ([`RenewerBuilder::on_demand`](crate::renewer::RenewerBuilder::on_demand))
//!    order the certificate within their rate-limit ledger. On no, nothing
//!    leaves the edge.
//!
//! The edge never talks to the CA; the certificate reaches it through the
//! change feed like any other.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::resolver::CertificateResolver;
use crate::store::Store;
use crate::store::request::request_name;

/// The service's answer to "may this edge ask for a certificate for this
/// name?" (typically: is it a customer's name). Any `Fn(String) -> impl
/// Future<Output = bool>` is one.
///
/// Example: [`OnDemand`].
pub trait OnDemandPolicy: Send + Sync + 'static {
    /// Whether a certificate for `name` (normalized: lower case, no
    /// trailing dot) may be requested.
    fn allow(&self, name: &str) -> impl Future<Output = bool> + Send;
}

impl<F, Fut> OnDemandPolicy for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    fn allow(&self, name: &str) -> impl Future<Output = bool> + Send {
        self(name.to_owned())
    }
}

/// How an edge paces its on-demand requests (defaults in
/// [`OnDemandSettings::default`]).
///
/// ```
/// use std::time::Duration;
/// use sturdy_acme::serve::OnDemandSettings;
///
/// let settings = OnDemandSettings::default().with_per_minute(30).with_burst(5);
/// assert_eq!(settings.cooldown(), Duration::from_secs(600));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OnDemandSettings {
    per_minute: u32,
    burst: u32,
    cooldown: Duration,
    policy_timeout: Duration,
    queue: usize,
    concurrent_checks: usize,
}

impl Default for OnDemandSettings {
    fn default() -> Self {
        Self {
            per_minute: 60,
            burst: 20,
            cooldown: Duration::from_secs(600),
            policy_timeout: Duration::from_secs(5),
            queue: 1024,
            concurrent_checks: 8,
        }
    }
}

crate::retry::knobs!(OnDemandSettings {
    /// Names taken up per minute, steadily (at least 1). Default 60.
    per_minute, with_per_minute: u32;
    /// Names taken up at once after a quiet spell (at least 1). Default 20.
    burst, with_burst: u32;
    /// How long a name taken up is not taken up again (whatever the
    /// policy said). Default 10 minutes.
    cooldown, with_cooldown: Duration;
    /// How long the policy may take; no answer in time is a no. Default 5 s.
    policy_timeout, with_policy_timeout: Duration;
    /// Names waiting to be looked at; more are dropped. Default 1,024.
    queue, with_queue: usize;
    /// Policy questions in flight at once (at least 1). Default 8.
    concurrent_checks, with_concurrent_checks: usize;
});

/// What an edge's [`OnDemand`] did, for its health endpoint.
///
/// Example: [`OnDemand`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OnDemandStatus {
    /// Handshakes for a name nothing serves.
    pub unknown: u64,
    /// Names dropped because the queue was full.
    pub dropped: u64,
    /// Names skipped: not a host name, served meanwhile, or within the
    /// cooldown.
    pub skipped: u64,
    /// Names left for later because this edge's rate was spent.
    pub rate_limited: u64,
    /// Names the policy refused (or did not answer in time).
    pub refused: u64,
    /// Requests this edge recorded in the store.
    pub requested: u64,
    /// Names another edge had already requested.
    pub already_requested: u64,
    /// Requests the store failed to record (asked again after the cooldown).
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    unknown: AtomicU64,
    dropped: AtomicU64,
    skipped: AtomicU64,
    rate_limited: AtomicU64,
    refused: AtomicU64,
    requested: AtomicU64,
    already_requested: AtomicU64,
    failed: AtomicU64,
}

/// What a policy question ended in.
enum Verdict {
    Refused,
    Requested,
    Already,
    Failed,
}

/// An edge's on-demand issuance: installed on a [`CertificateResolver`]
/// ([`OnDemand::new`]), run beside the server ([`OnDemand::run`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::StoreError> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use sturdy_acme::serve::{CertificateResolver, OnDemand, OnDemandSettings};
/// use sturdy_acme::store::{MemoryStore, Store};
///
/// let store = MemoryStore::new();
/// let resolver = Arc::new(CertificateResolver::new());
/// // The service's customer list decides.
/// let customers = |name: String| async move { name.ends_with(".customer.example") };
/// let on_demand = Arc::new(OnDemand::new(
///     store.clone(),
///     Arc::clone(&resolver),
///     customers,
///     "edge-1",
///     OnDemandSettings::default(),
/// ));
/// tokio::spawn({
///     let on_demand = Arc::clone(&on_demand);
///     async move { on_demand.run().await }
/// });
/// // What the store holds is loaded (a FeedFollower's snapshot; here nothing).
/// resolver.apply([]);
/// // Handshakes for names nothing serves (answered by the default, here none).
/// assert!(resolver.resolve_name("shop.customer.example").is_none());
/// assert!(resolver.resolve_name("stranger.example").is_none());
/// while on_demand.status().requested + on_demand.status().refused < 2 {
///     tokio::time::sleep(Duration::from_millis(5)).await;
/// }
/// let asked: Vec<String> = store.list_requests().await?.into_iter().map(|r| r.name).collect();
/// assert_eq!(asked, ["shop.customer.example"]);
/// # Ok(()) }
/// ```
pub struct OnDemand<S: Store, P: OnDemandPolicy> {
    store: S,
    resolver: Arc<CertificateResolver>,
    policy: Arc<P>,
    edge: String,
    settings: OnDemandSettings,
    names: Mutex<Option<mpsc::Receiver<String>>>,
    counters: Arc<Counters>,
}

impl<S: Store + Clone, P: OnDemandPolicy> std::fmt::Debug for OnDemand<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDemand")
            .field("edge", &self.edge)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl<S: Store + Clone, P: OnDemandPolicy> OnDemand<S, P> {
    /// Listens to the names `resolver` does not serve (replacing any
    /// listener it had); `edge` names this edge in the requests it records.
    pub fn new(
        store: S,
        resolver: Arc<CertificateResolver>,
        policy: P,
        edge: impl Into<String>,
        settings: OnDemandSettings,
    ) -> Self {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let counters = Arc::new(Counters::default());
        let heard = Arc::clone(&counters);
        resolver.on_unknown_name(move |name| {
            heard.unknown.fetch_add(1, Ordering::Relaxed);
            if tx.try_send(name.to_owned()).is_err() {
                heard.dropped.fetch_add(1, Ordering::Relaxed);
            }
        });
        Self {
            store,
            resolver,
            policy: Arc::new(policy),
            edge: edge.into(),
            settings,
            names: Mutex::new(Some(rx)),
            counters,
        }
    }

    /// What it did so far.
    pub fn status(&self) -> OnDemandStatus {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        OnDemandStatus {
            unknown: get(&c.unknown),
            dropped: get(&c.dropped),
            skipped: get(&c.skipped),
            rate_limited: get(&c.rate_limited),
            refused: get(&c.refused),
            requested: get(&c.requested),
            already_requested: get(&c.already_requested),
            failed: get(&c.failed),
        }
    }

    /// Looks at each name the resolver did not serve, until dropped (the
    /// second call returns at once: one runs per edge).
    pub async fn run(&self) {
        let Some(mut names) = self.names.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            tracing::warn!(target: "sturdy_acme::serve", "OnDemand::run is already running");
            return;
        };
        let s = &self.settings;
        let per_token = Duration::from_secs(60) / s.per_minute.max(1);
        let burst = f64::from(s.burst.max(1));
        let mut tokens = burst;
        let mut refilled = Instant::now();
        // Names taken up, and when (for the cooldown).
        let mut taken: HashMap<String, Instant> = HashMap::new();
        let mut asking: HashSet<String> = HashSet::new();
        // The name each question is about, so a question that panicked
        // (a policy's bug) frees its name too.
        let mut questions: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut checks: JoinSet<Verdict> = JoinSet::new();
        loop {
            tokio::select! {
                Some(done) = checks.join_next_with_id(), if !checks.is_empty() => {
                    let (id, verdict) = match done {
                        Ok((id, verdict)) => (id, Some(verdict)),
                        Err(e) => (e.id(), None),
                    };
                    if let Some(name) = questions.remove(&id) {
                        asking.remove(&name);
                    }
                    let Some(verdict) = verdict else {
                        tracing::warn!(target: "sturdy_acme::serve", "an on-demand policy question panicked: taken as a no");
                        self.counters.refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let counter = match verdict {
                        Verdict::Refused => &self.counters.refused,
                        Verdict::Requested => &self.counters.requested,
                        Verdict::Already => &self.counters.already_requested,
                        Verdict::Failed => {
                            // Asked again at its next handshake after the
                            // cooldown.
                            &self.counters.failed
                        }
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                name = names.recv(), if checks.len() < s.concurrent_checks.max(1) => {
                    let Some(name) = name else { break };
                    let now = Instant::now();
                    taken.retain(|_, at| now.duration_since(*at) < s.cooldown);
                    let Ok(name) = request_name(&name) else {
                        self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    if taken.contains_key(&name) || asking.contains(&name) || self.resolver.serves(&name) {
                        self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let earned = now.duration_since(refilled).as_secs_f64() / per_token.as_secs_f64();
                    tokens = (tokens + earned).min(burst);
                    refilled = now;
                    if tokens < 1.0 {
                        self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(target: "sturdy_acme::serve", %name, "on-demand rate spent; the name waits for a later handshake");
                        continue;
                    }
                    tokens -= 1.0;
                    taken.insert(name.clone(), now);
                    asking.insert(name.clone());
                    let question = checks.spawn(self.decide(name.clone()));
                    questions.insert(question.id(), name);
                }
            }
        }
        while checks.join_next().await.is_some() {}
    }

    /// Asks the policy, then the store.
    fn decide(&self, name: String) -> impl Future<Output = Verdict> + Send + 'static {
        let (store, policy, edge) = (
            self.store.clone(),
            Arc::clone(&self.policy),
            self.edge.clone(),
        );
        let timeout = self.settings.policy_timeout;
        async move {
            let allowed = tokio::time::timeout(timeout, policy.allow(&name))
                .await
                .unwrap_or_else(|_| {
                    tracing::warn!(target: "sturdy_acme::serve", %name, ?timeout, "the on-demand policy did not answer in time: no");
                    false
                });
            if !allowed {
                tracing::debug!(target: "sturdy_acme::serve", %name, "the on-demand policy says no");
                return Verdict::Refused;
            }
            match store.request_certificate(&name, &edge).await {
                Ok(true) => {
                    tracing::info!(target: "sturdy_acme::serve", %name, %edge, "certificate requested on demand");
                    Verdict::Requested
                }
                Ok(false) => Verdict::Already,
                Err(e) => {
                    tracing::warn!(target: "sturdy_acme::serve", %name, error = %e, "the on-demand request could not be recorded");
                    Verdict::Failed
                }
            }
        }
    }
}
