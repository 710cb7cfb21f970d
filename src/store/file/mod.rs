//! The file-backed store: one directory on the local file system, every
//! record written atomically ([`write_file_atomic`](super::write_file_atomic))
//! inside a checksummed envelope.
//!
//! # Layout
//!
//! ```text
//! <root>/                                   0700
//!   accounts/<sha256(directory URL)>.json   0600  kind "account" (holds the account key)
//!   certs/<IdentifierSetKey::file_stem()>/           0700
//!     cert.json                             0644  kind "certificate" (no key; records the key's SHA-256)
//!     key.pem                               0600  the certificate key, PKCS#8 PEM
//!     key.pem.new                           0600  only between the two halves of a save
//!     .lock                                       flock(2): saves exclusive, loads shared
//!     backup-<unix time>[-N]/{cert.json,key.pem}  the versions a save replaced
//!   journals/<IdentifierSetKey::file_stem()>.json    0600  kind "journal" (holds the certificate key)
//!   journals/archive/<stem>.<unix>-<n>.json 0600  superseded journals, never deleted
//!   ledger/<sha256(directory URL)>.json     0600  kind "ledger"
//!   leases/<name>.lease                     0600  kind "lease"
//!   leases/<name>.lock                            flock(2) target for the lease's read-modify-write
//! ```
//!
//! Every JSON record file is exactly
//! `{"format":"sturdy-acme/1","kind":"<kind>","sha256":"<hex>","data":<data>}`
//! where `<hex>` is the SHA-256 of the `<data>` bytes as they stand in the
//! file. A record that does not parse, is truncated, has another format or
//! kind, was moved from another key, or whose checksum does not match is
//! reported as [`StoreError::Corrupted`]: it stays where it is and a copy is
//! put beside it as `<name>.corrupt-<unix time>`.
//!
//! # A certificate is two files
//!
//! `cert.json` is the commit point. A save hard-links the current pair into
//! a fresh `backup-*` directory, writes the new key to `key.pem.new`, writes
//! `cert.json` (which names the new key by its SHA-256), then renames
//! `key.pem.new` to `key.pem`. A load takes whichever of `key.pem` and
//! `key.pem.new` has the hash `cert.json` names, so a crash anywhere leaves
//! the old or the new certificate with its own key, never a mix.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::future::Future;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::atomic::{FileMode, write_file_atomic_counted};
use super::process;
use super::{
    IdentifierSetKey, Journal, Lease, LedgerUpdate, ManagedRecord, RateLimitRecord, Revoked, Store,
    StoreError, StoreResult, StoredAccount, StoredCertificate,
};
use crate::protocol::{Identifier, timestamp};

/// The envelope format this store writes and accepts.
const FORMAT: &str = "sturdy-acme/1";

const ACCOUNTS: &str = "accounts";
const CERTS: &str = "certs";
const JOURNALS: &str = "journals";
const LEDGER: &str = "ledger";
const LEASES: &str = "leases";
const MANAGED: &str = "managed";
const ARCHIVE: &str = "archive";

const CERT_JSON: &str = "cert.json";
const KEY_PEM: &str = "key.pem";
const KEY_PEM_NEW: &str = "key.pem.new";

/// A store in one directory on the local file system.
///
/// Cheap to clone (the clones share the directory and the fsync counter).
/// Every trait method does its file work on Tokio's blocking pool
/// ([`tokio::task::spawn_blocking`]) when called inside a Tokio runtime, and
/// inline otherwise. A save whose future is dropped still runs to its end,
/// so it is either fully done or not done at all.
///
/// Several `FileStore`s, in one process or several, may share a directory:
/// certificate saves and lease updates are serialized with `flock(2)` locks,
/// every other write is a single atomic rename.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use sturdy_acme::store::{FileStore, IdentifierSetKey, Store};
/// use sturdy_acme::Identifier;
///
/// let dir = std::env::temp_dir().join(format!("sturdy-doc-filestore-{}", std::process::id()));
/// let store = FileStore::open(&dir)?;
/// let key = IdentifierSetKey::for_account(
///     "https://ca.example/dir",
///     "https://ca.example/acct/1",
///     &[Identifier::dns("www.example.com")?, Identifier::dns("example.com")?],
/// );
/// assert!(store.load_certificate(&key).await?.is_none());
/// assert!(store.load_journal(&key).await?.is_none());
/// // Leases fence concurrent issuers; the token only grows.
/// let lease = store.acquire_lease("doc", "me", std::time::Duration::from_secs(30)).await?;
/// store.check_lease(&lease).await?;
/// store.release_lease(&lease).await?;
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("root", &self.inner.root)
            .field("fsyncs", &self.fsync_count())
            .finish()
    }
}

struct Inner {
    root: PathBuf,
    fsyncs: AtomicU64,
}

