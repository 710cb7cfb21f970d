//! The RFC 8555 client against Let's Encrypt's Pebble, with real challenge
//! validation (http-01 by the crate's responder, dns-01 through
//! pebble-challtestsrv, tls-alpn-01 by a test responder using the crate's
//! acmeIdentifier certificate): the shared suite plus Pebble-only checks.

use crate::common;
use sturdy_acme_test_support::shared_suite;

use std::time::Instant;

use common::pebble::{Pebble, PebbleOptions};
use common::suite::{self, AcmeServer, Solvers, issue};
use common::verify;
use sturdy_acme::{CertificateKey, CertificateKeyType, ChallengeType, Endpoint, KeyAlgorithm};

shared_suite!(Pebble);

#[tokio::test]
async fn nonce_rejections_are_retried_without_extra_new_nonce_requests() {
    let Some(pebble) = Pebble::start(PebbleOptions {
        always_valid: true,
        nonce_reject_percent: 50,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let client = pebble
        .client_builder()
        .bad_nonce_retries(40)
        .build()
        .await
        .unwrap();
    let account = suite::account(&client, KeyAlgorithm::Es256).await;
    let solvers = Solvers::new(&pebble, &ChallengeType::Http01).await;
    let root = pebble.issuing_roots().await.remove(0);
    for i in 0..10 {
        let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        let name = format!("nonce{i}.example.com");
        let chain = issue(&account, &[&name], &ChallengeType::Http01, &solvers, &key).await;
        verify::verify_chain(chain.pem(), std::slice::from_ref(&root), &[&name], &[]);
    }
    assert_eq!(pebble.issued_count(), 10);
    let stats = client.request_stats();
    // The pool was empty exactly once (the first request); every badNonce
    // answer carried the nonce used for the retry.
    assert_eq!(stats.get(Endpoint::NewNonce), 1, "{stats}");
    assert_eq!(
        pebble.count_requests("HEAD /nonce-plz") + pebble.count_requests("GET /nonce-plz"),
        1
    );
    // Every request beyond the protocol's 7 per certificate (plus set-up)
    // was a badNonce re-send with the rejection's nonce.
    eprintln!("NONCEREJECT=50: client requests for 10 certificates: {stats}");
}

/// Measures requests per certificate and wall time (printed; run with
/// `--nocapture`). The only assertions are about counts, never time.
#[tokio::test]
async fn measure_twenty_sequential_issuances() {
    let Some(pebble) = Pebble::start(PebbleOptions {
        always_valid: true,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let client = suite::client(&pebble).await;
    let account = suite::account(&client, KeyAlgorithm::Es256).await;
    let solvers = Solvers::new(&pebble, &ChallengeType::Http01).await;
    // One warm-up certificate (fills the nonce pool, opens the connection).
    let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
    issue(
        &account,
        &["warm.example.com"],
        &ChallengeType::Http01,
        &solvers,
        &key,
    )
    .await;

    let before = client.request_stats();
    let started = Instant::now();
    for i in 0..20 {
        let name = format!("m{i}.example.com");
        issue(&account, &[&name], &ChallengeType::Http01, &solvers, &key).await;
    }
    let elapsed = started.elapsed();
    let used = client.request_stats().since(&before);
    eprintln!(
        "MEASURE pebble: 20 sequential issuances in {elapsed:.2?} ({:.1} ms each); \
         {:.2} requests per certificate: {used}",
        elapsed.as_secs_f64() * 1000.0 / 20.0,
        used.total() as f64 / 20.0
    );
    assert_eq!(used.get(Endpoint::NewNonce), 0, "warm pool: {used}");
    assert_eq!(used.get(Endpoint::NewOrder), 20);
    assert_eq!(used.get(Endpoint::Finalize), 20);
    assert_eq!(used.get(Endpoint::Certificate), 20);
    assert_eq!(pebble.issued_count(), 21);
}
