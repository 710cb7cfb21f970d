//! Durable storage for what must survive a crash: accounts, certificates with
//! their keys, order journals, the rate-limit ledger and leases.
//!
//! [`Store`] is the small trait the issuer writes through;
//! [`FileStore`] is the embedded default (one directory, every write atomic).
//! Records are typed ([`StoredAccount`], [`StoredCertificate`], [`Journal`],
//! [`RateLimitRecord`]) and keyed by the directory URL and the normalized
//! identifier set ([`IdentifierSetKey`]).
//!
//! # Running a fleet
//!
//! What holds when several processes issue for the same customers:
//!
//! - **One store for all of them.** Exactly-once rests on the store: the
//!   journal that says an order is in flight, and the lease that says who
//!   drives it. [`FileStore`] is for one machine (its leases are files
//!   locked with `flock(2)` and judged by the local clock); processes on
//!   several machines share a `PostgresStore` (crate `sturdy-acme-postgres`): leases
//!   are rows fenced by a sequence and judged by the database's clock,
//!   journal writes carry the fencing token in the same statement, the
//!   ledger is updated under a row lock, and private keys are sealed with
//!   AES-256-GCM under a [`KeyEncryptionKey`]. Another engine can meet the
//!   contract on [`Store`]: check it with
//!   `sturdy_acme_testca::check_store`, and pass it as
//!   `Arc<dyn DynStore>` if it is chosen at run time.
//! - **Leases are fenced.** Each acquisition gets a larger token; the
//!   issuer checks it before every journal write, newOrder and finalize,
//!   and stops with [`Error::LeaseLost`](crate::Error::LeaseLost) if another
//!   process took over. A process that stalls cannot overwrite a newer one.
//! - **One account, one ledger per CA.** The first account is registered
//!   under a lease, so nodes starting together share it; the rate-limit
//!   ledger lives in the store and every check-and-spend is one atomic
//!   [`Store::update_ledger`] (a newOrder reserves its certificate in the
//!   same update), so the CA's published limits
//!   ([`RateLimits::for_directory`](crate::RateLimits::for_directory)) and
//!   its 429s are counted across restarts and, with a shared store, across
//!   nodes that never spend more than a limit between them.
//! - **Bounded bursts.** [`Issuer::ensure_all`](crate::Issuer::ensure_all)
//!   issues many sets with a concurrency bound; calls for the same names
//!   share one issuance in a process, and across processes the lease makes
//!   the second wait and reuse the first one's certificate.

mod atomic;
mod dyn_store;
pub mod feed;
mod file;
pub mod ledger;
mod memory;
mod process;
mod records;
pub mod request;
mod sealing;
pub mod validation;

use std::future::Future;
use std::time::Duration;

pub use crate::protocol::choice::{CaChoice, SkipReason, SkippedCa};
pub use atomic::{FileMode, write_file_atomic};
pub use dyn_store::{DynStore, StoreFuture};
pub use feed::{Change, ChangeKind, ChangePage, FeedSnapshot};
pub use file::FileStore;
pub use ledger::{LedgerEntries, LedgerEntriesUpdate};
pub use memory::MemoryStore;
pub use process::ProcessIdentity;
pub(crate) use process::unique_holder;
pub use records::{
    AskedProfile, CaScope, DirectoryRecord, IdentifierSetKey, Journal, JournalError, JournalStep,
    Lease, LeaseValidity, ManagedRecord, RateLimitRecord, RenewalSchedule, Revoked, StoredAccount,
    StoredCertificate,
};
pub use request::CertificateRequest;
pub use sealing::{KeyEncryptionKey, Sealed, Sealer};
pub use validation::ValidationCertificate;

pub(crate) use crate::error::StoreError;

/// A change to a rate-limit ledger, for [`Store::update_ledger`]: the
/// current record in, the new one (or `None`: unchanged) out.
pub type LedgerUpdate<'a> =
    dyn FnMut(Option<&RateLimitRecord>) -> Option<RateLimitRecord> + Send + 'a;