impl FileStore {
    /// Opens the store in `dir`, creating it (0700) and its subdirectories
    /// if missing. Existing directories keep their permissions.
    pub fn open(dir: impl Into<PathBuf>) -> StoreResult<FileStore> {
        let inner = Inner {
            root: dir.into(),
            fsyncs: AtomicU64::new(0),
        };
        inner.create_root()?;
        for sub in [ACCOUNTS, CERTS, JOURNALS, LEDGER, LEASES, MANAGED] {
            inner.ensure_dir(&inner.root.join(sub))?;
        }
        Ok(FileStore {
            inner: Arc::new(inner),
        })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// How many `fsync`s this store (and its clones) performed so far: files
    /// and directories, including those made by [`FileStore::open`].
    pub fn fsync_count(&self) -> u64 {
        self.inner.fsyncs.load(Ordering::Relaxed)
    }
}

/// Runs blocking file work off the async runtime (inline when there is no
/// Tokio runtime, rather than panicking).
async fn blocking<T, F>(f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Other(format!("store task failed: {e}")))?
}

impl FileStore {
    /// Runs `op` on an owned copy of its arguments, off the async runtime:
    /// every [`Store`] method is this, with the file work in [`Inner`].
    fn offload<A, T>(
        &self,
        args: A,
        op: fn(&Inner, A) -> StoreResult<T>,
    ) -> impl Future<Output = StoreResult<T>> + Send + use<A, T>
    where
        A: Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || op(&inner, args))
    }
}

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

// ---------------------------------------------------------------------------
// What the envelopes hold.

#[derive(Serialize, Deserialize)]
struct AccountData {
    directory: String,
    account: StoredAccount,
}

#[derive(Serialize, Deserialize)]
struct ManagedData {
    directory: String,
    record: ManagedRecord,
}

#[derive(Serialize, Deserialize)]
struct LedgerData {
    directory: String,
    ledger: RateLimitRecord,
}

#[derive(Serialize, Deserialize)]
struct JournalData {
    key: IdentifierSetKey,
    journal: Journal,
}

impl JournalData {
    fn new(key: &IdentifierSetKey, journal: &Journal) -> Self {
        Self {
            key: key.clone(),
            journal: journal.clone(),
        }
    }
}

/// `cert.json`: the certificate without its key, plus the key's hash.
#[derive(Serialize, Deserialize)]
struct CertData {
    key: IdentifierSetKey,
    identifiers: Vec<Identifier>,
    chain_pem: String,
    url: String,
    not_before: i64,
    not_after: i64,
    serial: String,
    key_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked: Option<Revoked>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    renewal: Option<super::RenewalSchedule>,
}

/// The parts of an envelope checked before its data is located.
#[derive(Deserialize)]
struct Header {
    format: String,
    kind: String,
    sha256: String,
    #[allow(dead_code)]
    data: IgnoredAny,
}

// ---------------------------------------------------------------------------
// The blocking implementation.

