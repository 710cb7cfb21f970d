//! [`FeedFollower`]: keeps a [`CertificateResolver`] equal to what the
//! store holds, from a snapshot and then the change feed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;

use super::resolver::{CertificateResolver, Update};
use crate::error::StoreError;
use crate::store::{ChangeKind, IdentifierSetKey, Store, StoredCertificate};

/// How many certificates are loaded at once.
const LOADS_IN_FLIGHT: usize = 16;

/// Where a [`FeedFollower`] stands: for an edge's health endpoint.
///
/// Example: [`FeedFollower::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedStatus {
    /// The revision every change up to which is applied.
    pub applied: u64,
    /// The newest revision the store reported.
    pub head: u64,
    /// Times it started again from a snapshot (the first load included).
    pub snapshots: u64,
    /// Stored certificates it could not serve (see the log for which).
    pub refused: u64,
}

impl FeedStatus {
    /// Revisions committed but not applied yet.
    pub fn lag(&self) -> u64 {
        self.head.saturating_sub(self.applied)
    }
}

#[derive(Default)]
struct Counters {
    applied: AtomicU64,
    head: AtomicU64,
    snapshots: AtomicU64,
    refused: AtomicU64,
    synced: AtomicBool,
}

/// Follows a store's change feed into a [`CertificateResolver`]: loads
/// every certificate from a snapshot, then applies each page of changes
/// (loading the certificate each change names, so never one older than
/// the change), and starts again from a snapshot when the store says the
/// reader fell behind its retention.
///
/// Example: [the module docs](super).
pub struct FeedFollower<S: Store> {
    store: S,
    resolver: Arc<CertificateResolver>,
    page: usize,
    counters: Arc<Counters>,
    /// One sync at a time: two interleaved could install a certificate
    /// older than one the other already applied.
    syncing: tokio::sync::Mutex<()>,
}