/// Whether `lease` is still the current, unexpired lease, judged against
/// the `current` record at `now` (seconds since the Unix epoch): the one
/// rule of [`Store::check_lease`] for the stores that keep lease records
/// themselves.
pub(crate) fn judge_lease(current: Option<&Lease>, lease: &Lease, now: u64) -> StoreResult<()> {
    let lost = |reason: String| StoreError::LeaseLost {
        name: lease.name.clone(),
        token: lease.token,
        reason,
    };
    match current {
        Some(c) if c.holder == lease.holder && c.token == lease.token => {
            if c.until > now {
                Ok(())
            } else {
                Err(lost("it expired".into()))
            }
        }
        Some(c) => Err(lost(format!(
            "now held by {:?} with token {}",
            c.holder, c.token
        ))),
        None => Err(lost("its record is gone".into())),
    }
}

/// What is left of a lease that expires at `until` (seconds since the Unix
/// epoch, by the store's own clock) at `now` on that same clock, to the
/// sub-second: the [`Lease::validity`] of the stores that judge leases by
/// the local clock.
pub(crate) fn remaining_until(until: u64, now: std::time::SystemTime) -> Duration {
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Duration::from_secs(until).saturating_sub(now)
}

/// `Result` with [`StoreError`].
pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// Durable storage for the issuer. [`FileStore`] is the embedded one; a
/// service may write its own (and use it as `Arc<dyn DynStore>`, see
/// [`DynStore`]).
///
/// # The contract
///
/// Exactly-once issuance rests on these; an implementation that breaks one
/// can lose a certificate or order one twice.
///
/// - **Atomic per record, durable on return.** After a crash a record is
///   its old or its new version, never a mix, and a write that returned
///   `Ok` survives a crash (FileStore: temp file, fsync, rename, fsync of
///   the directory). The issuer writes each journal step before the request
///   that depends on it, so `save_journal` returning early is a lost
///   certificate.
/// - **Nothing silently lost.** `save_certificate` keeps the previous
///   certificate until the new one is durable; `archive_journal` keeps a
///   superseded journal (it may hold the key of an issued certificate);
///   `delete_journal` is only called once the certificate is stored.
/// - **Corruption is an error, not absence.** A record that exists but
///   cannot be read is [`StoreError::Corrupted`], never `Ok(None)`: the
///   issuer treats a missing journal as "nothing in flight".
/// - **Secrets.** Private keys (account keys, certificate keys, journals)
///   are stored readable by the owner only, and never logged.
/// - **Leases are mutual exclusion across every process sharing the
///   store.** `acquire_lease` fails with [`StoreError::LeaseHeld`] while
///   the lease is unexpired, whoever holds it: the same holder asking
///   again waits too (two tasks of one issuer must not both hold it), the
///   only exception being a lease a store can prove is the leftover of a
///   crashed process (FileStore and PostgresStore check the holder's
///   process on the same host). Each acquisition gets a fencing
///   token larger than any before it for that name (also across release);
///   `check_lease` fails with [`StoreError::LeaseLost`] once a newer token
///   exists or the lease expired, and the issuer calls it before every
///   journal write and every non-idempotent request. Expiry is judged by
///   one clock, the store's (FileStore uses the local one, so it is for one
///   machine; PostgresStore the database's `now()`), and `acquire_lease`
///   and `renew_lease` say how long the lease is valid in
///   [`Lease::validity`]: the time left by the store's clock, counted from
///   when the request was sent ([`Lease::valid_for`]). The holder judges
///   expiry only by that, on its monotonic clock; a lease returned without
///   it is taken as lost.
/// - **Keys.** Records are keyed by [`IdentifierSetKey`] (identifier set,
///   CA and account) and the directory URL; records for one CA are never
///   returned for another.
/// - **Concurrency.** Every method may be called from several tasks at
///   once.
///
/// Example: [`FileStore`] (the embedded implementation) and [`DynStore`]
/// (a store chosen at run time).
pub trait Store: Send + Sync + 'static {
    /// The account for a directory URL.
    fn load_account(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Option<StoredAccount>>> + Send;

    /// Saves the account for a directory URL (key file 0600 or equivalent).
    fn save_account(
        &self,
        directory: &str,
        account: &StoredAccount,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The current certificate for an identifier set.
    fn load_certificate(
        &self,
        key: &IdentifierSetKey,
    ) -> impl Future<Output = StoreResult<Option<StoredCertificate>>> + Send;

    /// Saves a certificate (with its key) for an identifier set. The
    /// previous one, if any, is kept as a backup, never lost.
    fn save_certificate(
        &self,
        key: &IdentifierSetKey,
        certificate: &StoredCertificate,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The keys of every certificate stored for a directory URL (legacy
    /// keys included when their certificate is on the directory's origin),
    /// in a stable order. A record too damaged to say whose it is may be
    /// left out (logged); loading it by its key still reports the damage.
    fn list_certificates(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Vec<IdentifierSetKey>>> + Send;

    /// The keys of every in-flight journal for a directory URL, in a stable
    /// order (archived journals are not listed; damaged ones as above).
    fn list_journals(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Vec<IdentifierSetKey>>> + Send;

    /// The in-flight order journal for an identifier set.
    fn load_journal(
        &self,
        key: &IdentifierSetKey,
    ) -> impl Future<Output = StoreResult<Option<Journal>>> + Send;

    /// Writes the journal (durably, before the request that depends on it).
    fn save_journal(
        &self,
        key: &IdentifierSetKey,
        journal: &Journal,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Removes the journal once its certificate is stored.
    fn delete_journal(
        &self,
        key: &IdentifierSetKey,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Keeps a superseded journal (it may hold the key of a certificate the
    /// CA issued) durably aside, before the issuer starts a new journal for
    /// the same set. Archived journals are never read back by the issuer;
    /// they are there for a human or a recovery tool.
    fn archive_journal(
        &self,
        key: &IdentifierSetKey,
        journal: &Journal,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The changes of the [change feed](feed) after revision `after`, at
    /// most `limit`, oldest first, with the head revision read before them.
    /// Every save of a certificate that changes what an edge serves
    /// ([`ChangeKind`]) is given the next revision in the same commit as
    /// the save, in commit order: a reader that applied everything up to
    /// [`ChangePage::next_after`] never misses a change. Fails with
    /// [`StoreError::FeedBehind`] when changes after `after` were dropped.
    fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = StoreResult<ChangePage>> + Send;

    /// Returns the head revision once it is past `after`, or when
    /// `timeout` has passed (then it may be `after` or less). A wake-up
    /// the backend loses (a notification sent while disconnected) only
    /// delays a reader until the timeout, never loses a change.
    fn wait_for_changes(
        &self,
        after: u64,
        timeout: Duration,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// The head revision, then every stored certificate's key, in every
    /// directory, and every validation certificate's name: where a reader
    /// starts ([`FeedSnapshot`]).
    fn feed_snapshot(&self) -> impl Future<Output = StoreResult<FeedSnapshot>> + Send;

    /// Records that an edge asked for a certificate for `name`
    /// ([on-demand issuance](request)), unless a request for it is already
    /// pending: one request per name however many edges ask at once.
    /// Returns whether this call recorded it. A recorded request gets a
    /// [`ChangeKind::Requested`] change in the same commit, so the issuer
    /// fleet hears of it through the feed. Fails with
    /// [`StoreError::InvalidRequest`] for a name that is not a DNS name of
    /// one host ([`request::request_name`]).
    fn request_certificate(
        &self,
        name: &str,
        edge: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Every pending request, oldest first.
    fn list_requests(&self) -> impl Future<Output = StoreResult<Vec<CertificateRequest>>> + Send;

    /// Removes the pending request for `name` (no error if there is none):
    /// the issuer fleet took it up (or refused it).
    fn delete_request(&self, name: &str) -> impl Future<Output = StoreResult<()>> + Send;

    /// Saves the tls-alpn-01 validation certificate for its name
    /// (replacing the one there; [validations](validation)), with a
    /// [`ChangeKind::Validation`] change in the same commit, so every edge
    /// answers the CA's `acme-tls/1` handshakes with it. Its key is kept as
    /// a certificate's is (0600, sealed). Fails with
    /// [`StoreError::InvalidRequest`] for a wildcard or malformed name.
    fn save_validation(
        &self,
        validation: &ValidationCertificate,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The validation certificate saved for the SNI name `name`.
    fn load_validation(
        &self,
        name: &str,
    ) -> impl Future<Output = StoreResult<Option<ValidationCertificate>>> + Send;

    /// Removes the validation certificate for `name` (no error if there is
    /// none), with a [`ChangeKind::Validation`] change when there was one.
    fn delete_validation(&self, name: &str) -> impl Future<Output = StoreResult<()>> + Send;

    /// The directory document last remembered for a directory URL
    /// ([`ClientBuilder::build_remembered`](crate::ClientBuilder::build_remembered)).
    fn load_directory(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Option<DirectoryRecord>>> + Send;

    /// Remembers the directory document a CA served (replacing the last).
    fn save_directory(
        &self,
        directory: &str,
        record: &DirectoryRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The client-side rate-limit ledger for a directory URL.
    fn load_ledger(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Option<RateLimitRecord>>> + Send;

    /// Saves the rate-limit ledger.
    fn save_ledger(
        &self,
        directory: &str,
        ledger: &RateLimitRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Changes the ledger of a directory URL atomically across every
    /// process sharing the store: `update` is given the current record
    /// (`None`: none yet) and returns the new one (`None`: leave it as it
    /// is), and no other update of the same ledger may run between the read
    /// and the write (FileStore: an exclusive `flock(2)`; a database: a row
    /// lock in one transaction). `update` may be called more than once when
    /// the backend retries (a serialization failure), so it must not have
    /// effects beyond its return value and what it captures to report.
    ///
    /// The issuer checks and spends its rate-limit tokens in one such
    /// update, so N processes never spend more than a limit between them.
    ///
    /// One call is applied at most once: a backend whose write can go
    /// unanswered (a database `COMMIT` that times out) must find out whether
    /// it was applied before running `update` again (PostgresStore records
    /// a request id with the new state and reads it back), or fail with
    /// [`StoreError::CommitUnknown`]; never repeat it as if it had failed.
    fn update_ledger(
        &self,
        directory: &str,
        update: &mut LedgerUpdate<'_>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The [entries](ledger) of a directory's ledger named by `keys`
    /// (`None`: every entry; a key ending in `*`: every entry whose key
    /// starts with what precedes it, [`ledger::key_prefix`]); a key with no
    /// entry is absent. The default reads them from the ledger document
    /// ([`Store::load_ledger`]).
    fn load_ledger_entries(
        &self,
        directory: &str,
        keys: Option<&[String]>,
    ) -> impl Future<Output = StoreResult<LedgerEntries>> + Send {
        async move {
            let all = self
                .load_ledger(directory)
                .await?
                .map(|r| ledger::entries_from_document(&r.state))
                .unwrap_or_default();
            Ok(match keys {
                Some(keys) => ledger::pick(&all, keys),
                None => all,
            })
        }
    }

    /// Changes the entries `keys` (exact keys: no `*` prefixes) of a
    /// directory's ledger atomically across
    /// every process sharing the store: `update` is given their current
    /// values and returns the values to write (`Value::Null` deletes an
    /// entry; a key it leaves out, or one not in `keys`, is not written;
    /// `None`: nothing), and no other update of any of these keys runs
    /// between the read and the write. Updates of other keys need not wait.
    /// As for [`Store::update_ledger`], `update` may run more than once, and
    /// one call is applied at most once (or fails with
    /// [`StoreError::CommitUnknown`]).
    ///
    /// The default runs it as one [`Store::update_ledger`] of the whole
    /// document (kept as `{"entries": {...}}`; a document of the form
    /// before the split is read as its entries), so a backend that meets
    /// that contract meets this one.
    fn update_ledger_entries(
        &self,
        directory: &str,
        keys: &[String],
        update: &mut LedgerEntriesUpdate<'_>,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        async move {
            self.update_ledger(directory, &mut |current| {
                let mut all = current
                    .map(|r| ledger::entries_from_document(&r.state))
                    .unwrap_or_default();
                let mut changes = update(&ledger::pick(&all, keys))?;
                changes.retain(|k, _| keys.contains(k));
                ledger::apply(&mut all, changes);
                Some(RateLimitRecord {
                    state: ledger::document_of(all),
                })
            })
            .await
        }
    }

    /// Every certificate the renewer keeps for a directory URL, in a
    /// stable order (a record that cannot be read is left out, logged).
    fn list_managed(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Vec<ManagedRecord>>> + Send;

    /// Adds or replaces the renewer's record `record.id` of a directory URL.
    fn save_managed(
        &self,
        directory: &str,
        record: &ManagedRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Removes the renewer's record `id` (no error if there is none).
    fn delete_managed(
        &self,
        directory: &str,
        id: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Writes the journal only while `lease` is the current, unexpired
    /// lease of its holder: [`Store::check_lease`] and
    /// [`Store::save_journal`] as one step. The default runs the two one
    /// after the other, which is enough where leases are judged on one
    /// machine; a shared database should check the token in the same
    /// transaction as the write, so a holder that lost its lease between
    /// the two cannot overwrite the newer holder's journal.
    fn save_journal_fenced(
        &self,
        key: &IdentifierSetKey,
        journal: &Journal,
        lease: &Lease,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        async move {
            self.check_lease(lease).await?;
            self.save_journal(key, journal).await
        }
    }

    /// Deletes the journal only while `lease` is current: as
    /// [`Store::save_journal_fenced`], for [`Store::delete_journal`].
    fn delete_journal_fenced(
        &self,
        key: &IdentifierSetKey,
        lease: &Lease,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        async move {
            self.check_lease(lease).await?;
            self.delete_journal(key).await
        }
    }

    /// Takes the lease `name` for `holder` for `ttl`, or fails with
    /// [`StoreError::LeaseHeld`] while the lease has not expired, also when
    /// `holder` itself holds it (the caller waits, as for another holder).
    /// A holder that crashed loses its lease when it expires (or earlier,
    /// where the store can prove its process is gone). The lease returned
    /// carries its [`Lease::validity`].
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = StoreResult<Lease>> + Send;

    /// Extends a lease this holder still has; [`StoreError::LeaseHeld`] if
    /// it was lost to another holder. The lease returned carries its new
    /// [`Lease::validity`].
    fn renew_lease(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> impl Future<Output = StoreResult<Lease>> + Send;

    /// Fails with [`StoreError::LeaseLost`] unless `lease` is still the
    /// current, unexpired lease of its holder (same fencing token). The
    /// issuer calls it before every journal write and every non-idempotent
    /// request. A backend on a shared database should judge expiry by the
    /// database's clock, and may check the token in the same transaction
    /// as the write it guards.
    fn check_lease(&self, lease: &Lease) -> impl Future<Output = StoreResult<()>> + Send;

    /// Gives a lease up (no error if it already expired or was taken).
    fn release_lease(&self, lease: &Lease) -> impl Future<Output = StoreResult<()>> + Send;
}
