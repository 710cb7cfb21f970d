//! tls-alpn-01 validation certificates published to the edges (RFC 8737):
//! an issuer anywhere in the fleet answers a challenge by saving the
//! certificate ([`Store::save_validation`](super::Store::save_validation),
//! which the [`TlsAlpn01Publisher`](crate::solver::tls_alpn01::TlsAlpn01Publisher)
//! solver does), the change feed carries a
//! [`ChangeKind::Validation`](super::ChangeKind::Validation) change to
//! every edge, and whichever edge the CA connects to answers its
//! `acme-tls/1` handshake with it
//! ([`CertificateResolver`](crate::serve::CertificateResolver)). Deleting
//! it is a change too, so edges stop answering.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sturdy_acme::StoreError> {
//! use sturdy_acme::store::{ChangeKind, MemoryStore, Store, ValidationCertificate};
//!
//! let store = MemoryStore::new();
//! let validation = ValidationCertificate {
//!     name: "shop.example".into(),
//!     certificate_pem: "-----BEGIN CERTIFICATE-----\n...".into(),
//!     key_pem: "-----BEGIN PRIVATE KEY-----\n...".to_owned().into(),
//! };
//! store.save_validation(&validation).await?;
//! assert_eq!(store.load_validation("SHOP.example.").await?, Some(validation));
//! store.delete_validation("shop.example").await?;
//! let page = store.changes_since(0, 10).await?;
//! let kinds: Vec<ChangeKind> = page.changes.iter().map(|c| c.kind).collect();
//! assert_eq!(kinds, [ChangeKind::Validation, ChangeKind::Validation]);
//! # Ok(()) }
//! ```

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{IdentifierSetKey, StoreError, StoreResult};
use crate::protocol::Identifier;

/// A tls-alpn-01 validation certificate for one name, as the edges serve
/// it. Its `Debug` leaves the key out.
///
/// Example: [the module docs](self).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationCertificate {
    /// The SNI name the CA asks for: the DNS name, or the reverse-DNS
    /// name of an IP address (RFC 8738), normalized.
    pub name: String,
    /// The self-signed certificate with the `acmeIdentifier` extension, PEM.
    pub certificate_pem: String,
    /// Its private key, PKCS#8 PEM (stored like a certificate's key).
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for ValidationCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidationCertificate")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The name a validation certificate is kept under, normalized: one
/// host's DNS name (not a wildcard: a CA never validates one by
/// tls-alpn-01). Every backend checks it.
pub fn validation_name(name: &str) -> StoreResult<String> {
    let invalid = |reason: &str| StoreError::InvalidRequest {
        reason: reason.to_owned(),
    };
    let id = Identifier::dns(name).map_err(|_| invalid("not a valid SNI name"))?;
    if id.is_wildcard() {
        return Err(invalid("tls-alpn-01 never validates a wildcard"));
    }
    Ok(id.value)
}

/// The key of a validation certificate's [`Change`](super::Change).
pub fn validation_key(name: &str) -> StoreResult<IdentifierSetKey> {
    let name = validation_name(name)?;
    let id = Identifier::dns(&name).map_err(|_| StoreError::InvalidRequest {
        reason: "not a valid SNI name".into(),
    })?;
    Ok(IdentifierSetKey::new(&[id]))
}
