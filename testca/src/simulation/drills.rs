//! The CA's events a simulation plays (Let's Encrypt's since 2025): a
//! mass revocation that moves renewal windows into the past, a chain
//! change for new issuance, revocations behind the client's back (CRL
//! only), a profile withdrawn. What each came to is read from the CA's
//! ledger (when each affected certificate was replaced, and whether as an
//! exempt ARI renewal) and from the renewers' events.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::Ledger;

/// The drills to play, each at a time from the simulation's start.
///
/// Example: [`simulate`](super::simulate).
#[derive(Debug, Clone, Default)]
pub struct Drills {
    /// A mass revocation (the CA's drill of 2026-03-19): at this time the
    /// CA moves this share of the live certificates' renewal windows into
    /// the past.
    pub ari: Option<(Duration, f64)>,
    /// New issuance moves to another chain (a new root) at this time.
    pub chain_change_at: Option<Duration>,
    /// At this time the CA revokes this share of the live certificates
    /// behind the client's back: in its revocation lists only.
    pub crl: Option<(Duration, f64)>,
    /// At this time the CA withdraws `tlsserver`; those specs name
    /// `classic` as their fallback.
    pub withdraw_tlsserver_at: Option<Duration>,
}

/// What the drills came to.
///
/// Example: [`simulate`](super::simulate).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DrillReport {
    /// Certificates whose windows the CA moved into the past.
    pub ari_moved: usize,
    /// Those replaced by the end.
    pub ari_replaced: usize,
    /// Those replaced as exempt ARI renewals (no rate-limit token spent).
    pub ari_replaced_exempt: usize,
    /// The longest from the drill to a moved certificate's replacement,
    /// seconds.
    pub ari_slowest_replacement_s: f64,
    /// Chain changes the renewers reported.
    pub chain_changes_reported: u64,
    /// Certificates reported more than once (goal 0).
    pub chain_changes_reported_twice: u64,
    /// Sets renewed after the chain change (each should be reported once).
    pub renewed_after_chain_change: usize,
    /// Certificates revoked behind the client's back.
    pub crl_revoked: usize,
    /// Those replaced by the end.
    pub crl_replaced: usize,
    /// The longest from the revocation to a replacement, seconds.
    pub crl_slowest_replacement_s: f64,
    /// Orders sent under the fallback profile after the withdrawal.
    pub profile_fallbacks: u64,
    /// Failed attempts after the withdrawal (goal 0 from the withdrawal
    /// itself; other faults may still fail some).
    pub failures_after_withdrawal: u64,
}

/// What the drills did and what the renewers said, as it happens.
#[derive(Debug, Default)]
pub(super) struct DrillLog {
    pub(super) ari: Option<(SystemTime, Vec<String>)>,
    pub(super) chain_change: Option<SystemTime>,
    pub(super) crl: Option<(SystemTime, Vec<String>)>,
    pub(super) withdrawn: Option<SystemTime>,
    pub(super) chain_reports: BTreeMap<String, u64>,
    pub(super) fallbacks: u64,
    pub(super) failures_after_withdrawal: u64,
}

pub(super) type SharedLog = Arc<Mutex<DrillLog>>;

/// One affected certificate's replacement: the first certificate of its
/// set issued after `at`, and whether it was ARI-exempt.
fn replacements(ledger: &Ledger, serials: &[String], at: SystemTime) -> (usize, usize, f64) {
    let (mut replaced, mut exempt, mut slowest) = (0, 0, 0.0f64);
    for serial in serials {
        let Some(old) = ledger.certificates.iter().find(|c| &c.serial == serial) else {
            continue;
        };
        let next = ledger
            .certificates
            .iter()
            .filter(|c| {
                c.identifiers == old.identifiers && c.issued_at >= at && c.serial != *serial
            })
            .min_by_key(|c| c.issued_at);
        if let Some(next) = next {
            replaced += 1;
            exempt += usize::from(next.ari_exempt);
            slowest = slowest.max(
                next.issued_at
                    .duration_since(at)
                    .unwrap_or_default()
                    .as_secs_f64(),
            );
        }
    }
    (replaced, exempt, slowest)
}

/// The figures of the drills played.
pub(super) fn report(log: &DrillLog, ledger: &Ledger) -> DrillReport {
    let mut r = DrillReport::default();
    if let Some((at, serials)) = &log.ari {
        r.ari_moved = serials.len();
        (
            r.ari_replaced,
            r.ari_replaced_exempt,
            r.ari_slowest_replacement_s,
        ) = replacements(ledger, serials, *at);
    }
    if let Some((at, serials)) = &log.crl {
        r.crl_revoked = serials.len();
        (r.crl_replaced, _, r.crl_slowest_replacement_s) = replacements(ledger, serials, *at);
    }
    if let Some(at) = log.chain_change {
        r.chain_changes_reported = log.chain_reports.values().sum();
        r.chain_changes_reported_twice =
            log.chain_reports.values().filter(|n| **n > 1).count() as u64;
        // Sets with a certificate from before the change and one after.
        let mut sets: BTreeMap<&[sturdy_acme::Identifier], (bool, bool)> = BTreeMap::new();
        for c in &ledger.certificates {
            let e = sets.entry(&c.identifiers).or_default();
            if c.issued_at < at {
                e.0 = true;
            } else {
                e.1 = true;
            }
        }
        r.renewed_after_chain_change = sets.values().filter(|(b, a)| *b && *a).count();
    }
    r.profile_fallbacks = log.fallbacks;
    r.failures_after_withdrawal = log.failures_after_withdrawal;
    r
}
