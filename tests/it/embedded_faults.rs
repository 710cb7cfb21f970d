//! Every fault of the embedded test CA's script, and what the client does
//! with it today: the typed error it returns, and what the CA committed.
//! (The retry policies that act on these errors are pinned in the retry
//! tests; these tests pin the raw classification underneath.)

use crate::common;

use common::suite::ready_order;

use std::time::Duration;

use sturdy_acme::RetryPolicy;
use sturdy_acme::TransportFailure;
use sturdy_acme::{
    Account, AccountKey, AccountOptions, CertificateKey, Client, Csr, Endpoint, Error,
    KeyAlgorithm, NewOrder, ProblemType,
};
use sturdy_acme_testca::{Fault, FaultRule, RetryAfterForm, TestCa, Trigger};

async fn setup(rules: Vec<FaultRule>) -> (TestCa, Client, Account) {
    let ca = TestCa::builder().faults(rules).start().await.unwrap();
    // No retries: these tests pin the raw classification of each fault
    // (tests/retry_policies.rs pins what the policies do with them).
    let client = ca
        .client_builder()
        .retry_policy(RetryPolicy::no_retries())
        .timeout(Duration::from_millis(1500))
        .build()
        .await
        .unwrap();
    let account = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256).unwrap(),
            &AccountOptions::agreeing_to_terms(),
        )
        .await
        .unwrap();
    (ca, client, account)
}

fn key() -> CertificateKey {
    CertificateKey::generate(Default::default()).unwrap()
}

