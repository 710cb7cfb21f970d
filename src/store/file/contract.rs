//! FileStore's [`Store`] implementation: each method runs its file work
//! on Tokio's blocking pool (see the [parent](super) for the layout).

use super::*;
use crate::store::{CertificateRequest, ValidationCertificate};

impl Store for FileStore {
    fn load_account(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Option<StoredAccount>>> + Send {
        self.offload(directory.to_owned(), |s, d| s.load_account(&d))
    }

    fn save_account(
        &self,
        directory: &str,
        account: &StoredAccount,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let data = AccountData {
            directory: directory.to_owned(),
            account: account.clone(),
        };
        self.offload(data, |s, data| s.save_account(&data))
    }

    fn load_certificate(
        &self,
        key: &IdentifierSetKey,
    ) -> impl Future<Output = StoreResult<Option<StoredCertificate>>> + Send {
        self.offload(key.clone(), |s, key| s.load_certificate(&key))
    }

    fn save_certificate(
        &self,
        key: &IdentifierSetKey,
        certificate: &StoredCertificate,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.offload((key.clone(), certificate.clone()), |s, (key, cert)| {
            s.save_certificate(&key, &cert)
        })
    }

    /// Reads each `certs/*/cert.json` for its key (the key is in the
    /// record, not derivable from the directory name).
    fn list_certificates(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Vec<IdentifierSetKey>>> + Send {
        self.offload(directory.to_owned(), |s, d| s.list_certificates(&d))
    }

    fn list_journals(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Vec<IdentifierSetKey>>> + Send {
        self.offload(directory.to_owned(), |s, d| s.list_journals(&d))
    }

    fn load_journal(
        &self,
        key: &IdentifierSetKey,
    ) -> impl Future<Output = StoreResult<Option<Journal>>> + Send {
        self.offload(key.clone(), |s, key| s.load_journal(&key))
    }

    fn save_journal(
        &self,
        key: &IdentifierSetKey,
        journal: &Journal,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.offload(JournalData::new(key, journal), |s, data| {
            s.save_journal(&data)
        })
    }

    fn delete_journal(
        &self,
        key: &IdentifierSetKey,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.offload(key.clone(), |s, key| s.delete_journal(&key))
    }

    fn archive_journal(
        &self,
        key: &IdentifierSetKey,
        journal: &Journal,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.offload(JournalData::new(key, journal), |s, data| {
            s.archive_journal(&data)
        })
    }

    fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = StoreResult<ChangePage>> + Send {
        self.offload((after, limit), |s, (after, limit)| {
            s.changes_since(after, limit)
        })
    }

    /// Polls the log every 50 ms (one machine: its length and
    /// modification time, then its last line when they moved).
    fn wait_for_changes(
        &self,
        after: u64,
        timeout: Duration,
    ) -> impl Future<Output = StoreResult<u64>> + Send {
        let this = self.clone();
        async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let mut seen = None;
            loop {
                let mark = this.inner.feed_mark();
                if mark.is_none() || mark != seen {
                    seen = mark;
                    let head = this.offload((), |s, ()| s.feed_head()).await?;
                    if head > after || tokio::time::Instant::now() >= deadline {
                        return Ok(head);
                    }
                } else if tokio::time::Instant::now() >= deadline {
                    return this.offload((), |s, ()| s.feed_head()).await;
                }
                tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + FEED_POLL))
                    .await;
            }
        }
    }

    fn feed_snapshot(&self) -> impl Future<Output = StoreResult<FeedSnapshot>> + Send {
        self.offload((), |s, ()| s.feed_snapshot())
    }

    fn request_certificate(
        &self,
        name: &str,
        edge: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        self.offload((name.to_owned(), edge.to_owned()), |s, (n, e)| {
            s.request_certificate(&n, &e)
        })
    }

    fn list_requests(&self) -> impl Future<Output = StoreResult<Vec<CertificateRequest>>> + Send {
        self.offload((), |s, ()| s.list_requests())
    }

    fn delete_request(&self, name: &str) -> impl Future<Output = StoreResult<()>> + Send {
        self.offload(name.to_owned(), |s, n| s.delete_request(&n))
    }

    fn save_validation(
        &self,
        validation: &ValidationCertificate,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.offload(validation.clone(), |s, v| s.save_validation(&v))
    }

    fn load_validation(
        &self,
        name: &str,
    ) -> impl Future<Output = StoreResult<Option<ValidationCertificate>>> + Send {
        self.offload(name.to_owned(), |s, n| s.load_validation(&n))
    }

