//! A fleet in virtual time: [`Renewer`]s (one per account) against the
//! embedded CA with Let's Encrypt's limits, on tokio's paused clock, so a
//! quarter of a year of arrivals, renewals and injected faults runs in
//! seconds to minutes. What `benches/fleet_sim.rs` prints and a test
//! checks at a smaller size.
//!
//! The figures come from the CA's side (its ledger of certificates, the
//! client's record of every answer), not from the renewer's own account:
//!
//! - 429s the CA answered;
//! - certificates that ever expired: a set whose next certificate came
//!   after the previous one's expiry, or whose last one expired before the
//!   end;
//! - duplicates beyond renewals: a certificate issued before half of the
//!   previous one's lifetime for the same set (no renewal rule renews that
//!   early);
//! - requests per certificate;
//! - the makespan of initial issuance (from the first arrival to the last
//!   set's first certificate) against the least the limits allow for that
//!   arrival pattern: each limit's token bucket served greedily in arrival
//!   order (optimal for one bucket); the largest over every bucket is a
//!   lower bound for all of them together.

mod capacity;
mod drills;
mod measure;
mod node;
mod second;

pub use capacity::{
    CapacityRow, Phase, fewest_accounts, fewest_accounts_from, lets_encrypt_timeline,
};
pub use drills::{DrillReport, Drills};
pub use second::{SecondCa, SecondCaReport};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::{CaaPolicy, Fault, FaultRule, RetryAfterForm, TestCa, Trigger};
use crate::codec::Rng;
use measure::{Mutex429, greedy_finish};
use sturdy_acme::RateLimits;
use sturdy_acme::ca_set::{CaMember, CaSet};
use sturdy_acme::renewer::{CertificateSpec, Renewer, RenewerEvent, RenewerPolicy};
use sturdy_acme::store::{FileStore, MemoryStore, Store};
use sturdy_acme::{CertificateOptions, Error, Result};

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// What to simulate.
///
/// Example: [`simulate`].
#[derive(Debug, Clone)]
pub struct SimulationConfig {
    /// Certificates in all (one name each).
    pub certificates: usize,
    /// Registered domains they are under (each belongs to one account).
    pub domains: usize,
    /// ACME accounts (one issuer, store and renewer each).
    pub accounts: usize,
    /// Simulated days.
    pub days: u64,
    /// The certificates arrive in this many equal bursts ...
    pub bursts: usize,
    /// ... this far apart.
    pub burst_every: Duration,
    /// Share of certificates with the `tlsserver` profile (45 days); the
    /// rest are `classic` (90 days).
    pub tlsserver_share: f64,
    /// Chance of a transient failure per request (an empty 500, a fifth of
    /// them after the CA did the work).
    pub transient: f64,
    /// Share of domains whose CAA lookups time out for a day ...
    pub caa_share: f64,
    /// ... starting this far in.
    pub caa_at: Duration,
    /// The CA answers every request with 503 for this long ...
    pub outage: Duration,
    /// ... starting this far in.
    pub outage_at: Duration,
    /// The renewers' limits (and the CA's).
    pub limits: RateLimits,
    /// Attempts in flight per renewer.
    pub concurrency: usize,
    /// The CA's `Retry-After` on renewal information (how often each
    /// certificate's window is checked).
    pub renewal_info_retry_after: Duration,
    /// Seed of every random choice.
    pub seed: u64,
    /// `Some(dir)`: each account on a [`FileStore`] in a temporary
    /// directory under `dir`; `None`: on a [`MemoryStore`] (the issuer's
    /// and renewer's logic alone, without the file system's cost).
    pub file_store_root: Option<PathBuf>,
    /// Whether the CA fails an order whose CAA recheck fails at finalize
    /// (Boulder since 2026; default), see
    /// [`TestCaBuilder::caa_recheck_fails_order`](crate::TestCaBuilder::caa_recheck_fails_order).
    pub caa_recheck_fails_order: bool,
    /// The simulated calendar's first moment (default 2026-12-07 00:00
    /// UTC): pinned, so one seed gives the same dates, and the same
    /// figures, every run.
    pub start: SystemTime,
    /// The CA's events to play (none by default).
    pub drills: Drills,
    /// The lifetime of `classic` certificates (Let's Encrypt: 90 days, 64
    /// from 2027-02-10, 45 from 2028-02-16).
    pub classic_lifetime: Duration,
    /// How long a validated authorization is reused (30 days, 10 days from
    /// 2027-02-10, 7 hours from 2028-02-16).
    pub authorization_reuse: Duration,
    /// A second CA: the renewers issue through a set preferring the first,
    /// whose `outage` then fails over (none by default).
    pub second_ca: Option<SecondCa>,
}

