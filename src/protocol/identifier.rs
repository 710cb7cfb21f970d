//! ACME identifiers: DNS names (RFC 8555 §7.1.4) and IP addresses (RFC 8738).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An identifier a certificate is requested for.
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
        match s.trim().parse::<IpAddr>() {
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

/// Checks and normalizes a DNS name as a CA would accept it (LDH labels,
/// at most 253 octets, labels 1..=63, optional leading `*.`).
fn normalize_dns_name(name: &str) -> Result<String> {
    let bad = |why: &str| Error::InvalidInput(format!("invalid DNS name {name:?}: {why}"));
    let lower = name.trim().trim_end_matches('.').to_ascii_lowercase();
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
    }
    if lower.parse::<IpAddr>().is_ok() {
        return Err(bad("an IP address, use an ip identifier"));
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
                matches!(Identifier::dns(bad), Err(Error::InvalidInput(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parse_picks_ip_or_dns() {
        assert_eq!(Identifier::parse("127.0.0.1").unwrap().kind, "ip");
        assert_eq!(Identifier::parse("::1").unwrap().value, "::1");
        assert_eq!(Identifier::parse("a.example").unwrap().kind, "dns");
    }
}
