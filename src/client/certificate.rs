//! Downloaded certificate chains, and which of the CA's chains is preferred.

use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};

/// Which of the chains a CA offers (the default and its `Link:
/// rel="alternate"` ones) to take: the first that leads to this root.
///
/// ```
/// use sturdy_acme::ChainPreference;
///
/// let by_name = ChainPreference::root_name("ISRG Root X1");
/// assert_eq!(by_name, ChainPreference::RootName("ISRG Root X1".into()));
/// // By the root's key (its SubjectPublicKeyInfo, DER): the topmost
/// // certificate of the chain must be signed by it, whatever the root's
/// // name (a re-issued root keeps its key).
/// let by_key = ChainPreference::RootKey(vec![0x30, 0x59]);
/// assert!(matches!(by_key, ChainPreference::RootKey(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainPreference {
    /// The root's common name: the topmost certificate's issuer CN.
    RootName(String),
    /// The root's public key (SubjectPublicKeyInfo, DER): the topmost
    /// certificate's signature verifies under it.
    RootKey(Vec<u8>),
}

impl ChainPreference {
    /// [`ChainPreference::RootName`].
    pub fn root_name(name: impl Into<String>) -> Self {
        Self::RootName(name.into())
    }
}

/// A PEM certificate chain as the CA served it: the leaf first, then its issuers.
///
/// Example: the client example on the [crate root](crate), and
/// [`RevocationReason`](crate::RevocationReason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateChain {
    url: String,
    pem: String,
    der: Vec<Vec<u8>>,
    alternates: Vec<String>,
}

impl CertificateChain {
    /// Parses a PEM chain, checking that every block is an X.509 certificate.
    pub(crate) fn from_pem(url: &str, text: &str, alternates: Vec<String>) -> Result<Self, String> {
        let blocks = pem::parse_many(text).map_err(|e| format!("certificate chain PEM: {e}"))?;
        let mut der = Vec::with_capacity(blocks.len());
        for block in blocks {
            if block.tag() != "CERTIFICATE" {
                return Err(format!(
                    "unexpected {:?} block in certificate chain",
                    block.tag()
                ));
            }
            X509Certificate::from_der(block.contents())
                .map_err(|e| format!("invalid certificate in chain: {e}"))?;
            der.push(block.into_contents());
        }
        if der.is_empty() {
            return Err("certificate chain holds no certificate".into());
        }
        let pem = der
            .iter()
            .map(|d| pem::encode(&pem::Pem::new("CERTIFICATE", d.as_slice())))
            .collect();
        Ok(Self {
            url: url.to_owned(),
            pem,
            der,
            alternates,
        })
    }

    /// A chain from DER certificates (leaf first), e.g. ACME v1's DER leaf
    /// and the issuers its `Link: rel="up"` led to.
    #[cfg(feature = "v1")]
    pub(crate) fn from_der(url: &str, der: Vec<Vec<u8>>) -> Result<Self, String> {
        if der.is_empty() {
            return Err("certificate chain holds no certificate".into());
        }
        for d in &der {
            X509Certificate::from_der(d)
                .map_err(|e| format!("invalid certificate in chain: {e}"))?;
        }
        let pem = der
            .iter()
            .map(|d| pem::encode(&pem::Pem::new("CERTIFICATE", d.as_slice())))
            .collect();
        Ok(Self {
            url: url.to_owned(),
            pem,
            der,
            alternates: Vec::new(),
        })
    }

    /// The same chain, labelled with another URL.
    #[cfg(feature = "v1")]
    pub(crate) fn with_url(mut self, url: &str) -> Self {
        self.url = url.to_owned();
        self
    }

    /// Parses a PEM chain (leaf first), e.g. one read back from a store.
    pub fn parse_pem(url: &str, text: &str) -> Result<Self, crate::Error> {
        Self::from_pem(url, text, Vec::new()).map_err(crate::Error::InvalidInput)
    }

