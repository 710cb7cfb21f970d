//! tls-alpn-01 through the edges (issue 31): an issuer publishes each
//! validation certificate through the store (`TlsAlpn01Publisher`), every
//! edge following the feed answers the CA's `acme-tls/1` handshakes with
//! it, and the CA, reaching a different edge each time, validates; the
//! issuer serves nothing itself. The resolver never gives a validation
//! certificate to another handshake, nor a served certificate to an
//! `acme-tls/1` one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use sturdy_acme::serve::{CertificateResolver, FeedFollower};
use sturdy_acme::solver::tls_alpn01::TlsAlpn01Publisher;
use sturdy_acme::store::{MemoryStore, Store, ValidationCertificate};
use sturdy_acme::{EnsureOptions, Issuer};
use sturdy_acme_postgres::PostgresStore;
use sturdy_acme_testca::TestCa;

use crate::common::postgres::{Postgres, fresh_database};
use crate::on_demand::AnyCertificate;
use crate::serve::{certificate, key, leaf};

const ACME_TLS: &[u8] = b"acme-tls/1";

/// An edge whose TLS server offers `acme-tls/1` (and counts the
/// handshakes that negotiated it), with its feed follower running.
struct Edge {
    port: u16,
    resolver: Arc<CertificateResolver>,
    acme_handshakes: Arc<AtomicUsize>,
}

async fn edge<S: Store + Clone>(store: S) -> Edge {
    let resolver = Arc::new(CertificateResolver::new());
    let follower = Arc::new(FeedFollower::new(store, Arc::clone(&resolver)));
    let mut config = rustls::ServerConfig::builder_with_provider(sturdy_acme::tls_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![ACME_TLS.to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acme_handshakes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&acme_handshakes);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counted) = (acceptor.clone(), Arc::clone(&counted));
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await
                    && tls.get_ref().1.alpn_protocol() == Some(ACME_TLS)
                {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    tokio::spawn(async move { follower.run().await });
    Edge {
        port,
        resolver,
        acme_handshakes,
    }
}

/// A TCP proxy on loopback handing each connection to the next of
/// `ports` in turn: the CA reaching a different edge each time.
async fn round_robin(ports: Vec<u16>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut next = 0;
        while let Ok((mut inbound, _)) = listener.accept().await {
            let to = ports[next % ports.len()];
            next += 1;
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    port
}

/// The leaf the server on `port` presents for `name`, offering `alpn`
/// (unverified), or the handshake's error.
async fn presented(port: u16, name: &str, alpn: &[&[u8]]) -> Result<Vec<u8>, String> {
    let mut config = rustls::ClientConfig::builder_with_provider(sturdy_acme::tls_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    Ok(tls.get_ref().1.peer_certificates().unwrap()[0].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_validates_tls_alpn01_through_whichever_edge_it_reaches() {
    let Some(pg) = Postgres::start() else { return };
    let store = PostgresStore::connect(&fresh_database(&pg).await)
        .await
        .unwrap();
    let mut edges = Vec::new();
    for _ in 0..3 {
        edges.push(edge(store.clone()).await);
    }
    let front = round_robin(edges.iter().map(|e| e.port).collect()).await;
    let ca = TestCa::builder()
        .tls_alpn01_port(front)
        .start()
        .await
        .unwrap();
    // The issuer's only solver publishes; it listens on nothing.
    let issuer = Issuer::builder(ca.client().await.unwrap(), store.clone())
        .solver(Arc::new(
            TlsAlpn01Publisher::new(store.clone()).with_settle(Duration::from_millis(300)),
        ))
        .build();
    let started = Instant::now();
    for i in 0..3 {
        let name = format!("alpn{i}.example");
        issuer
            .ensure(&[name.as_str()], &EnsureOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    eprintln!(
        "3 certificates validated through the edges in {:?}",
        started.elapsed()
    );
    let answered: Vec<usize> = edges
        .iter()
        .map(|e| e.acme_handshakes.load(Ordering::SeqCst))
        .collect();
    assert!(
        answered.iter().all(|n| *n >= 1),
        "each edge answered the CA: {answered:?}"
    );
    assert_eq!(ca.ledger().certificates.len(), 3);
    // Cleanup reached every edge: none answers acme-tls/1 any more.
    let settled = Instant::now();
    while edges.iter().any(|e| !e.resolver.validations().is_empty()) {
        assert!(
            settled.elapsed() < Duration::from_secs(5),
            "validations left on the edges"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(store.feed_snapshot().await.unwrap().validations.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_tls_handshakes_get_the_validation_certificate_and_only_they_do() {
    let store = MemoryStore::new();
    let served = certificate(&["shop.example"], Duration::ZERO);
    let validation_cert = certificate(&["shop.example"], Duration::from_secs(60));
    store
        .save_certificate(&key(&["shop.example"]), &served)
        .await
        .unwrap();
    // One edge up before the validation is saved, one started after it.
    let early = edge(store.clone()).await;
    store
        .save_validation(&ValidationCertificate {
            name: "shop.example".into(),
            certificate_pem: validation_cert.chain_pem.clone(),
            key_pem: validation_cert.key_pem.clone(),
        })
        .await
        .unwrap();
    let late = edge(store.clone()).await;
    for e in [&early, &late] {
        let started = Instant::now();
        while e.resolver.validations() != ["shop.example"] {
            assert!(started.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // acme-tls/1: the validation certificate; anything else: the served one.
        assert_eq!(
            presented(e.port, "shop.example", &[ACME_TLS])
                .await
                .unwrap(),
            leaf(&validation_cert)
        );
        assert_eq!(
            presented(e.port, "shop.example", &[b"http/1.1"])
                .await
                .unwrap(),
            leaf(&served)
        );
        assert_eq!(
            presented(e.port, "shop.example", &[]).await.unwrap(),
            leaf(&served)
        );
        // acme-tls/1 for a name with no validation: no certificate at all.
        assert!(
            presented(e.port, "other.example", &[ACME_TLS])
                .await
                .is_err()
        );
    }
    store.delete_validation("shop.example").await.unwrap();
    for e in [&early, &late] {
        let started = Instant::now();
        while !e.resolver.validations().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            presented(e.port, "shop.example", &[ACME_TLS])
                .await
                .is_err()
        );
        assert_eq!(
            presented(e.port, "shop.example", &[]).await.unwrap(),
            leaf(&served)
        );
    }
}
