//! The CA's events a simulation plays (Let's Encrypt's since 2025): a
//! mass revocation that moves renewal windows into the past, a chain
//! change for new issuance, revocations behind the client's back (CRL
//! only), a profile withdrawn. What each came to is read from the CA's
//! ledger (when each affected certificate was replaced, and whether as an
//! exempt ARI renewal) and from the renewers' events.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::{IssuedCertificate, Ledger};
use sturdy_acme::Identifier;
use sturdy_acme::renewer::CertificateSpec;

/// The drills to play, each at a time from the simulation's start.
///
/// Example: [`simulate`](super::simulate).
#[derive(Debug, Clone, Default)]
pub struct Drills {
    /// A mass revocation (the CA's drill of 2026-03-19): at this time the
    /// CA moves this share of the live certificates' renewal windows into
    /// the past.
    pub ari: Option<(Duration, f64)>,
    /// New customers who arrive the moment the mass revocation starts
    /// (each a new certificate under one of the fleet's registered
    /// domains): their first certificates should not wait behind the
    /// replacements.
    pub new_customers_at_ari: usize,
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
    /// New customers who arrived with the drill ...
    pub new_customers: usize,
    /// ... those issued by the end ...
    pub new_customers_issued: usize,
    /// ... and the longest from their arrival to their first
    /// certificate, seconds.
    pub new_customers_slowest_issue_s: f64,
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
    pub(super) new_customers: Option<(SystemTime, Vec<String>)>,
    pub(super) chain_change: Option<SystemTime>,
    pub(super) crl: Option<(SystemTime, Vec<String>)>,
    pub(super) withdrawn: Option<SystemTime>,
    pub(super) chain_reports: BTreeMap<String, u64>,
    pub(super) fallbacks: u64,
    pub(super) failures_after_withdrawal: u64,
}

pub(super) type SharedLog = Arc<Mutex<DrillLog>>;

/// The certificates of `ledger` by identifier set, oldest first.
fn by_set(ledger: &Ledger) -> HashMap<&[Identifier], Vec<&IssuedCertificate>> {
    let mut sets: HashMap<&[Identifier], Vec<&IssuedCertificate>> = HashMap::new();
    for c in &ledger.certificates {
        sets.entry(&c.identifiers).or_default().push(c);
    }
    sets
}

/// The affected certificates' replacements (each the first certificate of
/// its set issued after `at`): how many, how many were ARI-exempt, and the
/// slowest, seconds.
fn replacements(ledger: &Ledger, serials: &[String], at: SystemTime) -> (usize, usize, f64) {
    let sets = by_set(ledger);
    let by_serial: HashMap<&str, &IssuedCertificate> = ledger
        .certificates
        .iter()
        .map(|c| (c.serial.as_str(), c))
        .collect();
    let (mut replaced, mut exempt, mut slowest) = (0, 0, 0.0f64);
    for serial in serials {
        let Some(old) = by_serial.get(serial.as_str()) else {
            continue;
        };
        let next = sets[old.identifiers.as_slice()]
            .iter()
            .filter(|c| c.issued_at >= at && c.serial != *serial)
            .min_by_key(|c| c.issued_at);
        if let Some(next) = next {
            replaced += 1;
            exempt += usize::from(next.ari_exempt);
            slowest = slowest.max(since(next.issued_at, at));
        }
    }
    (replaced, exempt, slowest)
}

fn since(t: SystemTime, at: SystemTime) -> f64 {
    t.duration_since(at).unwrap_or_default().as_secs_f64()
}

/// The specs of `n` new customers, by account: customer `j` is
/// `new{j}.cust{d}.example` under registered domain `d = j % domains`,
/// whose account is `d % accounts` (as the fleet's own certificates).
pub(super) fn new_customers(
    n: usize,
    domains: usize,
    accounts: usize,
) -> sturdy_acme::Result<Vec<Vec<CertificateSpec>>> {
    let mut by_account = vec![Vec::new(); accounts.max(1)];
    for j in 0..n {
        let d = j % domains.max(1);
        by_account[d % accounts.max(1)]
            .push(CertificateSpec::new([format!("new{j}.cust{d}.example")])?);
    }
    Ok(by_account)
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
    if let Some((at, names)) = &log.new_customers {
        r.new_customers = names.len();
        let sets = by_set(ledger);
        for name in names {
            let first = Identifier::dns(name).ok().and_then(|id| {
                sets.get([id].as_slice())
                    .and_then(|certs| certs.iter().find(|c| c.issued_at >= *at))
            });
            if let Some(c) = first {
                r.new_customers_issued += 1;
                r.new_customers_slowest_issue_s =
                    r.new_customers_slowest_issue_s.max(since(c.issued_at, *at));
            }
        }
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
