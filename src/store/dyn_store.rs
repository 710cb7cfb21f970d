//! [`DynStore`]: the [`Store`] trait as a trait object.
//!
//! `Store`'s methods return `impl Future`, which keeps calls on a concrete
//! store free of allocation but makes the trait unusable as `dyn Store`.
//! `DynStore` is the same contract with boxed futures; every `Store` is a
//! `DynStore`, and `Arc<dyn DynStore>` is a `Store`, so a service can pick
//! its backend at run time and still hand it to an
//! [`Issuer`](crate::Issuer):
//!
//! ```
//! use std::sync::Arc;
//! use sturdy_acme::store::{DynStore, FileStore};
//!
//! # fn main() -> Result<(), sturdy_acme::StoreError> {
//! let dir = std::env::temp_dir().join(format!("sturdy-doc-dyn-{}", std::process::id()));
//! let store: Arc<dyn DynStore> = Arc::new(FileStore::open(&dir)?);
//! // `Issuer::builder(client, store)` takes it as it is.
//! # drop(store);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::{
    CertificateRequest, ChangePage, DirectoryRecord, FeedSnapshot, IdentifierSetKey, Journal,
    Lease, LedgerEntries, LedgerEntriesUpdate, LedgerUpdate, ManagedRecord, RateLimitRecord, Store,
    StoreResult, StoredAccount, StoredCertificate, ValidationCertificate,
};

/// A boxed, sendable future of a store operation.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 'a>>;

/// An argument's type in the two forms of the contract: `ref T` is `&T`,
/// `mut T` is `&mut T`, `val T` is `T`, `opt T` is `Option<&T>`; in
/// [`DynStore`] every borrow lives
/// for the call's `'a`.
macro_rules! arg {
    (ref $lt:lifetime $ty:ty) => { &$lt $ty };
    (mut $lt:lifetime $ty:ty) => { &$lt mut $ty };
    (val $lt:lifetime $ty:ty) => { $ty };
    (opt $lt:lifetime $ty:ty) => { Option<&$lt $ty> };
    (ref $ty:ty) => { &$ty };
    (mut $ty:ty) => { &mut $ty };
    (val $ty:ty) => { $ty };
    (opt $ty:ty) => { Option<&$ty> };
}

/// The [`Store`] contract, written once: the [`DynStore`] trait, its
/// blanket implementation for every `Store`, and `Store` for
/// `Arc<dyn DynStore>` are all generated from this one list.
macro_rules! contract {
    ($( fn $name:ident ( $( $arg:ident : $kind:ident $ty:ty ),* ) -> $ret:ty; )*) => {
        /// [`Store`] with boxed futures, usable as `Arc<dyn DynStore>`; each
        /// method has the contract of the [`Store`] method of the same name.
        ///
        /// # Example
        ///
        /// ```
        /// use std::sync::Arc;
        /// use sturdy_acme::store::{DynStore, FileStore};
        ///
        /// # fn main() -> Result<(), sturdy_acme::StoreError> {
        /// let dir = std::env::temp_dir().join(format!("sturdy-doc-dyn-{}", std::process::id()));
        /// let store: Arc<dyn DynStore> = Arc::new(FileStore::open(&dir)?);
        /// // `Issuer::builder(client, store)` takes it as it is.
        /// # drop(store);
        /// # std::fs::remove_dir_all(&dir).ok();
        /// # Ok(()) }
        /// ```
        pub trait DynStore: Send + Sync + 'static {
            $(
                #[doc = concat!("[`Store::", stringify!($name), "`].")]
                fn $name<'a>(&'a self, $( $arg: arg!($kind 'a $ty) ),*) -> StoreFuture<'a, $ret>;
            )*
        }

        impl<S: Store> DynStore for S {
            $(
                fn $name<'a>(&'a self, $( $arg: arg!($kind 'a $ty) ),*) -> StoreFuture<'a, $ret> {
                    Box::pin(Store::$name(self, $( $arg ),*))
                }
            )*
        }

        impl Store for Arc<dyn DynStore> {
            $(
                async fn $name(&self, $( $arg: arg!($kind $ty) ),*) -> StoreResult<$ret> {
                    DynStore::$name(&**self, $( $arg ),*).await
                }
            )*
        }
    };
}

contract! {
    fn load_account(directory: ref str) -> Option<StoredAccount>;
    fn save_account(directory: ref str, account: ref StoredAccount) -> ();
    fn load_certificate(key: ref IdentifierSetKey) -> Option<StoredCertificate>;
    fn save_certificate(key: ref IdentifierSetKey, certificate: ref StoredCertificate) -> ();
    fn list_certificates(directory: ref str) -> Vec<IdentifierSetKey>;
    fn list_journals(directory: ref str) -> Vec<IdentifierSetKey>;
    fn load_journal(key: ref IdentifierSetKey) -> Option<Journal>;
    fn save_journal(key: ref IdentifierSetKey, journal: ref Journal) -> ();
    fn delete_journal(key: ref IdentifierSetKey) -> ();
    fn archive_journal(key: ref IdentifierSetKey, journal: ref Journal) -> ();
    fn changes_since(after: val u64, limit: val usize) -> ChangePage;
    fn wait_for_changes(after: val u64, timeout: val Duration) -> u64;
    fn feed_snapshot() -> FeedSnapshot;
    fn request_certificate(name: ref str, edge: ref str) -> bool;
    fn list_requests() -> Vec<CertificateRequest>;
    fn delete_request(name: ref str) -> ();
    fn save_validation(validation: ref ValidationCertificate) -> ();
    fn load_validation(name: ref str) -> Option<ValidationCertificate>;
    fn delete_validation(name: ref str) -> ();
    fn load_directory(directory: ref str) -> Option<DirectoryRecord>;
    fn save_directory(directory: ref str, record: ref DirectoryRecord) -> ();
    fn load_ledger(directory: ref str) -> Option<RateLimitRecord>;
    fn save_ledger(directory: ref str, ledger: ref RateLimitRecord) -> ();
    fn list_managed(directory: ref str) -> Vec<ManagedRecord>;
    fn save_managed(directory: ref str, record: ref ManagedRecord) -> ();
    fn delete_managed(directory: ref str, id: ref str) -> ();
    fn update_ledger(directory: ref str, update: mut LedgerUpdate<'_>) -> ();
    fn load_ledger_entries(directory: ref str, keys: opt [String]) -> LedgerEntries;
    fn update_ledger_entries(directory: ref str, keys: ref [String], update: mut LedgerEntriesUpdate<'_>) -> ();
    fn save_journal_fenced(key: ref IdentifierSetKey, journal: ref Journal, lease: ref Lease) -> ();
    fn delete_journal_fenced(key: ref IdentifierSetKey, lease: ref Lease) -> ();
    fn acquire_lease(name: ref str, holder: ref str, ttl: val Duration) -> Lease;
    fn renew_lease(lease: ref Lease, ttl: val Duration) -> Lease;
    fn check_lease(lease: ref Lease) -> ();
    fn release_lease(lease: ref Lease) -> ();
}
