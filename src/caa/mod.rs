//! The CAA pre-flight: what the CA's CAA check will find, asked of the
//! domain's own authoritative nameservers before anything is ordered.
//!
//! For each DNS name, [`CaaChecker::check`] climbs the tree as RFC 8659 §3
//! says (the name, then each parent up to the TLD; a wildcard starts at its
//! base), asks **every** authoritative nameserver of each zone on the way
//! for the CAA RRset (CNAMEs followed), with a per-question timeout, and
//! decides with [`evaluate`] against the CA's `caaIdentities`, our account
//! URL (RFC 8657 `accounturi`) and our challenge types (RFC 8657
//! `validationmethods`). The verdict per name ([`CaaVerdict`]):
//!
//! - **allowed**, with the record that permits us (or none restricting);
//! - **forbidden**, with the record and why;
//! - **no records** anywhere on the climb;
//! - **unreachable**: which nameserver of which zone timed out or answered
//!   SERVFAIL, after how long. This is what a CA's "Rechecking CAA: query
//!   timed out" will be, found out before a newOrder, an authorization or a
//!   finalize is spent on it.
//!
//! The issuer runs it before each newOrder ([`IssuerBuilder::dns`]
//! turns it on): forbidden fails at once, unreachable is retried on the
//! CAA schedule and then surfaces as [`ErrorClass::Caa`] with
//! [`CaaCause::LookupFailed`], which the renewer backs off per identifier.
//!
//! [`IssuerBuilder::dns`]: crate::IssuerBuilder::dns
//! [`ErrorClass::Caa`]: crate::ErrorClass::Caa
//! [`CaaCause::LookupFailed`]: crate::CaaCause::LookupFailed

mod record;

use std::time::{Duration, Instant};

use hickory_proto::rr::{Name, RData, RecordType};

pub use record::{CaaContext, CaaRecord, Decision, evaluate};

use crate::dns::{self, Dns, Nameserver, Zone};
use crate::retry::Backoff;

/// How many CNAMEs one CAA lookup follows.
const MAX_CNAME_HOPS: usize = 8;

/// One question of a check, as asked of one nameserver.
///
/// Example: [`CaaChecker`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaaQuery {
    /// The name asked about.
    pub name: String,
    /// The zone it is in.
    pub zone: String,
    /// The nameserver asked.
    pub nameserver: Nameserver,
    /// How long it took to answer, or to give up.
    pub latency: Duration,
    /// What it said: `2 CAA records`, `no CAA records`, `CNAME to x`, or
    /// the error.
    pub outcome: String,
    /// Whether it answered.
    pub answered: bool,
}

/// What the CAA records of one name say.
///
/// Example: [`CaaChecker`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum CaaVerdict {
    /// This CA may issue.
    Allowed {
        /// Where the relevant records were found.
        at: String,
        /// The record permitting us; `None` when the records there restrict
        /// nothing that applies.
        record: Option<CaaRecord>,
    },
    /// This CA may not issue.
    Forbidden {
        /// Where the relevant records were found.
        at: String,
        /// The deciding record.
        record: CaaRecord,
        /// Why.
        reason: String,
    },
    /// No CAA records on the whole climb: any CA may issue.
    NoRecords,
    /// Issuer records exist, but the CA announces no CAA identity to match
    /// them against (set [`CaaChecker::ca_identities`]).
    Undetermined {
        /// Where the relevant records were found.
        at: String,
        /// The records.
        records: Vec<CaaRecord>,
    },
    /// A nameserver did not answer: the CA's check would fail the same way.
    Unreachable {
        /// The name being asked about.
        at: String,
        /// The zone, when it was found.
        zone: Option<String>,
        /// The nameserver (or resolver) that failed.
        server: String,
        /// What happened.
        error: String,
        /// After how long.
        after: Duration,
    },
}

impl CaaVerdict {
    /// Whether issuance can go ahead (allowed, no records, undetermined).
    pub fn may_issue(&self) -> bool {
        matches!(
            self,
            Self::Allowed { .. } | Self::NoRecords | Self::Undetermined { .. }
        )
    }
}

/// The check of one identifier.
///
/// Example: [`CaaChecker`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaaReport {
    /// The identifier as given (`*.example.com` for a wildcard).
    pub name: String,
    /// The verdict.
    pub verdict: CaaVerdict,
    /// Every question asked, in order.
    pub queries: Vec<CaaQuery>,
}

