//! What the issuer keeps, managed: the status listing with the last error
//! of an interrupted order, revocation recorded (and replaced on the next
//! `ensure`), and account key rollovers that a crash cannot lose.

use sturdy_acme::store::{FileStore, JournalStep, Store, StoredAccount};
use sturdy_acme::{
    AccountKey, CertificateChain, CertificateSource, EnsureOptions, KeyAlgorithm, RevocationReason,
    RevokeWith,
};
use sturdy_acme_testca::{CaaPolicy, TestCa};

use crate::issuer::{issuer as new_issuer, temp_store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_order_is_listed_with_its_last_error() {
    let ca = TestCa::builder()
        .caa("forbidden.example", CaaPolicy::Forbid)
        .start()
        .await
        .unwrap();
    let dir = temp_store("last-error");
    let issuer = new_issuer(&ca, &dir).await;
    issuer
        .ensure(&["fine.example"], &EnsureOptions::default())
        .await
        .unwrap();
    let err = issuer
        .ensure(&["forbidden.example"], &EnsureOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.class().name(), "caa", "{err}");

    // A fresh issuer on the same store (another process): the listing
    // comes from the store alone.
    let listing = new_issuer(&ca, &dir).await.certificates().await.unwrap();
    assert_eq!(listing.len(), 2, "{listing:#?}");
    let fine = &listing[0];
    assert_eq!(fine.identifiers[0].value, "fine.example");
    assert!(fine.serial.is_some() && fine.in_flight.is_none() && fine.last_error.is_none());
    assert!(fine.renewal_due.unwrap() < fine.not_after.unwrap());
    let failed = &listing[1];
    assert_eq!(failed.identifiers[0].value, "forbidden.example");
    assert!(failed.serial.is_none());
    assert!(
        failed.in_flight.unwrap() >= JournalStep::OrderCreated,
        "{failed:?}"
    );
    let last = failed.last_error.as_ref().expect("the error is recorded");
    assert_eq!(last.class, "caa");
    assert!(last.message.contains("forbidden.example"), "{last:?}");
    assert!(failed.needs_work(std::time::SystemTime::now()));
    assert!(!fine.needs_work(std::time::SystemTime::now()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_recorded_and_replaced() {
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("revoke");
    let issuer = new_issuer(&ca, &dir).await;
    let first = issuer
        .ensure(&["revoke.example"], &EnsureOptions::default())
        .await
        .unwrap();
    let revoked = issuer
        .revoke(
            &["revoke.example"],
            Some(RevocationReason::KeyCompromise),
            RevokeWith::CertificateKey,
        )
        .await
        .unwrap();
    assert_eq!(revoked.serial, first.certificate.serial);
    assert_eq!(revoked.revoked.unwrap().reason, Some(1));
    assert_eq!(ca.ledger().certificates[0].revoked, Some(1));
    // Recorded: a second revoke sends nothing.
    let requests = ca.ledger().requests.values().sum::<u64>();
    issuer
        .revoke(&["revoke.example"], None, RevokeWith::AccountKey)
        .await
        .unwrap();
    assert_eq!(ca.ledger().requests.values().sum::<u64>(), requests);
    let listed = issuer.certificates().await.unwrap();
    assert!(listed[0].revoked.is_some() && listed[0].needs_work(std::time::SystemTime::now()));

    // The next ensure replaces it.
    let second = issuer
        .ensure(&["revoke.example"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(second.source, CertificateSource::New);
    assert_ne!(second.certificate.serial, first.certificate.serial);
    assert!(second.certificate.revoked.is_none());

    // Revoked behind the issuer's back (another tool, a lost response):
    // the CA's alreadyRevoked is recorded as revoked.
    let account = issuer.account().await.unwrap();
    let chain = CertificateChain::parse_pem(&second.certificate.url, &second.certificate.chain_pem)
        .unwrap();
    account
        .revoke_certificate(chain.leaf_der(), None)
        .await
        .unwrap();
    let recorded = issuer
        .revoke(&["revoke.example"], None, RevokeWith::AccountKey)
        .await
        .unwrap();
    assert!(recorded.revoked.is_some());
    let err = issuer
        .revoke(&["never.example"], None, RevokeWith::AccountKey)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no certificate is stored"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_key_rollover_is_settled_on_the_next_load() {
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("rollover");
    let store = FileStore::open(&dir).unwrap();
    let directory = ca.directory_url();
    let issuer = new_issuer(&ca, &dir).await;
    let account = issuer.account().await.unwrap();
    let stored = store.load_account(&directory).await.unwrap().unwrap();

    // A crash after the pending key was stored, before the request: the
    // old key still owns the account and is kept.
    let unsent = AccountKey::generate(KeyAlgorithm::Es256).unwrap();
    let pending = StoredAccount {
        next_key_pem: Some(unsent.to_pkcs8_pem()),
        ..stored.clone()
    };
    store.save_account(&directory, &pending).await.unwrap();
    let restarted = new_issuer(&ca, &dir).await;
    let kept = restarted.account().await.unwrap();
    assert_eq!(kept.key().thumbprint(), account.key().thumbprint());
    let settled = store.load_account(&directory).await.unwrap().unwrap();
    assert!(settled.next_key_pem.is_none());
    assert_eq!(*settled.key_pem, *stored.key_pem);
    restarted
        .ensure(&["old-key.example"], &EnsureOptions::default())
        .await
        .unwrap();

    // A crash after the CA accepted the key change, before the store
    // recorded it: the new key owns the account and is kept.
    let new_key = AccountKey::generate(KeyAlgorithm::Es384).unwrap();
    let new_pem = new_key.to_pkcs8_pem();
    store
        .save_account(
            &directory,
            &StoredAccount {
                next_key_pem: Some(new_pem.clone()),
                ..stored.clone()
            },
        )
        .await
        .unwrap();
    let changed = kept.change_key(new_key).await.unwrap();
    let restarted = new_issuer(&ca, &dir).await;
    let now = restarted.account().await.unwrap();
    assert_eq!(now.key().thumbprint(), changed.key().thumbprint());
    let settled = store.load_account(&directory).await.unwrap().unwrap();
    assert!(settled.next_key_pem.is_none());
    assert_eq!(*settled.key_pem, *new_pem);
    restarted
        .ensure(&["new-key.example"], &EnsureOptions::default())
        .await
        .unwrap();

    // And a rollover through the issuer: the store and the CA agree.
    let rotated = restarted
        .rotate_account_key(AccountKey::generate(KeyAlgorithm::Es256).unwrap())
        .await
        .unwrap();
    let settled = store.load_account(&directory).await.unwrap().unwrap();
    assert!(settled.next_key_pem.is_none());
    assert_eq!(*settled.key_pem, *rotated.key().to_pkcs8_pem());
    let ensured = restarted
        .ensure(&["rotated.example"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(ensured.source, CertificateSource::New);
    assert_eq!(ca.ledger().certificates.len(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}
