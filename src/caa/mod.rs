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
//!   finalize is spent on it;
//! - **inconsistent**: the zone's nameservers serve different CAA records
//!   (a secondary that has not transferred yet), so the CA may see either;
//! - **failed**: a lookup that asking again soon will not fix (a CNAME
//!   loop, no zone, a lame nameserver answering without authority).
//!
//! A nameserver counts by its name: it has answered when one of its
//! addresses has (an IPv6 address a host cannot route to does not make an
//! answering nameserver unreachable), and every answering address must
//! serve the same records.
//!
//! The issuer runs it before each newOrder ([`IssuerBuilder::dns`]
//! turns it on): forbidden and failed stop at once; unreachable and
//! inconsistent are retried on the CAA schedule and then surface as
//! [`ErrorClass::Caa`] with [`CaaCause::LookupFailed`], which the renewer
//! backs off per identifier.
//!
//! [`IssuerBuilder::dns`]: crate::IssuerBuilder::dns
//! [`ErrorClass::Caa`]: crate::ErrorClass::Caa
//! [`CaaCause::LookupFailed`]: crate::CaaCause::LookupFailed
//!
//! (Over 800 lines: the checker is under 700; the rest are its tests, which
//! answer each RFC 8659 case from a real zone and stay beside the walk.)

mod record;
mod settle;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hickory_proto::rr::{Name, RData, RecordType};

pub use record::{CaaContext, CaaRecord, Decision, evaluate, permitted_methods};

use crate::dns::{self, DanglingNameserver, Dns, Nameserver, Zone};
use crate::retry::Backoff;

/// How many CNAMEs one CAA lookup follows.
const MAX_CNAME_HOPS: usize = 8;

/// One question of a check, as asked of one nameserver.
///
/// Example: [`CaaChecker`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
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
    /// The zone's authoritative nameservers serve different CAA records
    /// for the name (a secondary that has not transferred the zone yet):
    /// the CA may ask either, so this is asked again later.
    Inconsistent {
        /// The name being asked about.
        at: String,
        /// The zone.
        zone: String,
        /// What each nameserver serves (`ns1 (addr): 0 issue "ca"`).
        answers: Vec<String>,
    },
    /// The lookup failed in a way asking again soon will not fix: a CNAME
    /// loop, no zone found, an invalid name, a nameserver that refuses or
    /// answers without authority (a lame delegation).
    Failed {
        /// The name being asked about.
        at: String,
        /// The zone, when it was found.
        zone: Option<String>,
        /// The nameserver (or resolver) concerned, `-` when none.
        server: String,
        /// What happened.
        error: String,
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

    /// Whether asking again later may change the verdict (unreachable,
    /// inconsistent): the issuer retries these on the CAA schedule.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Inconsistent { .. })
    }
}

/// The check of one identifier.
///
/// Example: [`CaaChecker`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CaaReport {
    /// The identifier as given (`*.example.com` for a wildcard).
    pub name: String,
    /// The verdict.
    pub verdict: CaaVerdict,
    /// The validation methods of the [`CaaContext`] the verdict leaves us
    /// (RFC 8657 `validationmethods` may narrow them), in the context's
    /// order; empty when the verdict does not allow issuance.
    pub methods: Vec<String>,
    /// Every question asked, in order.
    pub queries: Vec<CaaQuery>,
    /// Nameservers of the zones on the climb that resolve to no address
    /// (dangling NS records): not asked, as a CA's resolver skips them.
    /// The verdict stands on the others.
    pub dangling: Vec<DanglingNameserver>,
}

impl CaaReport {
    /// One line: the name, the verdict and its evidence, and the dangling
    /// nameservers skipped.
    pub fn summary(&self) -> String {
        let verdict = self.verdict_summary();
        if self.dangling.is_empty() {
            return verdict;
        }
        let skipped: Vec<String> = self.dangling.iter().map(ToString::to_string).collect();
        format!(
            "{verdict} (skipped, as a CA's resolver does, nameserver(s) without an address: {})",
            skipped.join("; ")
        )
    }