impl Inner {
    fn count_fsync(&self) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
    }

    fn path(&self, sub: &str, file: String) -> PathBuf {
        self.root.join(sub).join(file)
    }

    fn cert_dir(&self, key: &IdentifierSetKey) -> PathBuf {
        self.path(CERTS, key.file_stem())
    }

    fn create_root(&self) -> StoreResult<()> {
        match fs::metadata(&self.root) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(not_a_directory(&self.root)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut builder = DirBuilder::new();
                builder.recursive(true);
                set_dir_mode(&mut builder);
                builder.create(&self.root).map_err(io_err(&self.root))?;
                self.sync_dir(&parent_of(&self.root))
            }
            Err(e) => Err(io_err(&self.root)(e)),
        }
    }

    /// Creates `dir` (0700) if missing; when it does, makes its entry in
    /// the parent durable.
    fn ensure_dir(&self, dir: &Path) -> StoreResult<()> {
        let mut builder = DirBuilder::new();
        set_dir_mode(&mut builder);
        match builder.create(dir) {
            Ok(()) => self.sync_dir(&parent_of(dir)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if fs::metadata(dir).map_err(io_err(dir))?.is_dir() {
                    Ok(())
                } else {
                    Err(not_a_directory(dir))
                }
            }
            Err(e) => Err(io_err(dir)(e)),
        }
    }

    fn sync_dir(&self, dir: &Path) -> StoreResult<()> {
        #[cfg(unix)]
        {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?;
            self.count_fsync();
        }
        #[cfg(not(unix))]
        let _ = dir;
        Ok(())
    }

    fn write_file(&self, path: &Path, bytes: &[u8], mode: FileMode) -> StoreResult<()> {
        write_file_atomic_counted(path, bytes, mode, &self.fsyncs).map_err(io_err(path))
    }

    /// Takes an exclusive `flock(2)` on `path` (created 0600 if missing);
    /// it is released when the returned file is dropped, or by the kernel if
    /// the process dies.
    fn lock(&self, path: &Path) -> StoreResult<File> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(io_err(path))?;
        fs4::FileExt::lock(&file).map_err(io_err(path))?;
        Ok(file)
    }

    /// A shared `flock(2)` on `path` if the file exists (a store nobody
    /// saved into yet has none, and a load does not create it).
    fn lock_shared_if_present(&self, path: &Path) -> StoreResult<Option<File>> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(path)(e)),
        };
        fs4::FileExt::lock_shared(&file).map_err(io_err(path))?;
        Ok(Some(file))
    }

    fn write_record<T: Serialize>(
        &self,
        path: &Path,
        kind: &str,
        data: &T,
        mode: FileMode,
    ) -> StoreResult<()> {
        let bytes = envelope(kind, data)
            .map_err(|e| StoreError::Other(format!("encoding {kind} record: {e}")))?;
        self.write_file(path, &bytes, mode)
    }

    /// Reads a record; `Ok(None)` only when the file does not exist.
    fn read_record<T: DeserializeOwned>(&self, path: &Path, kind: &str) -> StoreResult<Option<T>> {
        let Some(bytes) = read_optional(path)? else {
            return Ok(None);
        };
        match open_envelope(&bytes, kind) {
            Ok(data) => Ok(Some(data)),
            Err(reason) => Err(self.corrupted(path, &bytes, reason)),
        }
    }

    /// Reports a record that cannot be trusted: copies it aside as
    /// `<name>.corrupt-<unix time>` (unless an identical copy is already
    /// there), leaves it in place and returns the error.
    fn corrupted(&self, path: &Path, bytes: &[u8], reason: String) -> StoreError {
        let reason = match self.copy_aside(path, bytes) {
            Ok(copy) => format!("{reason} (copy kept at {})", copy.display()),
            Err(e) => format!("{reason} (could not keep a copy: {e})"),
        };
        tracing::error!(target: "sturdy_acme::store", path = %path.display(), %reason, "corrupted store record");
        StoreError::Corrupted {
            path: path.to_owned(),
            reason,
        }
    }

    fn copy_aside(&self, path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
        let dir = parent_of(path);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!("{name}.corrupt-");
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let existing = Zeroizing::new(fs::read(entry.path())?);
                if existing.as_slice() == bytes {
                    return Ok(entry.path());
                }
            }
        }
        let now = unix_now();
        let mut n = 0u32;
        loop {
            let copy = if n == 0 {
                dir.join(format!("{prefix}{now}"))
            } else {
                dir.join(format!("{prefix}{now}-{n}"))
            };
            if !copy.exists() {
                write_file_atomic_counted(&copy, bytes, FileMode::Private, &self.fsyncs)?;
                return Ok(copy);
            }
            n += 1;
        }
    }

    // -- accounts and ledger --------------------------------------------

    fn load_account(&self, directory: &str) -> StoreResult<Option<StoredAccount>> {
        let path = self.path(
            ACCOUNTS,
            format!("{}.json", sha256_hex(directory.as_bytes())),
        );
        let Some(data) = self.read_record::<AccountData>(&path, "account")? else {
            return Ok(None);
        };
        if data.directory != directory {
            let reason = format!(
                "holds the account for {:?}, not {directory:?}",
                data.directory
            );
            return Err(self.corrupted_file(&path, reason));
        }
        Ok(Some(data.account))
    }

    fn save_account(&self, data: &AccountData) -> StoreResult<()> {
        let path = self.path(
            ACCOUNTS,
            format!("{}.json", sha256_hex(data.directory.as_bytes())),
        );
        self.write_record(&path, "account", data, FileMode::Private)
    }

    fn load_ledger(&self, directory: &str) -> StoreResult<Option<RateLimitRecord>> {
        let path = self.path(LEDGER, format!("{}.json", sha256_hex(directory.as_bytes())));
        let Some(data) = self.read_record::<LedgerData>(&path, "ledger")? else {
            return Ok(None);
        };
        if data.directory != directory {
            let reason = format!(
                "holds the ledger for {:?}, not {directory:?}",
                data.directory
            );
            return Err(self.corrupted_file(&path, reason));
        }
        Ok(Some(data.ledger))
    }

    fn managed_path(&self, directory: &str, id: &str) -> PathBuf {
        self.path(
            MANAGED,
            format!(
                "{}-{}.json",
                sha256_hex(directory.as_bytes()),
                sha256_hex(id.as_bytes())
            ),
        )
    }

    fn list_managed(&self, directory: &str) -> StoreResult<Vec<ManagedRecord>> {
        let prefix = format!("{}-", sha256_hex(directory.as_bytes()));
        let mut records = Vec::new();
        for path in self.entries(MANAGED)? {
            let ours = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".json"));
            if !ours || !path.is_file() {
                continue;
            }
            match self.read_record::<ManagedData>(&path, "managed") {
                Ok(Some(data)) if data.directory == directory => records.push(data.record),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(target: "sturdy_acme::store", path = %path.display(), error = %e, "a renewer record cannot be read; not listed");
                }
            }
        }
        Ok(records)
    }

    fn save_managed(&self, data: &ManagedData) -> StoreResult<()> {
        let path = self.managed_path(&data.directory, &data.record.id);
        self.write_record(&path, "managed", data, FileMode::Private)
    }

    fn delete_managed(&self, directory: &str, id: &str) -> StoreResult<()> {
        let path = self.managed_path(directory, id);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(&parent_of(&path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn ledger_lock_path(&self, directory: &str) -> PathBuf {
        self.path(LEDGER, format!("{}.lock", sha256_hex(directory.as_bytes())))
    }

    fn save_ledger(&self, data: &LedgerData) -> StoreResult<()> {
        let path = self.path(
            LEDGER,
            format!("{}.json", sha256_hex(data.directory.as_bytes())),
        );
        self.write_record(&path, "ledger", data, FileMode::Private)
    }

    /// [`Inner::corrupted`] for a file whose bytes were already verified:
    /// reads them again for the copy.
    fn corrupted_file(&self, path: &Path, reason: String) -> StoreError {
        match fs::read(path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                self.corrupted(path, &bytes, reason)
            }
            Err(e) => StoreError::Corrupted {
                path: path.to_owned(),
                reason: format!("{reason} (could not keep a copy: {e})"),
            },
        }
    }

    // -- listings ---------------------------------------------------------

    /// The entries of `root/sub`, sorted; none if it does not exist yet.
    fn entries(&self, sub: &str) -> StoreResult<Vec<PathBuf>> {
        let dir = self.root.join(sub);
        let read = match fs::read_dir(&dir) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut paths = Vec::new();
        for entry in read {
            paths.push(entry.map_err(io_err(&dir))?.path());
        }
        paths.sort();
        Ok(paths)
    }

    fn list_certificates(&self, directory: &str) -> StoreResult<Vec<IdentifierSetKey>> {
        let mut keys = Vec::new();
        for dir in self.entries(CERTS)? {
            let path = dir.join(CERT_JSON);
            if !dir.is_dir() || !path.exists() {
                continue;
            }
            let data = match self.read_record::<CertData>(&path, "certificate") {
                Ok(Some(data)) => data,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(target: "sturdy_acme::store", path = %path.display(), error = %e, "a certificate record cannot be read; not listed");
                    continue;
                }
            };
            let ours = match data.key.ca() {
                Some(ca) => ca.directory == directory,
                None => same_origin(&data.url, directory),
            };
            if ours {
                keys.push(data.key);
            }
        }
        Ok(keys)
    }

    fn list_journals(&self, directory: &str) -> StoreResult<Vec<IdentifierSetKey>> {
        let mut keys = Vec::new();
        for path in self.entries(JOURNALS)? {
            if path.extension().and_then(|e| e.to_str()) != Some("json") || !path.is_file() {
                continue;
            }
            match self.read_record::<JournalData>(&path, "journal") {
                Ok(Some(data)) if data.journal.directory == directory => keys.push(data.key),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(target: "sturdy_acme::store", path = %path.display(), error = %e, "a journal cannot be read; not listed");
                }
            }
        }
        Ok(keys)
    }

    // -- journals ---------------------------------------------------------

    fn journal_path(&self, key: &IdentifierSetKey) -> PathBuf {
        self.path(JOURNALS, format!("{}.json", key.file_stem()))
    }

    fn load_journal(&self, key: &IdentifierSetKey) -> StoreResult<Option<Journal>> {
        let path = self.journal_path(key);
        if let Some(data) = self.read_record::<JournalData>(&path, "journal")? {
            if data.key != *key {
                let reason = format!("holds the journal for {}, not {key}", data.key);
                return Err(self.corrupted_file(&path, reason));
            }
            return Ok(Some(data.journal));
        }
        self.load_legacy_journal(key)
    }

    /// A journal written before keys carried the CA, if it names `key`'s CA
    /// and account (a journal records both).
    fn load_legacy_journal(&self, key: &IdentifierSetKey) -> StoreResult<Option<Journal>> {
        let Some(ca) = key.ca() else {
            return Ok(None);
        };
        let legacy = key.legacy();
        let path = self.journal_path(&legacy);
        let Some(data) = self.read_record::<JournalData>(&path, "journal")? else {
            return Ok(None);
        };
        if data.key != legacy {
            let reason = format!("holds the journal for {}, not {legacy}", data.key);
            return Err(self.corrupted_file(&path, reason));
        }
        let ours = data.journal.directory == ca.directory && data.journal.account_url == ca.account;
        Ok(ours.then_some(data.journal))
    }

    fn save_journal(&self, data: &JournalData) -> StoreResult<()> {
        let path = self.journal_path(&data.key);
        self.write_record(&path, "journal", data, FileMode::Private)
    }

    fn archive_journal(&self, data: &JournalData) -> StoreResult<()> {
        let dir = self.root.join(JOURNALS).join(ARCHIVE);
        self.ensure_dir(&dir)?;
        let stem = data.key.file_stem();
        let now = unix_now();
        let mut n = 0u32;
        let path = loop {
            let path = dir.join(format!("{stem}.{now}-{n}.json"));
            if !path.exists() {
                break path;
            }
            n += 1;
        };
        self.write_record(&path, "journal", data, FileMode::Private)?;
        tracing::info!(target: "sturdy_acme::store", path = %path.display(), "superseded journal archived");
        Ok(())
    }

    fn delete_journal(&self, key: &IdentifierSetKey) -> StoreResult<()> {
        // A legacy journal of this CA and account is done with too (one
        // that cannot be read is left for a human, not an error here).
        if key.ca().is_some() {
            match self.load_legacy_journal(key) {
                Ok(Some(_)) => self.delete_journal(&key.legacy())?,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(target: "sturdy_acme::store", error = %e, "a legacy journal could not be read; left in place");
                }
            }
        }
        let path = self.journal_path(key);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(&parent_of(&path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    // -- certificates -----------------------------------------------------

    fn load_certificate(&self, key: &IdentifierSetKey) -> StoreResult<Option<StoredCertificate>> {
        if let Some(found) = self.load_certificate_at(key)? {
            return Ok(Some(found));
        }
        // Written before keys carried the CA: returned only when its URL is
        // on this CA's origin, never for another CA.
        let Some(ca) = key.ca() else {
            return Ok(None);
        };
        let legacy = key.legacy();
        if self.cert_dir(&legacy) == self.cert_dir(key) {
            return Ok(None);
        }
        Ok(self
            .load_certificate_at(&legacy)?
            .filter(|cert| same_origin(&cert.url, &ca.directory)))
    }

    fn load_certificate_at(
        &self,
        key: &IdentifierSetKey,
    ) -> StoreResult<Option<StoredCertificate>> {
        let dir = self.cert_dir(key);
        // Shared with other loads, excluded by a save: a load must not see
        // the new cert.json with a key file caught mid-rename.
        let _lock = self.lock_shared_if_present(&dir.join(".lock"))?;
        let cert_json = dir.join(CERT_JSON);
        let Some(data) = self.read_record::<CertData>(&cert_json, "certificate")? else {
            let key_pem = dir.join(KEY_PEM);
            if let Some(bytes) = read_optional(&key_pem)? {
                let reason = format!("{KEY_PEM} is there but {CERT_JSON} is missing");
                return Err(self.corrupted(&key_pem, &bytes, reason));
            }
            // A key.pem.new alone is a first save that did not commit.
            return Ok(None);
        };
        if data.key != *key {
            let reason = format!("holds the certificate for {}, not {key}", data.key);
            return Err(self.corrupted_file(&cert_json, reason));
        }
        let key_pem = match self.current_key(&dir, &data.key_sha256)? {
            CurrentKey::Found(_, pem) => pem,
            CurrentKey::Missing(reason) => {
                let path = dir.join(KEY_PEM);
                return Err(match read_optional(&path)? {
                    Some(bytes) => self.corrupted(&path, &bytes, reason),
                    None => StoreError::Corrupted { path, reason },
                });
            }
        };
        Ok(Some(StoredCertificate {
            identifiers: data.identifiers,
            chain_pem: data.chain_pem,
            key_pem,
            url: data.url,
            not_before: timestamp::from_unix(data.not_before),
            not_after: timestamp::from_unix(data.not_after),
            serial: data.serial,
            revoked: data.revoked,
            renewal: data.renewal,
        }))
    }

    /// The key file `cert.json` names: `key.pem`, or `key.pem.new` when a
    /// save stopped between committing `cert.json` and renaming the key.
    fn current_key(&self, dir: &Path, key_sha256: &str) -> StoreResult<CurrentKey> {
        let mut first_problem = None;
        for name in [KEY_PEM, KEY_PEM_NEW] {
            let path = dir.join(name);
            let Some(bytes) = read_optional(&path)? else {
                continue;
            };
            let problem = match std::str::from_utf8(&bytes) {
                Err(_) => Some("is not text".to_owned()),
                Ok(pem) => check_private_key_pem(pem).err(),
            };
            if sha256_hex(&bytes) == key_sha256 {
                if let Some(problem) = problem {
                    let reason = format!("{problem} (it has the hash {CERT_JSON} records)");
                    return Err(self.corrupted(&path, &bytes, reason));
                }
                let pem = String::from_utf8(bytes.to_vec()).unwrap_or_default();
                return Ok(CurrentKey::Found(path, Zeroizing::new(pem)));
            }
            if name == KEY_PEM {
                first_problem = Some(match problem {
                    Some(problem) => problem,
                    None => format!(
                        "is not the key {CERT_JSON} records (sha256 {key_sha256}, file has {})",
                        sha256_hex(&bytes)
                    ),
                });
            }
        }
        Ok(CurrentKey::Missing(first_problem.unwrap_or_else(|| {
            format!("is missing (the key {CERT_JSON} records has sha256 {key_sha256})")
        })))
    }

    fn save_certificate(
        &self,
        key: &IdentifierSetKey,
        cert: &StoredCertificate,
    ) -> StoreResult<()> {
        if let Err(problem) = check_private_key_pem(&cert.key_pem) {
            return Err(StoreError::Other(format!(
                "refusing to store the certificate for {key}: its key {problem}"
            )));
        }
        let dir = self.cert_dir(key);
        self.ensure_dir(&dir)?;
        let _lock = self.lock(&dir.join(".lock"))?;

        // The same certificate with new metadata (a renewal schedule, a
        // revocation) replaces nothing worth a backup.
        let same = matches!(
            self.read_record::<CertData>(&dir.join(CERT_JSON), "certificate"),
            Ok(Some(old)) if old.serial == cert.serial
                && old.key_sha256 == sha256_hex(cert.key_pem.as_bytes())
        );
        if !same {
            self.backup_certificate(&dir)?;
        }

        let new_key = dir.join(KEY_PEM_NEW);
        self.write_file(&new_key, cert.key_pem.as_bytes(), FileMode::Private)?;
        let data = CertData {
            key: key.clone(),
            identifiers: cert.identifiers.clone(),
            chain_pem: cert.chain_pem.clone(),
            url: cert.url.clone(),
            not_before: timestamp::to_unix(cert.not_before),
            not_after: timestamp::to_unix(cert.not_after),
            serial: cert.serial.clone(),
            key_sha256: sha256_hex(cert.key_pem.as_bytes()),
            revoked: cert.revoked,
            renewal: cert.renewal.clone(),
        };
        // The commit point: from here on a load returns the new certificate.
        self.write_record(&dir.join(CERT_JSON), "certificate", &data, FileMode::Public)?;
        // Not fsynced and not an error if it fails: a load accepts the key
        // under either name, by its hash.
        let key_pem = dir.join(KEY_PEM);
        if let Err(e) = fs::rename(&new_key, &key_pem) {
            tracing::warn!(target: "sturdy_acme::store", path = %new_key.display(), error = %e,
                "certificate saved but its key was left as key.pem.new");
        }
        Ok(())
    }

    /// Hard-links (or copies) the current certificate and key into a new
    /// `backup-<unix time>` directory, durably, before they are replaced.
    fn backup_certificate(&self, dir: &Path) -> StoreResult<()> {
        let cert_json = dir.join(CERT_JSON);
        let mut files: Vec<(PathBuf, &str)> = Vec::new();
        if cert_json.exists() {
            files.push((cert_json.clone(), CERT_JSON));
            let recorded = match self.read_record::<CertData>(&cert_json, "certificate") {
                Ok(data) => data.map(|d| d.key_sha256),
                Err(StoreError::Corrupted { path, reason }) => {
                    tracing::warn!(target: "sturdy_acme::store", path = %path.display(), %reason,
                        "replacing a corrupted certificate; it is kept in the backup");
                    None
                }
                Err(e) => return Err(e),
            };
            match recorded.map(|sha| self.current_key(dir, &sha)) {
                Some(Ok(CurrentKey::Found(path, _))) => files.push((path, KEY_PEM)),
                Some(Err(StoreError::Io { path, source })) => {
                    return Err(StoreError::Io { path, source });
                }
                _ => {
                    // Keep whatever is there, under its own name.
                    files.push((dir.join(KEY_PEM), KEY_PEM));
                    files.push((dir.join(KEY_PEM_NEW), KEY_PEM_NEW));
                }
            }
        } else {
            files.push((dir.join(KEY_PEM), KEY_PEM));
        }
        files.retain(|(path, _)| path.exists());
        if files.is_empty() {
            return Ok(());
        }

        let now = unix_now();
        let mut n = 0u32;
        let backup = loop {
            let name = if n == 0 {
                format!("backup-{now}")
            } else {
                format!("backup-{now}-{n}")
            };
            let path = dir.join(name);
            let mut builder = DirBuilder::new();
            set_dir_mode(&mut builder);
            match builder.create(&path) {
                Ok(()) => break path,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(io_err(&path)(e)),
            }
        };
        for (src, name) in files {
            let dst = backup.join(name);
            if fs::hard_link(&src, &dst).is_err() {
                // File systems without hard links: copy, durably.
                fs::copy(&src, &dst)
                    .and_then(|_| File::open(&dst)?.sync_all())
                    .map_err(io_err(&dst))?;
                self.count_fsync();
            }
        }
        self.sync_dir(&backup)?;
        self.sync_dir(dir)
    }

    // -- leases -------------------------------------------------------------

    fn lease_paths(&self, name: &str) -> (PathBuf, PathBuf) {
        let safe = safe_name(name);
        (
            self.path(LEASES, format!("{safe}.lease")),
            self.path(LEASES, format!("{safe}.lock")),
        )
    }

    fn read_lease(&self, path: &Path, name: &str) -> StoreResult<Option<Lease>> {
        let Some(lease) = self.read_record::<Lease>(path, "lease")? else {
            return Ok(None);
        };
        if lease.name != name {
            let reason = format!("holds the lease {:?}, not {name:?}", lease.name);
            return Err(self.corrupted_file(path, reason));
        }
        Ok(Some(lease))
    }

    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        sent: Instant,
    ) -> StoreResult<Lease> {
        let (path, lock) = self.lease_paths(name);
        let _lock = self.lock(&lock)?;
        let wall = SystemTime::now();
        let now = secs(wall);
        let current = self.read_lease(&path, name)?;
        // Held (by another holder or by this one: a second acquisition
        // waits), unless its holder's process is provably gone.
        if let Some(current) = &current
            && current.until > now
            && !holder_is_dead(current)
        {
            return Err(StoreError::LeaseHeld {
                name: name.to_owned(),
                holder: current.holder.clone(),
                until: current.until,
            });
        }
        // Fencing: every acquisition gets a token above every earlier one
        // (a released lease keeps its record for this).
        let token = current.as_ref().map_or(1, |c| c.token.saturating_add(1));
        if let Some(current) = &current
            && current.until > now
        {
            tracing::warn!(lease = %name, holder = %current.holder, pid = current.pid, "taking over the lease of a process that is gone");
        }
        let me = process::current();
        let lease = Lease {
            name: name.to_owned(),
            holder: holder.to_owned(),
            until: now.saturating_add(ceil_secs(ttl)),
            token,
            host: me.host.clone(),
            pid: me.pid,
            start_time: me.start_time,
            pid_ns: me.pid_ns.clone(),
            validity: None,
        };
        self.write_record(&path, "lease", &lease, FileMode::Private)?;
        let left = super::remaining_until(lease.until, wall);
        Ok(lease.valid_for(left, sent))
    }

    fn renew_lease(&self, lease: &Lease, ttl: Duration, sent: Instant) -> StoreResult<Lease> {
        let (path, lock) = self.lease_paths(&lease.name);
        let _lock = self.lock(&lock)?;
        match self.read_lease(&path, &lease.name)? {
            Some(current) if current.holder == lease.holder && current.token == lease.token => {
                let wall = SystemTime::now();
                let renewed = Lease {
                    until: secs(wall).saturating_add(ceil_secs(ttl)),
                    ..current
                };
                self.write_record(&path, "lease", &renewed, FileMode::Private)?;
                let left = super::remaining_until(renewed.until, wall);
                Ok(renewed.valid_for(left, sent))
            }
            Some(current) => Err(StoreError::LeaseHeld {
                name: lease.name.clone(),
                holder: current.holder,
                until: current.until,
            }),
            None => Err(StoreError::LeaseHeld {
                name: lease.name.clone(),
                holder: String::new(),
                until: 0,
            }),
        }
    }

    fn check_lease(&self, lease: &Lease) -> StoreResult<()> {
        let (path, lock) = self.lease_paths(&lease.name);
        let _lock = self.lock(&lock)?;
        let current = self.read_lease(&path, &lease.name)?;
        super::judge_lease(current.as_ref(), lease, unix_now())
    }

    fn release_lease(&self, lease: &Lease) -> StoreResult<()> {
        let (path, lock) = self.lease_paths(&lease.name);
        let _lock = self.lock(&lock)?;
        match self.read_lease(&path, &lease.name)? {
            Some(current) if current.holder == lease.holder && current.token == lease.token => {
                // Kept (expired, no holder) so the next token is higher.
                let released = Lease {
                    holder: String::new(),
                    until: 0,
                    ..current
                };
                self.write_record(&path, "lease", &released, FileMode::Private)
            }
            _ => Ok(()),
        }
    }
}

