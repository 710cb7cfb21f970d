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
    IdentifierSetKey, Journal, Lease, LedgerUpdate, ManagedRecord, RateLimitRecord, Store,
    StoreResult, StoredAccount, StoredCertificate,
};

/// A boxed, sendable future of a store operation.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 'a>>;

/// [`Store`] with boxed futures, usable as `Arc<dyn DynStore>`; each method
/// has the contract of the [`Store`] method of the same name.
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
    /// [`Store::load_account`].
    fn load_account<'a>(&'a self, directory: &'a str) -> StoreFuture<'a, Option<StoredAccount>>;

    /// [`Store::save_account`].
    fn save_account<'a>(
        &'a self,
        directory: &'a str,
        account: &'a StoredAccount,
    ) -> StoreFuture<'a, ()>;

    /// [`Store::load_certificate`].
    fn load_certificate<'a>(
        &'a self,
        key: &'a IdentifierSetKey,
    ) -> StoreFuture<'a, Option<StoredCertificate>>;

    /// [`Store::save_certificate`].
    fn save_certificate<'a>(
        &'a self,
        key: &'a IdentifierSetKey,
        certificate: &'a StoredCertificate,
    ) -> StoreFuture<'a, ()>;

    /// [`Store::list_certificates`].
    fn list_certificates<'a>(
        &'a self,
        directory: &'a str,
    ) -> StoreFuture<'a, Vec<IdentifierSetKey>>;

    /// [`Store::list_journals`].
    fn list_journals<'a>(&'a self, directory: &'a str) -> StoreFuture<'a, Vec<IdentifierSetKey>>;

    /// [`Store::load_journal`].
    fn load_journal<'a>(&'a self, key: &'a IdentifierSetKey) -> StoreFuture<'a, Option<Journal>>;

    /// [`Store::save_journal`].
    fn save_journal<'a>(
        &'a self,
        key: &'a IdentifierSetKey,
        journal: &'a Journal,
    ) -> StoreFuture<'a, ()>;

    /// [`Store::delete_journal`].
    fn delete_journal<'a>(&'a self, key: &'a IdentifierSetKey) -> StoreFuture<'a, ()>;

    /// [`Store::archive_journal`].
    fn archive_journal<'a>(
        &'a self,
        key: &'a IdentifierSetKey,
        journal: &'a Journal,
    ) -> StoreFuture<'a, ()>;

    /// [`Store::load_ledger`].
    fn load_ledger<'a>(&'a self, directory: &'a str) -> StoreFuture<'a, Option<RateLimitRecord>>;

    /// [`Store::save_ledger`].
    fn save_ledger<'a>(
        &'a self,
        directory: &'a str,
        ledger: &'a RateLimitRecord,
    ) -> StoreFuture<'a, ()>;

    /// [`Store::list_managed`].
    fn list_managed<'a>(&'a self, directory: &'a str) -> StoreFuture<'a, Vec<ManagedRecord>>;

    /// [`Store::save_managed`].
    fn save_managed<'a>(
        &'a self,
        directory: &'a str,
        record: &'a ManagedRecord,
    ) -> StoreFuture<'a, ()>;

    /// [`Store::delete_managed`].
    fn delete_managed<'a>(&'a self, directory: &'a str, id: &'a str) -> StoreFuture<'a, ()>;

    /// [`Store::update_ledger`].
    fn update_ledger<'a>(
        &'a self,
        directory: &'a str,
        update: &'a mut LedgerUpdate<'_>,
    ) -> StoreFuture<'a, ()>;

    /// [`Store::save_journal_fenced`].
    fn save_journal_fenced<'a>(
        &'a self,
        key: &'a IdentifierSetKey,
        journal: &'a Journal,
        lease: &'a Lease,
    ) -> StoreFuture<'a, ()>;

    /// [`Store::delete_journal_fenced`].
    fn delete_journal_fenced<'a>(
        &'a self,
        key: &'a IdentifierSetKey,
        lease: &'a Lease,
    ) -> StoreFuture<'a, ()>;

    /// [`Store::acquire_lease`].
    fn acquire_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Lease>;

    /// [`Store::renew_lease`].
    fn renew_lease<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> StoreFuture<'a, Lease>;

    /// [`Store::check_lease`].
    fn check_lease<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()>;

    /// [`Store::release_lease`].
    fn release_lease<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()>;
}

