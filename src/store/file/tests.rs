//! FileStore's unit tests: atomic writes, envelopes, corruption, leases.
//!
//! (Over 800 lines: one test per failure mode of the file store, which share
//! their fixtures; split by concept they would repeat them.)
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
        not_before: crate::protocol::timestamp::from_unix(1_700_000_000),
        not_after: crate::protocol::timestamp::from_unix(1_707_776_000),
        serial: serial.to_owned(),
        revoked: None,
        renewal: None,
        profile: crate::store::AskedProfile::CaDefault,
    }
}

fn journal() -> Journal {
    Journal {
        step: JournalStep::Finalizing,
        order_url: Some("https://ca.example/order/7".into()),
        key_pem: Some(key_pem()),
        order_attempts: 2,
        ..Journal::new(
            "https://ca.example/directory",
            "https://ca.example/acct/1",
            cert_key().identifiers().to_vec(),
            1_700_000_000,
        )
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

/// The subdirectories `FileStore::open` makes, sorted.
const LAYOUT: [&str; 10] = [
    "accounts",
    "certs",
    "directories",
    "feed",
    "journals",
    "leases",
    "ledger",
    "managed",
    "requests",
    "validations",
];

#[tokio::test]
async fn open_creates_private_layout() {
    let tmp = TempDir::new("open");
    let root = tmp.0.join("nested/store");
    let store = FileStore::open(&root).unwrap();
    assert_eq!(store.root(), root);
    assert_eq!(mode(&root), 0o700);
    assert_eq!(names(&root), LAYOUT);
    for sub in names(&root) {
        assert_eq!(mode(&root.join(sub)), 0o700);
    }
    assert!(store.fsync_count() >= 8);
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
        next_key_pem: None,
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
    let third = certificate("03");
    store.save_certificate(&key, &third).await.unwrap();
    let backups = names(&dir)
        .into_iter()
        .filter(|n| n.starts_with("backup-"))
        .count();
    assert_eq!(backups, 2);
    assert!(!dir.join(KEY_PEM_NEW).exists());
    // The same certificate with a renewal schedule: updated in place,
    // no backup (nothing is replaced).
    let scheduled = StoredCertificate {
        renewal: Some(crate::store::RenewalSchedule {
            window_start: Some(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_900_000_000),
            ),
            window_end: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_900_086_400)),
            renew_at: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_900_000_100)),
            check_again_at: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_021_600),
            explanation_url: None,
            requested_early: true,
        }),
        ..third.clone()
    };
    store.save_certificate(&key, &scheduled).await.unwrap();
    let backups = names(&dir)
        .into_iter()
        .filter(|n| n.starts_with("backup-"))
        .count();
    assert_eq!(backups, 2, "no backup for the same certificate");
    let read = store.load_certificate(&key).await.unwrap().unwrap();
    assert_eq!(read.renewal, scheduled.renewal);
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
    // + the change log's line, and its directory when the log is new.
    step("first save_certificate", 7);
    store
        .save_certificate(&key, &certificate("02"))
        .await
        .unwrap();
    step("replacing save_certificate", 7);
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
    // Also by itself: the same holder asking again waits.
    assert!(matches!(
        store.acquire_lease("crashy", "b", hour).await,
        Err(StoreError::LeaseHeld { .. })
    ));
    // But the same holder's leftover from a process that is gone is taken
    // back at once (crash recovery is kept).
    let leftover = Lease {
        pid: dead_pid,
        ..b.clone()
    };
    store
        .inner
        .write_record(&path, "lease", &leftover, FileMode::Private)
        .unwrap();
    let again = store.acquire_lease("crashy", "b", hour).await.unwrap();
    assert!(again.token > b.token);
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

    // The same holder asking again while it holds the lease waits too
    // (issue 27, defect 8: a revoke must not race an ensure of the same
    // issuer).
    assert!(matches!(
        store.acquire_lease("issuer", "a", minute).await,
        Err(StoreError::LeaseHeld { .. })
    ));
    // Released, the same holder takes it again with a new token.
    store.release_lease(&a).await.unwrap();
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
    assert_eq!(names(&tmp.0), LAYOUT);
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

/// Issue 32: a ledger document as versions before the split wrote it
/// (`buckets` and `blocks`) is read as its entries, and the first update
/// rewrites it in the entries form keeping every entry it did not touch.
#[tokio::test]
async fn a_ledger_document_of_the_old_form_is_read_as_entries() {
    let tmp = TempDir::new("ledger-legacy");
    let store = FileStore::open(&tmp.0).unwrap();
    let dir = "https://ca.example/dir";
    let legacy = serde_json::json!({
        "buckets": {"orders:acct": {"tokens": 3.0, "at_ms": 1}, "domain:a.example": {"tokens": 0.5, "at_ms": 2}},
        "blocks": [
            {"account": "acct", "key": "account", "retry_at_ms": 9, "reason": "one"},
            {"account": "acct", "key": "account", "retry_at_ms": 10, "reason": "two"},
            {"account": "other", "key": "set:x.example", "retry_at_ms": 11, "reason": "three"},
            {"no": "account"},
        ],
    });
    store
        .save_ledger(dir, &RateLimitRecord { state: legacy })
        .await
        .unwrap();
    let all = store.load_ledger_entries(dir, None).await.unwrap();
    let keys: Vec<&str> = all.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "block:account acct",
            "block:set:x.example other",
            "domain:a.example",
            "orders:acct"
        ]
    );
    assert_eq!(all["block:account acct"].as_array().unwrap().len(), 2);
    let orders = ["orders:acct".to_owned()];
    store
        .update_ledger_entries(dir, &orders, &mut |current| {
            assert_eq!(current.len(), 1);
            Some(
                [(
                    "orders:acct".to_owned(),
                    serde_json::json!({"tokens": 2.0, "at_ms": 5}),
                )]
                .into(),
            )
        })
        .await
        .unwrap();
    let document = store.load_ledger(dir).await.unwrap().unwrap().state;
    assert!(document.get("entries").is_some() && document.get("buckets").is_none());
    let after = store.load_ledger_entries(dir, None).await.unwrap();
    assert_eq!(after.len(), 4);
    assert_eq!(after["orders:acct"]["tokens"], 2.0);
    assert_eq!(after["domain:a.example"]["tokens"], 0.5);
}
