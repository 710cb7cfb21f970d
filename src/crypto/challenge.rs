//! Values a challenge answer is made of (RFC 8555 §8, RFC 8737).

use ring::digest::{SHA256, digest};
use zeroize::Zeroizing;

use super::{AccountKey, b64};
use crate::error::{Error, Result};
use crate::protocol::Identifier;

/// The key authorization `token || '.' || thumbprint` (RFC 8555 §8.1).
pub fn key_authorization(token: &str, account_key: &AccountKey) -> String {
    format!("{token}.{}", account_key.thumbprint())
}

/// The dns-01 TXT record value: base64url(SHA-256(key authorization)) (§8.4).
pub fn dns01_txt_value(key_authorization: &str) -> String {
    b64(digest(&SHA256, key_authorization.as_bytes()))
}

/// The dns-01 record name for an identifier: `_acme-challenge.<name>.`
/// (without the wildcard label).
pub fn dns01_record_name(identifier: &Identifier) -> String {
    format!("_acme-challenge.{}.", identifier.base_name())
}

/// The SHA-256 digest of the key authorization that the tls-alpn-01
/// `acmeIdentifier` extension carries (RFC 8737 §3).
pub fn tls_alpn01_digest(key_authorization: &str) -> [u8; 32] {
    let d = digest(&SHA256, key_authorization.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The ALPN protocol name of tls-alpn-01.
pub const ACME_TLS_ALPN_PROTOCOL: &[u8] = b"acme-tls/1";

/// A self-signed tls-alpn-01 validation certificate (RFC 8737 §3) and its key.
///
/// Example: [`TlsAlpn01Resolver`](crate::solver::tls_alpn01::TlsAlpn01Resolver).
#[non_exhaustive]
pub struct TlsAlpn01Certificate {
    /// The certificate, DER.
    pub certificate_der: Vec<u8>,
    /// Its private key, PKCS#8 DER (zeroized on drop).
    pub private_key_pkcs8_der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for TlsAlpn01Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAlpn01Certificate")
            .finish_non_exhaustive()
    }
}

/// Builds the tls-alpn-01 certificate for `identifier`: a single SAN naming
/// it and the critical `acmeIdentifier` extension with the digest of the key
/// authorization.
pub fn tls_alpn01_certificate(
    identifier: &Identifier,
    key_authorization: &str,
) -> Result<TlsAlpn01Certificate> {
    let crypto = |e: rcgen::Error| Error::Crypto(e.to_string());
    let mut params =
        rcgen::CertificateParams::new(vec![identifier.value.clone()]).map_err(crypto)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(
        &tls_alpn01_digest(key_authorization),
    )];
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
    let cert = params.self_signed(&key).map_err(crypto)?;
    Ok(TlsAlpn01Certificate {
        certificate_der: cert.der().to_vec(),
        private_key_pkcs8_der: Zeroizing::new(key.serialize_der()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyAlgorithm;

    #[test]
    fn key_authorization_and_txt_value() {
        let key = AccountKey::generate(KeyAlgorithm::Es256).unwrap();
        let ka = key_authorization("tok", &key);
        assert_eq!(ka, format!("tok.{}", key.thumbprint()));
        // A fixed vector: base64url(SHA-256("a.b")), computed independently.
        assert_eq!(
            dns01_txt_value("a.b"),
            "LnM23I66h-9HLfVow1SCq_JXXcPl6sDFxiuP-urCyTQ"
        );
        let id = Identifier::dns("*.Example.org").unwrap();
        assert_eq!(dns01_record_name(&id), "_acme-challenge.example.org.");
    }

    #[test]
    fn tls_alpn_certificate_has_critical_acme_identifier() {
        use x509_parser::prelude::*;
        let id = Identifier::dns("a.example").unwrap();
        let cert = tls_alpn01_certificate(&id, "tok.thumb").unwrap();
        let (_, x509) = X509Certificate::from_der(&cert.certificate_der).unwrap();
        let ext = x509
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        // OCTET STRING (0x04, 32) || digest
        assert_eq!(&ext.value[..2], &[0x04, 0x20]);
        assert_eq!(&ext.value[2..], &tls_alpn01_digest("tok.thumb"));
    }
}