impl<S: Store> DynStore for S {
    fn load_account<'a>(&'a self, directory: &'a str) -> StoreFuture<'a, Option<StoredAccount>> {
        Box::pin(Store::load_account(self, directory))
    }

    fn save_account<'a>(
        &'a self,
        directory: &'a str,
        account: &'a StoredAccount,
    ) -> StoreFuture<'a, ()> {
        Box::pin(Store::save_account(self, directory, account))
    }

    fn load_certificate<'a>(
        &'a self,
        key: &'a IdentifierSetKey,
    ) -> StoreFuture<'a, Option<StoredCertificate>> {
        Box::pin(Store::load_certificate(self, key))
    }

    fn save_certificate<'a>(
        &'a self,
        key: &'a IdentifierSetKey,
        certificate: &'a StoredCertificate,
    ) -> StoreFuture<'a, ()> {
        Box::pin(Store::save_certificate(self, key, certificate))
    }

    fn list_certificates<'a>(
        &'a self,
        directory: &'a str,
    ) -> StoreFuture<'a, Vec<IdentifierSetKey>> {
        Box::pin(Store::list_certificates(self, directory))
    }

    fn list_journals<'a>(&'a self, directory: &'a str) -> StoreFuture<'a, Vec<IdentifierSetKey>> {
        Box::pin(Store::list_journals(self, directory))
    }

    fn load_journal<'a>(&'a self, key: &'a IdentifierSetKey) -> StoreFuture<'a, Option<Journal>> {
        Box::pin(Store::load_journal(self, key))
    }

    fn save_journal<'a>(
        &'a self,
        key: &'a IdentifierSetKey,
        journal: &'a Journal,
    ) -> StoreFuture<'a, ()> {
        Box::pin(Store::save_journal(self, key, journal))
    }

    fn delete_journal<'a>(&'a self, key: &'a IdentifierSetKey) -> StoreFuture<'a, ()> {
        Box::pin(Store::delete_journal(self, key))
    }

    fn archive_journal<'a>(
        &'a self,
        key: &'a IdentifierSetKey,
        journal: &'a Journal,
    ) -> StoreFuture<'a, ()> {
        Box::pin(Store::archive_journal(self, key, journal))
    }

    fn load_ledger<'a>(&'a self, directory: &'a str) -> StoreFuture<'a, Option<RateLimitRecord>> {
        Box::pin(Store::load_ledger(self, directory))
    }

    fn save_ledger<'a>(
        &'a self,
        directory: &'a str,
        ledger: &'a RateLimitRecord,
    ) -> StoreFuture<'a, ()> {
        Box::pin(Store::save_ledger(self, directory, ledger))
    }

    fn list_managed<'a>(&'a self, directory: &'a str) -> StoreFuture<'a, Vec<ManagedRecord>> {
        Box::pin(Store::list_managed(self, directory))
    }

    fn save_managed<'a>(
        &'a self,
        directory: &'a str,
        record: &'a ManagedRecord,
    ) -> StoreFuture<'a, ()> {
        Box::pin(Store::save_managed(self, directory, record))
    }

    fn delete_managed<'a>(&'a self, directory: &'a str, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(Store::delete_managed(self, directory, id))
    }

    fn update_ledger<'a>(
        &'a self,
        directory: &'a str,
        update: &'a mut LedgerUpdate<'_>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(Store::update_ledger(self, directory, update))
    }

    fn save_journal_fenced<'a>(
        &'a self,
        key: &'a IdentifierSetKey,
        journal: &'a Journal,
        lease: &'a Lease,
    ) -> StoreFuture<'a, ()> {
        Box::pin(Store::save_journal_fenced(self, key, journal, lease))
    }

    fn delete_journal_fenced<'a>(
        &'a self,
        key: &'a IdentifierSetKey,
        lease: &'a Lease,
    ) -> StoreFuture<'a, ()> {
        Box::pin(Store::delete_journal_fenced(self, key, lease))
    }

    fn acquire_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, Lease> {
        Box::pin(Store::acquire_lease(self, name, holder, ttl))
    }

    fn renew_lease<'a>(&'a self, lease: &'a Lease, ttl: Duration) -> StoreFuture<'a, Lease> {
        Box::pin(Store::renew_lease(self, lease, ttl))
    }

    fn check_lease<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()> {
        Box::pin(Store::check_lease(self, lease))
    }

    fn release_lease<'a>(&'a self, lease: &'a Lease) -> StoreFuture<'a, ()> {
        Box::pin(Store::release_lease(self, lease))
    }
}

