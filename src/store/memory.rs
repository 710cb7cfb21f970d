//! [`MemoryStore`]: the store contract in this process's memory, for tests
//! and simulations. Nothing survives the process: never use it for
//! certificates that matter.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::feed::DEFAULT_FEED_RETENTION;
use super::{
    CertificateRequest, Change, ChangeKind, ChangePage, DirectoryRecord, FeedSnapshot,
    IdentifierSetKey, Journal, Lease, LedgerUpdate, ManagedRecord, RateLimitRecord, Store,
    StoreError, StoreResult, StoredAccount, StoredCertificate, ValidationCertificate,
};

/// The [`Store`] contract in memory (leases judged by the system clock, as
/// [`FileStore`](super::FileStore) judges them). Clones share one store,
/// so several issuers in one process can share it as nodes share a
/// database. Passes `sturdy_acme_testca::check_store`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::StoreError> {
/// use sturdy_acme::store::{MemoryStore, Store};
///
/// let store = MemoryStore::new();
/// assert!(store.load_account("https://ca.example/dir").await?.is_none());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    /// The feed's head revision, for [`Store::wait_for_changes`].
    head: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                feed_retention: DEFAULT_FEED_RETENTION,
                ..Inner::default()
            })),
            head: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    accounts: HashMap<String, StoredAccount>,
    certificates: BTreeMap<IdentifierSetKey, StoredCertificate>,
    /// Replaced certificates (never lost), oldest first.
    backups: HashMap<IdentifierSetKey, Vec<StoredCertificate>>,
    journals: BTreeMap<IdentifierSetKey, Journal>,
    archive: Vec<(IdentifierSetKey, Journal)>,
    ledgers: HashMap<String, RateLimitRecord>,
    /// The ledgers' entries by directory (the split form; a ledger
    /// document saved whole is read by the contract's default only).
    ledger_entries: HashMap<String, super::LedgerEntries>,
    directories: HashMap<String, DirectoryRecord>,
    /// The change feed's last changes, oldest first.
    feed: VecDeque<Change>,
    /// The last revision given.
    feed_head: u64,
    feed_retention: u64,
    managed: HashMap<String, BTreeMap<String, ManagedRecord>>,
    leases: HashMap<String, Lease>,
    /// Pending on-demand requests, oldest first.
    requests: Vec<CertificateRequest>,
    validations: BTreeMap<String, ValidationCertificate>,
}

