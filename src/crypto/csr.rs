//! Certificate keys and certificate signing requests (rcgen).

use std::fmt;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use zeroize::Zeroizing;

use super::AccountKey;
use super::account_key::pem_private_key;
use crate::error::{Error, Result};
use crate::protocol::Identifier;

/// The kind of key to generate for a certificate.
///
/// Example: [`CertificateKey`], and the client example on the [crate root](crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CertificateKeyType {
    /// ECDSA P-256 (the default).
    #[default]
    P256,
    /// ECDSA P-384.
    P384,
}

impl CertificateKeyType {
    /// Its name, as [`FromStr`](std::str::FromStr) reads it back: `p256`, `p384`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::P256 => "p256",
            Self::P384 => "p384",
        }
    }
}

impl std::str::FromStr for CertificateKeyType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "ecdsa" | "es256" => Ok(Self::P256),
            "p384" | "p-384" | "es384" => Ok(Self::P384),
            other => Err(Error::InvalidInput(format!(
                "unknown certificate key type {other:?} (p256, p384; RSA keys are imported)"
            ))),
        }
    }
}

/// A certificate's private key.
///
/// Generated (P-256, P-384) or imported from PKCS#8 PEM (P-256, P-384, RSA,
/// Ed25519). `Debug` never shows the key.
///
/// # Example
///
/// ```
/// use sturdy_acme::{CertificateKey, CertificateKeyType, Identifier};
///
/// let key = CertificateKey::generate(CertificateKeyType::P384)?;
/// let csr = key.csr_der(&[Identifier::dns("example.com")?])?;
/// assert!(!csr.is_empty());
/// let again = CertificateKey::from_pkcs8_pem(&key.to_pkcs8_pem())?;
/// assert_eq!(again.public_key_der(), key.public_key_der());
/// # Ok::<(), sturdy_acme::Error>(())
/// ```
pub struct CertificateKey {
    key: KeyPair,
}

impl CertificateKey {
    /// Generates a key.
    pub fn generate(kind: CertificateKeyType) -> Result<Self> {
        let alg = match kind {
            CertificateKeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            CertificateKeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        };
        let key = KeyPair::generate_for(alg).map_err(crypto_err)?;
        Ok(Self { key })
    }

    /// Imports a PKCS#8 PEM private key (P-256, P-384, RSA ≥ 2048, Ed25519).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        let der = pem_private_key(pem)?;
        Self::from_pkcs8_der(&der)
    }

    /// Imports a PKCS#8 DER private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let key = KeyPair::try_from(der).map_err(crypto_err)?;
        Ok(Self { key })
    }

    /// The key as PKCS#8 PEM (zeroized on drop).
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.key.serialize_pem())
    }

    /// The key as PKCS#8 DER (zeroized on drop).
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key.serialize_der())
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.key)
    }

    /// Builds a CSR for `identifiers`: every identifier as a SAN (DNS name or
    /// IP address), the first DNS name (if it fits in 64 octets) as CN.
    pub fn csr_der(&self, identifiers: &[Identifier]) -> Result<Vec<u8>> {
        if identifiers.is_empty() {
            return Err(Error::InvalidInput(
                "a CSR needs at least one identifier".into(),
            ));
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(first) = identifiers
            .iter()
            .find(|i| i.kind == "dns" && i.value.len() <= 64)
        {
            dn.push(DnType::CommonName, first.value.clone());
        }
        params.distinguished_name = dn;
        for id in identifiers {
            let san = match (id.kind.as_str(), id.ip_addr()) {
                ("ip", Some(ip)) => SanType::IpAddress(ip),
                ("dns", _) => SanType::DnsName(
                    id.value
                        .clone()
                        .try_into()
                        .map_err(|_| Error::InvalidInput(format!("invalid DNS name {id}")))?,
                ),
                _ => return Err(Error::InvalidInput(format!("cannot put {id} in a CSR"))),
            };
            params.subject_alt_names.push(san);
        }
        let csr = params.serialize_request(&self.key).map_err(crypto_err)?;
        Ok(csr.der().to_vec())
    }

    /// This key as a JWS signing key, to revoke its certificate (RFC 8555 §7.6).
    pub fn to_signing_key(&self) -> Result<AccountKey> {
        AccountKey::from_pkcs8_der(&self.to_pkcs8_der())
    }
}

impl fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateKey")
            .field("alg", &self.key.algorithm())
            .finish_non_exhaustive()
    }
}

/// What to finalize an order with.
///
/// Example: [`CertificateKey`], and the client example on the [crate root](crate).
#[derive(Debug)]
#[non_exhaustive]
pub enum Csr<'a> {
    /// Build the CSR from the order's identifiers with this key.
    Key(&'a CertificateKey),
    /// A CSR the caller built (DER); it must name exactly the order's identifiers.
    Der(&'a [u8]),
}

fn crypto_err(e: rcgen::Error) -> Error {
    Error::Crypto(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn csr_names_every_identifier() {
        let key = CertificateKey::generate(CertificateKeyType::P384).unwrap();
        let ids = [
            Identifier::dns("a.example").unwrap(),
            Identifier::dns("*.b.example").unwrap(),
            Identifier::parse("192.0.2.7").unwrap(),
        ];
        let der = key.csr_der(&ids).unwrap();
        let (_, csr) = X509CertificationRequest::from_der(&der).unwrap();
        csr.verify_signature().unwrap();
        let mut sans = Vec::new();
        for ext in csr.requested_extensions().unwrap() {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    sans.push(match name {
                        GeneralName::DNSName(n) => n.to_string(),
                        GeneralName::IPAddress(b) => format!("{b:?}"),
                        other => format!("{other:?}"),
                    });
                }
            }
        }
        assert_eq!(sans, ["a.example", "*.b.example", "[192, 0, 2, 7]"]);
        // It asks only for the names: no extended key usage, so never
        // clientAuth (gone from Let's Encrypt's profiles in 2026; Google
        // Trust Services refuses CSRs that ask for it).
        let requested: Vec<_> = csr.requested_extensions().unwrap().collect();
        assert_eq!(requested.len(), 1);
        assert!(matches!(
            requested[0],
            ParsedExtension::SubjectAlternativeName(_)
        ));
        assert!(
            csr.certification_request_info
                .subject
                .to_string()
                .contains("a.example")
        );
        assert!(key.csr_der(&[]).is_err());
    }

    #[test]
    fn keys_roundtrip_and_sign_revocations() {
        let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        let back = CertificateKey::from_pkcs8_pem(&key.to_pkcs8_pem()).unwrap();
        assert_eq!(back.public_key_der(), key.public_key_der());
        let signer = key.to_signing_key().unwrap();
        assert_eq!(signer.algorithm(), crate::crypto::KeyAlgorithm::Es256);
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }
}
