//! dns-01 (RFC 8555 §8.4): the [`DnsResolver`] the CA asks for TXT records,
//! the in-memory [`StaticDns`], and the check of the TXT answer.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use super::quote;
use sturdy_acme::Identifier;
use sturdy_acme::caa::{CaaChecker, CaaContext, CaaReport};
use sturdy_acme::challenge::dns01_txt_value;
use sturdy_acme::dns::{Dns, DnsConfig};
use sturdy_acme::{Problem, ProblemType};

/// The future a [`DnsResolver`] answers with.
pub type DnsFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<String>, LookupError>> + Send + 'a>>;

/// Answers the test CA's DNS questions (the TXT lookups of dns-01).
///
/// Implement it to plug in your own DNS; tests normally use [`StaticDns`]
/// (in memory) or [`ServerDns`] (a real DNS server).
///
/// Example: [`StaticDns`].
pub trait DnsResolver: Send + Sync + fmt::Debug {
    /// The TXT records at `name` (lower case, without a trailing dot, e.g.
    /// `_acme-challenge.example.com`), one string per record (a record's
    /// character-strings concatenated), CNAMEs followed.
    ///
    /// `Ok` with no records is a NOERROR/NODATA answer: the name exists but
    /// has no TXT record.
    fn txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a>;

    /// The CA's CAA check of `names` at finalize, `ctx` saying who the CA
    /// and the account are. The default reads no DNS and returns no
    /// report: the builder's [`CaaPolicy`](crate::CaaPolicy) map
    /// alone decides. [`ServerDns`] climbs the real records
    /// ([`sturdy_acme::caa::CaaChecker`]).
    fn caa<'a>(&'a self, names: &'a [String], ctx: &'a CaaContext) -> CaaFuture<'a> {
        let _ = (names, ctx);
        Box::pin(std::future::ready(Vec::new()))
    }
}

/// The future of [`DnsResolver::caa`].
pub type CaaFuture<'a> = Pin<Box<dyn Future<Output = Vec<CaaReport>> + Send + 'a>>;

/// Why a DNS lookup failed.
///
/// Example: [`StaticDns`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// The name does not exist.
    #[error("NXDOMAIN")]
    NxDomain,
    /// The name servers failed to answer.
    #[error("SERVFAIL")]
    ServFail,
    /// No answer in time.
    #[error("query timed out")]
    Timeout,
}

#[derive(Debug, Default)]
struct Zone {
    /// Normalized name -> TXT records (empty: the name exists without TXT).
    txt: HashMap<String, Vec<String>>,
    /// Normalized name -> the error every lookup of it gets.
    failures: HashMap<String, LookupError>,
}

/// An in-memory [`DnsResolver`]: TXT records and failures set by the test.
///
/// Names are compared case-insensitively, with or without a trailing dot.
/// A name never set answers NXDOMAIN. Clones share the same records, so a
/// test can keep one and hand another to the CA.
///
/// # Example
///
/// ```
/// use sturdy_acme_testca::{LookupError, StaticDns};
///
/// let dns = StaticDns::new();
/// dns.add_txt("_acme-challenge.example.test.", "value");
/// assert_eq!(dns.lookup("_ACME-challenge.example.test").unwrap(), ["value"]);
/// dns.fail("_acme-challenge.broken.test", LookupError::ServFail);
/// assert!(matches!(dns.lookup("_acme-challenge.broken.test"), Err(LookupError::ServFail)));
/// ```
#[derive(Debug, Default, Clone)]
pub struct StaticDns {
    zone: Arc<RwLock<Zone>>,
}

impl StaticDns {
    /// An empty zone (every lookup answers NXDOMAIN).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a TXT record at `name` (keeping any already there).
    pub fn add_txt(&self, name: &str, value: &str) {
        self.write()
            .txt
            .entry(normalize(name))
            .or_default()
            .push(value.to_owned());
    }

    /// Replaces the TXT records at `name`. An empty `values` leaves the name
    /// existing without TXT records (lookups answer with no records, not
    /// NXDOMAIN).
    pub fn set_txt(&self, name: &str, values: &[&str]) {
        self.write().txt.insert(
            normalize(name),
            values.iter().map(|v| (*v).to_owned()).collect(),
        );
    }