#[tokio::test]
async fn empty_500_before_the_action() {
    let (ca, _client, account) = setup(vec![FaultRule::new(
        Endpoint::NewOrder,
        Trigger::Nth(1),
        Fault::Empty500,
    )])
    .await;
    let err = account
        .new_order(&NewOrder::for_names(&["a.example"]).unwrap())
        .await
        .unwrap_err();
    match &err {
        Error::Status { request, body } => {
            assert_eq!(request.status, Some(500));
            assert!(body.starts_with("empty body"), "{body}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.status(), Some(500));
    assert!(err.problem().is_none());
    // Nothing was created: the next newOrder makes the first order.
    account
        .new_order(&NewOrder::for_names(&["a.example"]).unwrap())
        .await
        .unwrap();
    assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), 2);
}

#[tokio::test]
async fn empty_500_after_finalize_committed_the_certificate() {
    let (ca, _client, account) = setup(vec![FaultRule::new(
        Endpoint::Finalize,
        Trigger::Nth(1),
        Fault::Empty500AfterCommit,
    )])
    .await;
    let mut order = ready_order(&account, "b.example").await;
    let err = order.finalize(Csr::Key(&key())).await.unwrap_err();
    assert_eq!(err.status(), Some(500), "{err}");
    // The CA issued it although the client saw a 500: the founding story.
    assert_eq!(ca.ledger().issued_for(&["b.example"]), 1);
    // Reading the order shows it valid with a certificate.
    order.refresh().await.unwrap();
    assert_eq!(order.status(), sturdy_acme::OrderStatus::Valid);
    order.certificate().await.unwrap();
}

#[tokio::test]
async fn unavailable_503_carries_retry_after_in_both_forms() {
    let (_ca, _client, account) = setup(vec![
        FaultRule::new(
            Endpoint::NewOrder,
            Trigger::Nth(1),
            Fault::Unavailable {
                retry_after: RetryAfterForm::Seconds(7),
            },
        ),
        FaultRule::new(
            Endpoint::NewOrder,
            Trigger::Nth(2),
            Fault::Unavailable {
                retry_after: RetryAfterForm::DateIn(120),
            },
        ),
    ])
    .await;
    let names = NewOrder::for_names(&["c.example"]).unwrap();
    let err = account.new_order(&names).await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(err.retry_after().unwrap().delay(), Duration::from_secs(7));
    let err = account.new_order(&names).await.unwrap_err();
    let delay = err.retry_after().unwrap().delay().as_secs();
    assert!((118..=120).contains(&delay), "{delay}");
}

#[tokio::test]
async fn bad_nonce_on_every_endpoint_is_absorbed() {
    let (ca, client, account) = setup(vec![FaultRule::everywhere(
        Trigger::Probability { p: 0.3, seed: 42 },
        Fault::BadNonce,
    )])
    .await;
    for i in 0..3 {
        let mut order = ready_order(&account, &format!("n{i}.example")).await;
        order.finalize(Csr::Key(&key())).await.unwrap();
        order.certificate().await.unwrap();
    }
    assert_eq!(ca.ledger().certificates.len(), 3);
    // The pool never ran dry after the first request: every badNonce
    // answer carried the nonce used for the retry.
    assert_eq!(client.request_stats().get(Endpoint::NewNonce), 1);
    assert_eq!(ca.ledger().requests_to(Endpoint::NewNonce), 1);
}

#[tokio::test]
async fn rate_limited_429_is_typed_with_retry_after() {
    let (_ca, _client, account) = setup(vec![FaultRule::new(
        Endpoint::NewOrder,
        Trigger::Always,
        Fault::RateLimited {
            retry_after_secs: 3600,
        },
    )])
    .await;
    let err = account
        .new_order(&NewOrder::for_names(&["d.example"]).unwrap())
        .await
        .unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert_eq!(err.problem_type(), Some(&ProblemType::RateLimited));
    assert_eq!(err.status(), Some(429));
    assert_eq!(
        err.retry_after().unwrap().delay(),
        Duration::from_secs(3600)
    );
}

#[tokio::test]
async fn dropped_finalize_response_leaves_the_certificate_issued() {
    let (ca, _client, account) = setup(vec![FaultRule::new(
        Endpoint::Finalize,
        Trigger::Nth(1),
        Fault::DropAfterCommit,
    )])
    .await;
    let mut order = ready_order(&account, "e.example").await;
    let err = order.finalize(Csr::Key(&key())).await.unwrap_err();
    match &err {
        Error::Transport { failure, .. } => assert_eq!(*failure, TransportFailure::Reset, "{err}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(err.status(), None);
    assert_eq!(ca.ledger().issued_for(&["e.example"]), 1);
}

#[tokio::test]
async fn slow_response_is_a_timeout_after_commit() {
    let (ca, _client, account) = setup(vec![FaultRule::new(
        Endpoint::Order,
        Trigger::Nth(1),
        Fault::SlowAfterCommit { delay_ms: 3000 },
    )])
    .await;
    let mut order = account
        .new_order(&NewOrder::for_names(&["f.example"]).unwrap())
        .await
        .unwrap();
    let err = order.refresh().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(ca.ledger().requests_to(Endpoint::Order), 1);
}

/// A newOrder whose answer is lost after the CA created the order (issue
/// 16, defect 8): the order is found in the account's orders list, and
/// newOrder is not sent again.
#[tokio::test]
async fn a_slow_new_order_is_resolved_from_the_orders_list() {
    for fault in [
        Fault::SlowAfterCommit { delay_ms: 3000 },
        Fault::TruncatedAfterCommit,
        Fault::InvalidJsonAfterCommit,
    ] {
        let (ca, _client, account) = setup(vec![FaultRule::new(
            Endpoint::NewOrder,
            Trigger::Nth(1),
            fault.clone(),
        )])
        .await;
        let names = NewOrder::for_names(&["f.example"]).unwrap();
        let order = account.new_order(&names).await.unwrap();
        assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), 1, "{fault:?}");
        assert!(order.url().ends_with("/acme/order/0"), "{}", order.url());
    }
}

#[tokio::test]
async fn truncated_body_is_a_broken_connection() {
    let (_ca, _client, account) = setup(vec![FaultRule::new(
        Endpoint::Order,
        Trigger::Nth(1),
        Fault::TruncatedAfterCommit,
    )])
    .await;
    let mut order = account
        .new_order(&NewOrder::for_names(&["g.example"]).unwrap())
        .await
        .unwrap();
    let err = order.refresh().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                failure: TransportFailure::Reset,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn invalid_json_is_an_invalid_response() {
    let (_ca, _client, account) = setup(vec![FaultRule::new(
        Endpoint::Order,
        Trigger::Nth(1),
        Fault::InvalidJsonAfterCommit,
    )])
    .await;
    let mut order = account
        .new_order(&NewOrder::for_names(&["h.example"]).unwrap())
        .await
        .unwrap();
    let err = order.refresh().await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    assert_eq!(err.status(), Some(200));
}

/// The hostile server: an endless body and a 100 MB body. The client stops
/// at its cap (1 MiB by default, `ClientBuilder::max_response_body`) with a
/// typed error, so memory stays bounded by the cap.
#[tokio::test]
async fn endless_and_oversized_bodies_stop_at_the_cap() {
    let (ca, _client, account) = setup(vec![
        FaultRule::new(Endpoint::Order, Trigger::Nth(1), Fault::EndlessBody),
        FaultRule::new(
            Endpoint::Order,
            Trigger::Nth(2),
            Fault::OversizedBody { bytes: 100_000_000 },
        ),
    ])
    .await;
    let mut order = account
        .new_order(&NewOrder::for_names(&["i.example"]).unwrap())
        .await
        .unwrap();
    // Endless (chunked, no length): read up to the cap, then stopped.
    let err = order.refresh().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ResponseTooLarge {
                limit: 1_048_576,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.class(), sturdy_acme::ErrorClass::Protocol);
    // 100 MB announced: refused before reading.
    let err = order.refresh().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ResponseTooLarge {
                limit: 1_048_576,
                ..
            }
        ),
        "{err:?}"
    );
    // And the directory too, with a smaller cap, on a fresh client.
    ca.set_faults(vec![FaultRule::new(
        Endpoint::Directory,
        Trigger::Always,
        Fault::EndlessBody,
    )]);
    let err = ca
        .client_builder()
        .max_response_body(64 * 1024)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ResponseTooLarge { limit: 65_536, .. }),
        "{err:?}"
    );
}

