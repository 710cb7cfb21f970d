//! The embedded CA behaves as a real CA does where clients get hurt: rate
//! limits with Boulder's wording and Retry-After, CAA forbid and recheck
//! timeouts at finalize, the orders list, EdDSA only when enabled.

use crate::common;

use common::suite::try_ready_order;

use std::time::Duration;

use sturdy_acme::RetryPolicy;
use sturdy_acme::{
    Account, AccountKey, AccountOptions, CertificateKey, Csr, Error, KeyAlgorithm, NewOrder,
    ProblemType,
};
use sturdy_acme::{Limit, RateLimits};
use sturdy_acme_testca::{CaaPolicy, TestCa};

/// Raw CA behaviour: no client retries (the retry policies are pinned in
/// tests/retry_policies.rs).
async fn new_account(ca: &TestCa) -> Account {
    let client = ca
        .client_builder()
        .retry_policy(RetryPolicy::no_retries())
        .build()
        .await
        .unwrap();
    common::suite::account(&client, KeyAlgorithm::Es256).await
}

async fn issue(account: &Account, names: &[&str]) -> Result<(), Error> {
    let mut order = try_ready_order(account, names).await?;
    order
        .finalize(Csr::Key(&CertificateKey::generate(Default::default())?))
        .await?;
    order.certificate().await?;
    Ok(())
}

#[tokio::test]
async fn duplicate_certificate_limit_answers_429_like_boulder() {
    let ca = TestCa::builder()
        .rate_limits(RateLimits {
            duplicate_certificates: Some(Limit::new(2, Duration::from_secs(7 * 24 * 3600))),
            ..Default::default()
        })
        .start()
        .await
        .unwrap();
    let account = new_account(&ca).await;
    issue(&account, &["dup.example.com"]).await.unwrap();
    issue(&account, &["dup.example.com"]).await.unwrap();
    let err = issue(&account, &["dup.example.com"]).await.unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert_eq!(err.status(), Some(429));
    let detail = err.problem().unwrap().detail.clone().unwrap();
    assert!(
        detail
            .contains("too many certificates (2) already issued for this exact set of identifiers"),
        "{detail}"
    );
    assert!(detail.contains("retry after"), "{detail}");
    // One token refills in 3.5 days.
    let delay = err.retry_after().unwrap().delay().as_secs();
    assert_eq!(delay, 7 * 24 * 3600 / 2, "{delay}");
    // Another set of names is not limited.
    issue(&account, &["other.example.com"]).await.unwrap();
    assert_eq!(ca.ledger().issued_for(&["dup.example.com"]), 2);
}

#[tokio::test]
async fn new_orders_per_account_and_per_domain_limits() {
    let ca = TestCa::builder()
        .rate_limits(RateLimits {
            new_orders_per_account: Some(Limit::new(3, Duration::from_secs(3 * 3600))),
            ..Default::default()
        })
        .reuse_pending_orders(false)
        .start()
        .await
        .unwrap();
    let account = new_account(&ca).await;
    for i in 0..3 {
        account
            .new_order(&NewOrder::for_names(&[format!("o{i}.example.com")]).unwrap())
            .await
            .unwrap();
    }
    let err = account
        .new_order(&NewOrder::for_names(&["o9.example.com"]).unwrap())
        .await
        .unwrap_err();
    assert!(err.is_rate_limited());
    assert!(
        err.problem()
            .unwrap()
            .detail
            .as_deref()
            .unwrap()
            .contains("too many new orders (3)"),
        "{err}"
    );
    assert_eq!(err.retry_after().unwrap().delay().as_secs(), 3600);

    let ca = TestCa::builder()
        .rate_limits(RateLimits {
            certificates_per_domain: Some(Limit::new(2, Duration::from_secs(7 * 24 * 3600))),
            ..Default::default()
        })
        .start()
        .await
        .unwrap();
    let account = new_account(&ca).await;
    issue(&account, &["a.reg.example"]).await.unwrap();
    issue(&account, &["b.reg.example"]).await.unwrap();
    let err = issue(&account, &["c.reg.example"]).await.unwrap_err();
    assert!(
        err.problem()
            .unwrap()
            .detail
            .as_deref()
            .unwrap()
            .contains("\"reg.example\""),
        "{err}"
    );
}

