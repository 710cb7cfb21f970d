//! On-demand requests: names an edge saw in a handshake and was allowed to
//! ask the issuer fleet for ([`serve::OnDemand`](crate::serve::OnDemand)).
//!
//! An edge never talks to the CA: it records the name in the store
//! ([`Store::request_certificate`](super::Store::request_certificate)),
//! once per name however many edges ask (the store keeps one pending
//! request per name), and the change feed carries a
//! [`ChangeKind::Requested`](super::ChangeKind::Requested) change to the
//! issuer fleet, whose renewers turn the request into a managed
//! certificate ([`RenewerBuilder::on_demand`](crate::renewer::RenewerBuilder::on_demand))
//! and delete it. The certificate then reaches every edge as any other
//! does, through the feed.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sturdy_acme::StoreError> {
//! use sturdy_acme::store::{ChangeKind, MemoryStore, Store};
//!
//! let store = MemoryStore::new();
//! // Three edges see the same new name: one request.
//! assert!(store.request_certificate("new.customer.example", "edge-1").await?);
//! assert!(!store.request_certificate("NEW.customer.example.", "edge-2").await?);
//! assert!(!store.request_certificate("new.customer.example", "edge-3").await?);
//! let pending = store.list_requests().await?;
//! assert_eq!(pending.len(), 1);
//! assert_eq!((pending[0].name.as_str(), pending[0].edge.as_str()), ("new.customer.example", "edge-1"));
//! // The issuer fleet hears of it through the feed.
//! let page = store.changes_since(0, 10).await?;
//! assert_eq!(page.changes[0].kind, ChangeKind::Requested);
//! // Once the fleet manages the name, the request is done.
//! store.delete_request("new.customer.example").await?;
//! assert!(store.list_requests().await?.is_empty());
//! # Ok(()) }
//! ```

use serde::{Deserialize, Serialize};

use super::{IdentifierSetKey, StoreError, StoreResult};
use crate::protocol::Identifier;

/// A pending on-demand request.
///
/// Example: [the module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRequest {
    /// The DNS name asked for, normalized (lower case, no trailing dot).
    pub name: String,
    /// Who asked first (an edge's name, for the operator).
    pub edge: String,
    /// When it was recorded, seconds since the Unix epoch by the store's
    /// clock (for display: never compared with another machine's clock).
    pub requested_at: u64,
}

/// The name a request is kept under: a DNS name (not a wildcard, not an
/// IP address: a handshake's SNI names one host), normalized. Every
/// backend checks it, so a hostile SNI never reaches a file name or a row.
pub fn request_name(name: &str) -> StoreResult<String> {
    let invalid = |reason: &str| StoreError::InvalidRequest {
        reason: reason.to_owned(),
    };
    let id = Identifier::parse(name).map_err(|_| invalid("not a valid DNS name"))?;
    if id.kind != "dns" {
        return Err(invalid("an IP address is not requested on demand"));
    }
    if id.is_wildcard() {
        return Err(invalid("a wildcard is not requested on demand"));
    }
    Ok(id.value)
}

/// The key of a request's [`Change`](super::Change) (the name's set, no CA).
pub fn request_key(name: &str) -> StoreResult<IdentifierSetKey> {
    let name = request_name(name)?;
    let id = Identifier::dns(&name).map_err(|_| StoreError::InvalidRequest {
        reason: "not a valid DNS name".into(),
    })?;
    Ok(IdentifierSetKey::new(&[id]))
}
