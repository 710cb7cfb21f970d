//! ACME identifiers: DNS names (RFC 8555 §7.1.4) and IP addresses (RFC 8738).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A name or address that cannot be an ACME identifier, and why
/// (converts into [`Error::InvalidInput`](crate::Error::InvalidInput)).
///
/// Example: [`Identifier`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidIdentifier(pub String);

type Result<T> = std::result::Result<T, InvalidIdentifier>;

/// An identifier a certificate is requested for.
///
/// # Example
///
/// ```
/// use sturdy_acme::Identifier;
///
/// let name = Identifier::parse("WWW.Example.com.")?;
/// assert_eq!((name.kind.as_str(), name.value.as_str()), ("dns", "www.example.com"));
/// assert!(Identifier::parse("*.example.com")?.is_wildcard());
/// assert_eq!(Identifier::parse("2001:db8::1")?.kind, "ip");
/// let why = Identifier::parse("exa mple.com").unwrap_err();
/// assert!(why.to_string().contains("invalid DNS name"));
/// # Ok::<(), sturdy_acme::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    /// `"dns"` or `"ip"` (other values are kept as sent).
    #[serde(rename = "type")]
    pub kind: String,
    /// The name or address.
    pub value: String,
}

impl Identifier {
    /// A DNS identifier, validated and normalized (lower case, no trailing dot;
    /// `*.` allowed as the first label for wildcards).
    pub fn dns(name: &str) -> Result<Self> {
        Ok(Self {
            kind: "dns".into(),
            value: normalize_dns_name(name)?,
        })
    }

    /// An IP address identifier (RFC 8738), in its canonical text form.
    pub fn ip(addr: IpAddr) -> Self {
        Self {
            kind: "ip".into(),
            value: addr.to_string(),
        }
    }

    /// Parses `s` as an IP address if it is one, else as a DNS name.
    pub fn parse(s: &str) -> Result<Self> {
        let trimmed = s.trim();
        if let Some((addr, zone)) = trimmed.split_once('%')
            && addr.parse::<std::net::Ipv6Addr>().is_ok()
        {
            return Err(InvalidIdentifier(format!(
                "{s:?} is an IPv6 address with a zone (%{zone}): a zone only means \
                 something on one host and cannot be in a certificate; drop it"
            )));
        }
        match trimmed.parse::<IpAddr>() {
            Ok(ip) => Ok(Self::ip(ip)),
            Err(_) => Self::dns(s),
        }
    }

    /// True for a DNS wildcard (`*.example.com`).
    pub fn is_wildcard(&self) -> bool {
        self.kind == "dns" && self.value.starts_with("*.")
    }

    /// The IP address, for `ip` identifiers.
    pub fn ip_addr(&self) -> Option<IpAddr> {
        if self.kind == "ip" {
            self.value.parse().ok()
        } else {
            None
        }
    }

    /// The DNS name without a leading `*.` (what dns-01 validates).
    pub fn base_name(&self) -> &str {
        self.value.strip_prefix("*.").unwrap_or(&self.value)
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

/// A set of identifiers in one canonical form (kinds and values lower case,
/// no trailing dot, sorted, deduplicated): what "the same certificate"
/// means to the store, the client's rate gate, the issuer's ledger and the
/// embedded CA. Serializes as the list.
///
/// # Example
///
/// ```
/// use sturdy_acme::{Identifier, IdentifierSet};
///
/// let a = IdentifierSet::new(&[Identifier::dns("b.example")?, Identifier::dns("a.example")?]);
/// let b = IdentifierSet::new(&[Identifier::dns("A.example")?, Identifier::dns("b.example")?, Identifier::dns("a.example")?]);
/// assert_eq!(a, b);
/// assert_eq!(a.to_string(), "a.example,b.example");
/// # Ok::<(), sturdy_acme::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdentifierSet(Vec<Identifier>);

impl IdentifierSet {
    /// The canonical set of `ids`.
    pub fn new(ids: &[Identifier]) -> Self {
        let mut v: Vec<Identifier> = ids
            .iter()
            .map(|i| Identifier {
                kind: i.kind.to_ascii_lowercase(),
                value: i.value.trim_end_matches('.').to_ascii_lowercase(),
            })
            .collect();
        v.sort();
        v.dedup();
        Self(v)
    }

    /// The identifiers, sorted.
    pub fn as_slice(&self) -> &[Identifier] {
        &self.0
    }

    /// The identifiers, sorted.
    pub fn into_vec(self) -> Vec<Identifier> {
        self.0
    }

    /// The values (names and addresses), sorted by value: `a.example,b.example`.
    pub fn values(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.0.iter().map(|i| i.value.as_str()).collect();
        v.sort_unstable();
        v
    }
}

impl fmt::Display for IdentifierSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.values().join(","))
    }
}

