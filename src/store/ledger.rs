//! The rate-limit ledger split in entries: one JSON value per bucket (the
//! account's new orders, an exact set, a registered domain, an
//! identifier's failed authorizations) or per remembered 429, each under
//! its own key, so an issuance reads and writes the few entries it spends
//! ([`Store::update_ledger_entries`](super::Store::update_ledger_entries))
//! instead of the whole ledger, and issuances wait for each other only
//! on the entries they share (an account's new orders).
//!
//! A backend may store the entries as it likes; the contract's default
//! keeps them in the directory's one ledger document
//! ([`Store::update_ledger`](super::Store::update_ledger)) as
//! `{"entries": {key: value}}`, which is what FileStore does (one machine:
//! one lock is enough). A document in the form versions before the split
//! wrote (`{"buckets": {...}, "blocks": [...]}`) is read as its entries
//! ([`entries_from_document`]), so an upgraded node keeps counting what
//! the ledger spent; PostgreSQL moves it into rows in a migration.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sturdy_acme::StoreError> {
//! use serde_json::json;
//! use sturdy_acme::store::{MemoryStore, Store};
//!
//! let store = MemoryStore::new();
//! let dir = "https://ca.example/dir";
//! let keys = ["orders:acct-1".to_owned(), "domain:shop.example".to_owned()];
//! store
//!     .update_ledger_entries(dir, &keys, &mut |current| {
//!         assert!(current.is_empty()); // nothing spent yet
//!         Some([("orders:acct-1".to_owned(), json!({"tokens": 299.0, "at_ms": 0}))].into())
//!     })
//!     .await?;
//! let read = store.load_ledger_entries(dir, Some(&keys)).await?;
//! assert_eq!(read.len(), 1);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use serde_json::Value;

/// Ledger entries by key.
pub type LedgerEntries = BTreeMap<String, Value>;

/// A change to some entries of a ledger, for
/// [`Store::update_ledger_entries`](super::Store::update_ledger_entries):
/// the current values of the keys asked (a key with no entry is absent)
/// in, the values to write out (`Value::Null`: delete the entry; a key
/// left out: unchanged; `None`: write nothing).
pub type LedgerEntriesUpdate<'a> = dyn FnMut(&LedgerEntries) -> Option<LedgerEntries> + Send + 'a;

/// The document's key holding the entries (the contract's default form).
const ENTRIES: &str = "entries";

/// The entries a ledger document holds: the default form
/// (`{"entries": {...}}`), or the form before the split (`{"buckets":
/// {key: bucket}, "blocks": [{"account", "key", "retry_at_ms", "reason"}]}`),
/// whose buckets keep their keys and whose remembered 429s become one
/// entry per account and scope ([`block_key`]). Anything else holds none.
pub fn entries_from_document(document: &Value) -> LedgerEntries {
    if let Some(Value::Object(entries)) = document.get(ENTRIES) {
        return entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
    let mut entries = LedgerEntries::new();
    if let Some(Value::Object(buckets)) = document.get("buckets") {
        for (key, bucket) in buckets {
            entries.insert(key.clone(), bucket.clone());
        }
    }
    if let Some(Value::Array(blocks)) = document.get("blocks") {
        for block in blocks {
            let (Some(account), Some(key)) = (
                block.get("account").and_then(Value::as_str),
                block.get("key").and_then(Value::as_str),
            ) else {
                continue;
            };
            let slot = entries
                .entry(block_key(account, key))
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = slot {
                list.push(block.clone());
            }
        }
    }
    entries
}

/// The entry holding the 429s remembered for `account` about `scope`
/// (`account`, `set:<names>`, `domain:<d>`, `identifier:<n>`).
pub fn block_key(account: &str, scope: &str) -> String {
    format!("block:{scope} {account}")
}

/// The document holding `entries` (the contract's default form).
pub(crate) fn document_of(entries: LedgerEntries) -> Value {
    let mut document = serde_json::Map::new();
    document.insert(
        ENTRIES.to_owned(),
        Value::Object(entries.into_iter().collect()),
    );
    Value::Object(document)
}

/// The prefix a key ending in `*` names in a read
/// ([`Store::load_ledger_entries`](super::Store::load_ledger_entries)):
/// every entry whose key starts with what precedes the `*`.
pub fn key_prefix(key: &str) -> Option<&str> {
    key.strip_suffix('*')
}

/// The entries of `all` named by `keys` (a key ending in `*`: every entry
/// with that prefix, see [`key_prefix`]).
pub(crate) fn pick(all: &LedgerEntries, keys: &[String]) -> LedgerEntries {
    let mut picked = LedgerEntries::new();
    for key in keys {
        match key_prefix(key) {
            Some(prefix) => picked.extend(
                all.range::<str, _>((
                    std::ops::Bound::Included(prefix),
                    std::ops::Bound::Unbounded,
                ))
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone())),
            ),
            None => {
                if let Some(v) = all.get(key) {
                    picked.insert(key.clone(), v.clone());
                }
            }
        }
    }
    picked
}

/// Applies `changes` (a `Null` deletes) to `all`.
pub(crate) fn apply(all: &mut LedgerEntries, changes: LedgerEntries) {
    for (key, value) in changes {
        if value.is_null() {
            all.remove(&key);
        } else {
            all.insert(key, value);
        }
    }
}