impl Default for SimulationConfig {
    /// The issue's full size: 20,000 certificates over 500 domains and 10
    /// accounts, in 4 bursts 6 hours apart, 90 days, 30% tlsserver, 5%
    /// transient failures, CAA timeouts on 2% of domains for day 29, a
    /// 1-hour outage at hour 1, Let's Encrypt's limits.
    fn default() -> Self {
        Self {
            certificates: 20_000,
            domains: 500,
            accounts: 10,
            days: 90,
            bursts: 4,
            burst_every: Duration::from_secs(6 * HOUR),
            tlsserver_share: 0.3,
            transient: 0.05,
            caa_share: 0.02,
            caa_at: Duration::from_secs(29 * DAY),
            outage: Duration::from_secs(HOUR),
            outage_at: Duration::from_secs(HOUR),
            limits: RateLimits::lets_encrypt(),
            concurrency: 32,
            renewal_info_retry_after: Duration::from_secs(DAY),
            seed: 1,
            file_store_root: None,
            caa_recheck_fails_order: true,
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_601_600),
            drills: Drills::default(),
            classic_lifetime: Duration::from_secs(90 * DAY),
            authorization_reuse: Duration::from_secs(30 * DAY),
            second_ca: None,
        }
    }
}

/// What the simulation measured.
///
/// Example: [`simulate`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimulationReport {
    /// Certificates managed.
    pub managed: usize,
    /// Certificates the CA issued (initial ones and renewals).
    pub issued: usize,
    /// Renewals among them (a set's second or later certificate that is
    /// not a duplicate).
    pub renewals: usize,
    /// 429 answers the CA gave (goal 0).
    pub rate_limited_429: u64,
    /// 503 answers (the outage).
    pub unavailable_503: u64,
    /// Sets that were ever without a valid certificate after their first
    /// one (goal 0).
    pub ever_expired: usize,
    /// Sets never issued by the end.
    pub never_issued: usize,
    /// Certificates issued before half of the previous one's lifetime
    /// (goal 0).
    pub duplicates: usize,
    /// Requests the CA received.
    pub requests: u64,
    /// Requests per certificate issued.
    pub requests_per_certificate: f64,
    /// Requests per managed certificate per simulated day.
    pub requests_per_certificate_day: f64,
    /// From the first arrival to the last set's first certificate, seconds.
    pub initial_makespan_s: f64,
    /// The least the limits allow for the arrival pattern, seconds.
    pub initial_makespan_bound_s: f64,
    /// `initial_makespan_s / initial_makespan_bound_s` (goal ≤ 1.05).
    pub makespan_ratio: f64,
    /// Error answers by HTTP status, as the clients saw them.
    pub error_statuses: BTreeMap<u16, u64>,
    /// The first 20 errors the CA's 429s gave the renewers (which limit).
    pub rate_limited_errors: Vec<String>,
    /// `409 alreadyReplaced` answers to a renewal's newOrder (goal 0, or
    /// each one resolved by resuming the earlier replacement order).
    pub already_replaced_409: u64,
    /// Renewals that resumed this account's earlier replacement order after
    /// an `alreadyReplaced` ([`Event::ReplacementResumed`](sturdy_acme::Event::ReplacementResumed)).
    pub replacements_resumed: u64,
    /// Renewals sent without `replaces` after the CA refused it
    /// ([`Event::ReplacesDropped`](sturdy_acme::Event::ReplacesDropped)), giving up the ARI exemption.
    pub replaces_dropped: u64,
    /// Failed attempts by error class, as the renewers saw them.
    pub failures: BTreeMap<String, u64>,
    /// Attempts a local rate-limit count held back.
    pub deferred: u64,
    /// Pauses for the CA's outage.
    pub pauses: u64,
    /// Simulated days.
    pub days: u64,
    /// What the drills came to.
    pub drills: DrillReport,
    /// Requests per simulated day, by endpoint (the CA's count).
    pub requests_per_day: BTreeMap<String, f64>,
    /// The most of each kind of rate-limit bucket spent at once (1.0: one
    /// was emptied): `orders` per account, `domain` per registered domain,
    /// `fqdnset` per exact set.
    pub peak_limit_use: BTreeMap<String, f64>,
    /// With a second CA: the failover's figures.
    pub second_ca: Option<SecondCaReport>,
    /// Wall-clock seconds the simulation took.
    pub wall_s: f64,
}