impl CaaReport {
    /// One line: the name, the verdict and its evidence.
    pub fn summary(&self) -> String {
        match &self.verdict {
            CaaVerdict::Allowed {
                at,
                record: Some(r),
            } => format!("{}: allowed by {r} at {at}", self.name),
            CaaVerdict::Allowed { at, record: None } => {
                format!(
                    "{}: allowed (the CAA records at {at} restrict nothing here)",
                    self.name
                )
            }
            CaaVerdict::Forbidden { at, record, reason } => {
                format!("{}: forbidden by {record} at {at}: {reason}", self.name)
            }
            CaaVerdict::NoRecords => format!("{}: no CAA records (any CA may issue)", self.name),
            CaaVerdict::Undetermined { at, records } => format!(
                "{}: undetermined: {} issuer record(s) at {at} and no CAA identity for this CA",
                self.name,
                records.len()
            ),
            CaaVerdict::Unreachable {
                at,
                zone,
                server,
                error,
                after,
            } => format!(
                "{}: unreachable: {server}{} did not answer for {at} after {:.1} s: {error}",
                self.name,
                zone.as_deref()
                    .map(|z| format!(" of zone {z}"))
                    .unwrap_or_default(),
                after.as_secs_f64()
            ),
        }
    }
}

/// Runs CAA pre-flight checks. See the [module docs](self).
///
/// # Example
///
/// ```no_run
/// # async fn f() -> Result<(), sturdy_acme::dns::DnsError> {
/// use sturdy_acme::caa::{CaaChecker, CaaContext};
/// use sturdy_acme::dns::{Dns, DnsConfig};
///
/// let checker = CaaChecker::new(Dns::new(DnsConfig::system()?));
/// let ctx = CaaContext {
///     ca_identities: vec!["letsencrypt.org".into()],
///     account_uri: None,
///     validation_methods: vec!["dns-01".into()],
/// };
/// for report in checker.check(&["example.com", "*.example.com"], &ctx).await {
///     println!("{}", report.summary());
///     for q in &report.queries {
///         println!("  {} {} {:?} {}", q.nameserver, q.name, q.latency, q.outcome);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CaaChecker {
    dns: Dns,
    timeout: Duration,
    identities: Option<Vec<String>>,
    retry: Backoff,
}

impl CaaChecker {
    /// A checker asking through `dns`, each question within the DNS
    /// configuration's timeout, retried (in the issuer) on the default CAA
    /// schedule (30 s, 2 min, 8 min within 15 minutes).
    pub fn new(dns: Dns) -> Self {
        Self {
            timeout: dns.config().timeout(),
            dns,
            identities: None,
            retry: crate::RetryPolicy::default().caa(),
        }
    }

    /// The deadline of each CAA question to a nameserver.
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The CA's CAA identities, instead of the directory's `caaIdentities`
    /// (for CAs that announce none, Pebble among them).
    pub fn ca_identities(mut self, identities: Vec<String>) -> Self {
        self.identities = Some(identities);
        self
    }

    /// How the issuer retries an unreachable verdict before giving up.
    pub fn retry(mut self, backoff: Backoff) -> Self {
        self.retry = backoff;
        self
    }

    pub(crate) fn retry_backoff(&self) -> &Backoff {
        &self.retry
    }

    pub(crate) fn identities_override(&self) -> Option<&[String]> {
        self.identities.as_deref()
    }

    /// Checks each name (DNS names; `*.` for wildcards) side by side.
    pub async fn check<N: AsRef<str>>(&self, names: &[N], ctx: &CaaContext) -> Vec<CaaReport> {
        let mut ctx = ctx.clone();
        if let Some(ids) = &self.identities {
            ctx.ca_identities = ids.clone();
        }
        for id in &mut ctx.ca_identities {
            *id = id.to_ascii_lowercase();
        }
        let ctx = &ctx;
        futures_util::future::join_all(names.iter().map(|n| self.check_one(n.as_ref(), ctx))).await
    }

    async fn check_one(&self, name: &str, ctx: &CaaContext) -> CaaReport {
        let wildcard = name.starts_with("*.");
        let base = name.trim_start_matches("*.");
        let mut queries = Vec::new();
        let verdict = match dns::parse_name(base) {
            Ok(start) => self.climb(&start, wildcard, ctx, &mut queries).await,
            Err(e) => CaaVerdict::Unreachable {
                at: base.to_owned(),
                zone: None,
                server: "-".into(),
                error: e.to_string(),
                after: Duration::ZERO,
            },
        };
        CaaReport {
            name: name.to_owned(),
            verdict,
            queries,
        }
    }

    /// RFC 8659 §3: the name, then its parents up to the TLD.
    async fn climb(
        &self,
        start: &Name,
        wildcard: bool,
        ctx: &CaaContext,
        queries: &mut Vec<CaaQuery>,
    ) -> CaaVerdict {
        let mut current = start.clone();
        let mut zone: Option<Zone> = None;
        loop {
            let at = dns::display_name(&current);
            let records = match self.rrset(&current, &mut zone, queries).await {
                Ok(records) => records,
                Err(unreachable) => return unreachable,
            };
            if !records.is_empty() {
                return match evaluate(&records, wildcard, ctx) {
                    Decision::Permitted { record } => CaaVerdict::Allowed {
                        at,
                        record: Some(record),
                    },
                    Decision::Unrestricted => CaaVerdict::Allowed { at, record: None },
                    Decision::Forbidden { record, reason } => {
                        CaaVerdict::Forbidden { at, record, reason }
                    }
                    Decision::Undetermined { records } => CaaVerdict::Undetermined { at, records },
                };
            }
            if current.num_labels() <= 1 {
                return CaaVerdict::NoRecords;
            }
            current = current.base_name();
        }
    }

