//! dns-01 through DNS UPDATE (RFC 2136), signed with TSIG (RFC 8945).
//!
//! [`Rfc2136Solver::present`]:
//! 1. follows a CNAME at `_acme-challenge.<name>` to the name that really
//!    holds the record (customers delegate `_acme-challenge` into a zone the
//!    CDN controls);
//! 2. finds that name's zone (the closest SOA) and its authoritative
//!    nameservers;
//! 3. sends the zone's primary an UPDATE that *adds* one TXT record (an
//!    RRset may hold several values: a wildcard and its apex share one
//!    name, and concurrent orders share zones);
//! 4. waits, polling with backoff, until **every** authoritative
//!    nameserver serves the value, so the CA never asks one that lags;
//!    after [`Rfc2136Config::propagation_timeout`] it fails with
//!    [`DnsError::NotPropagated`], naming the laggards.
//!
//! [`Rfc2136Solver::cleanup`] deletes exactly that record (by value), never
//! the RRset, so another order's value at the same name stays.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::update_message::UpdateMessage;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::{ChallengeAnswer, Solver, SolverFuture};
use crate::dns::{self, Dns, DnsError, Nameserver, TsigKey, Zone};
use crate::error::Error;
use crate::protocol::ChallengeType;

/// The shortest pause between two propagation polls.
const MIN_POLL: Duration = Duration::from_millis(10);

/// How an [`Rfc2136Solver`] updates and checks DNS.
///
/// Example: [`Rfc2136Solver`].
#[derive(Debug, Clone)]
pub struct Rfc2136Config {
    server: SocketAddr,
    key: Option<TsigKey>,
    ttl: u32,
    propagation_timeout: Duration,
    poll_first: Duration,
    poll_max: Duration,
}

impl Rfc2136Config {
    /// UPDATEs go to `server` (the primary that accepts them) signed with
    /// `key`; TTL 60 s, propagation waited for up to 2 minutes, polled from
    /// 250 ms doubling to 5 s.
    pub fn new(server: SocketAddr, key: Option<TsigKey>) -> Self {
        Self {
            server,
            key,
            ttl: 60,
            propagation_timeout: Duration::from_secs(120),
            poll_first: Duration::from_millis(250),
            poll_max: Duration::from_secs(5),
        }
    }

    /// The TXT record's TTL.
    pub fn ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long to wait for every nameserver to serve the value.
    pub fn propagation_timeout(mut self, timeout: Duration) -> Self {
        self.propagation_timeout = timeout;
        self
    }

    /// The first poll interval, doubled after each round up to `max`.
    pub fn poll_interval(mut self, first: Duration, max: Duration) -> Self {
        self.poll_first = first;
        self.poll_max = max.max(first);
        self
    }
}

/// Where one presented value went.
#[derive(Debug, Clone)]
struct Published {
    record: Name,
    zone: Name,
}

/// dns-01 by RFC 2136 dynamic update. See the [module docs](self).
///
/// # Example
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use sturdy_acme::dns::{Dns, DnsConfig, TsigKey};
/// use sturdy_acme::solver::dns01::{Rfc2136Config, Rfc2136Solver};
/// use sturdy_acme::solver::Solver;
///
/// let key: TsigKey = "acme-update.:hmac-sha256:c2VjcmV0LXNlY3JldC1zZWNyZXQ=".parse()?;
/// let dns = Dns::new(DnsConfig::system()?);
/// let solver = Rfc2136Solver::new(dns, Rfc2136Config::new("192.0.2.53:53".parse()?, Some(key)));
/// let solver: Arc<dyn Solver> = Arc::new(solver);
/// // IssuerBuilder::solver(solver) ...
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Rfc2136Solver {
    dns: Dns,
    config: Rfc2136Config,
    /// (record name as asked, value) -> where it was written, for cleanup.
    published: Mutex<HashMap<(String, String), Published>>,
}

impl Rfc2136Solver {
    /// A solver asking `dns` to discover zones and nameservers.
    pub fn new(dns: Dns, config: Rfc2136Config) -> Self {
        Self {
            dns,
            config,
            published: Mutex::new(HashMap::new()),
        }
    }