impl SimulationReport {
    /// The figures alone: the report without its wall-clock time, what two
    /// runs with one seed must agree on.
    pub fn figures(&self) -> Self {
        Self {
            wall_s: 0.0,
            ..self.clone()
        }
    }
}

/// One certificate of the fleet.
struct Planned {
    spec: CertificateSpec,
    account: usize,
    domain: usize,
    burst: usize,
}

/// Runs the simulation. Call it on tokio's paused clock (a current-thread
/// runtime built with `start_paused(true)`), or it takes as long as it
/// simulates.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use std::time::Duration;
/// use sturdy_acme_testca::simulation::{SimulationConfig, simulate};
///
/// let report = simulate(SimulationConfig {
///     certificates: 40,
///     domains: 4,
///     accounts: 2,
///     days: 10,
///     transient: 0.0,
///     caa_share: 0.0,
///     outage: Duration::ZERO,
///     ..SimulationConfig::default()
/// })
/// .await?;
/// assert_eq!(report.rate_limited_429, 0);
/// assert_eq!(report.never_issued, 0);
/// # Ok(()) }
/// ```
pub async fn simulate(config: SimulationConfig) -> Result<SimulationReport> {
    let dir = config.file_store_root.as_ref().map(|root| {
        root.join(format!(
            "sturdy-fleet-sim-{}-{}",
            std::process::id(),
            config.seed
        ))
    });
    match dir {
        Some(dir) => {
            let _cleanup = RemoveOnDrop(dir.clone());
            simulate_on(config, |account| {
                Ok(FileStore::open(dir.join(format!("account-{account}")))?)
            })
            .await
        }
        None => simulate_on(config, |_| Ok(MemoryStore::new())).await,
    }
}

