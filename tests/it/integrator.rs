//! Issue 14: the program a CDN engineer writes on first contact, from the
//! docs alone: 50 customers, 10 at a time, through the issuer, against the
//! embedded CA with real http-01 validation and faults; then again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::store::FileStore;
use sturdy_acme::{
    CertificateSource, Endpoint, EnsureOptions, Event, IdentifierSet, Issuer, Jitter, RetryPolicy,
};
use sturdy_acme_testca::{Fault, FaultRule, RetryAfterForm, TestCa, Trigger};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_customers_ten_at_a_time_with_faults_then_again() {
    let (builder, responder) = TestCa::builder()
        .faults(vec![
            FaultRule::everywhere(Trigger::Probability { p: 0.1, seed: 5010 }, Fault::BadNonce),
            FaultRule::new(
                Endpoint::Order,
                Trigger::Probability { p: 0.1, seed: 50 },
                Fault::Unavailable {
                    retry_after: RetryAfterForm::Seconds(0),
                },
            ),
            // Two finalize answers lost after the CA issued.
            FaultRule::new(Endpoint::Finalize, Trigger::Nth(7), Fault::DropAfterCommit),
            FaultRule::new(Endpoint::Finalize, Trigger::Nth(23), Fault::DropAfterCommit),
        ])
        .with_http01_responder()
        .await
        .unwrap();
    let ca = builder.start().await.unwrap();

    let exchanges: Arc<Mutex<BTreeMap<Endpoint, u64>>> = Arc::default();
    let sink = exchanges.clone();
    let defaults = RetryPolicy::default();
    let client = ca
        .client_builder()
        .retry_policy(
            defaults.with_transient(
                defaults
                    .transient()
                    .with_max_attempts(10)
                    .with_base(Duration::from_millis(2))
                    .with_max_delay(Duration::from_millis(20))
                    .with_jitter(Jitter::Full),
            ),
        )
        .on_event(move |e| {
            if let Event::Exchange { endpoint, .. } = e {
                *sink.lock().unwrap().entry(*endpoint).or_default() += 1;
            }
        })
        .build()
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "sturdy-fifty-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    let issuer = Issuer::builder(client, FileStore::open(&dir).unwrap())
        .solver(Arc::new(Http01Solver::for_responder(&responder)))
        .build();
    let customers: Vec<Vec<String>> = (0..50)
        .map(|i| {
            vec![
                format!("customer{i}.example"),
                format!("www.customer{i}.example"),
            ]
        })
        .collect();

    let first = issuer
        .ensure_all(customers.clone(), &EnsureOptions::default(), 10)
        .await;
    for (i, r) in first.iter().enumerate() {
        let ensured = r.as_ref().unwrap_or_else(|e| panic!("customer {i}: {e}"));
        assert_eq!(ensured.source, CertificateSource::New, "customer {i}");
    }

    // One certificate per customer at the CA, and each is the one stored.
    let ledger = ca.ledger();
    let mut per_set: HashMap<IdentifierSet, Vec<String>> = HashMap::new();
    for c in &ledger.certificates {
        per_set
            .entry(IdentifierSet::new(&c.identifiers))
            .or_default()
            .push(c.serial.clone());
    }
    assert_eq!(per_set.len(), 50);
    assert!(per_set.values().all(|s| s.len() == 1), "{per_set:?}");
    for r in &first {
        let ensured = r.as_ref().unwrap();
        let set = IdentifierSet::new(&ensured.certificate.identifiers);
        assert_eq!(
            per_set[&set],
            std::slice::from_ref(&ensured.certificate.serial)
        );
    }
    // Every request the CA saw was an Exchange event, per endpoint.
    assert_eq!(*exchanges.lock().unwrap(), ledger.requests);

    // Again: every certificate from the store, not one request.
    let sent: u64 = ledger.requests.values().sum();
    let second = issuer
        .ensure_all(customers, &EnsureOptions::default(), 10)
        .await;
    for r in &second {
        assert_eq!(r.as_ref().unwrap().source, CertificateSource::Stored);
    }
    assert_eq!(ca.ledger().requests.values().sum::<u64>(), sent);
    assert_eq!(ca.ledger().certificates.len(), 50);
    eprintln!("fifty customers: {sent} requests, 50 certificates; second pass 0 requests");
    let _ = std::fs::remove_dir_all(&dir);
}