    /// The URL it was downloaded from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The whole chain, PEM (normalized line endings).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The leaf certificate, PEM.
    pub fn leaf_pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", self.der[0].as_slice()))
    }

    /// The issuer certificates (everything after the leaf), PEM.
    pub fn issuers_pem(&self) -> String {
        self.der[1..]
            .iter()
            .map(|d| pem::encode(&pem::Pem::new("CERTIFICATE", d.as_slice())))
            .collect()
    }

    /// Every certificate, DER, leaf first.
    pub fn certificates_der(&self) -> &[Vec<u8>] {
        &self.der
    }

    /// The leaf certificate, DER.
    pub fn leaf_der(&self) -> &[u8] {
        &self.der[0]
    }

    /// The other chains the CA offered (`Link: rel="alternate"`).
    pub fn alternate_urls(&self) -> &[String] {
        &self.alternates
    }

    /// The issuer common name of the topmost certificate: the root this
    /// chain leads to (what "preferred chain" selection matches on).
    pub fn top_issuer_common_name(&self) -> Option<String> {
        let last = self.der.last()?;
        let (_, cert) = X509Certificate::from_der(last).ok()?;
        cert.issuer()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned)
    }

    /// The issuer common name of the leaf: the intermediate that issued it.
    pub fn leaf_issuer_common_name(&self) -> Option<String> {
        let (_, cert) = X509Certificate::from_der(self.der.first()?).ok()?;
        cert.issuer()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned)
    }

    /// Whether this chain leads to the root `preference` names.
    pub fn leads_to(&self, preference: &ChainPreference) -> bool {
        match preference {
            ChainPreference::RootName(name) => {
                self.top_issuer_common_name().as_deref() == Some(name.as_str())
            }
            ChainPreference::RootKey(spki) => {
                let Some(last) = self.der.last() else {
                    return false;
                };
                let (Ok((_, top)), Ok((_, key))) = (
                    X509Certificate::from_der(last),
                    SubjectPublicKeyInfo::from_der(spki),
                ) else {
                    return false;
                };
                top.verify_signature(Some(&key)).is_ok()
            }
        }
    }

    /// The leaf's validity end.
    pub fn not_after(&self) -> Option<time::OffsetDateTime> {
        let (_, cert) = X509Certificate::from_der(&self.der[0]).ok()?;
        Some(cert.validity().not_after.to_datetime())
    }

    /// The leaf's validity (notBefore, notAfter) in seconds since the Unix epoch.
    pub fn validity(&self) -> Option<(i64, i64)> {
        let (_, cert) = X509Certificate::from_der(&self.der[0]).ok()?;
        let v = cert.validity();
        Some((v.not_before.timestamp(), v.not_after.timestamp()))
    }

    /// The leaf's serial number, lower-case hex without leading zeros.
    pub fn serial_hex(&self) -> Option<String> {
        let (_, cert) = X509Certificate::from_der(&self.der[0]).ok()?;
        let hex = cert.tbs_certificate.raw_serial_as_string().replace(':', "");
        let trimmed = hex.trim_start_matches('0');
        Some(if trimmed.is_empty() {
            "0".into()
        } else {
            trimmed.to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_chains_are_rejected() {
        assert!(CertificateChain::from_pem("u", "", vec![]).is_err());
        assert!(CertificateChain::from_pem("u", "hello", vec![]).is_err());
        let not_cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(CertificateChain::from_pem("u", not_cert, vec![]).is_err());
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(CertificateChain::from_pem("u", key, vec![]).is_err());
    }

    #[test]
    fn parses_a_real_chain() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Test Root");
        let cert = params.self_signed(&key).unwrap();
        let text = format!("{}\r\n{}", cert.pem(), cert.pem());
        let chain = CertificateChain::from_pem("u", &text, vec!["alt".into()]).unwrap();
        assert_eq!(chain.certificates_der().len(), 2);
        assert_eq!(chain.top_issuer_common_name().as_deref(), Some("Test Root"));
        assert_eq!(chain.alternate_urls(), ["alt"]);
        assert!(chain.serial_hex().is_some());
        assert!(chain.leaf_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