/// True when both URLs have the same scheme, host and port.
pub(super) fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin() && a.origin().is_tuple(),
        _ => false,
    }
}

/// True when the lease's holder was a process on this host (and PID
/// namespace) that no longer runs.
fn holder_is_dead(lease: &Lease) -> bool {
    process::holder_is_dead(&lease.host, lease.pid, lease.start_time, &lease.pid_ns)
}

enum CurrentKey {
    /// The file and its PEM.
    Found(PathBuf, Zeroizing<String>),
    /// Why `key.pem` is not the key (it is then the file to blame).
    Missing(String),
}

// ---------------------------------------------------------------------------
// Envelopes.

fn envelope_prefix(kind: &str, sha256: &str) -> String {
    format!(r#"{{"format":"{FORMAT}","kind":"{kind}","sha256":"{sha256}","data":"#)
}

/// `{"format":…,"kind":…,"sha256":…,"data":<data>}` and a newline.
fn envelope<T: Serialize>(kind: &str, data: &T) -> serde_json::Result<Zeroizing<Vec<u8>>> {
    let data = Zeroizing::new(serde_json::to_vec(data)?);
    let prefix = envelope_prefix(kind, &sha256_hex(&data));
    let mut out = Zeroizing::new(Vec::with_capacity(prefix.len() + data.len() + 2));
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(&data);
    out.extend_from_slice(b"}\n");
    Ok(out)
}

/// Verifies an envelope and decodes its data; the error is the reason the
/// file cannot be trusted.
fn open_envelope<T: DeserializeOwned>(bytes: &[u8], kind: &str) -> Result<T, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let header: Header = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a complete {FORMAT} envelope (truncated?): {e}"))?;
    if header.format != FORMAT {
        return Err(format!(
            "format is {:?}, this store reads {FORMAT:?}",
            header.format
        ));
    }
    if header.kind != kind {
        return Err(format!(
            "holds a {:?} record where a {kind:?} record belongs",
            header.kind
        ));
    }
    let prefix = envelope_prefix(kind, &header.sha256);
    let data = bytes
        .trim_ascii_end()
        .strip_prefix(prefix.as_bytes())
        .and_then(|rest| rest.strip_suffix(b"}"))
        .ok_or("the envelope is not laid out as this store writes it (edited by hand?)")?;
    let actual = sha256_hex(data);
    if actual != header.sha256 {
        return Err(format!(
            "checksum mismatch: the envelope records sha256 {}, the data hashes to {actual}",
            header.sha256
        ));
    }
    serde_json::from_slice(data).map_err(|e| format!("the data is not a valid {kind} record: {e}"))
}

