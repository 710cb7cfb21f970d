//! A second CA beside the first (issue 30): every account's renewer issues
//! through a [`CaSet`](sturdy_acme::ca_set::CaSet) that prefers the first
//! CA, so the first CA's outage ([`SimulationConfig::outage`](super::SimulationConfig::outage))
//! fails over to the second, and what that cost is measured.

use std::time::{Duration, SystemTime};

use serde::Serialize;

/// The second CA of a simulation (`None` in
/// [`SimulationConfig::second_ca`](super::SimulationConfig::second_ca): one
/// CA).
///
/// Example: [`super::simulate`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecondCa {
    /// How long a CA that failed with an outage is skipped before one
    /// issuance tries it again ([`CaSetBuilder::down_for`](sturdy_acme::ca_set::CaSetBuilder::down_for)).
    pub down_for: Duration,
}

impl Default for SecondCa {
    fn default() -> Self {
        Self {
            down_for: Duration::from_secs(300),
        }
    }
}

/// What the failover came to.
///
/// Example: [`super::simulate`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SecondCaReport {
    /// Certificates the first (preferred) CA issued.
    pub issued_first: usize,
    /// Certificates the second CA issued.
    pub issued_second: usize,
    /// Certificates issued at the second CA while the first was down.
    pub issued_second_during_outage: usize,
    /// Requests that reached the first CA while it was down (answered 503).
    pub requests_to_down_ca: u64,
    /// Certificates that arrived while the first CA was down.
    pub arrived_during_outage: usize,
    /// The longest any of them waited from its arrival to its first
    /// certificate (the failover's cost), in seconds.
    pub slowest_during_outage_s: f64,
    /// Certificates issued at the second CA after the first came back.
    pub issued_second_after_outage: usize,
    /// Times a set marked a CA down, by CA.
    pub marked_down: std::collections::BTreeMap<String, u64>,
    /// The first failures that marked a CA down (at most 5).
    pub down_errors: Vec<String>,
    /// Issuances sent to the second CA, by why the first was passed over
    /// (`not_allowed`, `caa_forbidden`, `down`, `paused`, `rate_limited`,
    /// `refused`, `failed`, `no_account`).
    pub second_because: std::collections::BTreeMap<String, u64>,
}

/// When the first CA was down, and what it had answered at each end; what
/// the sets reported.
#[derive(Debug, Clone, Default)]
pub(super) struct OutageLog {
    pub(super) started: Option<(SystemTime, u64)>,
    pub(super) ended: Option<(SystemTime, u64)>,
    pub(super) marked_down: std::collections::BTreeMap<String, u64>,
    pub(super) down_errors: Vec<String>,
    pub(super) second_because: std::collections::BTreeMap<String, u64>,
}

impl OutageLog {
    /// Counts a set's event.
    pub(super) fn saw(&mut self, event: &sturdy_acme::ca_set::CaSetEvent) {
        match event {
            sturdy_acme::ca_set::CaSetEvent::Down { ca, error, .. } => {
                *self.marked_down.entry(ca.clone()).or_default() += 1;
                if self.down_errors.len() < 5 {
                    self.down_errors.push(format!("{ca}: {error}"));
                }
            }
            sturdy_acme::ca_set::CaSetEvent::Chosen { choice, .. } => {
                if let Some(first) = choice.skipped.first() {
                    let kind = serde_json::to_value(&first.reason)
                        .ok()
                        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
                        .unwrap_or_default();
                    *self.second_because.entry(kind).or_default() += 1;
                }
            }
            _ => {}
        }
    }
}

/// The failover's figures from both CAs' ledgers, the outage's ends and,
/// for every certificate, its arrival and first issuance.
pub(super) fn report(
    first: &crate::Ledger,
    second: &crate::Ledger,
    outage: &OutageLog,
    arrivals: impl Iterator<Item = (SystemTime, Option<SystemTime>)>,
) -> SecondCaReport {
    let (from, to) = match (outage.started, outage.ended) {
        (Some((from, _)), Some((to, _))) => (Some(from), Some(to)),
        (Some((from, _)), None) => (Some(from), None),
        _ => (None, None),
    };
    let during = |at: SystemTime| from.is_some_and(|f| at >= f) && to.is_none_or(|t| at < t);
    let mut report = SecondCaReport {
        issued_first: first.certificates.len(),
        issued_second: second.certificates.len(),
        requests_to_down_ca: match (outage.started, outage.ended) {
            (Some((_, a)), Some((_, b))) => b.saturating_sub(a),
            (Some((_, a)), None) => first.requests.values().sum::<u64>().saturating_sub(a),
            _ => 0,
        },
        marked_down: outage.marked_down.clone(),
        down_errors: outage.down_errors.clone(),
        second_because: outage.second_because.clone(),
        ..SecondCaReport::default()
    };
    for c in &second.certificates {
        if during(c.issued_at) {
            report.issued_second_during_outage += 1;
        } else if to.is_some_and(|t| c.issued_at >= t) {
            report.issued_second_after_outage += 1;
        }
    }
    for (arrived, issued) in arrivals {
        if !during(arrived) {
            continue;
        }
        report.arrived_during_outage += 1;
        let waited = issued
            .and_then(|i| i.duration_since(arrived).ok())
            .unwrap_or(Duration::MAX);
        report.slowest_during_outage_s = report.slowest_during_outage_s.max(waited.as_secs_f64());
    }
    report
}