impl From<&[Identifier]> for IdentifierSet {
    fn from(ids: &[Identifier]) -> Self {
        Self::new(ids)
    }
}

/// Checks and normalizes a DNS name as a CA would accept it (LDH labels,
/// at most 253 octets, labels 1..=63, optional leading `*.`).
fn normalize_dns_name(name: &str) -> Result<String> {
    let bad = |why: &str| InvalidIdentifier(format!("invalid DNS name {name:?}: {why}"));
    let trimmed = name.trim();
    let lower = trimmed
        .strip_suffix('.')
        .unwrap_or(trimmed)
        .to_ascii_lowercase();
    if lower.ends_with('.') {
        return Err(bad("more than one trailing dot"));
    }
    if lower.contains('%') && lower.split('%').next().is_some_and(|a| a.contains(':')) {
        return Err(bad(
            "an IPv6 address with a zone; a zone cannot be in a certificate",
        ));
    }
    if lower.is_empty() {
        return Err(bad("empty"));
    }
    if !lower.is_ascii() {
        return Err(bad("not ASCII (use the A-label / punycode form)"));
    }
    if lower.len() > 253 {
        return Err(bad("longer than 253 octets"));
    }
    let (wildcard, rest) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let labels: Vec<&str> = rest.split('.').collect();
    if wildcard && labels.len() < 2 {
        return Err(bad("wildcard directly under a top-level domain"));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(bad("empty label"));
        }
        if label.len() > 63 {
            return Err(bad("label longer than 63 octets"));
        }
        if label.contains('*') {
            return Err(bad("'*' only allowed as the whole first label"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad("characters other than letters, digits and '-'"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("label starts or ends with '-'"));
        }
        if let Some(ace) = label.strip_prefix("xn--") {
            let (unicode, result) = idna::domain_to_unicode(label);
            if ace.is_empty() || result.is_err() || unicode == *label {
                return Err(bad(&format!(
                    "label {label:?} is not valid punycode (IDNA)"
                )));
            }
        }
    }
    if lower.parse::<IpAddr>().is_ok() {
        return Err(bad("an IP address, use an ip identifier"));
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad(
            "its last label is all digits, so it reads as an IPv4 address (CAs refuse it); \
             an IP address must be written as a dotted quad without leading zeros",
        ));
    }
    if wildcard && psl::suffix_str(rest) == Some(rest) {
        return Err(bad(&format!(
            "a wildcard directly under the public suffix {rest:?} (CAs refuse it)"
        )));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_are_normalized_and_checked() {
        assert_eq!(
            Identifier::dns("Example.COM.").unwrap().value,
            "example.com"
        );
        assert!(Identifier::dns("*.example.com").unwrap().is_wildcard());
        for bad in [
            "",
            "a..b",
            "-a.com",
            "a-.com",
            "*.com",
            "a.*.com",
            "ex ample.com",
            "exämple.com",
            "a_b.com",
            &"a".repeat(64),
            &format!("{}.com", vec!["a".repeat(60); 5].join(".")),
        ] {
            assert!(
                matches!(Identifier::dns(bad), Err(InvalidIdentifier(_))),
                "{bad:?}"
            );
        }
    }

    /// Issue 16, defect 12: what a CA would refuse is refused locally, with
    /// a message that says why.
    #[test]
    fn names_a_ca_would_refuse_are_refused_with_the_reason() {
        for (name, why) in [
            ("*.co.uk", "public suffix"),
            ("*.github.io", "public suffix"),
            ("1.2.3", "IPv4"),
            ("010.1.1.1", "IPv4"),
            ("example.123", "IPv4"),
            ("fe80::1%eth0", "zone"),
            ("xn--a.example", "punycode"),
            ("xn--zz.example", "punycode"),
            ("example.com..", "trailing dot"),
        ] {
            match Identifier::parse(name) {
                Err(InvalidIdentifier(m)) => assert!(m.contains(why), "{name}: {m}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        // Still fine: one trailing dot, valid punycode, digits inside.
        assert_eq!(
            Identifier::parse("example.com.").unwrap().value,
            "example.com"
        );
        assert!(Identifier::parse("xn--bcher-kva.example").is_ok());
        assert!(Identifier::parse("1.2.3.example").is_ok());
        assert!(Identifier::parse("*.example.co.uk").is_ok());
    }

    #[test]
    fn parse_picks_ip_or_dns() {
        assert_eq!(Identifier::parse("127.0.0.1").unwrap().kind, "ip");
        assert_eq!(Identifier::parse("::1").unwrap().value, "::1");
        assert_eq!(Identifier::parse("a.example").unwrap().kind, "dns");
    }
}
