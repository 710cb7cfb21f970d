//! Serving from the store (issue 31): the rustls resolver's choice of
//! certificate (exact, wildcard, default; the newest of two; a revoked one
//! not served; a broken record refused, never served), its atomic swaps
//! under concurrent handshakes, and an edge that follows a real issuer's
//! store through the change feed and serves each new certificate in real
//! TLS handshakes with SNI, on every backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::ServerName;
use sturdy_acme::serve::{CertificateResolver, FeedFollower};
use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::store::{FileStore, IdentifierSetKey, MemoryStore, Store, StoredCertificate};
use sturdy_acme::{EnsureOptions, Identifier, Issuer};
use sturdy_acme_postgres::PostgresStore;
use sturdy_acme_testca::TestCa;
use zeroize::Zeroizing;

use crate::common::postgres::{Postgres, fresh_database};
use crate::issuer::temp_store;

pub(crate) fn key(names: &[&str]) -> IdentifierSetKey {
    let ids: Vec<Identifier> = names.iter().map(|n| Identifier::dns(n).unwrap()).collect();
    IdentifierSetKey::for_account("https://ca.example/dir", "https://ca.example/acct/1", &ids)
}

/// A self-signed certificate for `names`, issued `age` ago.
pub(crate) fn certificate(names: &[&str], age: Duration) -> StoredCertificate {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .self_signed(&key)
            .unwrap();
    let now = SystemTime::now() - age;
    StoredCertificate {
        identifiers: names.iter().map(|n| Identifier::dns(n).unwrap()).collect(),
        chain_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
        url: "https://ca.example/cert/1".into(),
        not_before: now,
        not_after: now + Duration::from_secs(90 * 86_400),
        serial: format!(
            "{:x}",
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ),
        revoked: None,
        renewal: None,
        profile: Default::default(),
    }
}

