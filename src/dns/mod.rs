//! DNS as the dns-01 solver and the CAA pre-flight need it: asking one
//! named server one question and timing its answer.
//!
//! [`Dns`] is a small client over [`DnsConfig`]: the *resolvers* it asks to
//! discover things (a recursive resolver in production, the test's
//! authoritative server in tests), and how it reaches a zone's
//! *authoritative* nameservers once it knows their names (their addresses on
//! [`DnsConfig::authoritative_port`], 53 unless a test moves it). Knowing
//! each authoritative nameserver by name is the point: the solver waits
//! until *every* one serves a TXT value, and the CAA pre-flight says which
//! nameserver of which zone timed out, and after how long.
//!
//! Messages are encoded and TSIG-signed with `hickory-proto`; the exchange
//! itself (UDP, TCP when truncated, a deadline per query, answers checked
//! against the query's ID and source) is this module's.
//!
//! # Example
//!
//! ```no_run
//! # async fn f() -> Result<(), sturdy_acme::dns::DnsError> {
//! use sturdy_acme::dns::{Dns, DnsConfig};
//!
//! let dns = Dns::new(DnsConfig::system()?);
//! let zone = dns.zone_of("_acme-challenge.www.example.com").await?;
//! for ns in &zone.nameservers {
//!     println!("{} at {}", ns.name, ns.addr);
//! }
//! # Ok(()) }
//! ```

mod tsig;
pub(crate) mod wire;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

pub use tsig::{TsigAlgorithm, TsigKey};

/// How many CNAMEs a chain may have before it is treated as a loop (the
/// limit Boulder and unbound use is of the same order).
const MAX_CNAME_CHAIN: usize = 8;

/// Why a DNS operation failed. Each failure names the server and the
/// question, so a log line says whose DNS was slow.
///
/// Example: [`Dns`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// No answer within the deadline.
    #[error("{server}: no answer to {query} after {after:.1?}")]
    Timeout {
        /// The server asked.
        server: SocketAddr,
        /// The question (`CAA example.com`).
        query: String,
        /// How long we waited.
        after: Duration,
    },
    /// A socket error (connection refused, unreachable network).
    #[error("{server}: {query}: {source}")]
    Io {
        /// The server asked.
        server: SocketAddr,
        /// The question.
        query: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The answer was not a well-formed response to the question.
    #[error("{server}: {query}: malformed answer: {reason}")]
    Malformed {
        /// The server asked.
        server: SocketAddr,
        /// The question.
        query: String,
        /// What was wrong.
        reason: String,
    },
    /// The server answered with an error code (SERVFAIL, REFUSED, NOTAUTH…).
    #[error("{server}: {query}: {rcode}")]
    Rcode {
        /// The server asked.
        server: SocketAddr,
        /// The question.
        query: String,
        /// The response code, as DNS tools print it.
        rcode: String,
    },
    /// The zone holding a name could not be found.
    #[error("no DNS zone found for {name}: {reason}")]
    NoZone {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A CNAME chain longer than the limit, or looping.
    #[error("CNAME chain from {name} is looping or longer than {MAX_CNAME_CHAIN}")]
    CnameLoop {
        /// Where the chain starts.
        name: String,
    },
    /// A TXT value was not served by every authoritative nameserver in time.
    #[error("{name}: TXT value not served after {after:.1?} by {}", lagging.join("; "))]
    NotPropagated {
        /// The record's name.
        name: String,
        /// Each nameserver still lagging, and what it last said.
        lagging: Vec<String>,
        /// How long we waited.
        after: Duration,
    },
    /// A signed answer whose TSIG signature does not verify.
    #[error("{server}: TSIG: {reason}")]
    Tsig {
        /// The server.
        server: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// A name that is not a valid DNS name.
    #[error("invalid DNS name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why.
        reason: String,
    },
    /// A TSIG key that cannot be used.
    #[error("invalid TSIG key: {0}")]
    InvalidKey(String),
    /// No resolver to ask.
    #[error("no DNS resolver configured: {0}")]
    NoResolver(String),
}

impl DnsError {
    /// Whether asking again later may succeed (a timeout, a socket error,
    /// SERVFAIL, a lagging nameserver), as opposed to a configuration or
    /// data problem (REFUSED, NOTAUTH, a bad key, a bad name).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Io { .. } | Self::NotPropagated { .. } => true,
            Self::Rcode { rcode, .. } => rcode == "SERVFAIL",
            Self::Malformed { .. }
            | Self::NoZone { .. }
            | Self::CnameLoop { .. }
            | Self::Tsig { .. }
            | Self::InvalidName { .. }
            | Self::InvalidKey(_)
            | Self::NoResolver(_) => false,
        }
    }
}

