//! ACME Renewal Information (RFC 9773): the CertID that names a
//! certificate, and the CA's suggested renewal window for it.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::{b64, timestamp};

/// The shortest a `Retry-After` on renewal information is taken to ask
/// for (RFC 9773 §4.3.2: clamp it to sane bounds).
pub const MIN_RECHECK: Duration = Duration::from_secs(60);
/// The longest.
pub const MAX_RECHECK: Duration = Duration::from_secs(24 * 3600);
/// The recheck interval when the CA sends no `Retry-After`, or the answer
/// was unusable (RFC 9773: "long-term errors → retry after 6 hours").
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(6 * 3600);

/// A certificate's ARI identifier: base64url of its Authority Key
/// Identifier's keyIdentifier, `.`, base64url of its serial number's DER
/// content octets (both unpadded).
///
/// # Example
///
/// RFC 9773 §4.1's own example:
///
/// ```
/// use sturdy_acme::CertId;
///
/// let aki = [0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3,
///            0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4];
/// let id = CertId::new(&aki, &[0x00, 0x87, 0x65, 0x43, 0x21]);
/// assert_eq!(id.as_str(), "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertId(String);

impl CertId {
    /// The CertID from a key identifier and the serial's DER content
    /// octets (with the leading zero a positive serial with its high bit
    /// set carries).
    pub fn new(key_identifier: &[u8], serial: &[u8]) -> Self {
        Self(format!("{}.{}", b64(key_identifier), b64(serial)))
    }

    /// The CertID of a DER certificate; `Err` says why there is none (not
    /// a certificate, or no Authority Key Identifier with a keyIdentifier).
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("not a certificate: {e}"))?;
        let key_id = cert
            .extensions()
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    aki.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .ok_or("the certificate has no Authority Key Identifier keyIdentifier")?;
        Ok(Self::new(&key_id, cert.tbs_certificate.raw_serial()))
    }

    /// The CertID of the first (leaf) certificate of a PEM chain.
    ///
    /// Only the leaf's block is decoded (a renewer asks this of every
    /// certificate at every renewal information check; the rest of the
    /// chain is not needed).
    pub fn from_pem(chain_pem: &str) -> Result<Self, String> {
        const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
        const END: &str = "-----END CERTIFICATE-----";
        let end = chain_pem.find(END).ok_or("no CERTIFICATE in the chain")? + END.len();
        let begin = chain_pem[..end]
            .rfind(BEGIN)
            .ok_or("no CERTIFICATE in the chain")?;
        // The leaf's own block: a leaf cut short (no END of its own) must
        // not pass for the certificate after it.
        if chain_pem.find(BEGIN) != Some(begin) {
            return Err("the first CERTIFICATE block is not complete".into());
        }
        let leaf = pem::parse(&chain_pem[begin..end]).map_err(|e| format!("not PEM: {e}"))?;
        Self::from_der(leaf.contents())
    }

    /// A CertID as the CA or a store spells it, checked for shape (two
    /// non-empty base64url parts).
    pub fn parse(text: &str) -> Option<Self> {
        let (a, b) = text.split_once('.')?;
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        };
        (ok(a) && ok(b)).then(|| Self(text.to_owned()))
    }

    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The CA's answer for one certificate: when to renew it, and when to ask
/// again.
///
/// Example: [`Client::renewal_info`](crate::Client::renewal_info).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenewalInfo {
    /// The start of the suggested window.
    pub window_start: SystemTime,
    /// Its end (after the start).
    pub window_end: SystemTime,
    /// A page explaining the window (an incident, typically).
    pub explanation_url: Option<String>,
    /// When to fetch the renewal information again: the CA's `Retry-After`
    /// clamped to between a minute and a day, else 6 hours after the
    /// answer.
    pub check_again_at: SystemTime,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    suggested_window: WireWindow,
    #[serde(default, rename = "explanationURL")]
    explanation_url: Option<String>,
}

#[derive(Deserialize)]
struct WireWindow {
    start: String,
    end: String,
}

impl RenewalInfo {
    /// Parses an answer received at `now`, with the `Retry-After` it came
    /// with; `Err` says what is wrong (malformed JSON, unparseable times,
    /// an end not after the start).
    pub fn parse(
        body: &[u8],
        retry_after: Option<Duration>,
        now: SystemTime,
    ) -> Result<Self, String> {
        let wire: Wire =
            serde_json::from_slice(body).map_err(|e| format!("not renewal information: {e}"))?;
        let time = |s: &str| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| timestamp::from_unix(t.unix_timestamp()))
                .map_err(|e| format!("suggestedWindow time {s:?}: {e}"))
        };
        let (start, end) = (
            time(&wire.suggested_window.start)?,
            time(&wire.suggested_window.end)?,
        );
        if end <= start {
            return Err("the suggested window ends before it starts".into());
        }
        let recheck = retry_after
            .map(|d| d.clamp(MIN_RECHECK, MAX_RECHECK))
            .unwrap_or(DEFAULT_RECHECK);
        Ok(Self {
            window_start: start,
            window_end: end,
            explanation_url: wire.explanation_url,
            check_again_at: now + recheck,
        })
    }

    /// A time to renew, uniformly random in the window (RFC 9773 §4.2);
    /// `now` when the window has passed or the chosen time is in the past.
    /// `fraction` in `0.0..1.0` picks the point (a random draw).
    pub fn renewal_time(&self, fraction: f64, now: SystemTime) -> SystemTime {
        let span = self
            .window_end
            .duration_since(self.window_start)
            .unwrap_or_default();
        let at = self.window_start + span.mul_f64(fraction.clamp(0.0, 1.0));
        at.max(now).min(self.window_end.max(now))
    }
}

