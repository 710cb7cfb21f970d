//! The store's change feed: every change of a stored certificate that an
//! edge serving it must see gets a revision, in commit order.
//!
//! A certificate is *changed* for the feed when a save stores another
//! certificate (the first one, or another serial: issued, renewed,
//! replaced), the same certificate with another chain (an alternate chain
//! chosen), or changes its revocation. A save that changes only what the
//! issuer keeps for itself (the renewal schedule, the profile asked) gets
//! no revision: edges never hear of the renewer's bookkeeping.
//!
//! The feed carries keys, never certificates or keys: a reader loads the
//! certificate ([`Store::load_certificate`](super::Store::load_certificate))
//! and so always gets the newest one, never one older than the change it
//! was told of. (A crash between a change's record and its save's commit
//! can leave a change whose serial was never stored: the reader finds the
//! previous certificate, harmlessly.)
//!
//! Readers keep the last revision they applied and page with
//! [`Store::changes_since`](super::Store::changes_since); they wake with
//! [`Store::wait_for_changes`](super::Store::wait_for_changes) (a wake-up
//! that is lost, such as a database notification sent while the reader was
//! disconnected, loses nothing: the revision catches up). A store keeps a
//! bounded number of changes ([`DEFAULT_FEED_RETENTION`]); a reader further
//! behind, or ahead of the head (a store restored from a backup, a database
//! failed over to a replica that lost commits), gets
//! [`StoreError::FeedBehind`](crate::StoreError::FeedBehind)
//! and starts again from a [`FeedSnapshot`]: read its revision, load every
//! key it lists, then follow the changes after that revision (a change
//! seen twice is applied twice, harmlessly).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sturdy_acme::StoreError> {
//! use sturdy_acme::store::{MemoryStore, Store};
//!
//! let store = MemoryStore::new();
//! let snapshot = store.feed_snapshot().await?;
//! assert!(snapshot.keys.is_empty());
//! // An edge: load what the snapshot lists, then follow the changes.
//! let page = store.changes_since(snapshot.revision, 100).await?;
//! assert!(page.changes.is_empty());
//! assert_eq!(page.head, snapshot.revision);
//! # Ok(()) }
//! ```

use serde::{Deserialize, Serialize};

use super::{IdentifierSetKey, StoredCertificate};

/// How many changes a store keeps by default (FileStore, MemoryStore and
/// `PostgresStore`): a reader that fell further behind starts again from a
/// [`FeedSnapshot`].
pub const DEFAULT_FEED_RETENTION: u64 = 100_000;

/// What changed about a stored certificate.
///
/// Example: [the module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Another certificate is stored (the first, or another serial).
    Issued,
    /// The same certificate with another chain.
    Chain,
    /// The certificate's revocation changed.
    Revoked,
    /// An edge asked for a certificate for a name
    /// ([`Store::request_certificate`](super::Store::request_certificate)):
    /// the key is the name's, with no CA, and the serial is empty. Edges
    /// skip it; renewers taking on-demand requests act on it.
    Requested,
    /// A tls-alpn-01 validation certificate was saved or deleted
    /// ([`Store::save_validation`](super::Store::save_validation)): the key
    /// is its SNI name's, with no CA, and the serial is empty. Edges load
    /// it ([`Store::load_validation`](super::Store::load_validation)).
    Validation,
    /// A kind this version does not know (written by a newer one):
    /// readers skip it, so an edge that was not upgraded yet keeps
    /// following the feed.
    #[serde(other)]
    Other,
}

impl ChangeKind {
    /// The name stored with the change (`issued`, `chain`, `revoked`,
    /// `requested`, `validation`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Chain => "chain",
            Self::Revoked => "revoked",
            Self::Requested => "requested",
            Self::Validation => "validation",
            Self::Other => "other",
        }
    }

    /// The kind named `name` ([`as_str`](Self::as_str)); a name this
    /// version does not know is [`ChangeKind::Other`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "issued" => Self::Issued,
            "chain" => Self::Chain,
            "revoked" => Self::Revoked,
            "requested" => Self::Requested,
            "validation" => Self::Validation,
            _ => Self::Other,
        }
    }

    /// What saving `new` over `old` changes for the feed (`None`: nothing
    /// an edge serves). Backends call it with the record they replace.
    pub fn between(old: Option<&StoredCertificate>, new: &StoredCertificate) -> Option<Self> {
        Self::of(
            old.map(|o| (o.serial.as_str(), o.chain_pem.as_str(), o.revoked.is_some())),
            new,
        )
    }

    /// [`between`](Self::between), from what a backend kept of the old
    /// record: its serial, its chain and whether it was revoked.
    pub fn of(old: Option<(&str, &str, bool)>, new: &StoredCertificate) -> Option<Self> {
        match old {
            None => Some(Self::Issued),
            Some((serial, _, _)) if serial != new.serial => Some(Self::Issued),
            Some((_, chain, _)) if chain != new.chain_pem => Some(Self::Chain),
            Some((_, _, revoked)) if revoked != new.revoked.is_some() => Some(Self::Revoked),
            Some(_) => None,
        }
    }
}

/// One change of the feed.
///
/// Example: [the module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Its revision: larger than every revision committed before it.
    pub revision: u64,
    /// The certificate's key (load it for the certificate).
    pub key: IdentifierSetKey,
    /// What changed.
    pub kind: ChangeKind,
    /// The serial of the certificate saved.
    pub serial: String,
}

/// A page of the feed ([`Store::changes_since`](super::Store::changes_since)).
///
/// Example: [the module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangePage {
    /// The changes after the revision asked, oldest first.
    pub changes: Vec<Change>,
    /// The newest revision committed when the page was read: when the page
    /// holds fewer changes than asked, the reader is caught up to it.
    pub head: u64,
}

impl ChangePage {
    /// The revision to ask after next: the last change's, or `head` when
    /// the page was not full (nothing more was committed before it).
    pub fn next_after(&self, asked_after: u64, limit: usize) -> u64 {
        if limit == 0 {
            return asked_after;
        }
        match self.changes.last() {
            Some(last) if self.changes.len() >= limit => last.revision,
            Some(_) | None => self.head.max(asked_after),
        }
    }
}

/// Every stored certificate's key (and validation certificate's name) and
/// the revision they are at
/// ([`Store::feed_snapshot`](super::Store::feed_snapshot)): a reader loads
/// them, then follows the changes after `revision`.
///
/// Example: [the module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSnapshot {
    /// The head revision, read before the keys were listed.
    pub revision: u64,
    /// Every stored certificate's key, in every directory.
    pub keys: Vec<IdentifierSetKey>,
    /// The SNI names of the validation certificates stored
    /// ([`Store::save_validation`](super::Store::save_validation)).
    pub validations: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kind a newer version writes is read as `Other` (readers skip it)
    /// from both the JSON of FileStore's log and a database's name.
    #[test]
    fn an_unknown_kind_is_other_not_an_error() {
        let line = r#"{"revision":7,"key":{"identifiers":[{"type":"dns","value":"a.example"}]},"kind":"from_the_future","serial":""}"#;
        let change: Change = serde_json::from_str(line).unwrap();
        assert_eq!(change.kind, ChangeKind::Other);
        assert_eq!(ChangeKind::from_name("from_the_future"), ChangeKind::Other);
        for kind in [
            ChangeKind::Issued,
            ChangeKind::Chain,
            ChangeKind::Revoked,
            ChangeKind::Requested,
            ChangeKind::Validation,
        ] {
            assert_eq!(ChangeKind::from_name(kind.as_str()), kind);
        }
    }
}