/// Where [`Dns`] sends its questions.
///
/// Example: [`Dns`].
#[derive(Debug, Clone)]
pub struct DnsConfig {
    resolvers: Vec<SocketAddr>,
    authoritative_port: u16,
    query_timeout: Duration,
    max_in_flight: usize,
}

/// The default of [`DnsConfig::max_in_flight`]: questions (and so
/// sockets) one [`Dns`] client and its clones have open at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

impl DnsConfig {
    /// Discovery through these resolvers (tried in order), authoritative
    /// nameservers on port 53, 2 s per question.
    pub fn new(resolvers: Vec<SocketAddr>) -> Self {
        Self {
            resolvers,
            authoritative_port: 53,
            query_timeout: Duration::from_secs(2),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }

    /// The `nameserver` lines of `/etc/resolv.conf`.
    pub fn system() -> Result<Self, DnsError> {
        let text = std::fs::read_to_string("/etc/resolv.conf")
            .map_err(|e| DnsError::NoResolver(format!("/etc/resolv.conf: {e}")))?;
        let resolvers: Vec<SocketAddr> = text
            .lines()
            .filter_map(|line| line.trim().strip_prefix("nameserver"))
            .filter_map(|rest| rest.trim().split('%').next()?.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        if resolvers.is_empty() {
            return Err(DnsError::NoResolver(
                "no nameserver line in /etc/resolv.conf".into(),
            ));
        }
        Ok(Self::new(resolvers))
    }

    /// The port of every authoritative nameserver (53; tests run theirs on
    /// a free port of several loopback addresses).
    pub fn authoritative_port(mut self, port: u16) -> Self {
        self.authoritative_port = port;
        self
    }

    /// The deadline of one question (UDP, and TCP when truncated).
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// At most this many questions in flight at once (default
    /// [`DEFAULT_MAX_IN_FLIGHT`], at least 1), over every clone of the
    /// [`Dns`] client built from this configuration: each question holds a
    /// socket, so a 100-name certificate checked at a renewer's concurrency
    /// waits its turn instead of running out of file descriptors.
    pub fn max_in_flight(mut self, questions: usize) -> Self {
        self.max_in_flight = questions.max(1);
        self
    }

    /// The bound on questions in flight.
    pub fn in_flight_limit(&self) -> usize {
        self.max_in_flight
    }

    /// The resolvers.
    pub fn resolvers(&self) -> &[SocketAddr] {
        &self.resolvers
    }

    /// The deadline of one question.
    pub fn timeout(&self) -> Duration {
        self.query_timeout
    }
}

/// One authoritative nameserver of a [`Zone`], at one of its addresses.
///
/// Example: [`Dns`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Nameserver {
    /// Its name (lower case, no trailing dot), from the zone's NS records.
    pub name: String,
    /// Where it is asked.
    pub addr: SocketAddr,
}

impl std::fmt::Display for Nameserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.addr)
    }
}