    fn verdict_summary(&self) -> String {
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
            CaaVerdict::Inconsistent { at, zone, answers } => format!(
                "{}: inconsistent: the nameservers of zone {zone} serve different CAA records for {at}: {}",
                self.name,
                answers.join("; ")
            ),
            CaaVerdict::Failed {
                at,
                zone,
                server,
                error,
            } => format!(
                "{}: failed: {server}{} for {at}: {error}",
                self.name,
                zone.as_deref()
                    .map(|z| format!(" of zone {z}"))
                    .unwrap_or_default(),
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
        let mut each = self.check_each(names, std::slice::from_ref(&ctx)).await;
        each.pop().unwrap_or_default()
    }

    /// Checks each name for several CAs at once: the records are read once
    /// (one climb per name, at every authoritative nameserver) and judged
    /// for each context. The result has one list of reports per context,
    /// in the order of `contexts`, each list in the order of `names`; the
    /// reports of one name share their questions. Each context's CA
    /// identities stand ([`CaaChecker::ca_identities`] is for
    /// [`CaaChecker::check`]'s one CA).
    pub async fn check_each<N: AsRef<str>>(
        &self,
        names: &[N],
        contexts: &[CaaContext],
    ) -> Vec<Vec<CaaReport>> {
        let contexts: Vec<CaaContext> = contexts
            .iter()
            .map(|ctx| {
                let mut ctx = ctx.clone();
                for id in &mut ctx.ca_identities {
                    *id = id.to_ascii_lowercase();
                }
                ctx
            })
            .collect();
        let contexts = &contexts;
        let per_name: Vec<Vec<CaaReport>> = futures_util::future::join_all(
            names.iter().map(|n| self.check_one(n.as_ref(), contexts)),
        )
        .await;
        (0..contexts.len())
            .map(|c| per_name.iter().map(|reports| reports[c].clone()).collect())
            .collect()
    }

    /// One name, judged for each context.
    async fn check_one(&self, name: &str, contexts: &[CaaContext]) -> Vec<CaaReport> {
        let wildcard = name.starts_with("*.");
        let base = name.trim_start_matches("*.");
        let mut queries = Vec::new();
        let mut dangling = Vec::new();
        let found = match dns::parse_name(base) {
            Ok(start) => self.climb(&start, &mut queries, &mut dangling).await,
            Err(e) => Found::Failed(CaaVerdict::Failed {
                at: base.to_owned(),
                zone: None,
                server: "-".into(),
                error: e.to_string(),
            }),
        };
        contexts
            .iter()
            .map(|ctx| {
                let (verdict, methods) = found.judge(wildcard, ctx);
                CaaReport {
                    name: name.to_owned(),
                    verdict,
                    methods,
                    queries: queries.clone(),
                    dangling: dangling.clone(),
                }
            })
            .collect()
    }

    /// RFC 8659 §3: the name, then its parents up to the TLD, until a
    /// non-empty CAA RRset (the relevant one, whoever asks).
    async fn climb(
        &self,
        start: &Name,
        queries: &mut Vec<CaaQuery>,
        dangling: &mut Vec<DanglingNameserver>,
    ) -> Found {
        let mut current = start.clone();
        let mut zone: Option<Zone> = None;
        loop {
            let at = dns::display_name(&current);
            let records = match self.rrset(&current, &mut zone, queries, dangling).await {
                Ok(records) => records,
                Err(failed) => return Found::Failed(failed),
            };
            if !records.is_empty() {
                return Found::Records { at, records };
            }
            if current.num_labels() <= 1 {
                return Found::Nothing;
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
        dangling: &mut Vec<DanglingNameserver>,
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
                        let server = format!(
                            "resolver {}",
                            self.dns
                                .config()
                                .resolvers()
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        let error = format!("finding the zone: {e}");
                        if e.is_transient() {
                            CaaVerdict::Unreachable {
                                at: at.clone(),
                                zone: None,
                                server,
                                error,
                                after: started.elapsed(),
                            }
                        } else {
                            CaaVerdict::Failed {
                                at: at.clone(),
                                zone: None,
                                server,
                                error,
                            }
                        }
                    })?;
                    for d in &found.dangling {
                        if !dangling.contains(d) {
                            dangling.push(d.clone());
                        }
                    }
                    if hop == 0 {
                        *zone = Some(found.clone());
                    }
                    found
                }
            };
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
            let (records, cname) = decide(&target, &this_zone, asked, queries)?;
            if !records.is_empty() {
                return Ok(records);
            }
            match cname {
                Some(cname) => target = cname,
                None => return Ok(Vec::new()),
            }
        }
        Err(CaaVerdict::Failed {
            at,
            zone: None,
            server: "-".into(),
            error: format!("CNAME chain longer than {MAX_CNAME_HOPS}"),
        })
    }
}