    /// Adds `value` at `name` (after its CNAMEs) and waits until every
    /// authoritative nameserver serves it. Returns the zone written. A
    /// name of the zone's NS set that resolves to no address is not waited
    /// for ([`Zone::dangling`]), as a CA's resolver does not ask it.
    pub async fn publish(&self, name: &str, value: &str) -> std::result::Result<Zone, DnsError> {
        let asked = dns::parse_name(name)?;
        let record = self.dns.follow_cname_name(&asked).await?;
        let zone = self.dns.zone_of_name(&record).await?;
        let apex = dns::parse_name(&zone.apex)?;
        let started = Instant::now();
        self.update(&apex, &record, value, Change::Add).await?;
        self.remember(name, value, &record, &apex);
        tracing::info!(
            target: "sturdy_acme::dns",
            record = %dns::display_name(&record), zone = %zone.apex,
            nameservers = zone.nameservers.len(),
            dangling = ?zone.dangling.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            "dns-01 TXT record added"
        );
        self.wait_served(&zone, &record, value).await?;
        tracing::info!(
            target: "sturdy_acme::dns",
            record = %dns::display_name(&record),
            waited_ms = started.elapsed().as_millis() as u64,
            "dns-01 TXT record served by every nameserver"
        );
        Ok(zone)
    }