// ---------------------------------------------------------------------------
// Small helpers.

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn not_a_directory(path: &Path) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        source: io::Error::new(
            io::ErrorKind::NotADirectory,
            "exists and is not a directory",
        ),
    }
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn set_dir_mode(builder: &mut DirBuilder) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    #[cfg(not(unix))]
    let _ = builder;
}

/// The file's bytes, `None` if it does not exist.
fn read_optional(path: &Path) -> StoreResult<Option<Zeroizing<Vec<u8>>>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut bytes = Zeroizing::new(Vec::new());
    file.read_to_end(&mut bytes).map_err(io_err(path))?;
    Ok(Some(bytes))
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Is `pem` a PKCS#8 `PRIVATE KEY` PEM block? The error says why not.
fn check_private_key_pem(pem: &str) -> Result<(), String> {
    let parsed = pem::parse(pem).map_err(|e| format!("is not a PEM block: {e}"))?;
    if parsed.tag() != "PRIVATE KEY" {
        return Err(format!(
            "is a PEM {:?} block, not a PKCS#8 \"PRIVATE KEY\"",
            parsed.tag()
        ));
    }
    // PKCS#8 PrivateKeyInfo is a DER SEQUENCE.
    if parsed.contents().first() != Some(&0x30) {
        return Err("holds no DER PKCS#8 structure".into());
    }
    Ok(())
}

/// A lease name as a file name: itself when it is plainly safe, else a
/// readable part plus a hash of the whole name.
fn safe_name(name: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if !name.is_empty() && name.len() <= 128 && !name.starts_with('.') && name.chars().all(plain) {
        return name.to_owned();
    }
    let readable: String = name
        .chars()
        .map(|c| if plain(c) { c } else { '_' })
        .take(64)
        .collect();
    format!(
        "{}-{}",
        readable.trim_start_matches('.'),
        &sha256_hex(name.as_bytes())[..16]
    )
}

fn unix_now() -> u64 {
    secs(SystemTime::now())
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn ceil_secs(ttl: Duration) -> u64 {
    ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests;