impl Store for Arc<dyn DynStore> {
    async fn load_account(&self, directory: &str) -> StoreResult<Option<StoredAccount>> {
        DynStore::load_account(&**self, directory).await
    }

    async fn save_account(&self, directory: &str, account: &StoredAccount) -> StoreResult<()> {
        DynStore::save_account(&**self, directory, account).await
    }

    async fn load_certificate(
        &self,
        key: &IdentifierSetKey,
    ) -> StoreResult<Option<StoredCertificate>> {
        DynStore::load_certificate(&**self, key).await
    }

    async fn save_certificate(
        &self,
        key: &IdentifierSetKey,
        certificate: &StoredCertificate,
    ) -> StoreResult<()> {
        DynStore::save_certificate(&**self, key, certificate).await
    }

    async fn list_certificates(&self, directory: &str) -> StoreResult<Vec<IdentifierSetKey>> {
        DynStore::list_certificates(&**self, directory).await
    }

    async fn list_journals(&self, directory: &str) -> StoreResult<Vec<IdentifierSetKey>> {
        DynStore::list_journals(&**self, directory).await
    }

    async fn load_journal(&self, key: &IdentifierSetKey) -> StoreResult<Option<Journal>> {
        DynStore::load_journal(&**self, key).await
    }

    async fn save_journal(&self, key: &IdentifierSetKey, journal: &Journal) -> StoreResult<()> {
        DynStore::save_journal(&**self, key, journal).await
    }

    async fn delete_journal(&self, key: &IdentifierSetKey) -> StoreResult<()> {
        DynStore::delete_journal(&**self, key).await
    }

    async fn archive_journal(&self, key: &IdentifierSetKey, journal: &Journal) -> StoreResult<()> {
        DynStore::archive_journal(&**self, key, journal).await
    }

    async fn load_ledger(&self, directory: &str) -> StoreResult<Option<RateLimitRecord>> {
        DynStore::load_ledger(&**self, directory).await
    }

    async fn save_ledger(&self, directory: &str, ledger: &RateLimitRecord) -> StoreResult<()> {
        DynStore::save_ledger(&**self, directory, ledger).await
    }

    async fn list_managed(&self, directory: &str) -> StoreResult<Vec<ManagedRecord>> {
        DynStore::list_managed(&**self, directory).await
    }

    async fn save_managed(&self, directory: &str, record: &ManagedRecord) -> StoreResult<()> {
        DynStore::save_managed(&**self, directory, record).await
    }

    async fn delete_managed(&self, directory: &str, id: &str) -> StoreResult<()> {
        DynStore::delete_managed(&**self, directory, id).await
    }

    async fn update_ledger(
        &self,
        directory: &str,
        update: &mut LedgerUpdate<'_>,
    ) -> StoreResult<()> {
        DynStore::update_ledger(&**self, directory, update).await
    }

    async fn save_journal_fenced(
        &self,
        key: &IdentifierSetKey,
        journal: &Journal,
        lease: &Lease,
    ) -> StoreResult<()> {
        DynStore::save_journal_fenced(&**self, key, journal, lease).await
    }

    async fn delete_journal_fenced(
        &self,
        key: &IdentifierSetKey,
        lease: &Lease,
    ) -> StoreResult<()> {
        DynStore::delete_journal_fenced(&**self, key, lease).await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> StoreResult<Lease> {
        DynStore::acquire_lease(&**self, name, holder, ttl).await
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> StoreResult<Lease> {
        DynStore::renew_lease(&**self, lease, ttl).await
    }

    async fn check_lease(&self, lease: &Lease) -> StoreResult<()> {
        DynStore::check_lease(&**self, lease).await
    }

    async fn release_lease(&self, lease: &Lease) -> StoreResult<()> {
        DynStore::release_lease(&**self, lease).await
    }
}