/// A DNS zone: its apex and its authoritative nameservers.
///
/// Example: [`Dns`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Zone {
    /// The apex (lower case, no trailing dot).
    pub apex: String,
    /// The primary nameserver's name (the SOA MNAME).
    pub primary: String,
    /// Every nameserver of the NS set, at each of its addresses.
    pub nameservers: Vec<Nameserver>,
    /// The names of the NS set that resolve to no address (a "dangling"
    /// NS record, common after a move to another DNS provider): left out
    /// of `nameservers`, as a CA's resolver skips them.
    pub dangling: Vec<DanglingNameserver>,
}

/// A name of a zone's NS set that resolves to no address, and why.
///
/// Example: [`Dns`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DanglingNameserver {
    /// Its name (lower case, no trailing dot).
    pub name: String,
    /// What resolving it gave.
    pub reason: String,
}

impl std::fmt::Display for DanglingNameserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.reason)
    }
}

/// An answer, parsed.
#[derive(Debug)]
pub(crate) struct Answer {
    pub rcode: ResponseCode,
    /// The AA bit: the server answered from a zone it is authoritative for.
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// How long the exchange took (the CAA report's per-nameserver figure).
    #[allow(dead_code)]
    pub latency: Duration,
}

impl Answer {
    /// The records of `rtype` owned by `name`.
    pub fn records<'a>(
        &'a self,
        name: &'a Name,
        rtype: RecordType,
    ) -> impl Iterator<Item = &'a RData> + 'a {
        self.answers
            .iter()
            .filter(move |r| r.record_type() == rtype && &r.name == name)
            .map(|r| &r.data)
    }

    /// The CNAME target of `name` in the answer, if any.
    pub fn cname(&self, name: &Name) -> Option<Name> {
        self.records(name, RecordType::CNAME).find_map(|d| match d {
            RData::CNAME(c) => Some(c.0.clone()),
            _ => None,
        })
    }
}

