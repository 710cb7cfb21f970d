//! On-demand issuance (issue 31): a handshake for a name no edge serves is
//! answered with the default certificate; with the service's policy
//! saying yes the name is requested through the store (one request, one
//! order at the CA, however many edges see it at once) and every edge
//! serves the certificate once the renewer fleet has it; with the policy
//! saying no nothing leaves the edge. The edge's guards (one question per
//! name, its rate, names that are not hosts) and the renewer's backlog
//! bound are checked on their own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sturdy_acme::renewer::{OnDemandIntake, Renewer, RenewerEvent};
use sturdy_acme::serve::{
    CertificateResolver, FeedFollower, OnDemand, OnDemandSettings, OnDemandStatus,
};
use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::store::{ChangeKind, MemoryStore, Store};
use sturdy_acme::{CertificateOptions, Endpoint, Issuer};
use sturdy_acme_postgres::PostgresStore;
use sturdy_acme_testca::TestCa;

use crate::common::postgres::{Postgres, fresh_database};
use crate::serve::{certificate, key, leaf, visit};

/// A visitor that takes whatever certificate the edge presents (the
/// default one is self-signed for another name): to see which it is.
#[derive(Debug)]
pub(crate) struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        sturdy_acme::tls_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The leaf the edge on `port` presents for SNI `name`, unverified.
async fn presented(port: u16, name: &str) -> Vec<u8> {
    let config = rustls::ClientConfig::builder_with_provider(sturdy_acme::tls_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// The service's customer list: names under `customer.example`; every
/// name asked is remembered.
#[derive(Clone, Default)]
struct Customers(Arc<Mutex<Vec<String>>>);

impl Customers {
    fn policy(&self) -> impl Fn(String) -> std::future::Ready<bool> + Send + Sync + 'static {
        let asked = Arc::clone(&self.0);
        move |name: String| {
            let yes = name.ends_with(".customer.example");
            asked.lock().unwrap().push(name);
            std::future::ready(yes)
        }
    }
    fn asked(&self, name: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|n| *n == name).count()
    }
}

type Policy = Box<dyn Fn(String) -> std::future::Ready<bool> + Send + Sync>;

