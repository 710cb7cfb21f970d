//! Exactly once at the issuer's seams (issue 27): a journal left beside the
//! certificate it produced (its delete never happened: a kill, a
//! `shutdown()`, a store failing past its budget) is settled, never resumed
//! into a certificate already stored, revoked or superseded; and a chain
//! the CA serves for another key or other names is never stored.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::store::{FileStore, IdentifierSetKey, JournalStep, Store};
use sturdy_acme::{
    CertificateSource, Endpoint, EnsureOptions, Error, Issuer, IssuerStep, RevocationReason,
    RevokeWith,
};
use sturdy_acme_testca::{CannedAnswer, Fault, FaultRule, TestCa, Trigger};

use crate::issuer::temp_store;

/// A journal file's path and bytes.
type SavedJournal = (PathBuf, Vec<u8>);

/// An issuer whose every `Downloaded` journal is copied aside as the kill
/// right after it would leave it: `leftover()` puts the last one back.
struct Leftovers {
    issuer: Issuer<FileStore>,
    dir: PathBuf,
    saved: Arc<Mutex<Vec<SavedJournal>>>,
}

impl Leftovers {
    async fn new(ca: &TestCa, dir: &Path) -> Self {
        let saved = Arc::new(Mutex::new(Vec::new()));
        let seen = saved.clone();
        let journals = dir.join("journals");
        let issuer = Issuer::builder(ca.client().await.unwrap(), FileStore::open(dir).unwrap())
            .solver(Arc::new(Http01Solver::unserved()))
            .on_step(move |key: &IdentifierSetKey, step| {
                if step == IssuerStep::Downloaded {
                    let path = journals.join(format!("{}.json", key.file_stem()));
                    let bytes = std::fs::read(&path).expect("the Downloaded journal is on disk");
                    seen.lock().unwrap().push((path, bytes));
                }
            })
            .build();
        Self {
            issuer,
            dir: dir.to_owned(),
            saved,
        }
    }

    /// Puts the last `Downloaded` journal back, as if its delete after the
    /// certificate was stored never happened.
    fn leftover(&self) {
        let n = self.saved.lock().unwrap().len();
        self.leftover_of(n - 1);
    }

    /// Puts back the `Downloaded` journal of the `i`th issuance.
    fn leftover_of(&self, i: usize) {
        let (path, bytes) = self.saved.lock().unwrap()[i].clone();
        std::fs::write(path, bytes).unwrap();
    }

    fn archived(&self) -> usize {
        std::fs::read_dir(self.dir.join("journals").join("archive"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_never_comes_back_from_a_leftover_journal() {
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("leftover-revoke");
    let l = Leftovers::new(&ca, &dir).await;
    let names = ["revoked.example"];
    let first = l
        .issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    l.leftover();
    // While the certificate is good, ensure returns it; the leftover is no
    // order in flight for the listing.
    let again = l
        .issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(again.source, CertificateSource::Stored);
    let listed = l.issuer.certificates().await.unwrap();
    assert!(listed[0].in_flight.is_none(), "{listed:?}");

    let revoked = l
        .issuer
        .revoke(
            &names,
            Some(RevocationReason::KeyCompromise),
            RevokeWith::AccountKey,
        )
        .await
        .unwrap();
    assert_eq!(revoked.serial, first.certificate.serial);
    // revoke settled the leftover first.
    let key = IdentifierSetKey::for_account(
        ca.directory_url(),
        l.issuer.account().await.unwrap().url(),
        &[sturdy_acme::Identifier::dns("revoked.example").unwrap()],
    );
    assert!(l.issuer.store().load_journal(&key).await.unwrap().is_none());

    let next = l
        .issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(next.source, CertificateSource::New);
    assert_ne!(
        next.certificate.serial, first.certificate.serial,
        "the revoked certificate came back"
    );
    assert!(next.certificate.revoked.is_none());
    assert_eq!(ca.ledger().issued_for(&names), 2);

    // The same after revoke when the leftover reappears only afterwards
    // (a journal restored from a backup): ensure settles it itself.
    l.leftover(); // the second certificate's journal
    l.issuer
        .revoke(
            &names,
            Some(RevocationReason::KeyCompromise),
            RevokeWith::CertificateKey,
        )
        .await
        .unwrap();
    l.leftover();
    let third = l
        .issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(third.source, CertificateSource::New);
    assert_ne!(third.certificate.serial, next.certificate.serial);
    let stored = l
        .issuer
        .store()
        .load_certificate(&key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.serial, third.certificate.serial);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_new_beside_a_leftover_journal_orders_anew() {
    let ca = TestCa::start().await.unwrap();
    let dir = temp_store("leftover-force");
    let l = Leftovers::new(&ca, &dir).await;
    let names = ["forced.example"];
    let first = l
        .issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    l.leftover();
    // (A second apart: certificates are ordered by their notBefore.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let forced = EnsureOptions::default().with_force_new(true);
    let second = l.issuer.ensure(&names, &forced).await.unwrap();
    assert_eq!(second.source, CertificateSource::New);
    assert_ne!(second.certificate.serial, first.certificate.serial);
    assert_eq!(ca.ledger().issued_for(&names), 2);

    // The first certificate's journal beside the second (newer) one: it is
    // older than the stored certificate, so it is archived (it holds a
    // key), never stored over the newer one.
    let before = l.archived();
    l.leftover_of(0);
    let listed = l.issuer.certificates().await.unwrap();
    assert!(
        listed[0].in_flight.is_none(),
        "an older certificate's journal: {listed:?}"
    );
    let third = l.issuer.ensure(&names, &forced).await.unwrap();
    assert_eq!(
        third.source,
        CertificateSource::New,
        "the older journal was resumed"
    );
    assert_ne!(third.certificate.serial, first.certificate.serial);
    assert_eq!(l.archived(), before + 1, "the older journal is archived");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_key_is_never_stored() {
    let ca = TestCa::start().await.unwrap();
    let names = ["mismatch.example"];
    // A real certificate of this CA for the same names, another key.
    let other_dir = temp_store("mismatch-other");
    let other = crate::issuer::issuer(&ca, &other_dir).await;
    let foreign = other
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();

    let dir = temp_store("mismatch");
    let issuer = crate::issuer::issuer(&ca, &dir).await;
    ca.set_faults(vec![FaultRule::new(
        Endpoint::Certificate,
        Trigger::FirstN(1),
        Fault::Canned(CannedAnswer::new(
            200,
            "application/pem-certificate-chain",
            foreign.certificate.chain_pem.clone(),
        )),
    )]);
    let err = issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CertificateMismatch { .. }), "{err}");
    assert_eq!(err.class().name(), "protocol");
    assert!(err.to_string().contains("another public key"), "{err}");
    let listed = issuer.certificates().await.unwrap();
    assert!(listed[0].serial.is_none(), "nothing is stored: {listed:?}");
    assert!(
        listed[0].in_flight.unwrap() >= JournalStep::CertificateUrlKnown,
        "the journal and its key are kept: {listed:?}"
    );

    // The CA serves the right chain again: the same order's certificate is
    // stored, none is ordered anew.
    let orders = ca.ledger().requests_to(Endpoint::NewOrder);
    let ensured = issuer
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(ensured.source, CertificateSource::Resumed);
    assert_ne!(ensured.certificate.serial, foreign.certificate.serial);
    assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), orders);
    assert_eq!(
        ca.ledger().issued_for(&names),
        2,
        "the foreign one and ours"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&other_dir).unwrap();
}