/// What one address of a nameserver said, for [`decide`].
enum Said {
    /// An authoritative answer: the records (CNAME chased when the server
    /// did), sorted, and the CNAME, if any.
    Served(Vec<CaaRecord>, Option<Name>),
    /// No usable answer; `transient` when asking again may get one.
    Failed {
        transient: bool,
        error: String,
        latency: Duration,
    },
}

/// The zone's answer for `target` from what each nameserver address said
/// (`asked`), each question recorded in `queries`: the records and the
/// CNAME every answering nameserver agrees on, or the verdict that stops
/// the climb. A nameserver counts by name (answered when one of its
/// addresses did); any nameserver failing stops the climb, since the CA's
/// resolver may ask that one (in a public suffix's zone one answering is
/// enough); answering addresses must agree.
fn decide(
    target: &Name,
    zone: &Zone,
    asked: Vec<(&Nameserver, Result<dns::Answer, dns::DnsError>, Duration)>,
    queries: &mut Vec<CaaQuery>,
) -> Result<(Vec<CaaRecord>, Option<Name>), CaaVerdict> {
    let target_text = dns::display_name(target);
    let target_text = target_text.as_str();
    let mut by_name: BTreeMap<&str, Vec<(&Nameserver, Said)>> = BTreeMap::new();
    for (ns, answer, latency) in asked {
        let said = match &answer {
            Ok(a) if a.authoritative => {
                let mut records = caa_records(a, target);
                let cname = a.cname(target);
                if records.is_empty()
                    && let Some(cname) = &cname
                {
                    // The server may have chased it already.
                    records = caa_records(a, cname);
                }
                records.sort_by(|x, y| (x.flags, &x.tag, &x.value).cmp(&(y.flags, &y.tag, &y.value)));
                Said::Served(records, cname)
            }
            Ok(_) => Said::Failed {
                transient: false,
                error: "answered without authority (AA bit clear): not a nameserver of this zone (a lame delegation?)".into(),
                latency,
            },
            Err(e) => Said::Failed {
                transient: e.is_transient(),
                error: e.to_string(),
                latency,
            },
        };
        let (outcome, answered) = match &said {
            Said::Served(records, cname) => (served_text(records, cname.as_ref(), false), true),
            Said::Failed { error, .. } => (error.clone(), false),
        };
        queries.push(CaaQuery {
            name: target_text.to_owned(),
            zone: zone.apex.clone(),
            nameserver: ns.clone(),
            latency,
            outcome,
            answered,
        });
        by_name
            .entry(ns.name.as_str())
            .or_default()
            .push((ns, said));
    }
    if by_name.is_empty() {
        return Err(CaaVerdict::Failed {
            at: target_text.to_owned(),
            zone: Some(zone.apex.clone()),
            server: "-".into(),
            error: "the zone lists no nameserver with an address".into(),
        });
    }
    let mut transient = None;
    let mut permanent = None;
    let mut served: Vec<(&Nameserver, &Vec<CaaRecord>, &Option<Name>)> = Vec::new();
    for said in by_name.values() {
        let answered: Vec<_> = said
            .iter()
            .filter_map(|(ns, s)| match s {
                Said::Served(records, cname) => Some((*ns, records, cname)),
                Said::Failed { .. } => None,
            })
            .collect();
        if !answered.is_empty() {
            served.extend(answered);
            continue;
        }
        for (ns, s) in said {
            if let Said::Failed {
                transient: is_transient,
                error,
                latency,
            } = s
            {
                if *is_transient {
                    transient.get_or_insert(CaaVerdict::Unreachable {
                        at: target_text.to_owned(),
                        zone: Some(zone.apex.clone()),
                        server: ns.to_string(),
                        error: error.clone(),
                        after: *latency,
                    });
                } else {
                    permanent.get_or_insert(CaaVerdict::Failed {
                        at: target_text.to_owned(),
                        zone: Some(zone.apex.clone()),
                        server: ns.to_string(),
                        error: error.clone(),
                    });
                }
            }
        }
    }
    // A registry's zone (a public suffix: `com`, `co.uk`) is served by many
    // anycast servers and a CA's resolver moves on to the next: one of them
    // answering is enough there. A customer's zone is held to every one.
    let public_suffix = psl::suffix_str(&zone.apex) == Some(zone.apex.as_str());
    let failed = transient.or(permanent);
    if let Some(verdict) = failed.filter(|_| !public_suffix || served.is_empty()) {
        return Err(verdict);
    }
    let (_, records, cname) = served[0];
    if served.iter().any(|(_, r, c)| *r != records || *c != cname) {
        return Err(CaaVerdict::Inconsistent {
            at: target_text.to_owned(),
            zone: zone.apex.clone(),
            answers: served
                .iter()
                .map(|(ns, records, cname)| {
                    format!("{ns}: {}", served_text(records, cname.as_ref(), true))
                })
                .collect(),
        });
    }
    Ok((records.clone(), cname.clone()))
}