    /// Deletes `value` at `name` (the record [`publish`](Self::publish)
    /// wrote; found again through DNS when this solver did not write it).
    pub async fn unpublish(&self, name: &str, value: &str) -> std::result::Result<(), DnsError> {
        let known = self
            .published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(normalize(name), value.to_owned()))
            .cloned();
        let target = match known {
            Some(p) => p,
            None => {
                let record = self.dns.follow_cname_name(&dns::parse_name(name)?).await?;
                let zone = self.dns.zone_of_name(&record).await?;
                Published {
                    record,
                    zone: dns::parse_name(&zone.apex)?,
                }
            }
        };
        self.update(&target.zone, &target.record, value, Change::Delete)
            .await?;
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(normalize(name), value.to_owned()));
        tracing::info!(
            target: "sturdy_acme::dns",
            record = %dns::display_name(&target.record), "dns-01 TXT record deleted"
        );
        Ok(())
    }

    fn remember(&self, name: &str, value: &str, record: &Name, zone: &Name) {
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                (normalize(name), value.to_owned()),
                Published {
                    record: record.clone(),
                    zone: zone.clone(),
                },
            );
    }

    /// One signed UPDATE adding or deleting one TXT record.
    async fn update(
        &self,
        zone: &Name,
        record: &Name,
        value: &str,
        change: Change,
    ) -> std::result::Result<(), DnsError> {
        let server = self.config.server;
        let what = format!(
            "UPDATE {} TXT in {}",
            match change {
                Change::Add => "add",
                Change::Delete => "delete",
            },
            dns::display_name(zone)
        );
        let mut message = Message::new(dns::random_id(), MessageType::Query, OpCode::Update);
        message.metadata.recursion_desired = false;
        let mut zone_query = Query::query(zone.clone(), RecordType::SOA);
        zone_query.set_query_class(DNSClass::IN);
        message.add_zone(zone_query);
        let txt = RData::TXT(TXT::new(split_txt(value)));
        let mut rr = Record::from_rdata(record.clone(), self.config.ttl, txt);
        if change == Change::Delete {
            // RFC 2136 §2.5.4: delete an RR from an RRset: class NONE, TTL 0.
            rr.dns_class = DNSClass::NONE;
            rr.ttl = 0;
        }
        message.add_update(rr);
        let mut verifier = match &self.config.key {
            Some(key) => {
                let signer = key.signer()?;
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                message.finalize(&signer, now).map_err(|e| DnsError::Tsig {
                    server,
                    reason: format!("signing: {e}"),
                })?
            }
            None => None,
        };
        let bytes = message.to_vec().map_err(|e| DnsError::InvalidName {
            name: dns::display_name(record),
            reason: e.to_string(),
        })?;
        let raw = self
            .dns
            .exchange(
                server,
                &bytes,
                message.metadata.id,
                self.dns.config().timeout(),
                &what,
            )
            .await?;
        let response = Message::from_vec(&raw.bytes).map_err(|e| DnsError::Malformed {
            server,
            query: what.clone(),
            reason: e.to_string(),
        })?;
        let rcode = response.metadata.response_code;
        if rcode != ResponseCode::NoError {
            // A refusal is often unsigned (BADKEY, BADSIG): report the code.
            let mut rcode_text = dns::rcode_name(rcode);
            if matches!(rcode, ResponseCode::NotAuth | ResponseCode::NotZone) {
                rcode_text.push_str(&format!(
                    " ({server} does not serve zone {} as primary: where a _acme-challenge CNAME leads into a zone hosted elsewhere, that zone's updates need its own server)",
                    dns::display_name(zone)
                ));
            }
            return Err(DnsError::Rcode {
                server,
                query: what,
                rcode: rcode_text,
            });
        }
        if let Some(verifier) = verifier.as_mut() {
            verifier.verify(&raw.bytes).map_err(|e| DnsError::Tsig {
                server,
                reason: format!("the answer's signature: {e}"),
            })?;
        }
        Ok(())
    }

    /// Polls every nameserver of `zone` until each serves `value` at
    /// `record`. A nameserver counts by name: it serves the value when one
    /// of its addresses does and none answers without it (an address this
    /// host cannot reach, say IPv6 on an IPv4-only host, does not hold the
    /// wait up once a sibling address serves).
    async fn wait_served(
        &self,
        zone: &Zone,
        record: &Name,
        value: &str,
    ) -> std::result::Result<(), DnsError> {
        /// What one address said last.
        enum Last {
            Serves,
            Lacks(String),
            Failed(String),
        }
        let started = Instant::now();
        let name = dns::display_name(record);
        let mut last: HashMap<SocketAddr, Last> = HashMap::new();
        let mut interval = self.config.poll_first.max(MIN_POLL);
        loop {
            // Ask each address that has not served the value yet.
            let asking: Vec<&Nameserver> = zone
                .nameservers
                .iter()
                .filter(|ns| !matches!(last.get(&ns.addr), Some(Last::Serves)))
                .collect();
            let answers = futures_util::future::join_all(
                asking.iter().map(|ns| self.dns.txt_at(ns.addr, &name)),
            )
            .await;
            for (ns, answer) in asking.iter().zip(answers) {
                let said = match answer {
                    Ok(values) if values.iter().any(|v| v == value) => Last::Serves,
                    Ok(values) => Last::Lacks(match values.len() {
                        0 => "no TXT record".to_owned(),
                        n => format!("{n} other value(s)"),
                    }),
                    Err(e) => Last::Failed(e.to_string()),
                };
                last.insert(ns.addr, said);
            }
            let lagging: Vec<&Nameserver> = zone
                .nameservers
                .iter()
                .filter(|ns| {
                    let siblings = || zone.nameservers.iter().filter(|o| o.name == ns.name);
                    match last.get(&ns.addr) {
                        Some(Last::Serves) => false,
                        Some(Last::Lacks(_)) | None => true,
                        // Tolerated once another address of it serves.
                        Some(Last::Failed(_)) => {
                            !siblings().any(|o| matches!(last.get(&o.addr), Some(Last::Serves)))
                        }
                    }
                })
                .collect();
            if lagging.is_empty() {
                return Ok(());
            }
            let elapsed = started.elapsed();
            if elapsed >= self.config.propagation_timeout {
                return Err(DnsError::NotPropagated {
                    name,
                    lagging: lagging
                        .iter()
                        .map(|ns| {
                            let said = match last.get(&ns.addr) {
                                Some(Last::Lacks(s) | Last::Failed(s)) => s.as_str(),
                                Some(Last::Serves) | None => "?",
                            };
                            format!("{ns}: {said}")
                        })
                        .collect(),
                    after: elapsed,
                });
            }
            tracing::debug!(
                target: "sturdy_acme::dns",
                record = %name, lagging = lagging.len(), "waiting for nameservers to serve the TXT value"
            );
            let pause = interval.min(self.config.propagation_timeout - elapsed);
            tokio::time::sleep(pause).await;
            interval = interval
                .saturating_mul(2)
                .min(self.config.poll_max.max(MIN_POLL));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Add,
    Delete,
}

impl Solver for Rfc2136Solver {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Dns01
    }

    fn present<'a>(&'a self, answer: &'a ChallengeAnswer) -> SolverFuture<'a> {
        Box::pin(async move {
            self.publish(&answer.dns_name, &answer.dns_value)
                .await
                .map(drop)
                .map_err(Error::from)
        })
    }

    fn cleanup<'a>(&'a self, answer: &'a ChallengeAnswer) -> SolverFuture<'a> {
        Box::pin(async move {
            self.unpublish(&answer.dns_name, &answer.dns_value)
                .await
                .map_err(Error::from)
        })
    }
}

/// A TXT value as character-strings of at most 255 bytes (RFC 1035 §3.3).
fn split_txt(value: &str) -> Vec<String> {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return vec![String::new()];
    }
    bytes
        .chunks(255)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_split() {
        assert_eq!(split_txt("abc"), ["abc"]);
        let long = "x".repeat(600);
        let parts = split_txt(&long);
        assert_eq!(
            parts.iter().map(String::len).collect::<Vec<_>>(),
            [255, 255, 90]
        );
        assert_eq!(split_txt(""), [""]);
    }
}
