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
//!   directories/<sha256(directory URL)>.json 0644 kind "directory" (the CA's last directory)
//!   feed/changes.log                        0644  the change feed, a JSON line per change (see `feed.rs`)
//!   feed/.lock                                    flock(2): writers exclusive until their save commits
//!   requests/<sha256(name)>.json            0644  kind "request": a pending on-demand request (see `requests.rs`)
//!   requests/.lock                                flock(2): one request per name
//!   validations/<sha256(name)>.json         0600  kind "validation": a tls-alpn-01 certificate for the edges
//!   validations/.lock                             flock(2): one save or delete at a time
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

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

mod certificates;
mod contract;
mod envelope;
mod feed;
mod journals;
mod leases;
mod records;
mod requests;
mod validations;

use super::atomic::{FileMode, write_file_atomic_counted};
use super::process;
use super::{
    ChangeKind, ChangePage, DirectoryRecord, FeedSnapshot, IdentifierSetKey, Journal, Lease,
    LedgerUpdate, ManagedRecord, RateLimitRecord, Revoked, Store, StoreError, StoreResult,
    StoredAccount, StoredCertificate,
};
use crate::protocol::{Identifier, timestamp};
use envelope::{envelope, open_envelope, sha256_hex};

const ACCOUNTS: &str = "accounts";
const CERTS: &str = "certs";
const JOURNALS: &str = "journals";
const LEDGER: &str = "ledger";
const DIRECTORIES: &str = "directories";
const FEED: &str = "feed";
/// How often [`Store::wait_for_changes`] looks at the change log.
const FEED_POLL: Duration = Duration::from_millis(50);
const LEASES: &str = "leases";
const MANAGED: &str = "managed";
const REQUESTS: &str = "requests";
const VALIDATIONS: &str = "validations";
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
    /// How many changes the feed keeps.
    feed_retention: AtomicU64,
}

impl FileStore {
    /// Opens the store in `dir`, creating it (0700) and its subdirectories
    /// if missing. Existing directories keep their permissions.
    pub fn open(dir: impl Into<PathBuf>) -> StoreResult<FileStore> {
        let inner = Inner {
            root: dir.into(),
            fsyncs: AtomicU64::new(0),
            feed_retention: AtomicU64::new(crate::store::feed::DEFAULT_FEED_RETENTION),
        };
        inner.create_root()?;
        for sub in [
            ACCOUNTS,
            CERTS,
            JOURNALS,
            LEDGER,
            LEASES,
            MANAGED,
            DIRECTORIES,
            FEED,
            REQUESTS,
            VALIDATIONS,
        ] {
            inner.ensure_dir(&inner.root.join(sub))?;
        }
        Ok(FileStore {
            inner: Arc::new(inner),
        })
    }

    /// Keeps only the last `changes` of the change feed (at least one;
    /// [`DEFAULT_FEED_RETENTION`](crate::store::feed::DEFAULT_FEED_RETENTION)
    /// by default).
    pub fn with_feed_retention(self, changes: u64) -> Self {
        self.inner
            .feed_retention
            .store(changes.max(1), Ordering::Relaxed);
        self
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
struct DirectoryData {
    directory: String,
    record: DirectoryRecord,
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
    #[serde(default, skip_serializing_if = "super::AskedProfile::is_unknown")]
    profile: super::AskedProfile,
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
}

/// True when both URLs have the same scheme, host and port.
pub(super) fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin() && a.origin().is_tuple(),
        _ => false,
    }
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