impl Inner {
    /// Records a change; returns its revision.
    fn push_change(&mut self, key: &IdentifierSetKey, kind: ChangeKind, serial: &str) -> u64 {
        self.feed_head += 1;
        self.feed.push_back(Change {
            revision: self.feed_head,
            key: key.clone(),
            kind,
            serial: serial.to_owned(),
        });
        while self.feed.len() as u64 > self.feed_retention {
            self.feed.pop_front();
        }
        self.feed_head
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps only the last `changes` of the change feed (at least one;
    /// [`DEFAULT_FEED_RETENTION`] by default).
    pub fn with_feed_retention(self, changes: u64) -> Self {
        self.lock().feed_retention = changes.max(1);
        self
    }

    /// The certificates a save replaced for `key`, oldest first.
    pub fn backups(&self, key: &IdentifierSetKey) -> Vec<StoredCertificate> {
        self.lock().backups.get(key).cloned().unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells waiting readers the head is at least `head` (saves racing
    /// here publish in any order: the head only grows).
    fn publish(&self, head: u64) {
        self.head.send_if_modified(|h| {
            let newer = head > *h;
            if newer {
                *h = head;
            }
            newer
        });
    }

    /// Runs `f` on the store's state: every method is this.
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> std::future::Ready<T> {
        let out = f(&mut self.lock());
        std::future::ready(out)
    }
}

fn unix_now() -> u64 {
    secs(SystemTime::now())
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn ttl_secs(ttl: Duration) -> u64 {
    ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)
}

fn on_directory(key: &IdentifierSetKey, directory: &str) -> bool {
    key.ca().is_some_and(|ca| ca.directory == directory)
}

impl Store for MemoryStore {
    fn load_account(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Option<StoredAccount>>> + Send {
        self.with(|s| Ok(s.accounts.get(directory).cloned()))
    }

    fn save_account(
        &self,
        directory: &str,
        account: &StoredAccount,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.with(|s| {
            s.accounts.insert(directory.to_owned(), account.clone());
            Ok(())
        })
    }

    fn load_certificate(
        &self,
        key: &IdentifierSetKey,
    ) -> impl Future<Output = StoreResult<Option<StoredCertificate>>> + Send {
        self.with(|s| Ok(s.certificates.get(key).cloned()))
    }

    fn save_certificate(
        &self,
        key: &IdentifierSetKey,
        certificate: &StoredCertificate,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let head = self.with(|s| {
            let old = s.certificates.insert(key.clone(), certificate.clone());
            let kind = ChangeKind::between(old.as_ref(), certificate);
            if let Some(old) = old
                && old.serial != certificate.serial
            {
                s.backups.entry(key.clone()).or_default().push(old);
            }
            kind.map(|kind| s.push_change(key, kind, &certificate.serial))
        });
        if let Some(head) = head.into_inner() {
            self.publish(head);
        }
        std::future::ready(Ok(()))
    }

    fn list_certificates(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Vec<IdentifierSetKey>>> + Send {
        self.with(|s| {
            Ok(s.certificates
                .keys()
                .filter(|k| on_directory(k, directory))
                .cloned()
                .collect())
        })
    }

    fn list_journals(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Vec<IdentifierSetKey>>> + Send {
        self.with(|s| {
            Ok(s.journals
                .iter()
                .filter(|(k, j)| on_directory(k, directory) || j.directory == directory)
                .map(|(k, _)| k.clone())
                .collect())
        })
    }

    fn load_journal(
        &self,
        key: &IdentifierSetKey,
    ) -> impl Future<Output = StoreResult<Option<Journal>>> + Send {
        self.with(|s| Ok(s.journals.get(key).cloned()))
    }

    fn save_journal(
        &self,
        key: &IdentifierSetKey,
        journal: &Journal,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.with(|s| {
            s.journals.insert(key.clone(), journal.clone());
            Ok(())
        })
    }

    fn delete_journal(
        &self,
        key: &IdentifierSetKey,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.with(|s| {
            s.journals.remove(key);
            Ok(())
        })
    }

    fn archive_journal(
        &self,
        key: &IdentifierSetKey,
        journal: &Journal,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.with(|s| {
            s.archive.push((key.clone(), journal.clone()));
            Ok(())
        })
    }

    fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = StoreResult<ChangePage>> + Send {
        self.with(|s| {
            let oldest = s
                .feed
                .front()
                .map_or(s.feed_head.saturating_add(1), |c| c.revision);
            if (after.saturating_add(1) < oldest && after < s.feed_head) || after > s.feed_head {
                return Err(StoreError::FeedBehind { after, oldest });
            }
            let skip = after.saturating_add(1).saturating_sub(oldest) as usize;
            Ok(ChangePage {
                changes: s.feed.iter().skip(skip).take(limit).cloned().collect(),
                head: s.feed_head,
            })
        })
    }

    fn wait_for_changes(
        &self,
        after: u64,
        timeout: Duration,
    ) -> impl Future<Output = StoreResult<u64>> + Send {
        let mut head = self.head.subscribe();
        async move {
            // The sender lives as long as any clone of the store.
            let _ = tokio::time::timeout(timeout, head.wait_for(|h| *h > after)).await;
            let now = *head.borrow();
            Ok(now)
        }
    }

    fn feed_snapshot(&self) -> impl Future<Output = StoreResult<FeedSnapshot>> + Send {
        self.with(|s| {
            Ok(FeedSnapshot {
                revision: s.feed_head,
                keys: s.certificates.keys().cloned().collect(),
                validations: s.validations.keys().cloned().collect(),
            })
        })
    }

    fn request_certificate(
        &self,
        name: &str,
        edge: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        let recorded = super::request::request_key(name).and_then(|key| {
            let name = super::request::request_name(name)?;
            let mut s = self.lock();
            if s.requests.iter().any(|r| r.name == name) {
                return Ok(None);
            }
            s.requests.push(CertificateRequest {
                name,
                edge: edge.to_owned(),
                requested_at: secs(SystemTime::now()),
            });
            Ok(Some(s.push_change(&key, ChangeKind::Requested, "")))
        });
        if let Ok(Some(head)) = recorded {
            self.publish(head);
        }
        std::future::ready(recorded.map(|r| r.is_some()))
    }

    fn list_requests(&self) -> impl Future<Output = StoreResult<Vec<CertificateRequest>>> + Send {
        self.with(|s| Ok(s.requests.clone()))
    }

    fn delete_request(&self, name: &str) -> impl Future<Output = StoreResult<()>> + Send {
        let name = super::request::request_name(name);
        self.with(|s| {
            let name = name?;
            s.requests.retain(|r| r.name != name);
            Ok(())
        })
    }

    fn save_validation(
        &self,
        validation: &ValidationCertificate,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let saved = super::validation::validation_key(&validation.name).and_then(|key| {
            let name = super::validation::validation_name(&validation.name)?;
            let mut s = self.lock();
            s.validations.insert(
                name.clone(),
                ValidationCertificate {
                    name,
                    ..validation.clone()
                },
            );
            Ok(s.push_change(&key, ChangeKind::Validation, ""))
        });
        if let Ok(head) = saved {
            self.publish(head);
        }
        std::future::ready(saved.map(|_| ()))
    }

    fn load_validation(
        &self,
        name: &str,
    ) -> impl Future<Output = StoreResult<Option<ValidationCertificate>>> + Send {
        let name = super::validation::validation_name(name);
        self.with(|s| Ok(s.validations.get(&name?).cloned()))
    }

    fn delete_validation(&self, name: &str) -> impl Future<Output = StoreResult<()>> + Send {
        let deleted = super::validation::validation_key(name).and_then(|key| {
            let name = super::validation::validation_name(name)?;
            let mut s = self.lock();
            Ok(s.validations
                .remove(&name)
                .map(|_| s.push_change(&key, ChangeKind::Validation, "")))
        });
        if let Ok(Some(head)) = deleted {
            self.publish(head);
        }
        std::future::ready(deleted.map(|_| ()))
    }

    fn load_directory(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Option<DirectoryRecord>>> + Send {
        self.with(|s| Ok(s.directories.get(directory).cloned()))
    }

    fn save_directory(
        &self,
        directory: &str,
        record: &DirectoryRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.with(|s| {
            s.directories.insert(directory.to_owned(), record.clone());
            Ok(())
        })
    }

    fn load_ledger(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Option<RateLimitRecord>>> + Send {
        self.with(|s| Ok(s.ledgers.get(directory).cloned()))
    }

    fn save_ledger(
        &self,
        directory: &str,
        ledger: &RateLimitRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.with(|s| {
            s.ledgers.insert(directory.to_owned(), ledger.clone());
            Ok(())
        })
    }

    /// Under the store's one lock, so updates never interleave.
    fn update_ledger(
        &self,
        directory: &str,
        update: &mut LedgerUpdate<'_>,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let mut s = self.lock();
        if let Some(next) = update(s.ledgers.get(directory)) {
            s.ledgers.insert(directory.to_owned(), next);
        }
        drop(s);
        std::future::ready(Ok(()))
    }

    fn load_ledger_entries(
        &self,
        directory: &str,
        keys: Option<&[String]>,
    ) -> impl Future<Output = StoreResult<super::LedgerEntries>> + Send {
        self.with(|s| {
            let Some(all) = s.ledger_entries.get(directory) else {
                return Ok(super::LedgerEntries::new());
            };
            Ok(match keys {
                Some(keys) => super::ledger::pick(all, keys),
                None => all.clone(),
            })
        })
    }

    /// Under the store's one lock; only the entries asked are copied.
    fn update_ledger_entries(
        &self,
        directory: &str,
        keys: &[String],
        update: &mut super::LedgerEntriesUpdate<'_>,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let mut s = self.lock();
        let all = s.ledger_entries.entry(directory.to_owned()).or_default();
        if let Some(mut changes) = update(&super::ledger::pick(all, keys)) {
            changes.retain(|k, _| keys.contains(k));
            super::ledger::apply(all, changes);
        }
        drop(s);
        std::future::ready(Ok(()))
    }

    fn list_managed(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Vec<ManagedRecord>>> + Send {
        self.with(|s| {
            Ok(s.managed
                .get(directory)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default())
        })
    }

    fn save_managed(
        &self,
        directory: &str,
        record: &ManagedRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.with(|s| {
            s.managed
                .entry(directory.to_owned())
                .or_default()
                .insert(record.id.clone(), record.clone());
            Ok(())
        })
    }

    fn delete_managed(
        &self,
        directory: &str,
        id: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.with(|s| {
            if let Some(m) = s.managed.get_mut(directory) {
                m.remove(id);
            }
            Ok(())
        })
    }

    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = StoreResult<Lease>> + Send {
        let sent = Instant::now();
        self.with(|s| {
            let wall = SystemTime::now();
            let now = secs(wall);
            let current = s.leases.get(name);
            // Held, also by this holder: the second acquisition waits (no
            // process here can have crashed and left it behind).
            if let Some(c) = current
                && c.until > now
            {
                return Err(StoreError::LeaseHeld {
                    name: name.to_owned(),
                    holder: c.holder.clone(),
                    until: c.until,
                });
            }
            let lease = Lease {
                name: name.to_owned(),
                holder: holder.to_owned(),
                until: now.saturating_add(ttl_secs(ttl)),
                token: current.map_or(1, |c| c.token.saturating_add(1)),
                host: String::new(),
                pid: std::process::id(),
                start_time: 0,
                pid_ns: String::new(),
                validity: None,
            };
            s.leases.insert(name.to_owned(), lease.clone());
            let left = super::remaining_until(lease.until, wall);
            Ok(lease.valid_for(left, sent))
        })
    }

    fn renew_lease(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> impl Future<Output = StoreResult<Lease>> + Send {
        let sent = Instant::now();
        self.with(|s| match s.leases.get_mut(&lease.name) {
            Some(c) if c.holder == lease.holder && c.token == lease.token => {
                let wall = SystemTime::now();
                c.until = secs(wall).saturating_add(ttl_secs(ttl));
                let left = super::remaining_until(c.until, wall);
                Ok(c.clone().valid_for(left, sent))
            }
            other => Err(StoreError::LeaseHeld {
                name: lease.name.clone(),
                holder: other.as_ref().map(|c| c.holder.clone()).unwrap_or_default(),
                until: other.map_or(0, |c| c.until),
            }),
        })
    }

    fn check_lease(&self, lease: &Lease) -> impl Future<Output = StoreResult<()>> + Send {
        self.with(|s| super::judge_lease(s.leases.get(&lease.name), lease, unix_now()))
    }

    fn release_lease(&self, lease: &Lease) -> impl Future<Output = StoreResult<()>> + Send {
        self.with(|s| {
            // The record stays (expired) so the next token is higher.
            if let Some(c) = s.leases.get_mut(&lease.name)
                && c.holder == lease.holder
                && c.token == lease.token
            {
                c.until = 0;
            }
            Ok(())
        })
    }
}
