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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::atomic::{FileMode, write_file_atomic_counted};
use super::process;
use super::{
    IdentifierSetKey, Journal, Lease, RateLimitRecord, Store, StoreError, StoreResult,
    StoredAccount, StoredCertificate,
};
use crate::protocol::Identifier;

/// The envelope format this store writes and accepts.
const FORMAT: &str = "sturdy-acme/1";

const ACCOUNTS: &str = "accounts";
const CERTS: &str = "certs";
const JOURNALS: &str = "journals";
const LEDGER: &str = "ledger";
const LEASES: &str = "leases";
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
        for sub in [ACCOUNTS, CERTS, JOURNALS, LEDGER, LEASES] {
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

impl Store for FileStore {
    fn load_account(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Option<StoredAccount>>> + Send {
        let inner = Arc::clone(&self.inner);
        let directory = directory.to_owned();
        blocking(move || inner.load_account(&directory))
    }

    fn save_account(
        &self,
        directory: &str,
        account: &StoredAccount,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let inner = Arc::clone(&self.inner);
        let data = AccountData {
            directory: directory.to_owned(),
            account: account.clone(),
        };
        blocking(move || inner.save_account(&data))
    }

    fn load_certificate(
        &self,
        key: &IdentifierSetKey,
    ) -> impl Future<Output = StoreResult<Option<StoredCertificate>>> + Send {
        let inner = Arc::clone(&self.inner);
        let key = key.clone();
        blocking(move || inner.load_certificate(&key))
    }

    fn save_certificate(
        &self,
        key: &IdentifierSetKey,
        certificate: &StoredCertificate,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let inner = Arc::clone(&self.inner);
        let key = key.clone();
        let certificate = certificate.clone();
        blocking(move || inner.save_certificate(&key, &certificate))
    }

    fn load_journal(
        &self,
        key: &IdentifierSetKey,
    ) -> impl Future<Output = StoreResult<Option<Journal>>> + Send {
        let inner = Arc::clone(&self.inner);
        let key = key.clone();
        blocking(move || inner.load_journal(&key))
    }

    fn save_journal(
        &self,
        key: &IdentifierSetKey,
        journal: &Journal,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let inner = Arc::clone(&self.inner);
        let data = JournalData {
            key: key.clone(),
            journal: journal.clone(),
        };
        blocking(move || inner.save_journal(&data))
    }

    fn delete_journal(
        &self,
        key: &IdentifierSetKey,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let inner = Arc::clone(&self.inner);
        let key = key.clone();
        blocking(move || inner.delete_journal(&key))
    }

    fn archive_journal(
        &self,
        key: &IdentifierSetKey,
        journal: &Journal,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let inner = Arc::clone(&self.inner);
        let data = JournalData {
            key: key.clone(),
            journal: journal.clone(),
        };
        blocking(move || inner.archive_journal(&data))
    }

    fn load_ledger(
        &self,
        directory: &str,
    ) -> impl Future<Output = StoreResult<Option<RateLimitRecord>>> + Send {
        let inner = Arc::clone(&self.inner);
        let directory = directory.to_owned();
        blocking(move || inner.load_ledger(&directory))
    }

    fn save_ledger(
        &self,
        directory: &str,
        ledger: &RateLimitRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send {
        let inner = Arc::clone(&self.inner);
        let data = LedgerData {
            directory: directory.to_owned(),
            ledger: ledger.clone(),
        };
        blocking(move || inner.save_ledger(&data))
    }

    /// Takes the lease under an exclusive `flock(2)` on `leases/<name>.lock`
    /// (held only for the read-modify-write). The same holder may take its
    /// own lease again; it gets a new token. A TTL is rounded up to whole
    /// seconds; a zero TTL gives a lease that has already expired.
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = StoreResult<Lease>> + Send {
        let inner = Arc::clone(&self.inner);
        let name = name.to_owned();
        let holder = holder.to_owned();
        blocking(move || inner.acquire_lease(&name, &holder, ttl))
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
        let inner = Arc::clone(&self.inner);
        let lease = lease.clone();
        blocking(move || inner.renew_lease(&lease, ttl))
    }

    /// Deletes the lease file if it still has this holder and token. The
    /// deletion is not fsynced: after a power loss the lease may reappear
    /// until it expires.
    fn check_lease(&self, lease: &Lease) -> impl Future<Output = StoreResult<()>> + Send {
        let inner = Arc::clone(&self.inner);
        let lease = lease.clone();
        blocking(move || inner.check_lease(&lease))
    }

    fn release_lease(&self, lease: &Lease) -> impl Future<Output = StoreResult<()>> + Send {
        let inner = Arc::clone(&self.inner);
        let lease = lease.clone();
        blocking(move || inner.release_lease(&lease))
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
struct LedgerData {
    directory: String,
    ledger: RateLimitRecord,
}

#[derive(Serialize, Deserialize)]
struct JournalData {
    key: IdentifierSetKey,
    journal: Journal,
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
            not_before: data.not_before,
            not_after: data.not_after,
            serial: data.serial,
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

        self.backup_certificate(&dir)?;

        let new_key = dir.join(KEY_PEM_NEW);
        self.write_file(&new_key, cert.key_pem.as_bytes(), FileMode::Private)?;
        let data = CertData {
            key: key.clone(),
            identifiers: cert.identifiers.clone(),
            chain_pem: cert.chain_pem.clone(),
            url: cert.url.clone(),
            not_before: cert.not_before,
            not_after: cert.not_after,
            serial: cert.serial.clone(),
            key_sha256: sha256_hex(cert.key_pem.as_bytes()),
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

    fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> StoreResult<Lease> {
        let (path, lock) = self.lease_paths(name);
        let _lock = self.lock(&lock)?;
        let now = unix_now();
        let current = self.read_lease(&path, name)?;
        if let Some(current) = &current
            && current.until > now
            && current.holder != holder
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
            && current.holder != holder
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
        };
        self.write_record(&path, "lease", &lease, FileMode::Private)?;
        Ok(lease)
    }

    fn renew_lease(&self, lease: &Lease, ttl: Duration) -> StoreResult<Lease> {
        let (path, lock) = self.lease_paths(&lease.name);
        let _lock = self.lock(&lock)?;
        match self.read_lease(&path, &lease.name)? {
            Some(current) if current.holder == lease.holder && current.token == lease.token => {
                let renewed = Lease {
                    until: unix_now().saturating_add(ceil_secs(ttl)),
                    ..current
                };
                self.write_record(&path, "lease", &renewed, FileMode::Private)?;
                Ok(renewed)
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
        let lost = |reason: String| StoreError::LeaseLost {
            name: lease.name.clone(),
            token: lease.token,
            reason,
        };
        match self.read_lease(&path, &lease.name)? {
            Some(current) if current.holder == lease.holder && current.token == lease.token => {
                if current.until > unix_now() {
                    Ok(())
                } else {
                    Err(lost("it expired".into()))
                }
            }
            Some(current) => Err(lost(format!(
                "now held by {:?} with token {}",
                current.holder, current.token
            ))),
            None => Err(lost("its record is gone".into())),
        }
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
fn same_origin(a: &str, b: &str) -> bool {
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
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn ceil_secs(ttl: Duration) -> u64 {
    ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Barrier;

    use super::*;
    use crate::crypto::{CertificateKey, CertificateKeyType};
    use crate::store::JournalStep;

    /// A unique directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(label: &str) -> Self {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "sturdy-filestore-{label}-{}-{}-{}",
                std::process::id(),
                unix_now(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn key_pem() -> Zeroizing<String> {
        CertificateKey::generate(CertificateKeyType::P256)
            .unwrap()
            .to_pkcs8_pem()
    }

    fn cert_key() -> IdentifierSetKey {
        IdentifierSetKey::new(&[
            Identifier::dns("www.example.com").unwrap(),
            Identifier::dns("Example.COM").unwrap(),
        ])
    }

    fn certificate(serial: &str) -> StoredCertificate {
        StoredCertificate {
            identifiers: cert_key().identifiers().to_vec(),
            chain_pem: format!(
                "-----BEGIN CERTIFICATE-----\nMIIB{serial}\n-----END CERTIFICATE-----\n"
            ),
            key_pem: key_pem(),
            url: format!("https://ca.example/cert/{serial}"),
            not_before: 1_700_000_000,
            not_after: 1_707_776_000,
            serial: serial.to_owned(),
        }
    }

    fn journal() -> Journal {
        Journal {
            directory: "https://ca.example/directory".into(),
            account_url: "https://ca.example/acct/1".into(),
            identifiers: cert_key().identifiers().to_vec(),
            step: JournalStep::Finalizing,
            order_url: Some("https://ca.example/order/7".into()),
            key_pem: Some(key_pem()),
            certificate_url: None,
            chain_pem: None,
            started_at: 1_700_000_000,
            order_attempts: 2,
            finalize_sent_at: None,
            finalize_attempts: 0,
        }
    }

    fn assert_same_cert(a: &StoredCertificate, b: &StoredCertificate) {
        assert_eq!(a.identifiers, b.identifiers);
        assert_eq!(a.chain_pem, b.chain_pem);
        assert_eq!(*a.key_pem, *b.key_pem);
        assert_eq!(a.url, b.url);
        assert_eq!(a.not_before, b.not_before);
        assert_eq!(a.not_after, b.not_after);
        assert_eq!(a.serial, b.serial);
    }

    fn assert_corrupted(result: StoreResult<impl std::fmt::Debug>, file: &Path, needle: &str) {
        match result {
            Err(StoreError::Corrupted { path, reason }) => {
                assert_eq!(path, file, "{reason}");
                assert!(reason.contains(needle), "{needle:?} not in {reason:?}");
            }
            other => panic!("expected Corrupted for {}, got {other:?}", file.display()),
        }
    }

    /// The `<name>.corrupt-*` copies beside `file`.
    fn corrupt_copies(file: &Path) -> Vec<PathBuf> {
        let prefix = format!("{}.corrupt-", file.file_name().unwrap().to_string_lossy());
        fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&prefix)
            })
            .collect()
    }

    /// No temp file left by an atomic write anywhere under `dir`.
    fn assert_no_temp_files(dir: &Path) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                !name.contains(".tmp-"),
                "temp file left: {}",
                entry.path().display()
            );
            if entry.file_type().unwrap().is_dir() {
                assert_no_temp_files(&entry.path());
            }
        }
    }

    #[tokio::test]
    async fn open_creates_private_layout() {
        let tmp = TempDir::new("open");
        let root = tmp.0.join("nested/store");
        let store = FileStore::open(&root).unwrap();
        assert_eq!(store.root(), root);
        assert_eq!(mode(&root), 0o700);
        assert_eq!(
            names(&root),
            ["accounts", "certs", "journals", "leases", "ledger"]
        );
        for sub in names(&root) {
            assert_eq!(mode(&root.join(sub)), 0o700);
        }
        assert!(store.fsync_count() >= 6);
        // Opening again changes nothing and needs no fsync.
        let again = FileStore::open(&root).unwrap();
        assert_eq!(again.fsync_count(), 0);

        // A store under a regular file is a clean I/O error naming the path.
        let file = tmp.0.join("plain-file");
        fs::write(&file, b"x").unwrap();
        match FileStore::open(file.join("store")) {
            Err(StoreError::Io { path, .. }) => assert!(path.starts_with(&file), "{path:?}"),
            other => panic!("{other:?}"),
        }
        match FileStore::open(&file) {
            Err(StoreError::Io { path, .. }) => assert_eq!(path, file),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn account_round_trip() {
        let tmp = TempDir::new("account");
        let store = FileStore::open(&tmp.0).unwrap();
        let dir_url = "https://ca.example/directory";
        assert!(store.load_account(dir_url).await.unwrap().is_none());
        let account = StoredAccount {
            url: "https://ca.example/acct/1".into(),
            key_pem: key_pem(),
        };
        store.save_account(dir_url, &account).await.unwrap();
        let loaded = store.load_account(dir_url).await.unwrap().unwrap();
        assert_eq!(loaded.url, account.url);
        assert_eq!(*loaded.key_pem, *account.key_pem);
        assert!(
            store
                .load_account("https://other.example/dir")
                .await
                .unwrap()
                .is_none()
        );

        let path = tmp
            .0
            .join(ACCOUNTS)
            .join(format!("{}.json", sha256_hex(dir_url.as_bytes())));
        assert_eq!(mode(&path), 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(r#"{"format":"sturdy-acme/1","kind":"account","sha256":""#));

        // A record moved to another directory URL's name is not trusted.
        let other = "https://other.example/dir";
        let moved = tmp
            .0
            .join(ACCOUNTS)
            .join(format!("{}.json", sha256_hex(other.as_bytes())));
        fs::copy(&path, &moved).unwrap();
        assert_corrupted(store.load_account(other).await, &moved, "not");
    }

    #[tokio::test]
    async fn ledger_round_trip() {
        let tmp = TempDir::new("ledger");
        let store = FileStore::open(&tmp.0).unwrap();
        let dir_url = "https://ca.example/directory";
        assert!(store.load_ledger(dir_url).await.unwrap().is_none());
        // Floats, unicode and key order survive byte for byte.
        let ledger = RateLimitRecord {
            state: serde_json::json!({
                "z": [0.1, 1e-7, 123456.789, -0.0],
                "a": {"orders": 3, "name": "ünïcode \"q\""},
            }),
        };
        store.save_ledger(dir_url, &ledger).await.unwrap();
        assert_eq!(store.load_ledger(dir_url).await.unwrap().unwrap(), ledger);
        let ledger2 = RateLimitRecord {
            state: serde_json::json!({"orders": 4}),
        };
        store.save_ledger(dir_url, &ledger2).await.unwrap();
        assert_eq!(store.load_ledger(dir_url).await.unwrap().unwrap(), ledger2);
    }

    /// Issue 16, defect 5: records written before keys carried the CA are
    /// read for their own CA (and account) only; scoped records of two CAs
    /// never meet.
    #[tokio::test]
    async fn legacy_records_are_returned_for_their_own_ca_only() {
        let tmp = TempDir::new("legacy");
        let store = FileStore::open(&tmp.0).unwrap();
        let legacy = cert_key();
        store
            .save_certificate(&legacy, &certificate("01"))
            .await
            .unwrap();
        store.save_journal(&legacy, &journal()).await.unwrap();
        let ids = legacy.identifiers().to_vec();
        let ours = IdentifierSetKey::for_account(
            "https://ca.example/directory",
            "https://ca.example/acct/1",
            &ids,
        );
        let other_ca = IdentifierSetKey::for_account(
            "https://staging.ca.example/directory",
            "https://ca.example/acct/1",
            &ids,
        );
        let other_account = IdentifierSetKey::for_account(
            "https://ca.example/directory",
            "https://ca.example/acct/2",
            &ids,
        );
        assert_ne!(ours.file_stem(), other_ca.file_stem());
        assert_ne!(ours.file_stem(), legacy.file_stem());
        let cert = store.load_certificate(&ours).await.unwrap().unwrap();
        assert_eq!(cert.serial, "01");
        assert!(store.load_certificate(&other_ca).await.unwrap().is_none());
        assert!(store.load_journal(&ours).await.unwrap().is_some());
        assert!(store.load_journal(&other_ca).await.unwrap().is_none());
        assert!(store.load_journal(&other_account).await.unwrap().is_none());
        // A scoped save never touches the other CA's record.
        store
            .save_certificate(&other_ca, &certificate("02"))
            .await
            .unwrap();
        assert_eq!(
            store.load_certificate(&ours).await.unwrap().unwrap().serial,
            "01"
        );
        assert_eq!(
            store
                .load_certificate(&other_ca)
                .await
                .unwrap()
                .unwrap()
                .serial,
            "02"
        );
        // Deleting our journal deletes the legacy one it was read from.
        store.delete_journal(&ours).await.unwrap();
        assert!(store.load_journal(&ours).await.unwrap().is_none());
        assert!(store.load_journal(&legacy).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn journal_round_trip_and_delete() {
        let tmp = TempDir::new("journal");
        let store = FileStore::open(&tmp.0).unwrap();
        let key = cert_key();
        assert!(store.load_journal(&key).await.unwrap().is_none());
        let journal = journal();
        store.save_journal(&key, &journal).await.unwrap();
        let loaded = store.load_journal(&key).await.unwrap().unwrap();
        assert_eq!(loaded.directory, journal.directory);
        assert_eq!(loaded.account_url, journal.account_url);
        assert_eq!(loaded.identifiers, journal.identifiers);
        assert_eq!(loaded.step, journal.step);
        assert_eq!(loaded.order_url, journal.order_url);
        assert_eq!(loaded.key_pem.as_deref(), journal.key_pem.as_deref());
        assert_eq!(loaded.started_at, journal.started_at);
        assert_eq!(loaded.order_attempts, 2);

        // Same key, names in another order and case.
        let same = IdentifierSetKey::new(&[
            Identifier::dns("example.com").unwrap(),
            Identifier::dns("WWW.example.com").unwrap(),
        ]);
        assert!(store.load_journal(&same).await.unwrap().is_some());

        let path = tmp
            .0
            .join(JOURNALS)
            .join(format!("{}.json", key.file_stem()));
        assert_eq!(mode(&path), 0o600);

        store.delete_journal(&key).await.unwrap();
        assert!(!path.exists());
        assert!(store.load_journal(&key).await.unwrap().is_none());
        store.delete_journal(&key).await.unwrap();
        assert_no_temp_files(&tmp.0);
    }

    #[tokio::test]
    async fn certificate_round_trip_permissions_and_backup() {
        let tmp = TempDir::new("cert");
        let store = FileStore::open(&tmp.0).unwrap();
        let key = cert_key();
        assert!(store.load_certificate(&key).await.unwrap().is_none());

        let first = certificate("01");
        store.save_certificate(&key, &first).await.unwrap();
        assert_same_cert(
            &store.load_certificate(&key).await.unwrap().unwrap(),
            &first,
        );

        let dir = tmp.0.join(CERTS).join(key.file_stem());
        assert_eq!(mode(&dir.join(CERT_JSON)), 0o644);
        assert_eq!(mode(&dir.join(KEY_PEM)), 0o600);
        let cert_text = fs::read_to_string(dir.join(CERT_JSON)).unwrap();
        assert!(
            !cert_text.contains("PRIVATE KEY"),
            "the key leaked into cert.json"
        );
        assert!(cert_text.contains("https://ca.example/cert/01"));
        assert_eq!(
            fs::read_to_string(dir.join(KEY_PEM)).unwrap(),
            *first.key_pem
        );
        assert_eq!(names(&dir), [".lock", CERT_JSON, KEY_PEM]);

        let second = certificate("02");
        store.save_certificate(&key, &second).await.unwrap();
        assert_same_cert(
            &store.load_certificate(&key).await.unwrap().unwrap(),
            &second,
        );

        let backups: Vec<String> = names(&dir)
            .into_iter()
            .filter(|n| n.starts_with("backup-"))
            .collect();
        assert_eq!(backups.len(), 1, "{:?}", names(&dir));
        let backup = dir.join(&backups[0]);
        assert_eq!(names(&backup), [CERT_JSON, KEY_PEM]);
        assert!(
            fs::read_to_string(backup.join(CERT_JSON))
                .unwrap()
                .contains("cert/01")
        );
        assert_eq!(
            fs::read_to_string(backup.join(KEY_PEM)).unwrap(),
            *first.key_pem
        );
        assert_eq!(mode(&backup.join(KEY_PEM)), 0o600);

        // A third save in the same second gets its own backup directory.
        store
            .save_certificate(&key, &certificate("03"))
            .await
            .unwrap();
        let backups = names(&dir)
            .into_iter()
            .filter(|n| n.starts_with("backup-"))
            .count();
        assert_eq!(backups, 2);
        assert!(!dir.join(KEY_PEM_NEW).exists());
        assert_no_temp_files(&tmp.0);
    }

    #[tokio::test]
    async fn certificate_is_consistent_at_every_crash_point() {
        let tmp = TempDir::new("crash");
        let store = FileStore::open(tmp.0.join("a")).unwrap();
        let other = FileStore::open(tmp.0.join("b")).unwrap();
        let key = cert_key();
        let old = certificate("0a");
        let new = certificate("0b");
        store.save_certificate(&key, &old).await.unwrap();
        other.save_certificate(&key, &new).await.unwrap();
        let dir = store.root().join(CERTS).join(key.file_stem());
        let new_dir = other.root().join(CERTS).join(key.file_stem());

        // Crash after key.pem.new, before cert.json: the old certificate.
        fs::copy(new_dir.join(KEY_PEM), dir.join(KEY_PEM_NEW)).unwrap();
        assert_same_cert(&store.load_certificate(&key).await.unwrap().unwrap(), &old);

        // Crash after cert.json, before the rename: the new one.
        fs::copy(new_dir.join(CERT_JSON), dir.join(CERT_JSON)).unwrap();
        assert_same_cert(&store.load_certificate(&key).await.unwrap().unwrap(), &new);

        // The next save backs up the new pair (key taken from key.pem.new).
        let newest = certificate("0c");
        store.save_certificate(&key, &newest).await.unwrap();
        assert_same_cert(
            &store.load_certificate(&key).await.unwrap().unwrap(),
            &newest,
        );
        let backup = names(&dir)
            .into_iter()
            .find(|n| n.starts_with("backup-"))
            .unwrap();
        assert_eq!(
            fs::read_to_string(dir.join(backup).join(KEY_PEM)).unwrap(),
            *new.key_pem
        );

        // A first save that stopped before cert.json: nothing stored.
        let fresh = IdentifierSetKey::new(&[Identifier::dns("fresh.example").unwrap()]);
        let fresh_dir = store.root().join(CERTS).join(fresh.file_stem());
        fs::create_dir(&fresh_dir).unwrap();
        fs::write(fresh_dir.join(KEY_PEM_NEW), new.key_pem.as_bytes()).unwrap();
        assert!(store.load_certificate(&fresh).await.unwrap().is_none());
        // A key.pem without cert.json is not silently ignored.
        fs::rename(fresh_dir.join(KEY_PEM_NEW), fresh_dir.join(KEY_PEM)).unwrap();
        assert_corrupted(
            store.load_certificate(&fresh).await,
            &fresh_dir.join(KEY_PEM),
            "missing",
        );
    }

    #[tokio::test]
    async fn truncated_journal_is_corrupted_and_kept() {
        let tmp = TempDir::new("truncated");
        let store = FileStore::open(&tmp.0).unwrap();
        let key = cert_key();
        store.save_journal(&key, &journal()).await.unwrap();
        let path = tmp
            .0
            .join(JOURNALS)
            .join(format!("{}.json", key.file_stem()));
        let full = fs::read(&path).unwrap();
        let half = &full[..full.len() / 2];
        fs::write(&path, half).unwrap();

        assert_corrupted(store.load_journal(&key).await, &path, "truncated");
        assert_eq!(
            fs::read(&path).unwrap(),
            half,
            "the bad file must stay in place"
        );
        let copies = corrupt_copies(&path);
        assert_eq!(copies.len(), 1, "{copies:?}");
        assert_eq!(fs::read(&copies[0]).unwrap(), half);
        assert_eq!(mode(&copies[0]), 0o600);

        // Loading again reports it again, without piling up copies.
        assert_corrupted(store.load_journal(&key).await, &path, "truncated");
        assert_eq!(corrupt_copies(&path).len(), 1);

        // An empty file too.
        fs::write(&path, b"").unwrap();
        assert_corrupted(store.load_journal(&key).await, &path, "empty");
    }

    #[tokio::test]
    async fn checksum_kind_and_format_mismatches_are_corrupted() {
        let tmp = TempDir::new("checksum");
        let store = FileStore::open(&tmp.0).unwrap();
        let key = cert_key();
        store.save_journal(&key, &journal()).await.unwrap();
        let path = tmp
            .0
            .join(JOURNALS)
            .join(format!("{}.json", key.file_stem()));
        let good = fs::read_to_string(&path).unwrap();

        // One character of the data changed; still valid JSON.
        let edited = good.replacen("order/7", "order/8", 1);
        assert_ne!(edited, good);
        fs::write(&path, &edited).unwrap();
        assert_corrupted(store.load_journal(&key).await, &path, "checksum mismatch");
        assert_eq!(fs::read_to_string(&path).unwrap(), edited);
        assert_eq!(corrupt_copies(&path).len(), 1);

        // Another kind of record in the journal's place.
        let kind = good.replacen(r#""kind":"journal""#, r#""kind":"ledger""#, 1);
        fs::write(&path, kind).unwrap();
        assert_corrupted(store.load_journal(&key).await, &path, "\"ledger\" record");

        // A format this store does not know.
        let format = good.replacen("sturdy-acme/1", "sturdy-acme/9", 1);
        fs::write(&path, format).unwrap();
        assert_corrupted(store.load_journal(&key).await, &path, "format");

        // Not JSON at all.
        fs::write(&path, "garbage").unwrap();
        assert_corrupted(store.load_journal(&key).await, &path, "envelope");

        // Pretty-printed by hand: same content, layout gone.
        let value: serde_json::Value = serde_json::from_str(&good).unwrap();
        fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
        assert_corrupted(store.load_journal(&key).await, &path, "laid out");

        // Restored, it loads again.
        fs::write(&path, &good).unwrap();
        assert!(store.load_journal(&key).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn bad_key_pem_is_corrupted() {
        let tmp = TempDir::new("keypem");
        let store = FileStore::open(&tmp.0).unwrap();
        let key = cert_key();
        store
            .save_certificate(&key, &certificate("01"))
            .await
            .unwrap();
        let key_path = tmp.0.join(CERTS).join(key.file_stem()).join(KEY_PEM);

        fs::write(&key_path, b"this is not a key\n").unwrap();
        assert_corrupted(store.load_certificate(&key).await, &key_path, "PEM");
        assert!(key_path.exists());
        assert_eq!(corrupt_copies(&key_path).len(), 1);

        // A valid key, but not the one cert.json records.
        fs::write(&key_path, key_pem().as_bytes()).unwrap();
        assert_corrupted(store.load_certificate(&key).await, &key_path, "not the key");

        // Missing altogether.
        fs::remove_file(&key_path).unwrap();
        assert_corrupted(store.load_certificate(&key).await, &key_path, "missing");

        // Saving a certificate with a key that is not PKCS#8 PEM is refused.
        let mut bad = certificate("02");
        bad.key_pem =
            Zeroizing::new("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n".into());
        assert!(matches!(
            store.save_certificate(&key, &bad).await,
            Err(StoreError::Other(_))
        ));
    }

    #[tokio::test]
    async fn corrupted_certificate_can_be_replaced_and_is_kept() {
        let tmp = TempDir::new("replace-corrupt");
        let store = FileStore::open(&tmp.0).unwrap();
        let key = cert_key();
        store
            .save_certificate(&key, &certificate("01"))
            .await
            .unwrap();
        let dir = tmp.0.join(CERTS).join(key.file_stem());
        fs::write(dir.join(CERT_JSON), b"{\"format\":").unwrap();
        assert!(store.load_certificate(&key).await.is_err());
        let fresh = certificate("02");
        store.save_certificate(&key, &fresh).await.unwrap();
        assert_same_cert(
            &store.load_certificate(&key).await.unwrap().unwrap(),
            &fresh,
        );
        let backup = names(&dir)
            .into_iter()
            .find(|n| n.starts_with("backup-"))
            .unwrap();
        assert_eq!(
            fs::read(dir.join(backup).join(CERT_JSON)).unwrap(),
            b"{\"format\":"
        );
    }

    #[tokio::test]
    async fn unusable_directory_is_io_error_and_old_record_intact() {
        let tmp = TempDir::new("readonly");
        let store = FileStore::open(&tmp.0).unwrap();
        let key = cert_key();
        let old = certificate("01");
        store.save_certificate(&key, &old).await.unwrap();
        store.save_journal(&key, &journal()).await.unwrap();

        // Root-proof: the certs directory becomes a regular file.
        let certs = tmp.0.join(CERTS);
        let aside = tmp.0.join("certs.real");
        fs::rename(&certs, &aside).unwrap();
        fs::write(&certs, b"not a directory").unwrap();
        match store.save_certificate(&key, &certificate("02")).await {
            Err(StoreError::Io { path, .. }) => assert!(path.starts_with(&certs), "{path:?}"),
            other => panic!("expected Io, got {other:?}"),
        }
        assert!(matches!(
            store.load_certificate(&key).await,
            Err(StoreError::Io { .. })
        ));
        fs::remove_file(&certs).unwrap();
        fs::rename(&aside, &certs).unwrap();
        assert_same_cert(&store.load_certificate(&key).await.unwrap().unwrap(), &old);
        assert_eq!(
            names(&certs.join(key.file_stem())),
            [".lock", CERT_JSON, KEY_PEM]
        );

        // Same for the journals.
        let journals = tmp.0.join(JOURNALS);
        let aside = tmp.0.join("journals.real");
        fs::rename(&journals, &aside).unwrap();
        fs::write(&journals, b"not a directory").unwrap();
        let mut changed = journal();
        changed.step = JournalStep::Downloaded;
        match store.save_journal(&key, &changed).await {
            Err(StoreError::Io { path, source }) => {
                assert!(path.starts_with(&journals), "{path:?}");
                assert!(!source.to_string().is_empty());
            }
            other => panic!("expected Io, got {other:?}"),
        }
        fs::remove_file(&journals).unwrap();
        fs::rename(&aside, &journals).unwrap();
        let loaded = store.load_journal(&key).await.unwrap().unwrap();
        assert_eq!(loaded.step, JournalStep::Finalizing);

        // Where permissions are enforced (not root), a 0500 directory too.
        let jdir = tmp.0.join(JOURNALS);
        fs::set_permissions(&jdir, fs::Permissions::from_mode(0o500)).unwrap();
        let probe = jdir.join("probe");
        let enforced = fs::write(&probe, b"x").is_err();
        let _ = fs::remove_file(&probe);
        if enforced {
            assert!(matches!(
                store.save_journal(&key, &changed).await,
                Err(StoreError::Io { .. })
            ));
            assert_eq!(
                store.load_journal(&key).await.unwrap().unwrap().step,
                JournalStep::Finalizing
            );
        }
        fs::set_permissions(&jdir, fs::Permissions::from_mode(0o700)).unwrap();
        assert_no_temp_files(&tmp.0);
    }

    #[tokio::test]
    async fn fsyncs_per_operation() {
        let tmp = TempDir::new("fsyncs");
        let store = FileStore::open(&tmp.0).unwrap();
        let key = cert_key();
        let mut last = store.fsync_count();
        let mut step = |label: &str, expected: u64| {
            let now = store.fsync_count();
            assert_eq!(now - last, expected, "{label}");
            last = now;
        };
        store.save_journal(&key, &journal()).await.unwrap();
        step("save_journal", 2);
        store.load_journal(&key).await.unwrap();
        step("load_journal", 0);
        store
            .save_certificate(&key, &certificate("01"))
            .await
            .unwrap();
        step("first save_certificate", 5);
        store
            .save_certificate(&key, &certificate("02"))
            .await
            .unwrap();
        step("replacing save_certificate", 6);
        store.load_certificate(&key).await.unwrap();
        step("load_certificate", 0);
        store.delete_journal(&key).await.unwrap();
        step("delete_journal", 1);
        let lease = store
            .acquire_lease("issuer", "a", Duration::from_secs(60))
            .await
            .unwrap();
        step("acquire_lease", 2);
        let lease = store
            .renew_lease(&lease, Duration::from_secs(60))
            .await
            .unwrap();
        step("renew_lease", 2);
        store.release_lease(&lease).await.unwrap();
        // Released leases keep their record (for the fencing token).
        step("release_lease", 2);
    }

    #[tokio::test]
    async fn the_lease_of_a_dead_process_on_this_host_is_taken_over() {
        let tmp = TempDir::new("dead-holder");
        let store = FileStore::open(&tmp.0).unwrap();
        let hour = Duration::from_secs(3600);
        let lease = store.acquire_lease("crashy", "a", hour).await.unwrap();
        // Rewrite the lease as if a process that has exited held it.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let (path, _) = store.inner.lease_paths("crashy");
        let dead = Lease {
            pid: dead_pid,
            ..lease.clone()
        };
        store
            .inner
            .write_record(&path, "lease", &dead, FileMode::Private)
            .unwrap();
        // Still within its hour, but its holder is gone: taken over.
        let b = store.acquire_lease("crashy", "b", hour).await.unwrap();
        assert_eq!(b.holder, "b");
        // A live holder (this process) is waited for.
        assert!(matches!(
            store.acquire_lease("crashy", "c", hour).await,
            Err(StoreError::LeaseHeld { .. })
        ));
    }

    /// Issue 16, defect 4: fencing tokens only grow (across release and
    /// takeover), and a holder whose token is not current is told so.
    #[tokio::test]
    async fn fencing_tokens_grow_and_stale_holders_are_fenced() {
        let tmp = TempDir::new("fencing");
        let store = FileStore::open(&tmp.0).unwrap();
        let ttl = Duration::from_secs(3600);
        let a = store.acquire_lease("f", "a", ttl).await.unwrap();
        store.check_lease(&a).await.unwrap();
        let renewed = store.renew_lease(&a, ttl).await.unwrap();
        assert_eq!(renewed.token, a.token, "renewal keeps the token");
        store.release_lease(&renewed).await.unwrap();
        assert!(matches!(
            store.check_lease(&renewed).await,
            Err(StoreError::LeaseLost { .. })
        ));
        let b = store.acquire_lease("f", "b", ttl).await.unwrap();
        assert!(b.token > a.token);
        // The old holder is fenced off: check and renew both refuse it.
        assert!(matches!(
            store.check_lease(&a).await,
            Err(StoreError::LeaseLost { .. })
        ));
        assert!(store.renew_lease(&a, ttl).await.is_err());
        // Expired: lost for its holder too, and the next token is higher.
        let short = store.renew_lease(&b, Duration::ZERO).await.unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(matches!(
            store.check_lease(&short).await,
            Err(StoreError::LeaseLost { .. })
        ));
        let c = store.acquire_lease("f", "c", ttl).await.unwrap();
        assert!(c.token > b.token);
    }

    #[tokio::test]
    async fn lease_lifecycle() {
        let tmp = TempDir::new("lease");
        let store = FileStore::open(&tmp.0).unwrap();
        let minute = Duration::from_secs(60);

        let a = store.acquire_lease("issuer", "a", minute).await.unwrap();
        assert_eq!((a.name.as_str(), a.holder.as_str()), ("issuer", "a"));
        assert!(a.until >= unix_now() + 59);
        let path = tmp.0.join(LEASES).join("issuer.lease");
        assert_eq!(mode(&path), 0o600);

        match store.acquire_lease("issuer", "b", minute).await {
            Err(StoreError::LeaseHeld {
                name,
                holder,
                until,
            }) => {
                assert_eq!(
                    (name.as_str(), holder.as_str(), until),
                    ("issuer", "a", a.until)
                );
            }
            other => panic!("{other:?}"),
        }
        // Other names are independent.
        store.acquire_lease("other", "b", minute).await.unwrap();

        // The same holder takes it again with a new token.
        let a2 = store.acquire_lease("issuer", "a", minute).await.unwrap();
        assert_ne!(a2.token, a.token);
        // The old token no longer renews.
        assert!(matches!(
            store.renew_lease(&a, minute).await,
            Err(StoreError::LeaseHeld { .. })
        ));
        let renewed = store
            .renew_lease(&a2, Duration::from_secs(120))
            .await
            .unwrap();
        assert_eq!(renewed.token, a2.token);
        assert!(renewed.until >= a2.until);

        // Expired (ttl 0): b takes over; a can neither renew nor release it.
        let short = store.renew_lease(&renewed, Duration::ZERO).await.unwrap();
        let b = store.acquire_lease("issuer", "b", minute).await.unwrap();
        match store.renew_lease(&short, minute).await {
            Err(StoreError::LeaseHeld { holder, .. }) => assert_eq!(holder, "b"),
            other => panic!("{other:?}"),
        }
        store.release_lease(&short).await.unwrap();
        assert!(matches!(
            store.acquire_lease("issuer", "a", minute).await,
            Err(StoreError::LeaseHeld { .. })
        ));

        // b releases; the record stays (no holder, expired) so the next
        // fencing token is higher; renewing a released lease fails.
        store.release_lease(&b).await.unwrap();
        let released = store.inner.read_lease(&path, "issuer").unwrap().unwrap();
        assert_eq!((released.holder.as_str(), released.until), ("", 0));
        assert_eq!(released.token, b.token);
        match store.renew_lease(&b, minute).await {
            Err(StoreError::LeaseHeld { holder, until, .. }) => {
                assert_eq!((holder.as_str(), until), ("", 0));
            }
            other => panic!("{other:?}"),
        }
        store.release_lease(&b).await.unwrap();
        store.acquire_lease("issuer", "a", minute).await.unwrap();

        // A sub-second TTL rounds up; a real expiry lets another holder in.
        let c = store
            .acquire_lease("short", "c", Duration::from_millis(200))
            .await
            .unwrap();
        assert!(c.until > unix_now());
        tokio::time::sleep(Duration::from_millis(2100)).await;
        store.acquire_lease("short", "d", minute).await.unwrap();
    }

    #[tokio::test]
    async fn lease_names_become_safe_file_names() {
        let tmp = TempDir::new("lease-names");
        let store = FileStore::open(&tmp.0).unwrap();
        let minute = Duration::from_secs(60);
        for name in ["../../etc/passwd", "a/b", "a_b", ".hidden", "", "ünï"] {
            let lease = store.acquire_lease(name, "h", minute).await.unwrap();
            assert_eq!(lease.name, name);
        }
        for entry in names(&tmp.0.join(LEASES)) {
            assert!(!entry.starts_with('.') && !entry.contains('/'), "{entry}");
        }
        assert_eq!(names(&tmp.0.join(LEASES)).len(), 12);
        assert_eq!(
            names(&tmp.0),
            ["accounts", "certs", "journals", "leases", "ledger"]
        );
    }

    #[tokio::test]
    async fn corrupted_lease_is_reported() {
        let tmp = TempDir::new("lease-corrupt");
        let store = FileStore::open(&tmp.0).unwrap();
        store
            .acquire_lease("issuer", "a", Duration::from_secs(60))
            .await
            .unwrap();
        let path = tmp.0.join(LEASES).join("issuer.lease");
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, &text[..text.len() - 5]).unwrap();
        assert_corrupted(
            store
                .acquire_lease("issuer", "b", Duration::from_secs(60))
                .await,
            &path,
            "truncated",
        );
    }

    #[test]
    fn sixteen_stores_race_for_one_lease() {
        let tmp = TempDir::new("race");
        FileStore::open(&tmp.0).unwrap();
        let barrier = Arc::new(Barrier::new(16));
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let root = tmp.0.clone();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    let store = FileStore::open(root).unwrap();
                    barrier.wait();
                    runtime.block_on(store.acquire_lease(
                        "issuer",
                        &format!("holder-{i}"),
                        Duration::from_secs(60),
                    ))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<&Lease> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        for result in &results {
            match result {
                Ok(_) => {}
                Err(StoreError::LeaseHeld { holder, .. }) => assert_eq!(*holder, winners[0].holder),
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn loads_never_see_a_save_half_done() {
        let tmp = TempDir::new("load-vs-save");
        let store = FileStore::open(&tmp.0).unwrap();
        let key = cert_key();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(store.save_certificate(&key, &certificate("00")))
            .unwrap();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let store = FileStore::open(&tmp.0).unwrap();
            let (key, done) = (key.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let mut loads = 0u32;
                while !done.load(Ordering::Relaxed) || loads == 0 {
                    let cert = runtime.block_on(store.load_certificate(&key)).unwrap();
                    let cert = cert.unwrap();
                    let key_der = pem::parse(cert.key_pem.as_bytes()).unwrap();
                    assert_eq!(key_der.tag(), "PRIVATE KEY");
                    loads += 1;
                }
                loads
            })
        };
        for i in 1..=20 {
            let cert = certificate(&format!("{i:02x}"));
            runtime
                .block_on(store.save_certificate(&key, &cert))
                .unwrap();
        }
        done.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        let dir = tmp.0.join(CERTS).join(key.file_stem());
        assert!(corrupt_copies(&dir.join(KEY_PEM)).is_empty());
    }

    #[test]
    fn works_without_a_runtime() {
        let tmp = TempDir::new("no-runtime");
        let store = FileStore::open(&tmp.0).unwrap();
        let journal = journal();
        let key = cert_key();
        let future = store.save_journal(&key, &journal);
        // Polled by a runtime-free executor: runs inline instead of panicking.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut future = std::pin::pin!(future);
        assert!(matches!(
            future.as_mut().poll(&mut cx),
            std::task::Poll::Ready(Ok(()))
        ));
    }

    #[test]
    fn envelope_round_trip_is_byte_exact() {
        let data = serde_json::json!({"x": 0.30000000000000004, "k": "v"});
        let bytes = envelope("ledger", &data).unwrap();
        let back: serde_json::Value = open_envelope(&bytes, "ledger").unwrap();
        assert_eq!(back, data);
        assert!(open_envelope::<serde_json::Value>(&bytes, "journal").is_err());
    }

    #[test]
    fn store_is_send_sync_static() {
        fn check<S: Store>() {}
        check::<FileStore>();
    }
}