/// A uniform draw in `0.0..1.0` from the system's randomness.
pub(crate) fn random_fraction() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// A uniform draw in `0.0..1.0` from `seed` and `key` alone (FNV-1a,
/// then SplitMix64's finalizer): the same pair gives the same draw, in
/// any order of calls.
pub(crate) fn seeded_fraction(seed: u64, key: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::timestamp::from_unix;

    /// RFC 9773 Appendix A's certificate: its CertID is the one §4.1
    /// derives by hand.
    #[test]
    fn the_rfc_example_certificate_has_the_rfc_cert_id() {
        let pem = "-----BEGIN CERTIFICATE-----
MIIBQzCB66ADAgECAgUAh2VDITAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwpFeGFt
cGxlIENBMCIYDzAwMDEwMTAxMDAwMDAwWhgPMDAwMTAxMDEwMDAwMDBaMBYxFDAS
BgNVBAMTC2V4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeBZu
7cbpAYNXZLbbh8rNIzuOoqOOtmxA1v7cRm//AwyMwWxyHz4zfwmBhcSrf47NUAFf
qzLQ2PPQxdTXREYEnKMjMCEwHwYDVR0jBBgwFoAUaYhba4dGQEHhs3uEe6CuLN4B
yNQwCgYIKoZIzj0EAwIDRwAwRAIge09+S5TZAlw5tgtiVvuERV6cT4mfutXIlwTb
+FYN/8oCIClDsqBklhB9KAelFiYt9+6FDj3z4KGVelYM5MdsO3pK
-----END CERTIFICATE-----
";
        assert_eq!(
            CertId::from_pem(pem).unwrap().as_str(),
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
        );
        // The leaf is the first block, whatever follows it; a key before
        // it is not a certificate.
        let chain = format!("{pem}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert_eq!(
            CertId::from_pem(&chain).unwrap().as_str(),
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
        );
        let keyed = format!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{pem}");
        assert_eq!(
            CertId::from_pem(&keyed).unwrap().as_str(),
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
        );
        assert!(
            CertId::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
        assert!(
            CertId::from_pem("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        // A leaf cut short is refused, not read as the next certificate.
        let truncated = format!("-----BEGIN CERTIFICATE-----\nMIIBQzCB\n{pem}");
        assert!(CertId::from_pem(&truncated).is_err());
        assert!(CertId::parse("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE").is_some());
        assert!(CertId::parse("no-dot").is_none());
        assert!(CertId::parse("a.b/c").is_none());
    }

    #[test]
    fn windows_parse_and_bad_ones_are_refused() {
        let now = from_unix(1_700_000_000);
        let body =
            br#"{"suggestedWindow":{"start":"2027-01-15T00:00:00Z","end":"2027-01-16T00:00:00Z"},
                        "explanationURL":"https://ca.example/why"}"#;
        let info = RenewalInfo::parse(body, Some(Duration::from_secs(5)), now).unwrap();
        assert_eq!(
            info.explanation_url.as_deref(),
            Some("https://ca.example/why")
        );
        assert_eq!(
            info.check_again_at,
            now + MIN_RECHECK,
            "Retry-After clamped up"
        );
        let info = RenewalInfo::parse(body, Some(Duration::from_secs(10 * 86400)), now).unwrap();
        assert_eq!(info.check_again_at, now + MAX_RECHECK, "and down");
        let info = RenewalInfo::parse(body, None, now).unwrap();
        assert_eq!(info.check_again_at, now + DEFAULT_RECHECK);
        // A point in the window; the window's start for 0, its end for 1.
        let t = info.renewal_time(0.5, now);
        assert!(t > info.window_start && t < info.window_end);
        assert_eq!(info.renewal_time(0.0, now), info.window_start);
        // A window in the past: now.
        let later = info.window_end + Duration::from_secs(10);
        assert_eq!(info.renewal_time(0.3, later), later);
        for bad in [
            &br#"{"suggestedWindow":{"start":"2027-01-16T00:00:00Z","end":"2027-01-15T00:00:00Z"}}"#[..],
            br#"{"suggestedWindow":{"start":"yesterday","end":"2027-01-15T00:00:00Z"}}"#,
            br#"{"window":{}}"#,
            b"<html>",
        ] {
            assert!(RenewalInfo::parse(bad, None, now).is_err());
        }
        let f = random_fraction();
        assert!((0.0..1.0).contains(&f));
        // Seeded: one pair, one draw; another serial or seed, another.
        let a = seeded_fraction(5, "4a1f");
        assert!((0.0..1.0).contains(&a));
        assert_eq!(a, seeded_fraction(5, "4a1f"));
        assert_ne!(a, seeded_fraction(5, "4a20"));
        assert_ne!(a, seeded_fraction(6, "4a1f"));
    }
}