impl<S: Store> std::fmt::Debug for FeedFollower<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedFollower")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl<S: Store> FeedFollower<S> {
    /// A follower of `store` into `resolver`, 1,000 changes a page.
    pub fn new(store: S, resolver: Arc<CertificateResolver>) -> Self {
        Self {
            store,
            resolver,
            page: 1000,
            counters: Arc::default(),
            syncing: tokio::sync::Mutex::new(()),
        }
    }

    /// Reads `changes` a page (at least one).
    pub fn page_size(mut self, changes: usize) -> Self {
        self.page = changes.max(1);
        self
    }

    /// Where it stands.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sturdy_acme::StoreError> {
    /// use std::sync::Arc;
    /// use sturdy_acme::serve::{CertificateResolver, FeedFollower};
    /// use sturdy_acme::store::MemoryStore;
    ///
    /// let follower = FeedFollower::new(MemoryStore::new(), Arc::new(CertificateResolver::new()));
    /// follower.sync_once(std::time::Duration::ZERO).await?;
    /// let status = follower.status();
    /// assert_eq!((status.applied, status.lag(), status.snapshots), (0, 0, 1));
    /// # Ok(()) }
    /// ```
    pub fn status(&self) -> FeedStatus {
        let c = &self.counters;
        FeedStatus {
            applied: c.applied.load(Ordering::SeqCst),
            head: c.head.load(Ordering::SeqCst),
            snapshots: c.snapshots.load(Ordering::SeqCst),
            refused: c.refused.load(Ordering::SeqCst),
        }
    }

    /// Catches up (from a snapshot the first time, or when behind), then
    /// waits up to `wait` for a change and applies what came. Returns the
    /// revision applied.
    pub async fn sync_once(&self, wait: Duration) -> Result<u64, StoreError> {
        let _one = self.syncing.lock().await;
        if !self.counters.synced.load(Ordering::SeqCst) {
            self.resync().await?;
        }
        self.catch_up().await?;
        if !wait.is_zero() {
            let applied = self.counters.applied.load(Ordering::SeqCst);
            let head = self.store.wait_for_changes(applied, wait).await?;
            self.counters.head.fetch_max(head, Ordering::SeqCst);
            if head > applied {
                self.catch_up().await?;
            }
        }
        Ok(self.counters.applied.load(Ordering::SeqCst))
    }

    /// Follows the feed until dropped: [`sync_once`](Self::sync_once) in a
    /// loop, a store failure logged and tried again after a backoff (the
    /// resolver keeps serving what it has).
    pub async fn run(&self) {
        // The crate's one backoff rule: 100 ms doubling up to 5 s.
        let backoff = crate::retry::Backoff::new(u32::MAX, Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5));
        let mut failures = 0u32;
        loop {
            match self.sync_once(Duration::from_secs(30)).await {
                Ok(_) => failures = 0,
                Err(e) => {
                    let delay = backoff.nominal_delay(failures);
                    failures = failures.saturating_add(1);
                    tracing::warn!(target: "sturdy_acme::serve", error = %e, retry_in = ?delay, "the change feed cannot be read; serving what is loaded");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Every page after the revision applied.
    async fn catch_up(&self) -> Result<(), StoreError> {
        loop {
            let after = self.counters.applied.load(Ordering::SeqCst);
            let page = match self.store.changes_since(after, self.page).await {
                Ok(page) => page,
                Err(StoreError::FeedBehind { oldest, .. }) => {
                    tracing::warn!(target: "sturdy_acme::serve", after, oldest, "behind the change feed's retention: starting again from a snapshot");
                    self.resync().await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.counters.head.fetch_max(page.head, Ordering::SeqCst);
            // An on-demand request is for the issuer fleet; a validation
            // certificate is loaded by its name.
            let mut keys = BTreeSet::new();
            let mut validations = BTreeSet::new();
            for change in &page.changes {
                match change.kind {
                    ChangeKind::Requested | ChangeKind::Other => {}
                    ChangeKind::Validation => {
                        validations
                            .extend(change.key.identifiers().first().map(|id| id.value.clone()));
                    }
                    _ => {
                        keys.insert(change.key.clone());
                    }
                }
            }
            if !keys.is_empty() {
                let updates = self.load(keys).await?;
                self.install(updates);
            }
            self.load_validations(validations).await?;
            let next = page.next_after(after, self.page);
            self.counters.applied.fetch_max(next, Ordering::SeqCst);
            if page.changes.len() < self.page {
                return Ok(());
            }
        }
    }

    /// Replaces everything with what the store holds now.
    async fn resync(&self) -> Result<(), StoreError> {
        let snapshot = self.store.feed_snapshot().await?;
        let listed: BTreeSet<IdentifierSetKey> = snapshot.keys.into_iter().collect();
        let gone: Vec<Update> = self
            .resolver
            .keys()
            .into_iter()
            .filter(|k| !listed.contains(k))
            .map(|k| (k, None))
            .collect();
        let mut updates = self.load(listed).await?;
        updates.extend(gone);
        self.install(updates);
        let listed: BTreeSet<String> = snapshot.validations.into_iter().collect();
        for name in self.resolver.validations() {
            if !listed.contains(&name) {
                // Cannot fail: nothing to parse.
                let _ = self.resolver.set_validation(&name, None);
            }
        }
        self.load_validations(listed).await?;
        self.counters
            .applied
            .store(snapshot.revision, Ordering::SeqCst);
        self.counters
            .head
            .fetch_max(snapshot.revision, Ordering::SeqCst);
        self.counters.snapshots.fetch_add(1, Ordering::SeqCst);
        self.counters.synced.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// The certificate stored for each key now. A record this edge
    /// cannot read (damaged, or sealed with a key-encryption key it lacks)
    /// is counted as refused and logged, and the key keeps what it had:
    /// one record never stops the feed. The store failing is an error.
    async fn load(&self, keys: BTreeSet<IdentifierSetKey>) -> Result<Vec<Update>, StoreError> {
        let store = &self.store;
        let counters = &self.counters;
        let loaded: Vec<Result<Option<Update>, StoreError>> = futures_util::stream::iter(keys)
            .map(|key| async move {
                match store.load_certificate(&key).await {
                    Ok(cert) => Ok(Some((key, cert))),
                    Err(e @ (StoreError::Corrupted { .. } | StoreError::KeyEncryption { .. })) => {
                        counters.refused.fetch_add(1, Ordering::SeqCst);
                        tracing::warn!(target: "sturdy_acme::serve", %key, error = %e, "a stored certificate cannot be read here; keeping what was served for it");
                        Ok(None::<(IdentifierSetKey, Option<StoredCertificate>)>)
                    }
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(LOADS_IN_FLIGHT)
            .collect()
            .await;
        let mut updates = Vec::with_capacity(loaded.len());
        for one in loaded {
            updates.extend(one?);
        }
        Ok(updates)
    }

    /// The validation certificate stored for each name now, installed (or
    /// removed). One that cannot be read or served is counted as refused
    /// and logged; the store failing is an error.
    async fn load_validations(&self, names: BTreeSet<String>) -> Result<(), StoreError> {
        for name in names {
            let loaded = match self.store.load_validation(&name).await {
                Ok(loaded) => loaded,
                Err(
                    e @ (StoreError::Corrupted { .. }
                    | StoreError::KeyEncryption { .. }
                    | StoreError::InvalidRequest { .. }),
                ) => {
                    self.counters.refused.fetch_add(1, Ordering::SeqCst);
                    tracing::warn!(target: "sturdy_acme::serve", %name, error = %e, "a validation certificate cannot be read here");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Err(refused) = self.resolver.set_validation(&name, loaded.as_ref()) {
                // The one it replaced is not answered either.
                let _ = self.resolver.set_validation(&name, None);
                self.counters.refused.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(target: "sturdy_acme::serve", error = %refused, "a validation certificate is not served");
            }
        }
        Ok(())
    }

    fn install(&self, updates: Vec<Update>) {
        for refused in self.resolver.apply(updates) {
            self.counters.refused.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(target: "sturdy_acme::serve", error = %refused, "a stored certificate is not served");
        }
    }
}