/// An authoritative answer in words: `CNAME to x`, `no CAA records`, or
/// the records (in full when `full`, else their count).
fn served_text(records: &[CaaRecord], cname: Option<&Name>, full: bool) -> String {
    match (records.is_empty(), cname) {
        (true, Some(c)) => format!("CNAME to {}", dns::display_name(c)),
        (true, None) => "no CAA records".to_owned(),
        (false, _) if full => records
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        (false, _) => format!("{} CAA record(s)", records.len()),
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

/// What a climb found, before anyone's records are judged.
enum Found {
    /// The relevant RRset and where.
    Records { at: String, records: Vec<CaaRecord> },
    /// No CAA records up to the TLD.
    Nothing,
    /// The lookup failed (its verdict is the same for every CA).
    Failed(CaaVerdict),
}

impl Found {
    /// The verdict for one CA, and the validation methods it leaves.
    fn judge(&self, wildcard: bool, ctx: &CaaContext) -> (CaaVerdict, Vec<String>) {
        match self {
            Self::Failed(verdict) => (verdict.clone(), Vec::new()),
            Self::Nothing => (CaaVerdict::NoRecords, ctx.validation_methods.clone()),
            Self::Records { at, records } => {
                let at = at.clone();
                let verdict = match evaluate(records, wildcard, ctx) {
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
                let methods = if verdict.may_issue() {
                    permitted_methods(records, wildcard, ctx)
                } else {
                    Vec::new()
                };
                (verdict, methods)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::CAA;

    use super::*;
    use crate::dns::{Answer, DnsError};

    fn ns(name: &str, addr: &str) -> Nameserver {
        Nameserver {
            name: name.into(),
            addr: addr.parse().unwrap(),
        }
    }

    fn zone(apex: &str, nameservers: Vec<Nameserver>) -> Zone {
        Zone {
            apex: apex.into(),
            primary: nameservers[0].name.clone(),
            nameservers,
            dangling: Vec::new(),
        }
    }

    fn served(target: &Name, issuer: Option<&str>, authoritative: bool) -> Answer {
        Answer {
            rcode: ResponseCode::NoError,
            authoritative,
            answers: issuer
                .map(|i| {
                    Record::from_rdata(
                        target.clone(),
                        60,
                        RData::CAA(CAA::new_issue(
                            false,
                            Some(dns::parse_name(i).unwrap()),
                            vec![],
                        )),
                    )
                })
                .into_iter()
                .collect(),
            authorities: vec![],
            additionals: vec![],
            latency: Duration::ZERO,
        }
    }

    fn timeout(addr: &str) -> DnsError {
        DnsError::Timeout {
            server: addr.parse::<SocketAddr>().unwrap(),
            query: "CAA x".into(),
            after: Duration::from_secs(2),
        }
    }

    fn unroutable(addr: &str) -> DnsError {
        DnsError::Io {
            server: addr.parse::<SocketAddr>().unwrap(),
            query: "CAA x".into(),
            source: std::io::Error::from(std::io::ErrorKind::NetworkUnreachable),
        }
    }

    #[test]
    fn a_nameserver_counts_by_name() {
        let target = dns::parse_name("www.example.com").unwrap();
        let v4 = ns("ns1.example.net", "192.0.2.1:53");
        let v6 = ns("ns1.example.net", "[2001:db8::1]:53");
        let z = zone("example.com", vec![v4.clone(), v6.clone()]);
        let mut queries = Vec::new();
        // The IPv6 address cannot be reached from here; the IPv4 one answers.
        let (records, _) = decide(
            &target,
            &z,
            vec![
                (
                    &v4,
                    Ok(served(&target, Some("ca.example"), true)),
                    Duration::ZERO,
                ),
                (&v6, Err(unroutable("[2001:db8::1]:53")), Duration::ZERO),
            ],
            &mut queries,
        )
        .unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(queries.len(), 2);
        assert!(queries[0].answered && !queries[1].answered);
    }

    /// What [`decide`] makes of `name` in zone `apex`, served by
    /// ns1.example.net (192.0.2.1) and ns2.example.net (192.0.2.2), from
    /// what each said (given the name's parsed form).
    fn two_say(
        name: &str,
        apex: &str,
        ns1: impl FnOnce(&Name) -> Result<Answer, DnsError>,
        ns2: impl FnOnce(&Name) -> Result<Answer, DnsError>,
    ) -> Result<(Vec<CaaRecord>, Option<Name>), CaaVerdict> {
        let target = dns::parse_name(name).unwrap();
        let a = ns("ns1.example.net", "192.0.2.1:53");
        let b = ns("ns2.example.net", "192.0.2.2:53");
        let z = zone(apex, vec![a.clone(), b.clone()]);
        let asked = vec![
            (&a, ns1(&target), Duration::ZERO),
            (&b, ns2(&target), Duration::from_secs(2)),
        ];
        decide(&target, &z, asked, &mut Vec::new())
    }

    #[test]
    fn every_nameserver_of_a_customer_zone_must_answer() {
        let verdict = two_say(
            "www.example.com",
            "example.com",
            |t| Ok(served(t, None, true)),
            |_| Err(timeout("192.0.2.2:53")),
        )
        .unwrap_err();
        assert!(
            matches!(&verdict, CaaVerdict::Unreachable { server, .. } if server.contains("ns2.example.net")),
            "{verdict:?}"
        );
        // In a public suffix's zone, one answering is enough.
        let (records, cname) = two_say(
            "com",
            "com",
            |t| Ok(served(t, None, true)),
            |_| Err(timeout("192.0.2.2:53")),
        )
        .unwrap();
        assert!(records.is_empty() && cname.is_none());
    }

    #[test]
    fn lame_and_disagreeing_nameservers() {
        // Without the AA bit: not an answer from this zone's server.
        let verdict = two_say(
            "www.example.com",
            "example.com",
            |t| Ok(served(t, None, true)),
            |t| Ok(served(t, None, false)),
        )
        .unwrap_err();
        assert!(
            matches!(&verdict, CaaVerdict::Failed { error, .. } if error.contains("authority")),
            "{verdict:?}"
        );
        assert!(!verdict.is_transient());
        // Two authoritative answers that differ.
        let verdict = two_say(
            "www.example.com",
            "example.com",
            |t| Ok(served(t, Some("ca.example"), true)),
            |t| Ok(served(t, None, true)),
        )
        .unwrap_err();
        let CaaVerdict::Inconsistent { answers, .. } = &verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(answers.len(), 2);
        assert!(verdict.is_transient());
    }
}
