//! One account's node of the simulated fleet: a client and an issuer for
//! each CA (their answers counted for the report), all on the account's
//! store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::store::Store;
use sturdy_acme::{Event, Issuer, Result};

use super::drills::SharedLog;
use super::measure::Mutex429;
use super::{DAY, SimulationConfig};
use crate::TestCa;

/// Where a node's clients report what they see.
pub(super) struct Seen {
    /// Answers by status.
    pub(super) statuses: Arc<Mutex429>,
    /// Replacement orders resumed, alreadyReplaced answers that dropped
    /// replaces, every drop.
    pub(super) replaces: Arc<(AtomicU64, AtomicU64, AtomicU64)>,
    /// The drills' log (profile fallbacks).
    pub(super) log: SharedLog,
}

/// The issuers of `account`, one per CA of `cas` (in order), on `store`.
pub(super) async fn issuers<S: Store + Clone>(
    config: &SimulationConfig,
    account: usize,
    cas: &[Arc<TestCa>],
    store: &S,
    clock: sturdy_acme::Clock,
    seen_by: Seen,
) -> Result<Vec<Issuer<S>>> {
    let mut issuers = Vec::new();
    for (which, ca) in cas.iter().enumerate() {
        let seen = Arc::clone(&seen_by.statuses);
        let replaces = Arc::clone(&seen_by.replaces);
        let drill_log = Arc::clone(&seen_by.log);
        let client = ca
            .client_builder()
            .clock(clock)
            // Seeded jitter, and first polls not learned from real round
            // trips: nothing of the run depends on the machine.
            .retry_policy(sturdy_acme::RetryPolicy::default().with_seed(Some(
                config.seed ^ 0xc11e ^ account as u64 ^ ((which as u64) << 20),
            )))
            .poll_policy(sturdy_acme::PollPolicy::default().with_adaptive(false))
            .on_event(move |e| match e {
                Event::ProfileFallback { .. } => {
                    drill_log
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .fallbacks += 1;
                }
                Event::Exchange {
                    status: Some(s), ..
                } => seen.count(*s),
                Event::ReplacementResumed { .. } => {
                    replaces.0.fetch_add(1, Ordering::Relaxed);
                }
                Event::ReplacesDropped { cause, .. } => {
                    if *cause == sturdy_acme::ReplacesRefusal::AlreadyReplaced {
                        replaces.1.fetch_add(1, Ordering::Relaxed);
                    }
                    replaces.2.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            })
            .build()
            .await?;
        issuers.push(
            Issuer::builder(client, store.clone())
                .solver(Arc::new(Http01Solver::unserved()))
                .rate_limits(config.limits.clone())
                .holder(format!("sim-{account}-{which}"))
                .window_seed(Some(config.seed ^ (account as u64) << 32))
                // One renewer per store: nobody contends for a lease,
                // and the memory store's leases run on real time.
                .lease_ttl(Duration::from_secs(DAY))
                .build(),
        );
    }
    Ok(issuers)
}