pub(crate) fn leaf(c: &StoredCertificate) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(c.chain_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

fn served(resolver: &CertificateResolver, name: &str) -> Option<Vec<u8>> {
    resolver.resolve_name(name).map(|c| c.cert[0].to_vec())
}

#[test]
fn names_resolve_exact_then_wildcard_then_default() {
    let resolver = CertificateResolver::new();
    let exact = certificate(&["www.shop.example"], Duration::ZERO);
    let wild = certificate(&["*.shop.example"], Duration::ZERO);
    let fallback = certificate(&["fallback.example"], Duration::ZERO);
    assert!(
        resolver
            .apply([
                (key(&["www.shop.example"]), Some(exact.clone())),
                (key(&["*.shop.example"]), Some(wild.clone())),
            ])
            .is_empty()
    );
    assert_eq!(served(&resolver, "www.shop.example"), Some(leaf(&exact)));
    assert_eq!(served(&resolver, "WWW.Shop.Example."), Some(leaf(&exact)));
    assert_eq!(served(&resolver, "api.shop.example"), Some(leaf(&wild)));
    // A wildcard covers one label only, and not the bare name.
    assert_eq!(served(&resolver, "a.b.shop.example"), None);
    assert_eq!(served(&resolver, "shop.example"), None);
    resolver
        .set_default(&key(&["fallback.example"]), &fallback)
        .unwrap();
    assert_eq!(served(&resolver, "unknown.example"), Some(leaf(&fallback)));
    assert_eq!((resolver.certificates(), resolver.names()), (2, 2));
}

#[test]
fn the_newest_certificate_serves_a_shared_name_and_a_revoked_one_none() {
    let resolver = CertificateResolver::new();
    let older = certificate(&["a.example", "b.example"], Duration::from_secs(3600));
    let newer = certificate(&["a.example"], Duration::ZERO);
    resolver.apply([
        (key(&["a.example"]), Some(newer.clone())),
        (key(&["a.example", "b.example"]), Some(older.clone())),
    ]);
    assert_eq!(served(&resolver, "a.example"), Some(leaf(&newer)));
    assert_eq!(served(&resolver, "b.example"), Some(leaf(&older)));
    // The newer one revoked: the older one serves its name again.
    let revoked = StoredCertificate {
        revoked: Some(sturdy_acme::store::Revoked {
            at: SystemTime::now(),
            reason: Some(1),
            found_in_crl: false,
        }),
        ..newer
    };
    resolver.apply([(key(&["a.example"]), Some(revoked))]);
    assert_eq!(served(&resolver, "a.example"), Some(leaf(&older)));
    resolver.apply([(key(&["a.example", "b.example"]), None)]);
    assert_eq!(served(&resolver, "a.example"), None);
    assert_eq!(resolver.certificates(), 0);
}

#[test]
fn a_certificate_that_cannot_be_served_is_refused_and_its_predecessor_removed() {
    let resolver = CertificateResolver::new();
    let good = certificate(&["c.example"], Duration::from_secs(60));
    resolver.apply([(key(&["c.example"]), Some(good))]);
    let other = certificate(&["c.example"], Duration::ZERO);
    let broken = StoredCertificate {
        // The key of another certificate.
        key_pem: certificate(&["x.example"], Duration::ZERO).key_pem,
        ..other
    };
    let refused = resolver.apply([(key(&["c.example"]), Some(broken))]);
    assert_eq!(refused.len(), 1);
    let text = refused[0].to_string();
    assert!(text.contains("does not match"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    assert_eq!(served(&resolver, "c.example"), None);
    let garbage = StoredCertificate {
        chain_pem: "not pem".into(),
        ..certificate(&["c.example"], Duration::ZERO)
    };
    assert_eq!(
        resolver.apply([(key(&["c.example"]), Some(garbage))]).len(),
        1
    );
    assert!(!format!("{resolver:?}").contains("PRIVATE"));
}

/// Handshakes resolve while another thread swaps the certificate of every
/// name over and over: each sees the old or the new one, never none.
#[test]
fn handshakes_never_see_a_name_vanish_while_it_is_replaced() {
    let resolver = Arc::new(CertificateResolver::new());
    let names: Vec<String> = (0..64).map(|i| format!("n{i}.example")).collect();
    let install = |age: u64| {
        names
            .iter()
            .map(|n| {
                (
                    key(&[n.as_str()]),
                    Some(certificate(&[n.as_str()], Duration::from_secs(age))),
                )
            })
            .collect::<Vec<_>>()
    };
    resolver.apply(install(100));
    let batches: Vec<_> = (0..20).map(|i| install(99 - i)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (resolver, stop, names) = (Arc::clone(&resolver), Arc::clone(&stop), names.clone());
            std::thread::spawn(move || {
                let mut seen = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for n in &names {
                        assert!(resolver.resolve_name(n).is_some(), "{n} vanished");
                        seen += 1;
                    }
                }
                seen
            })
        })
        .collect();
    for batch in batches {
        resolver.apply(batch);
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

/// The TLS client of a visitor: trusts the CA's root, sends SNI `name`;
/// returns the leaf the edge presented.
pub(crate) async fn visit(port: u16, name: &str, root_pem: &str) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(sturdy_acme::tls_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let tls = connector
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    Ok(tls.get_ref().1.peer_certificates().unwrap()[0].to_vec())
}

/// Asks the edge on `port` every 5 ms (a real handshake with SNI `name`)
/// until it presents `want`; how long after `since` that was, or `None`
/// after `bound_s` seconds.
async fn until_served(
    port: u16,
    name: &str,
    want: &[u8],
    root_pem: &str,
    since: Instant,
    bound_s: u64,
) -> Option<Duration> {
    loop {
        if visit(port, name, root_pem).await.ok().as_deref() == Some(want) {
            return Some(since.elapsed());
        }
        if since.elapsed() >= Duration::from_secs(bound_s) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An edge: a TLS server on loopback answering every handshake from the
/// resolver (and closing), the follower running beside it.
async fn edge<S: Store + Clone + 'static>(
    store: S,
) -> (u16, Arc<CertificateResolver>, Arc<FeedFollower<S>>) {
    let resolver = Arc::new(CertificateResolver::new());
    let follower = Arc::new(FeedFollower::new(store, Arc::clone(&resolver)));
    let config = rustls::ServerConfig::builder_with_provider(sturdy_acme::tls_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    let running = Arc::clone(&follower);
    tokio::spawn(async move { running.run().await });
    (port, resolver, follower)
}

/// An issuer issues into `store` and renews; an edge following the store
/// serves each certificate in real handshakes within a second of its
/// commit (polled every 10 ms), never one older than the newest it was
/// told of; an edge started late catches up from the snapshot.
async fn issued_then_served<S: Store + Clone + 'static>(store: S) {
    let ca = TestCa::start().await.unwrap();
    let issuer = Issuer::builder(ca.client().await.unwrap(), store.clone())
        .solver(Arc::new(Http01Solver::unserved()))
        .build();
    let (port, _, follower) = edge(store.clone()).await;
    let mut latencies = Vec::new();
    let mut serials = Vec::new();
    for (i, force) in [(0, false), (0, true), (1, false)] {
        let name = format!("site{i}.example");
        let got = issuer
            .ensure(
                &[name.as_str()],
                &EnsureOptions::default().with_force_new(force),
            )
            .await
            .unwrap();
        let committed = Instant::now();
        let want = leaf(&got.certificate);
        let took = until_served(port, &name, &want, &ca.root_pem(), committed, 5).await;
        assert!(took.is_some(), "{name} not served: {:?}", follower.status());
        latencies.push(committed.elapsed());
        serials.push(got.certificate.serial);
    }
    assert_ne!(serials[0], serials[1], "the renewal is another certificate");
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(1)),
        "{latencies:?}"
    );
    // An unknown name: no certificate, the handshake fails.
    assert!(visit(port, "nobody.example", &ca.root_pem()).await.is_err());
    // A late edge: everything from the snapshot, the renewal's newest.
    let (late_port, late, late_follower) = edge(store.clone()).await;
    let started = Instant::now();
    while late.certificates() < 2 {
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let newest = store
        .load_certificate(&issuer_key(&store, &ca, "site0.example").await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        visit(late_port, "site0.example", &ca.root_pem())
            .await
            .unwrap(),
        leaf(&newest)
    );
    assert_eq!(late_follower.status().snapshots, 1);
    assert_eq!(late_follower.status().lag(), 0);
    eprintln!("served after commit: {latencies:?}");
}

async fn issuer_key<S: Store>(store: &S, ca: &TestCa, name: &str) -> IdentifierSetKey {
    let account = store
        .load_account(&ca.directory_url())
        .await
        .unwrap()
        .unwrap();
    IdentifierSetKey::for_account(
        ca.directory_url(),
        account.url,
        &[Identifier::dns(name).unwrap()],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_serves_what_the_issuer_stores_memory_and_files() {
    issued_then_served(MemoryStore::new()).await;
    let dir = temp_store("serve-files");
    issued_then_served(FileStore::open(&dir).unwrap()).await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_serves_what_the_issuer_stores_postgres() {
    let Some(pg) = Postgres::start() else { return };
    let store = PostgresStore::connect(&fresh_database(&pg).await)
        .await
        .unwrap();
    issued_then_served(store).await;
}

/// An edge example process on `store`, and the port it listens on.
struct EdgeProcess {
    child: std::process::Child,
    port: u16,
}

impl EdgeProcess {
    fn start(store: &str) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(crate::examples::example("edge"))
            .args(["--store", store])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start the edge example");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the edge said {line:?}"));
        Self { child, port }
    }

    /// Its `/healthz`, over TLS with SNI `name` (a name it serves).
    async fn healthz(&self, name: &str, root_pem: &str) -> serde_json::Value {
        use rustls::pki_types::pem::PemObject;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(sturdy_acme::tls_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tls.read_to_string(&mut answer).await.unwrap();
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {answer}"))
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Issue 31's acceptance run: this process issues 1,000 certificates into
/// PostgreSQL and renews 200 of them while 3 edge processes serve; after
/// each commit every edge is asked (real handshakes with SNI, every 5 ms)
/// until it serves that certificate, and the delays are printed. PostgreSQL
/// is restarted in the middle. At the end every edge serves exactly what
/// the store holds for every name, and an edge started late catches up
/// from a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_edge_processes_serve_a_thousand_certificates_through_a_database_restart() {
    let Some(pg) = Postgres::start() else { return };
    let pg = Arc::new(pg);
    let url = fresh_database(&pg).await;
    let store = PostgresStore::builder(url.as_str())
        .retry_for(Duration::from_secs(60))
        .open()
        .await
        .unwrap();
    let ca = TestCa::start().await.unwrap();
    let root = ca.root_pem();
    let issuer = Issuer::builder(ca.client().await.unwrap(), store.clone())
        .solver(Arc::new(Http01Solver::unserved()))
        .build();
    let edges: Vec<EdgeProcess> = (0..3).map(|_| EdgeProcess::start(&url)).collect();
    let total = 1000;
    let renewed = 200;
    let mut delays = Vec::new();
    let mut restarted = false;
    for step in 0..total + renewed {
        if step == total / 2 {
            let pg = Arc::clone(&pg);
            tokio::task::spawn_blocking(move || pg.restart())
                .await
                .unwrap();
            restarted = true;
        }
        let (i, force) = if step < total {
            (step, false)
        } else {
            ((step - total) * 5, true)
        };
        let name = format!("edge{i}.example");
        let got = issuer
            .ensure(
                &[name.as_str()],
                &EnsureOptions::default().with_force_new(force),
            )
            .await
            .unwrap();
        let committed = Instant::now();
        let want = leaf(&got.certificate);
        for edge in &edges {
            let took = until_served(edge.port, &name, &want, &root, committed, 60).await;
            assert!(
                took.is_some(),
                "{name} not served by the edge on {}",
                edge.port
            );
            delays.push(committed.elapsed());
        }
    }
    assert!(restarted);
    // Every edge serves exactly what the store holds, for every name.
    let snapshot = store.feed_snapshot().await.unwrap();
    assert_eq!(snapshot.keys.len(), total);
    for key in &snapshot.keys {
        let stored = store.load_certificate(key).await.unwrap().unwrap();
        let name = stored.identifiers[0].value.clone();
        for edge in &edges {
            assert_eq!(
                visit(edge.port, &name, &root).await.unwrap(),
                leaf(&stored),
                "{name}"
            );
        }
    }
    for edge in &edges {
        let health = edge.healthz("edge0.example", &root).await;
        assert_eq!(health["certificates"], total, "{health}");
        assert_eq!(health["lag"], 0, "{health}");
    }
    // Started late: from the snapshot.
    let late = EdgeProcess::start(&url);
    let started = Instant::now();
    loop {
        if let Ok(Ok(served)) = tokio::time::timeout(
            Duration::from_secs(2),
            visit(late.port, "edge999.example", &root),
        )
        .await
            && !served.is_empty()
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = late.healthz("edge0.example", &root).await;
    assert_eq!(health["certificates"], total, "{health}");
    assert_eq!(health["snapshots"], 1, "{health}");
    delays.sort();
    eprintln!(
        "served after commit, {} (certificate, edge) pairs: p50 {:?}, p99 {:?}, max {:?}",
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.99),
        delays[delays.len() - 1]
    );
}

/// A store whose feed went back (a FileStore restored from a backup, a
/// database failed over to a replica that lost commits): the follower,
/// ahead of the new head, is told so and starts again from a snapshot,
/// instead of waiting forever for revisions it already counted.
#[tokio::test]
async fn a_follower_ahead_of_a_restored_feed_starts_again_from_a_snapshot() {
    let dir = temp_store("serve-restored");
    let store = FileStore::open(&dir).unwrap();
    for n in ["a.example", "b.example", "c.example"] {
        store
            .save_certificate(&key(&[n]), &certificate(&[n], Duration::from_secs(60)))
            .await
            .unwrap();
    }
    let resolver = Arc::new(CertificateResolver::new());
    let follower = FeedFollower::new(store.clone(), Arc::clone(&resolver));
    assert_eq!(follower.sync_once(Duration::ZERO).await.unwrap(), 3);
    // The log is lost; one certificate is saved again, at revision 1.
    std::fs::remove_file(dir.join("feed/changes.log")).unwrap();
    let renewed = certificate(&["b.example"], Duration::ZERO);
    store
        .save_certificate(&key(&["b.example"]), &renewed)
        .await
        .unwrap();
    match store.changes_since(3, 10).await {
        Err(sturdy_acme::StoreError::FeedBehind { after: 3, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(follower.sync_once(Duration::ZERO).await.unwrap(), 1);
    assert_eq!(follower.status().snapshots, 2);
    assert_eq!(served(&resolver, "b.example"), Some(leaf(&renewed)));
    assert_eq!(resolver.certificates(), 3);
    std::fs::remove_dir_all(&dir).ok();
}

/// An edge without the key-encryption key a record was sealed with: that
/// record is refused (counted), every other certificate is served, and
/// the feed goes on; the store failing is what stops a sync, not a record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_edge_cannot_open_is_refused_and_the_feed_goes_on() {
    let Some(pg) = Postgres::start() else { return };
    let url = fresh_database(&pg).await;
    let sealing = PostgresStore::builder(url.as_str())
        .key_encryption_key(sturdy_acme::store::KeyEncryptionKey::new("k1", [7; 32]).unwrap())
        .open()
        .await
        .unwrap();
    sealing
        .save_certificate(
            &key(&["sealed.example"]),
            &certificate(&["sealed.example"], Duration::ZERO),
        )
        .await
        .unwrap();
    let edge_store = PostgresStore::connect(&url).await.unwrap();
    let clear = certificate(&["clear.example"], Duration::ZERO);
    edge_store
        .save_certificate(&key(&["clear.example"]), &clear)
        .await
        .unwrap();
    let resolver = Arc::new(CertificateResolver::new());
    let follower = FeedFollower::new(edge_store.clone(), Arc::clone(&resolver));
    follower.sync_once(Duration::ZERO).await.unwrap();
    assert_eq!(served(&resolver, "clear.example"), Some(leaf(&clear)));
    assert_eq!(served(&resolver, "sealed.example"), None);
    assert_eq!(follower.status().refused, 1);
    // Later changes still arrive.
    let later = certificate(&["later.example"], Duration::ZERO);
    edge_store
        .save_certificate(&key(&["later.example"]), &later)
        .await
        .unwrap();
    follower.sync_once(Duration::ZERO).await.unwrap();
    assert_eq!(served(&resolver, "later.example"), Some(leaf(&later)));
}