    fn delete_validation(&self, name: &str) -> impl Future<Output = StoreResult<()>> + Send {
        self.offload(name.to_owned(), |s, n| s.delete_validation(&n))
    }

    /// One file per directory URL, `directories/<hash>.json`.
    fn load_directory(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Option<DirectoryRecord>>> + Send {
        self.offload(directory.to_owned(), |s, d| s.load_directory(&d))
    }

    fn save_directory(
        &self,
        directory: &str,
        record: &DirectoryRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let data = DirectoryData {
            directory: directory.to_owned(),
            record: record.clone(),
        };
        self.offload(data, |s, data| s.save_directory(&data))
    }

    fn load_ledger(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Option<RateLimitRecord>>> + Send {
        self.offload(directory.to_owned(), |s, d| s.load_ledger(&d))
    }

    fn save_ledger(
        &self,
        directory: &str,
        ledger: &RateLimitRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let data = LedgerData {
            directory: directory.to_owned(),
            ledger: ledger.clone(),
        };
        self.offload(data, |s, data| s.save_ledger(&data))
    }

    /// One file per record, `managed/<directory hash>-<id hash>.json`.
    fn list_managed(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Vec<ManagedRecord>>> + Send {
        self.offload(directory.to_owned(), |s, d| s.list_managed(&d))
    }

    fn save_managed(
        &self,
        directory: &str,
        record: &ManagedRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let data = ManagedData {
            directory: directory.to_owned(),
            record: record.clone(),
        };
        self.offload(data, |s, data| s.save_managed(&data))
    }

    fn delete_managed(
        &self,
        directory: &str,
        id: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        self.offload((directory.to_owned(), id.to_owned()), |s, (d, id)| {
            s.delete_managed(&d, &id)
        })
    }

    /// The read-modify-write runs under an exclusive `flock(2)` on
    /// `ledger/<hash>.lock`, held from the read to the durable write, so
    /// processes on this machine update one ledger one at a time.
    fn update_ledger(
        &self,
        directory: &str,
        update: &mut LedgerUpdate<'_>,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let inner = Arc::clone(&self.inner);
        let directory = directory.to_owned();
        async move {
            let (lock, current) = {
                let (inner, directory) = (Arc::clone(&inner), directory.clone());
                blocking(move || {
                    let lock = inner.lock(&inner.ledger_lock_path(&directory))?;
                    Ok((lock, inner.load_ledger(&directory)?))
                })
                .await?
            };
            let Some(ledger) = update(current.as_ref()) else {
                return Ok(());
            };
            blocking(move || {
                let saved = inner.save_ledger(&LedgerData { directory, ledger });
                drop(lock);
                saved
            })
            .await
        }
    }

    /// Takes the lease under an exclusive `flock(2)` on `leases/<name>.lock`
    /// (held only for the read-modify-write). A lease still held is
    /// refused, also to its own holder, unless its holder's process on this
    /// host is gone. A TTL is rounded up to whole seconds; a zero TTL gives
    /// a lease that has already expired.
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = StoreResult<Lease>> + Send {
        let sent = Instant::now();
        self.offload(
            (name.to_owned(), holder.to_owned(), ttl, sent),
            |s, (n, h, ttl, sent)| s.acquire_lease(&n, &h, ttl, sent),
        )
    }

    /// Extends the lease if the lease file still has this holder and token
    /// (even if it expired meanwhile: nobody took it). The token stays the
    /// same. If the lease file is gone (released), the error is
    /// [`StoreError::LeaseHeld`] with an empty `holder` and `until` 0.
    fn renew_lease(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> impl Future<Output = StoreResult<Lease>> + Send {
        let sent = Instant::now();
        self.offload((lease.clone(), ttl, sent), |s, (lease, ttl, sent)| {
            s.renew_lease(&lease, ttl, sent)
        })
    }

    fn check_lease(&self, lease: &Lease) -> impl Future<Output = StoreResult<()>> + Send {
        self.offload(lease.clone(), |s, lease| s.check_lease(&lease))
    }

    /// Deletes the lease file if it still has this holder and token. The
    /// deletion is not fsynced: after a power loss the lease may reappear
    /// until it expires.
    fn release_lease(&self, lease: &Lease) -> impl Future<Output = StoreResult<()>> + Send {
        self.offload(lease.clone(), |s, lease| s.release_lease(&lease))
    }
}