#[tokio::test]
async fn caa_forbid_and_recheck_timeouts_at_finalize() {
    let ca = TestCa::builder()
        .caa("forbidden.example", CaaPolicy::Forbid)
        .caa("slowdns.example", CaaPolicy::Timeout)
        .caa("flaky.example", CaaPolicy::TimeoutTimes(2))
        .start()
        .await
        .unwrap();
    let account = new_account(&ca).await;
    let key = CertificateKey::generate(Default::default()).unwrap();

    // Forbidden, on a subdomain too, with two names: one problem, subproblems per name.
    let mut order = try_ready_order(&account, &["www.forbidden.example", "forbidden.example"])
        .await
        .unwrap();
    let err = order.finalize(Csr::Key(&key)).await.unwrap_err();
    assert_eq!(err.problem_type(), Some(&ProblemType::Caa), "{err}");
    assert_eq!(err.status(), Some(403));
    let names: Vec<&str> = err.identifiers().iter().map(|i| i.value.as_str()).collect();
    assert_eq!(names, ["forbidden.example", "www.forbidden.example"]);
    assert!(err.to_string().contains("prevents issuance"), "{err}");
    // As Boulder (CAARechecksFailOrder, boulder#8610): the whole order
    // fails, with the caa problem as its error.
    order.refresh().await.unwrap();
    assert_eq!(order.status(), sturdy_acme::OrderStatus::Invalid);
    assert_eq!(
        order.state().error.as_ref().map(|e| &e.kind),
        Some(&ProblemType::Caa)
    );

    let mut order = try_ready_order(&account, &["slowdns.example"])
        .await
        .unwrap();
    let err = order.finalize(Csr::Key(&key)).await.unwrap_err();
    let detail = err.problem().unwrap().detail.clone().unwrap();
    assert_eq!(
        detail,
        "Error finalizing order :: rechecking caa: While processing CAA for slowdns.example: \
         DNS problem: query timed out looking up CAA for slowdns.example"
    );

    // Each failed recheck fails its order: a new order for the next try
    // (its authorization reused).
    for _ in 0..2 {
        let mut order = try_ready_order(&account, &["flaky.example"]).await.unwrap();
        let err = order.finalize(Csr::Key(&key)).await.unwrap_err();
        assert_eq!(err.problem_type(), Some(&ProblemType::Caa));
    }
    let mut order = try_ready_order(&account, &["flaky.example"]).await.unwrap();
    order.finalize(Csr::Key(&key)).await.unwrap();
    order.certificate().await.unwrap();
    assert_eq!(ca.ledger().issued_for(&["flaky.example"]), 1);
    assert_eq!(ca.ledger().certificates.len(), 1);
}

#[tokio::test]
async fn blocked_domains_are_rejected_identifiers() {
    let ca = TestCa::builder()
        .blocked_domains(&["blocked.example"])
        .start()
        .await
        .unwrap();
    let account = new_account(&ca).await;
    let err = account
        .new_order(&NewOrder::for_names(&["a.blocked.example"]).unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        err.problem_type(),
        Some(&ProblemType::RejectedIdentifier),
        "{err}"
    );
    assert_eq!(err.status(), Some(400));
}

#[tokio::test]
async fn orders_list_is_paged() {
    let ca = TestCa::builder()
        .orders_per_page(2)
        .reuse_pending_orders(false)
        .start()
        .await
        .unwrap();
    let account = new_account(&ca).await;
    let mut created = Vec::new();
    for i in 0..5 {
        let order = account
            .new_order(&NewOrder::for_names(&[format!("l{i}.example.com")]).unwrap())
            .await
            .unwrap();
        created.push(order.url().to_owned());
    }
    assert_eq!(account.order_urls(10).await.unwrap(), created);
    assert_eq!(account.order_urls(1).await.unwrap(), created[..2]);
}

#[tokio::test]
async fn eddsa_accounts_only_when_enabled() {
    let ca = TestCa::start().await.unwrap();
    let client = ca.client().await.unwrap();
    let err = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::EdDsa).unwrap(),
            &AccountOptions::agreeing_to_terms(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.problem_type(),
        Some(&ProblemType::BadSignatureAlgorithm),
        "{err}"
    );

    let ca = TestCa::builder().accept_eddsa(true).start().await.unwrap();
    let client = ca.client().await.unwrap();
    let account = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::EdDsa).unwrap(),
            &AccountOptions::agreeing_to_terms(),
        )
        .await
        .unwrap();
    issue(&account, &["ed.example.com"]).await.unwrap();
}

#[tokio::test]
async fn failed_authorizations_limit_new_orders_for_that_identifier() {
    let ca = TestCa::builder()
        .real_validation(
            1,
            1,
            std::sync::Arc::new(sturdy_acme_testca::StaticDns::new()),
        )
        .rate_limits(RateLimits {
            failed_authorizations: Some(Limit::new(1, Duration::from_secs(3600))),
            ..Default::default()
        })
        .reuse_pending_orders(false)
        .start()
        .await
        .unwrap();
    let account = new_account(&ca).await;
    // dns-01 with no TXT record: the validation fails.
    let err = try_ready_order(&account, &["fail.example.com"])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ValidationFailed { .. }), "{err}");
    let err = account
        .new_order(&NewOrder::for_names(&["fail.example.com"]).unwrap())
        .await
        .unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert!(
        err.to_string().contains("too many failed authorizations"),
        "{err}"
    );
}

/// Issue 14: with real validation turned on by name, a solver that serves
/// nothing fails validation (the default always-valid mode would pass it),
/// and the crate's own responder wired in by `with_http01_responder` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_real_validation_catches_a_solver_that_serves_nothing() {
    use std::sync::Arc;
    use sturdy_acme::solver::http01::Http01Solver;
    use sturdy_acme::store::FileStore;
    use sturdy_acme::{EnsureOptions, ErrorClass, Issuer};

    let (builder, responder) = TestCa::builder().with_http01_responder().await.unwrap();
    let ca = builder.start().await.unwrap();
    let dir = std::env::temp_dir().join(format!(
        "sturdy-named-validation-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    let issuer = |solver: Http01Solver, sub: &str| {
        let ca = &ca;
        let dir = dir.join(sub);
        async move {
            Issuer::builder(ca.client().await.unwrap(), FileStore::open(dir).unwrap())
                .solver(Arc::new(solver))
                .build()
        }
    };
    let broken = issuer(Http01Solver::unserved(), "broken").await;
    let err = broken
        .ensure(&["unserved.example"], &EnsureOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err.class(), ErrorClass::Validation { .. }),
        "{err:?}"
    );
    assert!(ca.ledger().certificates.is_empty());

    let working = issuer(Http01Solver::for_responder(&responder), "working").await;
    working
        .ensure(&["served.example"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(ca.ledger().certificates.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