/// The DNS client of the solver and the CAA pre-flight.
///
/// Cheap to clone; holds no sockets between questions. Clones share one
/// bound on the questions in flight ([`DnsConfig::max_in_flight`]): give
/// the CAA checker and the dns-01 solver clones of one client, and the
/// process's DNS sockets stay within that bound.
///
/// # Example
///
/// ```no_run
/// # async fn f() -> Result<(), sturdy_acme::dns::DnsError> {
/// use std::time::Duration;
/// use sturdy_acme::dns::{Dns, DnsConfig};
///
/// let dns = Dns::new(
///     DnsConfig::new(vec!["127.0.0.1:5353".parse().unwrap()])
///         .authoritative_port(5353)
///         .query_timeout(Duration::from_millis(500)),
/// );
/// let target = dns.follow_cname("_acme-challenge.www.example.test").await?;
/// let zone = dns.zone_of(&target).await?;
/// for ns in &zone.nameservers {
///     let values = dns.txt_at(ns.addr, &target).await?;
///     println!("{ns}: {values:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Dns {
    config: DnsConfig,
    /// Questions in flight, over every clone ([`DnsConfig::max_in_flight`]).
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Dns {
    /// A client over `config`.
    pub fn new(config: DnsConfig) -> Self {
        Self {
            in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(config.max_in_flight)),
            config,
        }
    }

    /// One exchange ([`wire::exchange`]) holding a place among the
    /// questions in flight for as long as its socket is open.
    pub(crate) async fn exchange(
        &self,
        server: SocketAddr,
        request: &[u8],
        id: u16,
        timeout: Duration,
        what: &str,
    ) -> Result<wire::RawAnswer, DnsError> {
        // The semaphore is never closed.
        let _place = self.in_flight.acquire().await.ok();
        wire::exchange(server, request, id, false, timeout, what).await
    }

    /// Its configuration.
    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    /// Asks `server` one question. `recursion` sets RD (for resolvers);
    /// authoritative servers are asked without it. NOERROR and NXDOMAIN
    /// are answers; any other code is [`DnsError::Rcode`].
    pub(crate) async fn ask(
        &self,
        server: SocketAddr,
        name: &Name,
        rtype: RecordType,
        recursion: bool,
        timeout: Duration,
    ) -> Result<Answer, DnsError> {
        let what = format!("{rtype} {}", display_name(name));
        let mut message = Message::new(random_id(), MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = recursion;
        message.add_query(Query::query(name.clone(), rtype));
        let bytes = message.to_vec().map_err(|e| DnsError::InvalidName {
            name: display_name(name),
            reason: e.to_string(),
        })?;
        let raw = self
            .exchange(server, &bytes, message.metadata.id, timeout, &what)
            .await;
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) => {
                tracing::debug!(target: "sturdy_acme::dns", %server, query = %what, error = %e, "DNS question failed");
                return Err(e);
            }
        };
        let answer = parse_answer(server, &what, &raw.bytes, raw.latency)?;
        tracing::debug!(
            target: "sturdy_acme::dns",
            %server, query = %what, rcode = %rcode_name(answer.rcode), answers = answer.answers.len(),
            latency_ms = raw.latency.as_millis() as u64, "DNS answer"
        );
        match answer.rcode {
            ResponseCode::NoError | ResponseCode::NXDomain => Ok(answer),
            other => Err(DnsError::Rcode {
                server,
                query: what,
                rcode: rcode_name(other),
            }),
        }
    }

    /// Asks the resolvers in order; the first answer wins, else the last
    /// error.
    pub(crate) async fn resolve(&self, name: &Name, rtype: RecordType) -> Result<Answer, DnsError> {
        let mut last = DnsError::NoResolver("the DNS configuration lists none".into());
        for server in &self.config.resolvers {
            match self
                .ask(*server, name, rtype, true, self.config.query_timeout)
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Where a CNAME chain starting at `name` ends (`name` itself when it
    /// is not an alias), as the resolvers see it.
    pub async fn follow_cname(&self, name: &str) -> Result<String, DnsError> {
        let start = parse_name(name)?;
        let end = self.follow_cname_name(&start).await?;
        Ok(display_name(&end))
    }

    pub(crate) async fn follow_cname_name(&self, start: &Name) -> Result<Name, DnsError> {
        let mut current = start.clone();
        let mut seen = vec![current.clone()];
        loop {
            let answer = self.resolve(&current, RecordType::CNAME).await?;
            let Some(target) = answer.cname(&current) else {
                return Ok(current);
            };
            if seen.contains(&target) || seen.len() > MAX_CNAME_CHAIN {
                return Err(DnsError::CnameLoop {
                    name: display_name(start),
                });
            }
            seen.push(target.clone());
            current = target;
        }
    }

    /// The TXT values at `name` as the resolvers see it (CNAMEs followed;
    /// each record's strings joined): `Ok(None)` when the name does not
    /// exist (NXDOMAIN), `Ok(Some(vec![]))` when it exists without TXT.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), sturdy_acme::dns::DnsError> {
    /// use sturdy_acme::dns::{Dns, DnsConfig};
    ///
    /// let dns = Dns::new(DnsConfig::new(vec!["127.0.0.1:53".parse().unwrap()]));
    /// if let Some(values) = dns.txt("_acme-challenge.example.com").await? {
    ///     println!("{values:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn txt(&self, name: &str) -> Result<Option<Vec<String>>, DnsError> {
        let start = parse_name(name)?;
        let mut current = start.clone();
        for _ in 0..=MAX_CNAME_CHAIN {
            let answer = self.resolve(&current, RecordType::TXT).await?;
            let values = txt_values(&answer, &current);
            if !values.is_empty() {
                return Ok(Some(values));
            }
            match answer.cname(&current) {
                Some(target) => current = target,
                None if answer.rcode == ResponseCode::NXDomain => return Ok(None),
                None => return Ok(Some(Vec::new())),
            }
        }
        Err(DnsError::CnameLoop {
            name: display_name(&start),
        })
    }

    /// The zone holding `name`: its apex (the closest enclosing SOA) and
    /// its authoritative nameservers with their addresses.
    pub async fn zone_of(&self, name: &str) -> Result<Zone, DnsError> {
        self.zone_of_name(&parse_name(name)?).await
    }

    pub(crate) async fn zone_of_name(&self, name: &Name) -> Result<Zone, DnsError> {
        let (apex, primary) = self.find_apex(name).await?;
        let answer = self.resolve(&apex, RecordType::NS).await?;
        let mut nameservers = Vec::new();
        let ns_names: Vec<Name> = answer
            .records(&apex, RecordType::NS)
            .filter_map(|d| match d {
                RData::NS(ns) => Some(ns.0.clone()),
                _ => None,
            })
            .collect();
        if ns_names.is_empty() {
            return Err(DnsError::NoZone {
                name: display_name(name),
                reason: format!("{} has no NS records", display_name(&apex)),
            });
        }
        // A name of the NS set that resolves to nothing is skipped, as a
        // CA's resolver skips it; the zone works while one resolves.
        let mut dangling = Vec::new();
        let mut first_error = None;
        for ns in ns_names {
            match self.addresses_of(&ns, &answer).await {
                Ok(ips) => nameservers.extend(ips.into_iter().map(|ip| Nameserver {
                    name: display_name(&ns),
                    addr: SocketAddr::new(ip, self.config.authoritative_port),
                })),
                Err(e) => {
                    tracing::warn!(
                        target: "sturdy_acme::dns",
                        zone = %display_name(&apex), nameserver = %display_name(&ns), error = %e,
                        "a nameserver of the zone resolves to no address (a dangling NS record): skipped, as a CA's resolver skips it"
                    );
                    dangling.push(DanglingNameserver {
                        name: display_name(&ns),
                        reason: e.to_string(),
                    });
                    first_error.get_or_insert(e);
                }
            }
        }
        if nameservers.is_empty()
            && let Some(e) = first_error
        {
            // None resolves: the zone cannot be asked (a transient failure
            // stays transient).
            return Err(e);
        }
        nameservers.sort_by(|a, b| (&a.name, a.addr).cmp(&(&b.name, b.addr)));
        nameservers.dedup();
        dangling.sort_by(|a, b| a.name.cmp(&b.name));
        dangling.dedup_by(|a, b| a.name == b.name);
        Ok(Zone {
            apex: display_name(&apex),
            primary: display_name(&primary),
            nameservers,
            dangling,
        })
    }

    /// The closest enclosing SOA of `name`: (apex, MNAME).
    async fn find_apex(&self, name: &Name) -> Result<(Name, Name), DnsError> {
        let mut candidate = name.clone();
        loop {
            let answer = self.resolve(&candidate, RecordType::SOA).await?;
            let mname = answer
                .records(&candidate, RecordType::SOA)
                .find_map(|d| match d {
                    RData::SOA(soa) => Some(soa.mname.clone()),
                    _ => None,
                });
            if let Some(mname) = mname {
                return Ok((candidate, mname));
            }
            // A negative answer carries the zone's SOA in its authority
            // section; a name with a CNAME does not (its zone is found
            // above it).
            if answer.cname(&candidate).is_none() {
                let soa = answer.authorities.iter().find_map(|r| match &r.data {
                    RData::SOA(soa) if r.name.zone_of(&candidate) => {
                        Some((r.name.clone(), soa.mname.clone()))
                    }
                    _ => None,
                });
                if let Some(found) = soa {
                    return Ok(found);
                }
            }
            if candidate.num_labels() <= 1 {
                return Err(DnsError::NoZone {
                    name: display_name(name),
                    reason: "no SOA record at or above it".into(),
                });
            }
            candidate = candidate.base_name();
        }
    }

    /// The addresses of nameserver `ns`: glue from `answer`, else A and
    /// AAAA from the resolvers.
    async fn addresses_of(&self, ns: &Name, answer: &Answer) -> Result<Vec<IpAddr>, DnsError> {
        let glue = |records: &[Record]| -> Vec<IpAddr> {
            records
                .iter()
                .filter(|r| &r.name == ns)
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect()
        };
        let mut ips = glue(&answer.additionals);
        let mut failed = None;
        if ips.is_empty() {
            for rtype in [RecordType::A, RecordType::AAAA] {
                // One family failing does not hide the other's addresses.
                match self.resolve(ns, rtype).await {
                    Ok(a) => ips.extend(glue(&a.answers)),
                    Err(e) => failed = Some(e),
                }
            }
        }
        if ips.is_empty() {
            return Err(failed.unwrap_or_else(|| DnsError::NoZone {
                name: display_name(ns),
                reason: "nameserver has no address".into(),
            }));
        }
        Ok(ips)
    }

    /// The TXT values at `name` as `server` (an authoritative nameserver,
    /// asked without recursion) serves them; none for NXDOMAIN or NODATA.
    pub async fn txt_at(&self, server: SocketAddr, name: &str) -> Result<Vec<String>, DnsError> {
        let name = parse_name(name)?;
        let answer = self
            .ask(
                server,
                &name,
                RecordType::TXT,
                false,
                self.config.query_timeout,
            )
            .await?;
        Ok(txt_values(&answer, &name))
    }
}

impl Dns {
    /// The SOA serial `server` serves for zone `apex` (asked without
    /// recursion); `None` when it answers without one (not its zone).
    pub async fn soa_serial_at(
        &self,
        server: SocketAddr,
        apex: &str,
    ) -> Result<Option<u32>, DnsError> {
        let name = parse_name(apex)?;
        let answer = self
            .ask(
                server,
                &name,
                RecordType::SOA,
                false,
                self.config.query_timeout,
            )
            .await?;
        Ok(answer
            .records(&name, RecordType::SOA)
            .find_map(|d| match d {
                RData::SOA(soa) => Some(soa.serial),
                _ => None,
            }))
    }
}

/// The TXT values owned by `name` (each record's strings concatenated).
pub(crate) fn txt_values(answer: &Answer, name: &Name) -> Vec<String> {
    answer
        .records(name, RecordType::TXT)
        .filter_map(|d| match d {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s))
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

fn parse_answer(
    server: SocketAddr,
    what: &str,
    bytes: &[u8],
    latency: Duration,
) -> Result<Answer, DnsError> {
    let message = Message::from_vec(bytes).map_err(|e| DnsError::Malformed {
        server,
        query: what.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Answer {
        rcode: message.metadata.response_code,
        authoritative: message.metadata.authoritative,
        answers: message.answers,
        authorities: message.authorities,
        additionals: message.additionals,
        latency,
    })
}

/// A DNS name from text (IDNA A-labels expected; a trailing dot optional),
/// fully qualified and lower case.
pub(crate) fn parse_name(name: &str) -> Result<Name, DnsError> {
    let invalid = |reason: String| DnsError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    let trimmed = name.trim().trim_end_matches('.');
    if trimmed.is_empty() {
        return Err(invalid("empty".into()));
    }
    let mut parsed = Name::from_ascii(trimmed).map_err(|e| invalid(e.to_string()))?;
    parsed.set_fqdn(true);
    Ok(parsed.to_lowercase())
}

/// Lower case, no trailing dot.
pub(crate) fn display_name(name: &Name) -> String {
    let text = name.to_lowercase().to_ascii();
    match text.strip_suffix('.') {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ => text,
    }
}

pub(crate) fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NoError => "NOERROR".into(),
        other => format!("RCODE {}", u16::from(other)),
    }
}

/// A random message ID (RFC 5452: IDs must not be predictable).
pub(crate) fn random_id() -> u16 {
    let mut bytes = [0u8; 2];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system random source works");
    u16::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests;
