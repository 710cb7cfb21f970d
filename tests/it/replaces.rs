//! Issue 27, defects 11 and 12: the issuer resolves a CA's refusal of
//! `replaces` instead of dodging it. On `alreadyReplaced` this account's
//! own earlier replacement order is resumed (the renewal keeps its ARI
//! exemption and no order is added); when none can be found the refusal is
//! journalled with its typed cause and `replaces` is never sent again for
//! that issuance.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::store::FileStore;
use sturdy_acme::{
    Account, AuthorizationStatus, CertId, CertificateKey, ChallengeType, Csr, Endpoint,
    EnsureOptions, Event, Issuer, NewOrder, ReplacesRefusal,
};
use sturdy_acme_testca::{CannedAnswer, Fault, FaultRule, TestCa, Trigger};

use crate::issuer::temp_store;

async fn ari_issuer(
    ca: &TestCa,
    dir: &std::path::Path,
    events: Arc<Mutex<Vec<Event>>>,
) -> Issuer<FileStore> {
    let client = ca
        .client_builder()
        .on_event(move |e| events.lock().unwrap().push(e.clone()))
        .build()
        .await
        .unwrap();
    Issuer::builder(client, FileStore::open(dir).unwrap())
        .solver(Arc::new(Http01Solver::unserved()))
        // The window opens at issuance: renew at its start.
        .renew_at_window_start(true)
        .build()
}

/// A replacement order for `replaces` by `account`, answered (validated)
/// and, with `finalize`, finalized; returns its URL.
async fn replacement_order(
    account: &Account,
    names: &[&str],
    replaces: CertId,
    finalize: bool,
) -> String {
    let mut order = account
        .new_order(&NewOrder::for_names(names).unwrap().with_replaces(replaces))
        .await
        .unwrap();
    assert!(
        order.state().extra.contains_key("replaces"),
        "the CA took it as a replacement"
    );
    if finalize {
        for authz in order.authorizations().await.unwrap() {
            if authz.status() == AuthorizationStatus::Pending {
                authz
                    .challenge(&ChallengeType::Http01)
                    .unwrap()
                    .respond()
                    .await
                    .unwrap();
            }
        }
        order.wait_ready().await.unwrap();
        order
            .finalize(Csr::Key(
                &CertificateKey::generate(Default::default()).unwrap(),
            ))
            .await
            .unwrap();
    }
    order.url().to_owned()
}

fn dropped(events: &Mutex<Vec<Event>>) -> Vec<ReplacesRefusal> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::ReplacesDropped { cause, .. } => Some(*cause),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn already_replaced_resumes_this_accounts_earlier_replacement_order() {
    // Renewal information says "renew now" from issuance on.
    let ca = TestCa::builder()
        .renewal_info(Some(Duration::ZERO))
        .start()
        .await
        .unwrap();
    let dir = temp_store("already-replaced-resume");
    let events = Arc::new(Mutex::new(Vec::new()));
    let issuer = ari_issuer(&ca, &dir, Arc::clone(&events)).await;
    let names = ["resume.replaced.example"];
    let first = issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    let id = CertId::from_pem(&first.certificate.chain_pem).unwrap();
    // The earlier replacement order, left pending (its answer lost, say).
    let earlier =
        replacement_order(&issuer.account().await.unwrap(), &names, id.clone(), false).await;
    let orders = ca.ledger().requests_to(Endpoint::NewOrder);

    let renewed = issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    assert_ne!(renewed.certificate.serial, first.certificate.serial);
    assert_eq!(
        renewed.replaces.as_deref(),
        Some(id.as_str()),
        "an ARI renewal"
    );
    assert_eq!(
        ca.ledger().requests_to(Endpoint::NewOrder),
        orders + 1,
        "the refused newOrder only: the earlier order was resumed, none added"
    );
    let resumed: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::ReplacementResumed { order_url, .. } => Some(order_url.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(resumed, [earlier], "the event names the order resumed");
    assert!(dropped(&events).is_empty(), "replaces was never dropped");
    assert_eq!(ca.ledger().issued_for(&names), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_with_no_order_to_resume_is_journalled_and_never_met_twice() {
    let ca = TestCa::builder()
        .renewal_info(Some(Duration::ZERO))
        .start()
        .await
        .unwrap();
    let dir = temp_store("already-replaced-drop");
    let events = Arc::new(Mutex::new(Vec::new()));
    let issuer = ari_issuer(&ca, &dir, Arc::clone(&events)).await;
    let names = ["drop.replaced.example"];
    let first = issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    let id = CertId::from_pem(&first.certificate.chain_pem).unwrap();
    // Replaced by a finalized order this store does not know of (another
    // tool on the same account): nothing pending or ready to resume.
    replacement_order(&issuer.account().await.unwrap(), &names, id.clone(), true).await;

    // The refused newOrder (1st), then the one without replaces (2nd)
    // refused for another reason: the attempt fails after the refusal of
    // replaces was journalled.
    let before = ca.ledger().requests_to(Endpoint::NewOrder);
    ca.set_faults(vec![FaultRule::new(
        Endpoint::NewOrder,
        Trigger::Nth(2),
        Fault::Canned(CannedAnswer::problem(
            400,
            "malformed",
            "the test refuses this one",
        )),
    )]);
    let err = issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("the test refuses this one"),
        "{err}"
    );
    assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), before + 2);
    ca.set_faults(Vec::new());
    // The next attempt resumes the journal: no replaces, no second refusal.
    let renewed = issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), before + 3);
    assert_ne!(renewed.certificate.serial, first.certificate.serial);
    assert_eq!(renewed.replaces, None, "not an ARI renewal");
    assert_eq!(
        dropped(&events),
        [ReplacesRefusal::AlreadyReplaced],
        "refused once, never sent again"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
