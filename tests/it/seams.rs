//! Issue 27: the issuer where its parts meet the CA's bookkeeping.

use std::sync::Arc;

use sturdy_acme::solver::http01::{Http01Responder, Http01Solver};
use sturdy_acme::store::{FileStore, IdentifierSetKey, Journal, JournalStep, Store};
use sturdy_acme::{
    AuthorizationStatus, CertificateSource, ChallengeType, EnsureOptions, Identifier, Issuer,
    NewOrder, RateLimits,
};
use sturdy_acme_testca::TestCa;

use crate::issuer::temp_store;

/// Killed between answering a challenge and its validation: the solver
/// died with the process, the CA's validation failed and counted against
/// Let's Encrypt's 5 failed authorizations per name per hour. The resumed
/// issuance finds the order invalid, counts the failure in its ledger and
/// orders anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_failed_while_no_process_waited_is_counted_once() {
    unseen_failure(false).await;
}

/// The same against a CA that leaves the dead order `pending`
/// (acme2certifier): superseded all the same, and the order the lost-answer
/// search could find again (it says pending) is never taken back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_order_the_ca_calls_pending_is_superseded_not_taken_back() {
    unseen_failure(true).await;
}

async fn unseen_failure(ca_says_pending: bool) {
    // Real http-01 validation against a responder on loopback.
    let responder = Http01Responder::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let ca = TestCa::builder()
        .real_validation(
            responder.local_addr().port(),
            1,
            Arc::new(sturdy_acme_testca::StaticDns::new()),
        )
        .start()
        .await
        .unwrap();
    let dir = temp_store(if ca_says_pending {
        "unseen-pending"
    } else {
        "unseen-failure"
    });
    let issuer = Issuer::builder(ca.client().await.unwrap(), FileStore::open(&dir).unwrap())
        .solver(Arc::new(Http01Solver::for_responder(&responder)))
        .rate_limits(RateLimits::lets_encrypt())
        .build();
    let names = ["unseen.example"];
    let account = issuer.account().await.unwrap();
    // What the killed process left: an order whose challenge was answered
    // with nobody serving it (so its validation failed), and its journal.
    let order = account
        .new_order(&NewOrder::for_names(&names).unwrap())
        .await
        .unwrap();
    for authz in order.authorizations().await.unwrap() {
        authz
            .challenge(&ChallengeType::Http01)
            .unwrap()
            .respond()
            .await
            .unwrap();
    }
    let mut order = account.order(order.url()).await.unwrap();
    let _ = order.wait_ready().await; // fails: validation failed
    assert_eq!(
        order.authorizations().await.unwrap()[0].status(),
        AuthorizationStatus::Invalid
    );
    let ids = vec![Identifier::dns(names[0]).unwrap()];
    let key = IdentifierSetKey::for_account(ca.directory_url(), account.url(), &ids);
    let journal = Journal {
        step: JournalStep::ChallengesAnswered,
        order_url: Some(order.url().to_owned()),
        order_attempts: 1,
        ..Journal::new(ca.directory_url(), account.url(), ids, 0)
    };
    issuer.store().save_journal(&key, &journal).await.unwrap();
    if ca_says_pending {
        ca.set_faults(vec![sturdy_acme_testca::FaultRule::new(
            sturdy_acme::Endpoint::Order,
            sturdy_acme_testca::Trigger::Always,
            sturdy_acme_testca::Fault::InvalidOrderStaysPending,
        )]);
    }

    let failed_tokens = |issuer: &Issuer<FileStore>| {
        let issuer = issuer.clone();
        async move {
            issuer
                .rate_limit_headroom()
                .await
                .unwrap()
                .into_iter()
                .find(|h| {
                    h.bucket.starts_with("authzfail:") && h.bucket.ends_with(":unseen.example")
                })
                .map(|h| h.tokens.floor())
        }
    };
    assert_eq!(failed_tokens(&issuer).await, None, "nothing counted yet");
    let ensured = issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(
        ensured.source,
        CertificateSource::New,
        "the invalid order was superseded"
    );
    assert_eq!(
        failed_tokens(&issuer).await,
        Some(4.0),
        "the failure the CA counted, counted once"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Defect 20: the library's own message for a CA's `caa` refusal says it is
/// the domain's DNS, not the client (not only the tool's wording).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caa_refusal_says_it_is_the_domains_dns() {
    let ca = TestCa::builder()
        .caa("caa-refused.example", sturdy_acme_testca::CaaPolicy::Forbid)
        .start()
        .await
        .unwrap();
    let dir = temp_store("caa-message");
    let issuer = crate::issuer::issuer(&ca, &dir).await;
    let err = issuer
        .ensure(&["caa-refused.example"], &EnsureOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.class().name(), "caa", "{err}");
    let message = err.to_string();
    assert!(
        message.contains("decided by the domain's DNS, not by this client"),
        "{message}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