    /// Removes every TXT record at `name`: lookups answer NXDOMAIN again.
    pub fn clear_txt(&self, name: &str) {
        self.write().txt.remove(&normalize(name));
    }

    /// Makes every lookup of `name` fail with `error` until [`StaticDns::recover`].
    pub fn fail(&self, name: &str, error: LookupError) {
        self.write().failures.insert(normalize(name), error);
    }

    /// Undoes [`StaticDns::fail`] for `name`.
    pub fn recover(&self, name: &str) {
        self.write().failures.remove(&normalize(name));
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Zone> {
        self.zone.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl StaticDns {
    /// The TXT records at `name` now (what [`DnsResolver::txt`] answers).
    pub fn lookup(&self, name: &str) -> Result<Vec<String>, LookupError> {
        let name = normalize(name);
        let zone = self.zone.read().unwrap_or_else(|e| e.into_inner());
        if let Some(error) = zone.failures.get(&name) {
            return Err(*error);
        }
        zone.txt.get(&name).cloned().ok_or(LookupError::NxDomain)
    }
}

impl DnsResolver for StaticDns {
    fn txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        let answer = self.lookup(name);
        Box::pin(std::future::ready(answer))
    }
}

/// A [`DnsResolver`] asking a real DNS server, the way a CA's resolver
/// would: recursion desired, CNAME chains followed (up to 8 links), a
/// timeout per question; and the finalize-time CAA check from the real
/// records (RFC 8659 climb at the authoritative nameservers), so a
/// forbidding record or a nameserver that times out fails finalize with
/// Boulder's words. In tests it points at the authoritative server the
/// test runs, so the CA validates what the solver really published.
///
/// # Example
///
/// ```no_run
/// use std::sync::Arc;
/// use sturdy_acme::dns::DnsConfig;
/// use sturdy_acme_testca::{ServerDns, TestCa};
///
/// # async fn f() {
/// let dns = ServerDns::new(DnsConfig::new(vec!["127.0.0.1:5353".parse().unwrap()]));
/// let ca = TestCa::builder().real_validation(0, 0, Arc::new(dns)).start().await.unwrap();
/// # drop(ca); }
/// ```
#[derive(Debug, Clone)]
pub struct ServerDns {
    dns: Dns,
}

impl ServerDns {
    /// Asks the resolvers of `config`.
    pub fn new(config: DnsConfig) -> Self {
        Self {
            dns: Dns::new(config),
        }
    }

    async fn lookup(&self, name: &str) -> Result<Vec<String>, LookupError> {
        use sturdy_acme::dns::DnsError as Lookup;
        match self.dns.txt(name).await {
            Ok(Some(values)) => Ok(values),
            Ok(None) => Err(LookupError::NxDomain),
            Err(Lookup::InvalidName { .. }) => Err(LookupError::NxDomain),
            Err(Lookup::Timeout { .. } | Lookup::Io { .. }) => Err(LookupError::Timeout),
            Err(_) => Err(LookupError::ServFail),
        }
    }
}

impl DnsResolver for ServerDns {
    fn txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        Box::pin(self.lookup(name))
    }

    fn caa<'a>(&'a self, names: &'a [String], ctx: &'a CaaContext) -> CaaFuture<'a> {
        Box::pin(async move { CaaChecker::new(self.dns.clone()).check(names, ctx).await })
    }
}