/// An edge with a default certificate and on-demand issuance: a TLS
/// server on loopback, its feed follower and its on-demand task running.
async fn on_demand_edge<S: Store + Clone>(
    store: S,
    customers: &Customers,
    name: &str,
    default_leaf: &sturdy_acme::store::StoredCertificate,
) -> (u16, Arc<OnDemand<S, Policy>>) {
    let resolver = Arc::new(CertificateResolver::new());
    resolver
        .set_default(&key(&["default.edge.example"]), default_leaf)
        .unwrap();
    let follower = Arc::new(FeedFollower::new(store.clone(), Arc::clone(&resolver)));
    let policy: Policy = Box::new(customers.policy());
    let on_demand = Arc::new(OnDemand::new(
        store,
        Arc::clone(&resolver),
        policy,
        name,
        OnDemandSettings::default(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(sturdy_acme::tls_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(resolver);
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
    tokio::spawn({
        let follower = Arc::clone(&follower);
        async move { follower.run().await }
    });
    tokio::spawn({
        let on_demand = Arc::clone(&on_demand);
        async move { on_demand.run().await }
    });
    // Ready once its first snapshot is loaded (before it, no name is
    // reported: every name would look unknown).
    let started = Instant::now();
    while follower.status().snapshots == 0 {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (port, on_demand)
}

fn sum(edges: &[OnDemandStatus], f: impl Fn(&OnDemandStatus) -> u64) -> u64 {
    edges.iter().map(f).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_edges_seeing_a_new_name_at_once_make_one_order_and_a_refused_name_none() {
    let Some(pg) = Postgres::start() else { return };
    let url = fresh_database(&pg).await;
    let store = PostgresStore::connect(&url).await.unwrap();
    let ca = TestCa::start().await.unwrap();
    // Two renewer nodes taking requests, on the shared store.
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let issuer = Issuer::builder(ca.client().await.unwrap(), store.clone())
            .solver(Arc::new(Http01Solver::unserved()))
            .build();
        let renewer = Renewer::builder(issuer)
            .on_demand(
                OnDemandIntake::new(CertificateOptions::default())
                    .with_poll(Duration::from_millis(500)),
            )
            .build();
        tokio::spawn({
            let renewer = renewer.clone();
            async move { renewer.run().await }
        });
        nodes.push(renewer);
    }
    let customers = Customers::default();
    let default = certificate(&["default.edge.example"], Duration::ZERO);
    let mut edges = Vec::new();
    for i in 0..3 {
        edges.push(on_demand_edge(store.clone(), &customers, &format!("edge-{i}"), &default).await);
    }

    // The same new name at all three edges at once: the default answers.
    let name = "new.customer.example";
    let first =
        futures_util::future::join_all(edges.iter().map(|(port, _)| presented(*port, name))).await;
    assert!(
        first.iter().all(|l| *l == leaf(&default)),
        "the default answers meanwhile"
    );
    let asked = Instant::now();
    // Every edge serves the CA's certificate, verified against its root.
    for (port, _) in &edges {
        loop {
            if let Ok(got) = visit(*port, name, &ca.root_pem()).await {
                assert_ne!(got, leaf(&default));
                break;
            }
            assert!(
                asked.elapsed() < Duration::from_secs(60),
                "{name} never served"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let served_after = asked.elapsed();
    let statuses: Vec<OnDemandStatus> = edges.iter().map(|(_, o)| o.status()).collect();
    let ledger = ca.ledger();
    assert_eq!(ledger.issued_for(&[name]), 1, "one certificate");
    assert_eq!(
        ledger.requests.get(&Endpoint::NewOrder).copied(),
        Some(1),
        "one order at the CA"
    );
    assert_eq!(customers.asked(name), 3, "each edge asked its policy once");
    assert_eq!(
        sum(&statuses, |s| s.requested + s.already_requested),
        3,
        "{statuses:?}"
    );
    assert!(sum(&statuses, |s| s.requested) >= 1);
    assert!(store.list_requests().await.unwrap().is_empty(), "taken up");
    eprintln!("a new name served by all 3 edges {served_after:?} after the first handshakes");

    // A name the policy refuses: the default answers, nothing leaves the edge.
    let stranger = "stranger.example";
    let head = store.feed_snapshot().await.unwrap().revision;
    for (port, _) in &edges {
        assert_eq!(presented(*port, stranger).await, leaf(&default));
    }
    let started = Instant::now();
    while sum(
        &edges.iter().map(|(_, o)| o.status()).collect::<Vec<_>>(),
        |s| s.refused,
    ) < 3
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(customers.asked(stranger), 3);
    assert!(store.list_requests().await.unwrap().is_empty());
    let page = store.changes_since(head, 1000).await.unwrap();
    assert!(
        page.changes.iter().all(|c| c.kind != ChangeKind::Requested),
        "{:?}",
        page.changes
    );
    // Given time to (wrongly) order it, the CA still saw one order.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        ca.ledger().requests.get(&Endpoint::NewOrder).copied(),
        Some(1)
    );
    assert!(
        nodes.iter().all(|n| n
            .status()
            .certificates
            .iter()
            .all(|c| c.names != [stranger])),
        "no renewer keeps the refused name"
    );
    for n in &nodes {
        n.shutdown();
    }
}

#[tokio::test]
async fn an_edge_asks_its_policy_once_per_name_within_its_rate() {
    let store = MemoryStore::new();
    let customers = Customers::default();
    let resolver = Arc::new(CertificateResolver::new());
    let on_demand = Arc::new(OnDemand::new(
        store.clone(),
        Arc::clone(&resolver),
        customers.policy(),
        "edge-1",
        OnDemandSettings::default().with_burst(2).with_per_minute(1),
    ));
    // Before the resolver has loaded anything (an edge starting up), no
    // name is reported.
    assert!(resolver.resolve_name("early.customer.example").is_none());
    assert_eq!(on_demand.status().unknown, 0);
    resolver.apply([]);
    // A name reported, then served before it is looked at: not asked about.
    assert!(resolver.resolve_name("e.customer.example").is_none());
    resolver.apply([(
        key(&["e.customer.example"]),
        Some(certificate(&["e.customer.example"], Duration::ZERO)),
    )]);
    tokio::spawn({
        let on_demand = Arc::clone(&on_demand);
        async move { on_demand.run().await }
    });
    let settle = |want: u64| {
        let on_demand = Arc::clone(&on_demand);
        async move {
            let started = Instant::now();
            loop {
                let s = on_demand.status();
                if s.skipped + s.rate_limited + s.requested + s.refused >= want {
                    return s;
                }
                assert!(started.elapsed() < Duration::from_secs(5), "{s:?}");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    let s = settle(1).await;
    assert_eq!((s.unknown, s.skipped), (1, 1), "{s:?}");
    assert_eq!(customers.asked("e.customer.example"), 0);
    // Five handshakes for one name: one question.
    for _ in 0..5 {
        assert!(resolver.resolve_name("a.customer.example").is_none());
    }
    let s = settle(6).await;
    assert_eq!((s.unknown, s.requested, s.skipped), (6, 1, 5), "{s:?}");
    // Names that are not one host's: never asked about.
    for bad in ["192.0.2.7", "*.customer.example", "no..customer.example"] {
        resolver.resolve_name(bad);
    }
    let s = settle(9).await;
    assert_eq!(s.skipped, 8, "{s:?}");
    // The burst of 2 allows one more; the rest wait for a later handshake.
    for n in ["b", "c", "d"] {
        resolver.resolve_name(&format!("{n}.customer.example"));
    }
    let s = settle(12).await;
    assert_eq!((s.requested, s.rate_limited), (2, 2), "{s:?}");
    assert_eq!(customers.asked("c.customer.example"), 0);
    let mut asked: Vec<String> = store
        .list_requests()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    asked.sort();
    assert_eq!(asked, ["a.customer.example", "b.customer.example"]);
    // A served name is not even reported.
    assert!(resolver.resolve_name("e.customer.example").is_some());
    assert_eq!(on_demand.status().unknown, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_a_name_a_kept_spec_covers_orders_nothing() {
    let store = MemoryStore::new();
    let ca = TestCa::start().await.unwrap();
    let issuer = Issuer::builder(ca.client().await.unwrap(), store.clone())
        .solver(Arc::new(Http01Solver::unserved()))
        .build();
    let events: Arc<Mutex<Vec<RenewerEvent>>> = Arc::default();
    let renewer = Renewer::builder(issuer)
        .on_demand(
            OnDemandIntake::new(CertificateOptions::default()).with_poll(Duration::from_millis(50)),
        )
        .on_event({
            let events = Arc::clone(&events);
            move |e| events.lock().unwrap().push(e.clone())
        })
        .build();
    use sturdy_acme::renewer::CertificateSpec;
    renewer
        .add(CertificateSpec::new(["shop.cover.example", "www.shop.cover.example"]).unwrap())
        .await
        .unwrap();
    renewer
        .add(CertificateSpec::new(["*.wild.cover.example"]).unwrap())
        .await
        .unwrap();
    // Edges that saw these before the operator's certificates reached them.
    for n in [
        "www.shop.cover.example",
        "any.wild.cover.example",
        "new.cover.example",
    ] {
        assert!(store.request_certificate(n, "edge-1").await.unwrap());
    }
    tokio::spawn({
        let renewer = renewer.clone();
        async move { renewer.run().await }
    });
    let started = Instant::now();
    // The wildcard itself cannot be issued here (http-01 only): it stays
    // kept, backing off, and still covers its names.
    while !store.list_requests().await.unwrap().is_empty() || ca.ledger().certificates.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            renewer.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    renewer.shutdown();
    let requested: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            RenewerEvent::Requested { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(requested, ["new.cover.example"], "only the uncovered name");
    let mut kept: Vec<Vec<String>> = renewer
        .status()
        .certificates
        .into_iter()
        .map(|c| c.names)
        .collect();
    kept.sort();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(ca.ledger().issued_for(&["www.shop.cover.example"]), 0);
    assert_eq!(ca.ledger().issued_for(&["any.wild.cover.example"]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_renewer_takes_requests_up_within_its_backlog_bound() {
    let store = MemoryStore::new();
    let ca = TestCa::start().await.unwrap();
    let issuer = Issuer::builder(ca.client().await.unwrap(), store.clone())
        .solver(Arc::new(Http01Solver::unserved()))
        .build();
    let events: Arc<Mutex<Vec<RenewerEvent>>> = Arc::default();
    let renewer = Renewer::builder(issuer)
        .on_demand(
            OnDemandIntake::new(CertificateOptions::default())
                .with_max_pending(1)
                .with_poll(Duration::from_millis(50)),
        )
        .on_event({
            let events = Arc::clone(&events);
            move |e| events.lock().unwrap().push(e.clone())
        })
        .build();
    let names = [
        "r1.customer.example",
        "r2.customer.example",
        "r3.customer.example",
    ];
    for n in names {
        assert!(store.request_certificate(n, "edge-1").await.unwrap());
    }
    tokio::spawn({
        let renewer = renewer.clone();
        async move { renewer.run().await }
    });
    let started = Instant::now();
    while ca.ledger().certificates.len() < 3 || !store.list_requests().await.unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            renewer.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    renewer.shutdown();
    // Never more than one waiting for its first certificate: each request
    // after the first is taken up only once the one before is issued.
    let mut waiting = 0i32;
    let mut most = 0;
    let mut requested = Vec::new();
    for e in events.lock().unwrap().iter() {
        match e {
            RenewerEvent::Requested { id, edge } => {
                assert_eq!(edge, "edge-1");
                requested.push(id.clone());
                waiting += 1;
            }
            RenewerEvent::Issued { .. } => waiting -= 1,
            _ => {}
        }
        most = most.max(waiting);
    }
    requested.sort();
    assert_eq!(requested, names);
    assert_eq!(most, 1);
    for n in names {
        assert_eq!(ca.ledger().issued_for(&[n]), 1);
    }
}