    /// The CAA RRset of `name`, CNAMEs followed, as every authoritative
    /// nameserver of its zone serves it. `zone` caches the climb's zone.
    async fn rrset(
        &self,
        name: &Name,
        zone: &mut Option<Zone>,
        queries: &mut Vec<CaaQuery>,
    ) -> Result<Vec<CaaRecord>, CaaVerdict> {
        let at = dns::display_name(name);
        let mut target = name.clone();
        for hop in 0..MAX_CNAME_HOPS {
            let cached = zone.as_ref().filter(|z| {
                hop == 0 && dns::parse_name(&z.apex).is_ok_and(|apex| apex.zone_of(&target))
            });
            let this_zone = match cached {
                Some(z) => z.clone(),
                None => {
                    let started = Instant::now();
                    let found = self.dns.zone_of_name(&target).await.map_err(|e| {
                        CaaVerdict::Unreachable {
                            at: at.clone(),
                            zone: None,
                            server: format!(
                                "resolver {}",
                                self.dns
                                    .config()
                                    .resolvers()
                                    .iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            error: format!("finding the zone: {e}"),
                            after: started.elapsed(),
                        }
                    })?;
                    if hop == 0 {
                        *zone = Some(found.clone());
                    }
                    found
                }
            };
            let target_text = dns::display_name(&target);
            let asked = futures_util::future::join_all(this_zone.nameservers.iter().map(|ns| {
                let target = target.clone();
                async move {
                    let started = Instant::now();
                    let answer = self
                        .dns
                        .ask(ns.addr, &target, RecordType::CAA, false, self.timeout)
                        .await;
                    (ns, answer, started.elapsed())
                }
            }))
            .await;
            let mut first = None;
            let mut failure = None;
            for (ns, answer, latency) in asked {
                let (outcome, answered) = match &answer {
                    Ok(a) => {
                        let records = caa_records(a, &target);
                        match (records.len(), a.cname(&target)) {
                            (0, Some(cname)) => {
                                (format!("CNAME to {}", dns::display_name(&cname)), true)
                            }
                            (0, None) => ("no CAA records".to_owned(), true),
                            (n, _) => (format!("{n} CAA record(s)"), true),
                        }
                    }
                    Err(e) => (e.to_string(), false),
                };
                queries.push(CaaQuery {
                    name: target_text.clone(),
                    zone: this_zone.apex.clone(),
                    nameserver: ns.clone(),
                    latency,
                    outcome: outcome.clone(),
                    answered,
                });
                match answer {
                    Ok(a) => {
                        first.get_or_insert(a);
                    }
                    Err(e) => {
                        failure.get_or_insert(CaaVerdict::Unreachable {
                            at: target_text.clone(),
                            zone: Some(this_zone.apex.clone()),
                            server: ns.to_string(),
                            error: e.to_string(),
                            after: latency,
                        });
                    }
                }
            }
            // Any nameserver failing is enough: the CA's resolver may ask
            // that one.
            if let Some(failure) = failure {
                return Err(failure);
            }
            let Some(answer) = first else {
                return Err(CaaVerdict::Unreachable {
                    at,
                    zone: Some(this_zone.apex.clone()),
                    server: "-".into(),
                    error: "the zone lists no nameserver with an address".into(),
                    after: Duration::ZERO,
                });
            };
            let records = caa_records(&answer, &target);
            if !records.is_empty() {
                return Ok(records);
            }
            match answer.cname(&target) {
                Some(cname) => {
                    // The server may have chased it already.
                    let chased = caa_records(&answer, &cname);
                    if !chased.is_empty() {
                        return Ok(chased);
                    }
                    target = cname;
                }
                None => return Ok(Vec::new()),
            }
        }
        Err(CaaVerdict::Unreachable {
            at,
            zone: None,
            server: "-".into(),
            error: format!("CNAME chain longer than {MAX_CNAME_HOPS}"),
            after: Duration::ZERO,
        })
    }
}

fn caa_records(answer: &dns::Answer, name: &Name) -> Vec<CaaRecord> {
    answer
        .records(name, RecordType::CAA)
        .filter_map(|d| match d {
            RData::CAA(caa) => Some(CaaRecord::new(
                caa.flags(),
                &caa.tag,
                &String::from_utf8_lossy(&caa.value),
            )),
            _ => None,
        })
        .collect()
}