async fn simulate_on<S: Store + Clone>(
    config: SimulationConfig,
    store: impl Fn(usize) -> Result<S>,
) -> Result<SimulationReport> {
    let wall = Instant::now();
    // One calendar, pinned: the same dates every run (the CA and the
    // clients read it on this thread).
    let _calendar = sturdy_acme::Clock::pin_tokio_calendar(config.start);
    let clock = sturdy_acme::Clock::tokio();
    let start = clock.now();
    let rng = Rng::new(config.seed);
    let log: drills::SharedLog = Arc::default();

    let ca = Arc::new(sim_ca(&config, None)?);
    let base_faults = transient_faults(config.transient, config.seed);
    ca.set_faults(base_faults.clone());
    // The second CA (issue 30): as the first, its own ledger and limits.
    let second = match &config.second_ca {
        Some(_) => {
            let b = sim_ca(&config, Some("second.in-process.test-ca.invalid"))?;
            b.set_faults(transient_faults(config.transient, config.seed ^ 0xb));
            Some(Arc::new(b))
        }
        None => None,
    };
    let cas: Vec<Arc<TestCa>> = std::iter::once(Arc::clone(&ca))
        .chain(second.iter().cloned())
        .collect();
    let outage_log: Arc<std::sync::Mutex<second::OutageLog>> = Arc::default();

    // Who answered what, from the clients' side.
    let statuses: Arc<Mutex429> = Arc::default();

    let failures: Arc<std::sync::Mutex<BTreeMap<String, u64>>> = Arc::default();
    let limited: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let deferred = Arc::new(AtomicU64::new(0));
    let pauses = Arc::new(AtomicU64::new(0));
    let mut renewers = Vec::new();
    // Replacement orders resumed, alreadyReplaced answers that dropped
    // replaces, every drop.
    let replaces: Arc<(AtomicU64, AtomicU64, AtomicU64)> = Arc::default();
    for account in 0..config.accounts.max(1) {
        let store = store(account)?;
        let issuers = node::issuers(
            &config,
            account,
            &cas,
            &store,
            clock,
            node::Seen {
                statuses: Arc::clone(&statuses),
                replaces: Arc::clone(&replaces),
                log: Arc::clone(&log),
            },
        )
        .await?;
        let mut issuers = issuers.into_iter();
        let first = issuers.next().expect("the first CA");
        let builder = match (&config.second_ca, issuers.next()) {
            (Some(second), Some(other)) => Renewer::for_set(
                CaSet::builder()
                    .ca(CaMember::new("first", first))
                    .ca(CaMember::new("second", other))
                    .down_for(second.down_for)
                    .on_event({
                        let outage_log = Arc::clone(&outage_log);
                        move |e| outage_log.lock().unwrap_or_else(|p| p.into_inner()).saw(e)
                    })
                    .build()?,
            ),
            _ => Renewer::builder(first),
        };
        let limited = Arc::clone(&limited);
        let (failures, deferred, pauses) = (
            Arc::clone(&failures),
            Arc::clone(&deferred),
            Arc::clone(&pauses),
        );
        let drill_log = Arc::clone(&log);
        let renewer = builder
            .policy(
                RenewerPolicy::default()
                    .with_concurrency(config.concurrency)
                    .with_seed(Some(config.seed.wrapping_add(account as u64)))
                    .with_refresh(Duration::from_secs(DAY))
                    .with_headroom_interval(Duration::from_secs(HOUR)),
            )
            .on_event(move |e| match e {
                RenewerEvent::RateLimitedByCa { .. } => {}
                RenewerEvent::ChainChanged { id, .. } => {
                    *drill_log
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .chain_reports
                        .entry(id.clone())
                        .or_default() += 1;
                }
                RenewerEvent::Failed { class, error, .. } => {
                    {
                        let mut l = drill_log.lock().unwrap_or_else(|p| p.into_inner());
                        if l.withdrawn.is_some_and(|at| clock.now() >= at) {
                            l.failures_after_withdrawal += 1;
                        }
                    }
                    if *class == "rate_limited" {
                        let mut l = limited.lock().unwrap_or_else(|p| p.into_inner());
                        if l.len() < 20 {
                            l.push(error.clone());
                        }
                    }
                    *failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry((*class).to_owned())
                        .or_default() += 1;
                }
                RenewerEvent::Deferred { .. } => {
                    deferred.fetch_add(1, Ordering::Relaxed);
                }
                RenewerEvent::Paused { .. } => {
                    pauses.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            })
            .build();
        renewers.push(renewer);
    }

    // The fleet: certificate i under domain i % domains, domain d with
    // account d % accounts, arriving in burst i % bursts.
    let domains = config.domains.max(1);
    let bursts = config.bursts.max(1);
    let mut plan = Vec::with_capacity(config.certificates);
    for i in 0..config.certificates {
        let domain = i % domains;
        let name = format!("s{}.cust{domain}.example", i / domains);
        let profile = if rng.next_f64() < config.tlsserver_share {
            "tlsserver"
        } else {
            "classic"
        };
        // A tlsserver spec falls back to classic if the CA withdraws it.
        let spec = CertificateSpec::new([name])?.with_options(
            CertificateOptions::default()
                .with_profile(Some(profile.into()))
                .with_profile_fallback((profile == "tlsserver").then(|| "classic".into())),
        );
        plan.push(Planned {
            spec,
            account: domain % config.accounts.max(1),
            domain,
            burst: i % bursts,
        });
    }
    let arrival = |burst: usize| start + config.burst_every * burst as u32;

    let running: Vec<_> = renewers
        .iter()
        .map(|r| {
            let r = r.clone();
            tokio::spawn(async move { r.run().await })
        })
        .collect();

    // Arrivals.
    let arrivals = {
        let mut by_burst: Vec<Vec<Vec<CertificateSpec>>> =
            vec![vec![Vec::new(); renewers.len()]; bursts];
        for p in &plan {
            by_burst[p.burst][p.account].push(p.spec.clone());
        }
        let renewers = renewers.clone();
        let every = config.burst_every;
        tokio::spawn(async move {
            for (b, per_account) in by_burst.into_iter().enumerate() {
                if b > 0 {
                    tokio::time::sleep(every).await;
                }
                for (account, specs) in per_account.into_iter().enumerate() {
                    renewers[account].add_all(specs).await?;
                }
            }
            Ok::<(), Error>(())
        })
    };

    // Faults on a timeline.
    let caa_domains: Vec<String> = (0..domains)
        .filter(|_| rng.next_f64() < config.caa_share)
        .map(|d| format!("cust{d}.example"))
        .collect();
    let mut timeline: Vec<(Duration, FaultStep)> = Vec::new();
    if !config.outage.is_zero() {
        timeline.push((config.outage_at, FaultStep::OutageStarts));
        timeline.push((config.outage_at + config.outage, FaultStep::OutageEnds));
    }
    if !caa_domains.is_empty() {
        timeline.push((config.caa_at, FaultStep::CaaTimeouts(CaaPolicy::Timeout)));
        timeline.push((
            config.caa_at + Duration::from_secs(DAY),
            FaultStep::CaaTimeouts(CaaPolicy::Allow),
        ));
    }
    let d = &config.drills;
    if let Some((at, share)) = d.ari {
        timeline.push((at, FaultStep::AriDrill(share)));
    }
    if let Some(at) = d.chain_change_at {
        timeline.push((at, FaultStep::ChainChange));
    }
    if let Some((at, share)) = d.crl {
        timeline.push((at, FaultStep::CrlRevocations(share)));
    }
    if let Some(at) = d.withdraw_tlsserver_at {
        timeline.push((at, FaultStep::WithdrawTlsserver));
    }
    // Stable: steps at one time keep the order above.
    timeline.sort_by_key(|(at, _)| *at);
    let newcomers = drills::new_customers(d.new_customers_at_ari, domains, config.accounts)?;
    let faults = {
        let ca = Arc::clone(&ca);
        let renewers = renewers.clone();
        let outage = config.outage;
        let log = Arc::clone(&log);
        let outage_log = Arc::clone(&outage_log);
        let seed = config.seed;
        tokio::spawn(async move {
            let mut now = Duration::ZERO;
            for (at, step) in timeline {
                tokio::time::sleep(at.saturating_sub(now)).await;
                now = at;
                match step {
                    FaultStep::OutageStarts => {
                        let mut rules = vec![FaultRule::everywhere(
                            Trigger::Always,
                            Fault::Unavailable {
                                retry_after: RetryAfterForm::Seconds(outage.as_secs()),
                            },
                        )];
                        rules.extend(base_faults.iter().cloned());
                        ca.set_faults(rules);
                        let answered = ca.ledger().requests.values().sum();
                        outage_log.lock().unwrap_or_else(|p| p.into_inner()).started =
                            Some((clock.now(), answered));
                    }
                    FaultStep::OutageEnds => {
                        ca.set_faults(base_faults.clone());
                        let answered = ca.ledger().requests.values().sum();
                        outage_log.lock().unwrap_or_else(|p| p.into_inner()).ended =
                            Some((clock.now(), answered));
                    }
                    FaultStep::CaaTimeouts(policy) => {
                        for d in &caa_domains {
                            ca.set_caa(d, policy);
                        }
                    }
                    FaultStep::AriDrill(share) => {
                        let moved = ca.drill_renewal_windows(
                            share,
                            seed ^ 0xa41,
                            Duration::from_secs(DAY),
                            None,
                        );
                        log.lock().unwrap_or_else(|p| p.into_inner()).ari =
                            Some((clock.now(), moved));
                        let arrived = clock.now();
                        let mut names = Vec::new();
                        for (account, specs) in newcomers.iter().enumerate() {
                            names.extend(specs.iter().map(|s| s.names()[0].clone()));
                            if let Err(e) = renewers[account].add_all(specs.clone()).await {
                                tracing::warn!(error = %e, "new customers could not be added");
                            }
                        }
                        log.lock().unwrap_or_else(|p| p.into_inner()).new_customers =
                            Some((arrived, names));
                    }
                    FaultStep::ChainChange => {
                        ca.set_default_to_alternate_root(true);
                        log.lock().unwrap_or_else(|p| p.into_inner()).chain_change =
                            Some(clock.now());
                    }
                    FaultStep::CrlRevocations(share) => {
                        // keyCompromise, reported by a third party.
                        let revoked = ca.revoke_share_quietly(share, seed ^ 0xc41, 1);
                        log.lock().unwrap_or_else(|p| p.into_inner()).crl =
                            Some((clock.now(), revoked));
                    }
                    FaultStep::WithdrawTlsserver => {
                        ca.withdraw_profile("tlsserver");
                        log.lock().unwrap_or_else(|p| p.into_inner()).withdrawn = Some(clock.now());
                    }
                }
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(config.days * DAY)).await;
    let end = clock.now();
    for r in &renewers {
        r.shutdown();
    }
    for r in running {
        r.await
            .map_err(|e| Error::InvalidInput(format!("a renewer task failed: {e}")))??;
    }
    arrivals
        .await
        .map_err(|e| Error::InvalidInput(format!("the arrivals task failed: {e}")))??;
    faults.abort();

    // The CA's side of the story (with a second CA: both CAs').
    let ledger = ca.ledger();
    let ledger_second = second.as_ref().map(|b| b.ledger());
    // Certificates the CA asked to replace early (a drill, a revocation):
    // their replacements are renewals, however early.
    let asked: std::collections::HashSet<String> = {
        let log = log.lock().unwrap_or_else(|p| p.into_inner());
        log.ari
            .iter()
            .chain(log.crl.iter())
            .flat_map(|(_, serials)| serials.iter().cloned())
            .collect()
    };
    let issued_certs: Vec<&crate::IssuedCertificate> = ledger
        .certificates
        .iter()
        .chain(ledger_second.iter().flat_map(|l| l.certificates.iter()))
        .collect();
    let ids: Vec<String> = plan.iter().map(|p| p.spec.id()).collect();
    let tally = measure::tally(&issued_certs, &ids, &asked, end)?;
    let (ever_expired, never_issued, duplicates, renewals, first_issued) = (
        tally.ever_expired,
        tally.never_issued,
        tally.duplicates,
        tally.renewals,
        tally.first_issued,
    );
    let makespan = first_issued
        .values()
        .max()
        .map(|t| t.duration_since(start).unwrap_or_default())
        .unwrap_or_default();
    let bound = makespan_bound(&plan, &config.limits, |b| {
        arrival(b).duration_since(start).unwrap_or_default()
    });
    let requests: u64 = ledger.requests.values().sum::<u64>()
        + ledger_second
            .iter()
            .map(|l| l.requests.values().sum::<u64>())
            .sum::<u64>();
    let issued =
        ledger.certificates.len() + ledger_second.as_ref().map_or(0, |l| l.certificates.len());
    let second_ca = ledger_second.as_ref().map(|b| {
        second::report(
            &ledger,
            b,
            &outage_log.lock().unwrap_or_else(|p| p.into_inner()),
            plan.iter()
                .map(|p| (arrival(p.burst), first_issued.get(&p.spec.id()).copied())),
        )
    });
    let failures = failures.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(SimulationReport {
        managed: plan.len(),
        issued,
        renewals,
        rate_limited_429: statuses.get(429),
        unavailable_503: statuses.get(503),
        ever_expired,
        never_issued,
        duplicates,
        requests,
        requests_per_certificate: requests as f64 / issued.max(1) as f64,
        requests_per_certificate_day: requests as f64
            / plan.len().max(1) as f64
            / config.days.max(1) as f64,
        initial_makespan_s: makespan.as_secs_f64(),
        initial_makespan_bound_s: bound.as_secs_f64(),
        makespan_ratio: if bound.is_zero() {
            1.0
        } else {
            makespan.as_secs_f64() / bound.as_secs_f64()
        },
        error_statuses: statuses.all(),
        rate_limited_errors: limited.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        already_replaced_409: statuses.get(409),
        replacements_resumed: replaces.0.load(Ordering::Relaxed),
        replaces_dropped: replaces.2.load(Ordering::Relaxed),
        failures,
        deferred: deferred.load(Ordering::Relaxed),
        pauses: pauses.load(Ordering::Relaxed),
        days: config.days,
        drills: drills::report(&log.lock().unwrap_or_else(|p| p.into_inner()), &ledger),
        requests_per_day: ledger
            .requests
            .iter()
            .map(|(e, n)| (e.to_string(), *n as f64 / config.days.max(1) as f64))
            .collect(),
        peak_limit_use: ca.peak_limit_use(),
        second_ca,
        wall_s: wall.elapsed().as_secs_f64(),
    })
}

/// A simulation's CA (in process, under `host` when given): Let's
/// Encrypt's behaviour as configured.
fn sim_ca(config: &SimulationConfig, host: Option<&str>) -> Result<TestCa> {
    let mut builder = TestCa::builder()
        .alternate_chain(true)
        .authorization_reuse(config.authorization_reuse)
        .rate_limits(config.limits.clone())
        .renewal_info(None)
        .renewal_info_retry_after(config.renewal_info_retry_after.as_secs())
        .profiles(true)
        .caa_recheck_fails_order(config.caa_recheck_fails_order);
    if let Some(host) = host {
        builder = builder.in_process_host(host);
    }
    let ca = builder.start_in_process()?;
    if config.classic_lifetime != Duration::from_secs(90 * DAY) {
        ca.change_lifetime_on(SystemTime::UNIX_EPOCH, None, config.classic_lifetime);
    }
    Ok(ca)
}

enum FaultStep {
    OutageStarts,
    OutageEnds,
    CaaTimeouts(CaaPolicy),
    AriDrill(f64),
    ChainChange,
    CrlRevocations(f64),
    WithdrawTlsserver,
}

/// 5% transient failures: four in five an empty 500 before the work, one
/// in five after it (the outcome unknown to the client).
fn transient_faults(p: f64, seed: u64) -> Vec<FaultRule> {
    if p <= 0.0 {
        return Vec::new();
    }
    vec![
        FaultRule::everywhere(
            Trigger::Probability {
                p: p * 0.8,
                seed: seed ^ 0x5eed,
            },
            Fault::Empty500,
        ),
        FaultRule::everywhere(
            Trigger::Probability {
                p: p * 0.2 / (1.0 - p * 0.8),
                seed: seed ^ 0xc0de,
            },
            Fault::Empty500AfterCommit,
        ),
    ]
}

/// The least time, from the first arrival, in which every planned
/// certificate's first order can go out: each bucket (the accounts' new
/// orders, the domains' certificates) served greedily in arrival order,
/// the slowest of them.
fn makespan_bound(
    plan: &[Planned],
    limits: &RateLimits,
    arrival: impl Fn(usize) -> Duration,
) -> Duration {
    let mut buckets: HashMap<(u8, usize), Vec<Duration>> = HashMap::new();
    for p in plan {
        let at = arrival(p.burst);
        if limits.new_orders_per_account.is_some() {
            buckets.entry((0, p.account)).or_default().push(at);
        }
        if limits.certificates_per_domain.is_some() {
            buckets.entry((1, p.domain)).or_default().push(at);
        }
    }
    let mut worst = plan
        .iter()
        .map(|p| arrival(p.burst))
        .max()
        .unwrap_or_default();
    for ((kind, _), mut arrivals) in buckets {
        let limit = if kind == 0 {
            limits.new_orders_per_account
        } else {
            limits.certificates_per_domain
        };
        let Some(limit) = limit else { continue };
        arrivals.sort();
        worst = worst.max(greedy_finish(&limit, &arrivals));
    }
    worst
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
