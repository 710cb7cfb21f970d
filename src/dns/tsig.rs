//! TSIG keys (RFC 8945): the shared secret that signs DNS UPDATEs.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm as WireAlgorithm;
use hickory_proto::rr::{Name, TSigner};
use zeroize::Zeroizing;

use super::DnsError;

/// Clock skew the server accepts between our signature and its time (the
/// RFC 8945 §10 recommendation).
const FUDGE_SECONDS: u16 = 300;

/// The HMAC of a [`TsigKey`].
///
/// Example: [`TsigKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TsigAlgorithm {
    /// `hmac-sha256`, what BIND's `tsig-keygen` and knot's `keymgr -t`
    /// make by default.
    HmacSha256,
    /// `hmac-sha512`.
    HmacSha512,
}

impl TsigAlgorithm {
    /// The algorithm's name as zone files and `nsupdate` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha512 => "hmac-sha512",
        }
    }

    fn wire(self) -> WireAlgorithm {
        match self {
            Self::HmacSha256 => WireAlgorithm::HmacSha256,
            Self::HmacSha512 => WireAlgorithm::HmacSha512,
        }
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TsigAlgorithm {
    type Err = DnsError;

    fn from_str(s: &str) -> Result<Self, DnsError> {
        match s.trim_end_matches('.').to_ascii_lowercase().as_str() {
            "hmac-sha256" | "sha256" => Ok(Self::HmacSha256),
            "hmac-sha512" | "sha512" => Ok(Self::HmacSha512),
            other => Err(DnsError::InvalidKey(format!(
                "unsupported TSIG algorithm {other:?} (hmac-sha256, hmac-sha512)"
            ))),
        }
    }
}

/// A TSIG key: its name, algorithm and secret.
///
/// The secret is zeroized when the key is dropped and never printed
/// (`Debug` shows its length only). hickory's signer keeps its own copy
/// for the duration of one UPDATE exchange; that copy is not zeroized.
///
/// # Example
///
/// ```
/// use sturdy_acme::dns::{TsigAlgorithm, TsigKey};
///
/// // NAME:ALGORITHM:BASE64SECRET, as the example tool's --tsig-key takes it.
/// let key: TsigKey = "acme-update.:hmac-sha256:c2VjcmV0LXNlY3JldC1zZWNyZXQ="
///     .parse()
///     .unwrap();
/// assert_eq!(key.name(), "acme-update.");
/// assert_eq!(key.algorithm(), TsigAlgorithm::HmacSha256);
/// assert!(!format!("{key:?}").contains("c2VjcmV0"));
/// assert!("acme-update.:hmac-md5:c2VjcmV0".parse::<TsigKey>().is_err());
/// ```
#[derive(Clone)]
pub struct TsigKey {
    name: String,
    algorithm: TsigAlgorithm,
    secret: Zeroizing<Vec<u8>>,
}

impl TsigKey {
    /// A key from its parts. The name must be a valid DNS name (a trailing
    /// dot is added when missing) and the secret must not be empty.
    pub fn new(name: &str, algorithm: TsigAlgorithm, secret: Vec<u8>) -> Result<Self, DnsError> {
        let secret = Zeroizing::new(secret);
        if secret.is_empty() {
            return Err(DnsError::InvalidKey("empty TSIG secret".into()));
        }
        let mut name = name.trim().to_ascii_lowercase();
        if !name.ends_with('.') {
            name.push('.');
        }
        Name::from_ascii(&name).map_err(|e| {
            DnsError::InvalidKey(format!("TSIG key name {name:?} is not a DNS name: {e}"))
        })?;
        Ok(Self {
            name,
            algorithm,
            secret,
        })
    }

    /// The key's name, with its trailing dot.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> TsigAlgorithm {
        self.algorithm
    }

    /// A signer for one exchange.
    pub(crate) fn signer(&self) -> Result<TSigner, DnsError> {
        let name = Name::from_ascii(&self.name)
            .map_err(|e| DnsError::InvalidKey(format!("TSIG key name: {e}")))?;
        TSigner::new(
            self.secret.to_vec(),
            self.algorithm.wire(),
            name,
            FUDGE_SECONDS,
        )
        .map_err(|e| DnsError::InvalidKey(e.to_string()))
    }
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .finish()
    }
}

impl FromStr for TsigKey {
    type Err = DnsError;

    /// `NAME:ALGORITHM:BASE64SECRET` (standard base64, padding optional).
    /// Errors never echo a field: fields given in the wrong order would
    /// otherwise print the secret.
    fn from_str(s: &str) -> Result<Self, DnsError> {
        let mut parts = s.splitn(3, ':');
        let (Some(name), Some(algorithm), Some(secret)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(DnsError::InvalidKey(
                "expected NAME:ALGORITHM:BASE64SECRET".into(),
            ));
        };
        let field = |what: &str, index: usize, text: &str| {
            DnsError::InvalidKey(format!(
                "{what} (field {index} of NAME:ALGORITHM:BASE64SECRET, {} characters)",
                text.len()
            ))
        };
        let algorithm: TsigAlgorithm = algorithm.parse().map_err(|_| {
            field(
                "unsupported TSIG algorithm, expected hmac-sha256 or hmac-sha512",
                2,
                algorithm,
            )
        })?;
        let secret_text = Zeroizing::new(secret.trim().trim_end_matches('=').to_owned());
        let secret = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(secret_text.as_bytes())
            .map_err(|_| field("TSIG secret is not base64", 3, secret))?;
        let name_ok = Name::from_ascii(name.trim()).is_ok() && !name.trim().is_empty();
        if !name_ok {
            return Err(field("TSIG key name is not a DNS name", 1, name));
        }
        Self::new(name, algorithm, secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let key: TsigKey = "k:sha512:AAAA".parse().unwrap();
        assert_eq!(key.name(), "k.");
        assert_eq!(key.algorithm(), TsigAlgorithm::HmacSha512);
        assert_eq!(key.secret.len(), 3);
        key.signer().unwrap();
        for bad in [
            "k",
            "k:hmac-sha256",
            "k:hmac-sha256:",
            "k:hmac-sha256:!!!",
            "bad name:hmac-sha256:AAAA",
        ] {
            assert!(bad.parse::<TsigKey>().is_err(), "{bad}");
        }
        // Fields in the wrong order: the error names the field, never its
        // text.
        for swapped in [
            "k:c2VjcmV0LXNlY3JldA:hmac-sha256",
            "k:hmac-sha256:c2VjcmV0LXNlY3JldA!",
        ] {
            let err = swapped.parse::<TsigKey>().err().unwrap().to_string();
            assert!(!err.to_ascii_lowercase().contains("c2vjcmv0"), "{err}");
            assert!(err.contains("field"), "{err}");
        }
    }
}
