//! The store's change feed (issue 31), on each backend: bounded retention
//! with a typed "start again from a snapshot", FileStore's log surviving a
//! torn line, and a PostgreSQL reader that keeps waking across a server
//! restart (its notifications lost while disconnected, its revision
//! catching up). The contract itself is `sturdy_acme_testca::check_feed`,
//! run by every backend's conformance test.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sturdy_acme::Identifier;
use sturdy_acme::StoreError;
use sturdy_acme::store::{
    ChangeKind, FileStore, IdentifierSetKey, MemoryStore, Store, StoredCertificate,
};
use sturdy_acme_postgres::PostgresStore;
use zeroize::Zeroizing;

use crate::common::postgres::{Postgres, fresh_database};
use crate::issuer::temp_store;

const DIR: &str = "https://ca.example/dir";

fn key(name: &str) -> IdentifierSetKey {
    IdentifierSetKey::for_account(
        DIR,
        "https://ca.example/acct/1",
        &[Identifier::dns(name).unwrap()],
    )
}

fn certificate(name: &str, serial: &str) -> StoredCertificate {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let now = SystemTime::now();
    StoredCertificate {
        identifiers: vec![Identifier::dns(name).unwrap()],
        chain_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
        url: format!("https://ca.example/cert/{serial}"),
        not_before: now,
        not_after: now + Duration::from_secs(90 * 86_400),
        serial: serial.to_owned(),
        revoked: None,
        renewal: None,
        profile: Default::default(),
    }
}

/// Saves 12 certificates into a store that keeps `retention` changes: a
/// reader from the start is told it is behind (with the oldest revision
/// kept), one within the retention reads on, and a snapshot lists all 12.
async fn bounded<S: Store>(store: &S, retention: u64) {
    for i in 0..12 {
        let name = format!("n{i}.example");
        store
            .save_certificate(&key(&name), &certificate(&name, &format!("{i:02x}")))
            .await
            .unwrap();
    }
    let head = store.changes_since(11, 100).await.unwrap().head;
    assert_eq!(head, 12);
    match store.changes_since(0, 100).await {
        Err(StoreError::FeedBehind { after: 0, oldest }) => {
            assert!(
                oldest > 1 && oldest + retention <= head + 1,
                "oldest {oldest}"
            )
        }
        other => panic!("a reader from the start is behind: {other:?}"),
    }
    let recent = store.changes_since(head - retention, 100).await.unwrap();
    assert_eq!(recent.changes.len() as u64, retention);
    assert!(recent.changes.iter().all(|c| c.kind == ChangeKind::Issued));
    let snapshot = store.feed_snapshot().await.unwrap();
    assert_eq!(snapshot.revision, head);
    assert_eq!(snapshot.keys.len(), 12);
}

#[tokio::test]
async fn each_store_keeps_a_bounded_feed_and_says_when_a_reader_is_behind() {
    bounded(&MemoryStore::new().with_feed_retention(3), 3).await;
    let dir = temp_store("feed-retention");
    let file = FileStore::open(&dir).unwrap().with_feed_retention(3);
    bounded(&file, 3).await;
    // The log is rewritten once it holds twice the retention.
    let log = std::fs::read_to_string(dir.join("feed/changes.log")).unwrap();
    assert!(log.lines().count() <= 6, "{log}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_a_bounded_feed_and_says_when_a_reader_is_behind() {
    let Some(pg) = Postgres::start() else { return };
    let store = PostgresStore::builder(fresh_database(&pg).await)
        .feed_retention(4)
        .open()
        .await
        .unwrap();
    // Pruned every 4 revisions: after 12, revisions 9 to 12 are kept.
    bounded(&store, 4).await;
}

/// A crash in the middle of an append leaves a torn last line: readers
/// ignore it, the next writer cuts it and appends after the last whole
/// change, so revisions stay consecutive.
#[tokio::test]
async fn a_torn_line_at_the_end_of_the_file_log_is_ignored_then_cut() {
    use std::io::Write;
    let dir = temp_store("feed-torn");
    let store = FileStore::open(&dir).unwrap();
    store
        .save_certificate(&key("a.example"), &certificate("a.example", "0a"))
        .await
        .unwrap();
    let path = dir.join("feed/changes.log");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(br#"{"revision":2,"key":{"identi"#)
        .unwrap();
    let page = store.changes_since(0, 10).await.unwrap();
    assert_eq!((page.changes.len(), page.head), (1, 1));
    store
        .save_certificate(&key("b.example"), &certificate("b.example", "0b"))
        .await
        .unwrap();
    let page = store.changes_since(0, 10).await.unwrap();
    let revisions: Vec<u64> = page.changes.iter().map(|c| c.revision).collect();
    assert_eq!(revisions, [1, 2]);
    assert_eq!(page.changes[1].serial, "0b");
    // A whole line that is not a change is corruption, not a torn write.
    std::fs::write(&path, "not a change\n").unwrap();
    match store.changes_since(0, 10).await {
        Err(StoreError::Corrupted { .. }) => {}
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A reader waiting on PostgreSQL while the server restarts: its listening
/// connection is cut (a notification sent meanwhile is lost), yet the
/// change saved after the restart wakes it, through the listener's
/// reconnection reading the head, and paging from its revision finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_waiting_on_postgres_wakes_across_a_server_restart() {
    let Some(pg) = Postgres::start() else { return };
    let pg = Arc::new(pg);
    let store = PostgresStore::builder(fresh_database(&pg).await)
        .retry_for(Duration::from_secs(30))
        .open()
        .await
        .unwrap();
    store
        .save_certificate(&key("before.example"), &certificate("before.example", "01"))
        .await
        .unwrap();
    let head = store.changes_since(0, 10).await.unwrap().head;
    // The listener is running (a first wait returns at once: nothing new
    // needs no wake-up, but it starts the LISTEN connection).
    assert_eq!(
        store
            .wait_for_changes(head, Duration::from_millis(300))
            .await
            .unwrap(),
        head
    );
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let woke = store.wait_for_changes(head, Duration::from_secs(60)).await;
            (woke, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let restarting = Arc::clone(&pg);
    tokio::task::spawn_blocking(move || restarting.restart())
        .await
        .unwrap();
    store
        .save_certificate(&key("after.example"), &certificate("after.example", "02"))
        .await
        .unwrap();
    let (woke, took) = waiter.await.unwrap();
    let woke = woke.unwrap();
    assert!(woke > head, "woke at {woke}");
    assert!(took < Duration::from_secs(30), "woke after {took:?}");
    let page = store.changes_since(head, 10).await.unwrap();
    assert_eq!(page.changes.len(), 1);
    assert_eq!(page.changes[0].serial, "02");
}
