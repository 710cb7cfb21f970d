//! Property: for random fault scripts, the client never gets more than one
//! certificate per order and never sends a finalize to an order that is not
//! `ready`, whatever fails and however it recovers.

use std::time::Duration;

use proptest::prelude::*;
use sturdy_acme::{
    AccountKey, AccountOptions, CertificateKey, ChallengeType, Csr, Endpoint, KeyAlgorithm,
    NewOrder, OrderStatus,
};
use sturdy_acme::{Backoff, Jitter, RetryPolicy};
use sturdy_acme_testca::{Fault, FaultRule, RetryAfterForm, TestCa, Trigger};

fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop_oneof![
        Just(Endpoint::NewOrder),
        Just(Endpoint::Order),
        Just(Endpoint::Authorization),
        Just(Endpoint::Challenge),
        Just(Endpoint::Finalize),
        Just(Endpoint::Certificate),
    ]
}

fn trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        (1u64..4).prop_map(Trigger::Nth),
        (1u64..3).prop_map(Trigger::FirstN),
        (0.0f64..0.5, any::<u64>()).prop_map(|(p, seed)| Trigger::Probability { p, seed }),
    ]
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::Empty500),
        Just(Fault::Empty500AfterCommit),
        (0u64..2).prop_map(|s| Fault::Unavailable {
            retry_after: RetryAfterForm::Seconds(s)
        }),
        Just(Fault::BadNonce),
        Just(Fault::RateLimited {
            retry_after_secs: 1
        }),
        Just(Fault::DropAfterCommit),
        Just(Fault::SlowAfterCommit { delay_ms: 400 }),
        Just(Fault::TruncatedAfterCommit),
        Just(Fault::InvalidJsonAfterCommit),
    ]
}

fn rule() -> impl Strategy<Value = FaultRule> {
    (endpoint(), trigger(), fault()).prop_map(|(e, t, f)| FaultRule::new(e, t, f))
}

async fn run(rules: Vec<FaultRule>) -> Result<(), TestCaseError> {
    let ca = TestCa::builder().faults(rules).start().await.unwrap();
    let policy = RetryPolicy::default().with_transient(
        Backoff::new(6, Duration::from_millis(5))
            .with_factor(2)
            .with_max_delay(Duration::from_millis(50))
            .with_budget(Duration::from_secs(5))
            .with_jitter(Jitter::Full),
    );
    let client = ca
        .client_builder()
        .timeout(Duration::from_millis(250))
        .retry_policy(policy)
        .build()
        .await
        .unwrap();
    let outcome: Result<(), sturdy_acme::Error> = async {
        let account = client
            .create_account(
                AccountKey::generate(KeyAlgorithm::Es256)?,
                &AccountOptions::agreeing_to_terms(),
            )
            .await?;
        let mut order = account
            .new_order(&NewOrder::for_names(&["prop.example"])?)
            .await?;
        for authz in order.authorizations().await? {
            if let Some(mut ch) = authz.challenge(&ChallengeType::Http01) {
                ch.respond().await?;
            }
        }
        order.wait_ready().await?;
        order
            .finalize(Csr::Key(&CertificateKey::generate(Default::default())?))
            .await?;
        order.certificate().await?;
        Ok(())
    }
    .await;
    let ledger = ca.ledger();
    prop_assert!(
        ledger.issued_for(&["prop.example"]) <= 1,
        "more than one certificate: {:?}",
        ledger.certificates
    );
    for f in &ledger.finalizations {
        prop_assert_eq!(
            f.status_before,
            OrderStatus::Ready,
            "finalize sent to a {:?} order (outcome {:?})",
            f.status_before,
            outcome.as_ref().err().map(|e| e.to_string())
        );
    }
    // When the run succeeded, the certificate it got is the one issued.
    if outcome.is_ok() {
        prop_assert_eq!(ledger.issued_for(&["prop.example"]), 1);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_fault_scripts_never_double_issue_or_double_finalize(
        rules in proptest::collection::vec(rule(), 1..4)
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run(rules))?;
    }
}