/// Issue 16, defect 7: the CA's list of authorizations is checked before
/// it is fanned out (no more than the order's identifiers), and an
/// authorization for an identifier that was not ordered is refused before
/// any solver sees it.
#[tokio::test]
async fn hostile_authorization_lists_are_refused_before_any_fetch() {
    use sturdy_acme_testca::CannedAnswer;
    let (ca, _client, account) = setup(Vec::new()).await;
    let mut order = account
        .new_order(&NewOrder::for_names(&["fanout.example"]).unwrap())
        .await
        .unwrap();
    let base = order.url().rsplit_once("/order/").unwrap().0.to_owned();
    let many: Vec<String> = (0..50).map(|i| format!("{base}/authz/{i}")).collect();
    let body = serde_json::json!({
        "status": "pending",
        "identifiers": [{"type": "dns", "value": "fanout.example"}],
        "authorizations": many,
        "finalize": format!("{base}/order/0/finalize"),
    });
    ca.set_faults(vec![FaultRule::new(
        Endpoint::Order,
        Trigger::Nth(1),
        Fault::Canned(CannedAnswer::new(200, "application/json", body.to_string())),
    )]);
    order.refresh().await.unwrap();
    let before = ca.ledger().requests_to(Endpoint::Authorization);
    let err = order.authorizations().await.unwrap_err();
    assert!(matches!(err, Error::ProtocolViolation { .. }), "{err}");
    assert_eq!(ca.ledger().requests_to(Endpoint::Authorization), before);

    // The one authorization names another identifier.
    order.refresh().await.unwrap();
    let evil = serde_json::json!({
        "status": "pending",
        "identifier": {"type": "dns", "value": "evil.example"},
        "challenges": [],
    });
    ca.set_faults(vec![FaultRule::new(
        Endpoint::Authorization,
        Trigger::Nth(1),
        Fault::Canned(CannedAnswer::new(200, "application/json", evil.to_string())),
    )]);
    let err = order.authorizations().await.unwrap_err();
    assert!(
        matches!(&err, Error::ProtocolViolation { reason, .. } if reason.contains("evil.example")),
        "{err}"
    );
}

/// A client built while its CA is down comes from the directory the store
/// remembers, and finds the CA down at its first request; with nothing
/// remembered, or when the CA answers something that is not a directory,
/// the fetch's error is returned and nothing is made up.
#[tokio::test]
async fn a_client_built_during_an_outage_starts_from_the_remembered_directory() {
    use sturdy_acme::store::{MemoryStore, Store};
    let ca = TestCa::start().await.unwrap();
    let store = MemoryStore::new();
    let quick = || ca.client_builder().retry_policy(RetryPolicy::no_retries());
    let down = |ca: &TestCa| {
        ca.set_faults(vec![FaultRule::everywhere(
            Trigger::Always,
            Fault::Unavailable {
                retry_after: RetryAfterForm::Seconds(1),
            },
        )])
    };
    // Down before anything was remembered: the fetch's error.
    down(&ca);
    let err = quick().build_remembered(&store).await.unwrap_err();
    assert!(
        matches!(err, Error::Problem { .. } | Error::Status { .. }),
        "{err:?}"
    );
    assert!(
        store
            .load_directory(&ca.directory_url())
            .await
            .unwrap()
            .is_none()
    );
    // Up: the directory is remembered, once.
    ca.set_faults(Vec::new());
    let up = quick().build_remembered(&store).await.unwrap();
    let remembered = store
        .load_directory(&ca.directory_url())
        .await
        .unwrap()
        .unwrap();
    assert!(remembered.document.contains(&up.directory().new_order));
    quick().build_remembered(&store).await.unwrap();
    assert_eq!(
        store.load_directory(&ca.directory_url()).await.unwrap(),
        Some(remembered),
        "an unchanged directory is not written again"
    );
    // Down again: the client exists, and its first request finds the CA down.
    down(&ca);
    let client = quick().build_remembered(&store).await.unwrap();
    assert_eq!(client.directory().new_order, up.directory().new_order);
    let err = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256).unwrap(),
            &AccountOptions::agreeing_to_terms(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.class(), sturdy_acme::ErrorClass::Transient, "{err:?}");
    // An answer that is not a directory is the CA's error, not an outage.
    ca.set_faults(vec![FaultRule::new(
        Endpoint::Directory,
        Trigger::Always,
        Fault::InvalidJsonAfterCommit,
    )]);
    let err = quick().build_remembered(&store).await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
}