/// Lower case, no trailing dot.
fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Validates a dns-01 challenge: a TXT record at `_acme-challenge.<name>`
/// (the name without a wildcard label) must hold
/// base64url(SHA-256(key authorization)).
///
/// Failures, as Boulder reports them: `dns` for a failed lookup (NXDOMAIN,
/// SERVFAIL, timeout), `unauthorized` for an answer without TXT records
/// ("No TXT record found at …") or without the expected value ("Incorrect
/// TXT record … found at …"), `malformed` for a non-DNS identifier.
pub(crate) async fn validate_dns01(
    resolver: &dyn DnsResolver,
    identifier: &Identifier,
    key_authorization: &str,
) -> Result<(), Problem> {
    if identifier.kind != "dns" {
        return Err(Problem::new(
            ProblemType::Malformed,
            "Identifier type for DNS was not itself DNS",
        ));
    }
    let name = format!("_acme-challenge.{}", identifier.base_name());
    let expected = dns01_txt_value(key_authorization);
    tracing::debug!(%identifier, name, "dns-01 validation");
    let records = resolver.txt(&name).await.map_err(|e| {
        let detail = match e {
            LookupError::NxDomain => format!(
                "DNS problem: NXDOMAIN looking up TXT for {name} - \
                 check that a DNS record exists for this domain"
            ),
            LookupError::ServFail => format!(
                "DNS problem: SERVFAIL looking up TXT for {name} - \
                 the domain's nameservers may be malfunctioning"
            ),
            LookupError::Timeout => {
                format!("DNS problem: query timed out looking up TXT for {name}")
            }
        };
        Problem::new(ProblemType::Dns, detail)
    })?;
    let Some(first) = records.first() else {
        return Err(Problem::new(
            ProblemType::Unauthorized,
            format!("No TXT record found at {name}"),
        ));
    };
    if records.contains(&expected) {
        return Ok(());
    }
    let and_more = match records.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    Err(Problem::new(
        ProblemType::Unauthorized,
        format!(
            "Incorrect TXT record {:?}{and_more} found at {name}",
            quote(first)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::test_support::*;

    #[tokio::test]
    async fn dns01() {
        let dns_zone = StaticDns::new();
        let id = dns("example.test");
        let value = dns01_txt_value(KA);

        // Nothing there: NXDOMAIN.
        let p = validate_dns01(&dns_zone, &id, KA).await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Dns);
        assert_eq!(
            detail(&p),
            "DNS problem: NXDOMAIN looking up TXT for _acme-challenge.example.test - \
             check that a DNS record exists for this domain"
        );

        // The right value among others; names are case- and dot-insensitive.
        dns_zone.add_txt("_ACME-Challenge.Example.Test.", "unrelated");
        dns_zone.add_txt("_acme-challenge.example.test", &value);
        validate_dns01(&dns_zone, &id, KA).await.unwrap();
        // Wildcards are validated at the base name.
        validate_dns01(&dns_zone, &dns("*.example.test"), KA)
            .await
            .unwrap();

        // Wrong values only.
        dns_zone.set_txt("_acme-challenge.example.test", &["wrong", "also-wrong"]);
        let p = validate_dns01(&dns_zone, &id, KA).await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized);
        assert_eq!(
            detail(&p),
            "Incorrect TXT record \"wrong\" (and 1 more) found at _acme-challenge.example.test"
        );

        // The name exists without TXT records.
        dns_zone.set_txt("_acme-challenge.example.test", &[]);
        let p = validate_dns01(&dns_zone, &id, KA).await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized);
        assert_eq!(
            detail(&p),
            "No TXT record found at _acme-challenge.example.test"
        );

        // Failures.
        dns_zone.add_txt("_acme-challenge.example.test", &value);
        dns_zone.fail("_acme-challenge.example.test", LookupError::ServFail);
        let p = validate_dns01(&dns_zone, &id, KA).await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Dns);
        assert!(detail(&p).starts_with("DNS problem: SERVFAIL looking up TXT"));
        dns_zone.fail("_acme-challenge.example.test", LookupError::Timeout);
        let p = validate_dns01(&dns_zone, &id, KA).await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Dns);
        assert_eq!(
            detail(&p),
            "DNS problem: query timed out looking up TXT for _acme-challenge.example.test"
        );
        dns_zone.recover("_acme-challenge.example.test");
        validate_dns01(&dns_zone, &id, KA).await.unwrap();

        // Cleared: NXDOMAIN again; clones share the zone.
        dns_zone.clone().clear_txt("_acme-challenge.example.test");
        assert_eq!(
            dns_zone.lookup("_acme-challenge.example.test"),
            Err(LookupError::NxDomain)
        );

        // Long wrong values are cut in the detail.
        dns_zone.add_txt("_acme-challenge.example.test", &"x".repeat(300));
        let p = validate_dns01(&dns_zone, &id, KA).await.unwrap_err();
        assert!(
            detail(&p).contains(&format!("\"{}...\"", "x".repeat(100))),
            "{p}"
        );

        let p = validate_dns01(&dns_zone, &Identifier::ip(LOCALHOST), KA)
            .await
            .unwrap_err();
        assert_eq!(p.kind, ProblemType::Malformed);
    }
}
