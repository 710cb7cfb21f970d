//! Several CAs behind one `ensure` (issue 30): two embedded CAs and Pebble,
//! three independent servers, behind one [`CaSet`] on one store. The CA is
//! chosen by the customer's CAA records (real records, Knot), the policy and
//! each CA's health; an outage fails over; an order that may have been
//! finalized at one CA is resolved there before any other CA is asked; a
//! spent new-order budget sends new sets elsewhere while renewals stay
//! with their CA; and renewals return to the preferred CA once it answers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sturdy_acme::ca_set::{CaMember, CaSet, CaSetBuilder, CaSetEvent};
use sturdy_acme::caa::CaaChecker;
use sturdy_acme::dns::Dns;
use sturdy_acme::solver::http01::Http01Solver;
use sturdy_acme::store::{FileStore, IdentifierSetKey, JournalStep, SkipReason, Store};
use sturdy_acme::{
    Backoff, CertificateSource, Client, ClientBuilder, Endpoint, EnsureOptions, Error, Issuer,
    IssuerBuilder, Limit, RateLimits, RetryPolicy,
};
use sturdy_acme_testca::{Fault, FaultRule, RetryAfterForm, TestCa, TestCaBuilder, Trigger};

use crate::common::knot::DnsLab;
use crate::common::pebble::{Pebble, PebbleOptions};
use crate::common::suite::AcmeServer;
use crate::issuer::temp_store;

/// The three CAs, in the set's order of preference: `a` and `b` embedded
/// (`b` announces the CAA identity `other-ca.example`), then Pebble.
struct Lab {
    a: Arc<TestCa>,
    b: TestCa,
    pebble: Pebble,
    dir: std::path::PathBuf,
    store: FileStore,
}

impl Drop for Lab {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

async fn lab(name: &str, a: TestCaBuilder) -> Option<Lab> {
    let pebble = Pebble::start(PebbleOptions {
        always_valid: true,
        ..Default::default()
    })
    .await?;
    let a = Arc::new(a.start().await.unwrap());
    let b = TestCa::builder()
        .caa_identity("other-ca.example")
        .start()
        .await
        .unwrap();
    let dir = temp_store(&format!("multi-ca-{name}"));
    let store = FileStore::open(&dir).unwrap();
    Some(Lab {
        a,
        b,
        pebble,
        dir,
        store,
    })
}

/// Failures are given up on quickly: a failover's bound is the failing
/// CA's transient budget.
fn quick() -> RetryPolicy {
    RetryPolicy::default().with_transient(
        Backoff::new(3, Duration::from_millis(50)).with_budget(Duration::from_secs(2)),
    )
}

/// A client of `ca` that gives up on failures quickly ([`quick`]).
async fn quick_client(ca: &TestCa) -> Client {
    ca.client_builder()
        .retry_policy(quick())
        .build()
        .await
        .unwrap()
}

fn issuer(client: Client, store: &FileStore) -> IssuerBuilder<FileStore> {
    Issuer::builder(client, store.clone())
        .solver(Arc::new(Http01Solver::unserved()))
        .lease_wait(Duration::from_secs(5))
}

/// The set over the lab's three CAs (`a_issuer` configures `a`'s issuer),
/// with the events it reports.
async fn set_of(
    lab: &Lab,
    a_issuer: impl FnOnce(IssuerBuilder<FileStore>) -> IssuerBuilder<FileStore>,
    set: impl FnOnce(CaSetBuilder<FileStore>) -> CaSetBuilder<FileStore>,
) -> (CaSet<FileStore>, Arc<Mutex<Vec<CaSetEvent>>>) {
    set_with(lab, |c| c, a_issuer, set).await
}

/// [`set_of`], with `a_client` configuring A's client too.
async fn set_with(
    lab: &Lab,
    a_client: impl FnOnce(ClientBuilder) -> ClientBuilder,
    a_issuer: impl FnOnce(IssuerBuilder<FileStore>) -> IssuerBuilder<FileStore>,
    set: impl FnOnce(CaSetBuilder<FileStore>) -> CaSetBuilder<FileStore>,
) -> (CaSet<FileStore>, Arc<Mutex<Vec<CaSetEvent>>>) {
    // Each client remembers its CA's directory in the store, so a set can
    // be built again while a CA is down.
    let a = a_client(lab.a.client_builder().retry_policy(quick()))
        .build_remembered(&lab.store)
        .await
        .unwrap();
    let b = lab
        .b
        .client_builder()
        .retry_policy(quick())
        .build_remembered(&lab.store)
        .await
        .unwrap();
    let c = lab
        .pebble
        .client_builder()
        .retry_policy(quick())
        .build_remembered(&lab.store)
        .await
        .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let builder = CaSet::builder()
        .ca(CaMember::new("a", a_issuer(issuer(a, &lab.store)).build()))
        .ca(CaMember::new("b", issuer(b, &lab.store).build()))
        .ca(CaMember::new("pebble", issuer(c, &lab.store).build()))
        .on_event(move |e| seen.lock().unwrap().push(e.clone()));
    (set(builder).build().unwrap(), events)
}

/// A answers 503 with this `Retry-After` to everything.
fn down(retry_after: u64) -> Vec<FaultRule> {
    vec![FaultRule::everywhere(
        Trigger::Always,
        Fault::Unavailable {
            retry_after: RetryAfterForm::Seconds(retry_after),
        },
    )]
}

/// Every request the CA answered (or faulted).
fn requests(ca: &TestCa) -> u64 {
    ca.ledger().requests.values().sum()
}

/// Every certificate the three CAs issued for `names` (Pebble: all).
fn issued(lab: &Lab, names: &[&str]) -> (usize, usize, usize) {
    (
        lab.a.ledger().issued_for(names),
        lab.b.ledger().issued_for(names),
        lab.pebble.issued_count(),
    )
}

/// (1) The customer's CAA records name only CA B: issued at B, nothing
/// sent to A (not even an account), the choice says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customers_caa_sends_the_order_to_the_one_ca_it_names() {
    crate::common::init_tracing();
    let Some(dns) = DnsLab::start().await else {
        return;
    };
    let Some(lab) = lab("caa", TestCa::builder()).await else {
        return;
    };
    let checker =
        CaaChecker::new(Dns::new(dns.dns_config())).query_timeout(Duration::from_millis(400));
    let (set, events) = set_of(&lab, |b| b, |s| s.caa_preflight(Some(checker))).await;
    let names = ["shop.other.caa.test"];
    let got = set.ensure(&names, &EnsureOptions::default()).await.unwrap();
    assert_eq!(got.ca, "b");
    assert_eq!(got.ensured.source, CertificateSource::New);
    let choice = got.choice.unwrap();
    assert_eq!(choice.skipped.len(), 1, "{choice}");
    assert_eq!(choice.skipped[0].ca, "a");
    assert!(
        matches!(&choice.skipped[0].reason, SkipReason::CaaForbidden { summary } if summary.contains("other-ca.example")),
        "{choice}"
    );
    assert_eq!(issued(&lab, &names), (0, 1, 0));
    for endpoint in [Endpoint::NewAccount, Endpoint::NewOrder, Endpoint::Finalize] {
        assert_eq!(
            lab.a.ledger().requests_to(endpoint),
            0,
            "{endpoint:?} sent to A"
        );
    }
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, CaSetEvent::Chosen { choice, .. } if choice.ca == "b"))
    );
    // The set's verdicts for every CA, read once: what `--check` prints.
    let verdicts = set
        .caa_verdicts(&names, &EnsureOptions::default())
        .await
        .unwrap();
    let may: Vec<(String, bool)> = verdicts
        .iter()
        .map(|(ca, r)| (ca.clone(), r.iter().all(|r| r.verdict.may_issue())))
        .collect();
    assert_eq!(
        may,
        [
            ("a".into(), false),
            ("b".into(), true),
            ("pebble".into(), true)
        ]
    );
    // The certificate stays the current one, from B, with no request.
    let again = set.ensure(&names, &EnsureOptions::default()).await.unwrap();
    assert_eq!(
        (again.ca.as_str(), again.ensured.source),
        ("b", CertificateSource::Stored)
    );
    assert_eq!(lab.b.ledger().issued_for(&names), 1);
}

/// (2) A answers 503 to everything: issued at B, one certificate in all;
/// A is then skipped with no request while it is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_answers_503_to_everything_is_failed_over_once() {
    crate::common::init_tracing();
    let Some(lab) = lab("down", TestCa::builder()).await else {
        return;
    };
    let (set, events) = set_of(&lab, |b| b, |s| s).await;
    lab.a.set_faults(down(600));
    let names = ["outage.example"];
    let started = Instant::now();
    let got = set.ensure(&names, &EnsureOptions::default()).await.unwrap();
    eprintln!(
        "failover: issued at {} {:?} after the first request to the down CA; {} requests reached it",
        got.ca,
        started.elapsed(),
        requests(&lab.a)
    );
    assert_eq!(got.ca, "b");
    assert!(matches!(
        &got.choice.as_ref().unwrap().skipped[0].reason,
        SkipReason::Failed { .. }
    ));
    assert_eq!(issued(&lab, &names), (0, 1, 0));
    assert!(set.is_down("a"));
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, CaSetEvent::Down { ca, .. } if ca == "a"))
    );
    // While it is down, the next set goes to B without asking A at all.
    let asked = requests(&lab.a);
    let next = set
        .ensure(&["outage2.example"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(next.ca, "b");
    assert!(matches!(
        &next.choice.unwrap().skipped[0].reason,
        SkipReason::Down { .. }
    ));
    assert_eq!(requests(&lab.a), asked, "no request to a CA marked down");
}

/// (3) Finalize at A loses its answer (the CA issued), then A goes down:
/// nothing is ordered at B or Pebble while A's order is unresolved, by
/// this process nor by one started during the outage (A's client built
/// from the directory the store remembers); once A answers again its
/// certificate is downloaded and stored: one in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_that_may_be_finalized_is_resolved_at_its_ca_before_any_other() {
    crate::common::init_tracing();
    let Some(lab) = lab("finalized", TestCa::builder()).await else {
        return;
    };
    // Finalize's answer is lost (the CA issued); right after that
    // exchange A answers nothing but nonces.
    lab.a.set_faults(vec![FaultRule::new(
        Endpoint::Finalize,
        Trigger::Nth(1),
        Fault::DropAfterCommit,
    )]);
    let a = Arc::clone(&lab.a);
    let (set, events) = set_with(
        &lab,
        move |c| {
            c.on_event(move |e| {
                if let sturdy_acme::Event::Exchange {
                    endpoint: Endpoint::Finalize,
                    ..
                } = e
                {
                    a.set_faults(
                        [
                            Endpoint::Finalize,
                            Endpoint::Order,
                            Endpoint::Certificate,
                            Endpoint::NewOrder,
                            Endpoint::Orders,
                            Endpoint::Authorization,
                            Endpoint::Directory,
                        ]
                        .into_iter()
                        .map(|e| {
                            FaultRule::new(
                                e,
                                Trigger::Always,
                                Fault::Unavailable {
                                    retry_after: RetryAfterForm::Seconds(1),
                                },
                            )
                        })
                        .collect(),
                    );
                }
            })
        },
        |b| b,
        |s| s.down_for(Duration::from_secs(3600)),
    )
    .await;
    let names = ["finalized.example"];
    let err = set
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::FailoverBlocked { ca, .. } if ca == "a"),
        "{err}"
    );
    // Classed as what stopped it (the CA's outage): a renewer calls again
    // soon, not a day later as for a permanent failure.
    assert_eq!(err.class(), sturdy_acme::ErrorClass::Transient, "{err}");
    assert_eq!(lab.a.ledger().issued_for(&names), 1, "A issued");
    // The journal at A keeps the key and says why A was chosen.
    let account = lab
        .store
        .load_account(&lab.a.directory_url())
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<sturdy_acme::Identifier> = names
        .iter()
        .map(|n| sturdy_acme::Identifier::parse(n).unwrap())
        .collect();
    let key = IdentifierSetKey::for_account(lab.a.directory_url(), account.url, &ids);
    let journal = lab.store.load_journal(&key).await.unwrap().unwrap();
    assert!(journal.step >= JournalStep::Finalizing && journal.key_pem.is_some());
    assert_eq!(journal.chosen.as_ref().unwrap().ca, "a");
    // Asked again while A is still down: still nothing elsewhere.
    let err = set
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FailoverBlocked { .. }), "{err}");
    assert_eq!(lab.b.ledger().requests_to(Endpoint::NewOrder), 0);
    assert_eq!(lab.pebble.count_requests("POST /order-plz"), 0);
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, CaSetEvent::FailoverBlocked { ca, .. } if ca == "a"))
    );
    // The process restarts while A is still down: A's client cannot be
    // built from its directory, but from the one the store remembers, so
    // the set exists and is blocked the same way (a set built without A
    // would order at B while A may hold the certificate).
    drop(set);
    assert!(
        lab.a
            .client_builder()
            .retry_policy(quick())
            .build()
            .await
            .is_err(),
        "A's directory cannot be fetched"
    );
    let (set, _) = set_of(&lab, |b| b, |s| s.down_for(Duration::from_secs(3600))).await;
    let err = set
        .ensure(&names, &EnsureOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::FailoverBlocked { ca, .. } if ca == "a"),
        "{err}"
    );
    assert_eq!(lab.b.ledger().requests_to(Endpoint::NewOrder), 0);
    assert_eq!(lab.pebble.count_requests("POST /order-plz"), 0);
    // A answers again: the restarted set downloads its certificate.
    lab.a.set_faults(Vec::new());
    let got = set.ensure(&names, &EnsureOptions::default()).await.unwrap();
    assert_eq!(got.ca, "a");
    assert_eq!(got.ensured.source, CertificateSource::Resumed);
    assert_eq!(issued(&lab, &names), (1, 0, 0));
    assert_eq!(
        lab.a.ledger().requests_to(Endpoint::Finalize),
        1,
        "finalize was never repeated"
    );
}

/// (4) A's new-order budget for the account is spent: a new set goes to B
/// with no newOrder sent to A; a renewal of A's certificate that the CA
/// asks for early stays at A (an exempt ARI renewal, `replaces` to A).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_sends_new_sets_elsewhere_and_renewals_stay_with_their_ca() {
    crate::common::init_tracing();
    let limits = RateLimits {
        new_orders_per_account: Some(Limit::new(2, Duration::from_secs(3 * 3600))),
        ..RateLimits::none()
    };
    let Some(lab) = lab(
        "budget",
        TestCa::builder()
            .rate_limits(limits.clone())
            .renewal_info(None),
    )
    .await
    else {
        return;
    };
    let (set, _) = set_of(&lab, |b| b.rate_limits(limits.clone()), |s| s).await;
    for name in ["one.budget.example", "two.budget.example"] {
        let got = set
            .ensure(&[name], &EnsureOptions::default())
            .await
            .unwrap();
        assert_eq!(got.ca, "a");
    }
    let orders_at_a = lab.a.ledger().requests_to(Endpoint::NewOrder);
    let third = set
        .ensure(&["three.budget.example"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(third.ca, "b");
    assert!(matches!(
        &third.choice.unwrap().skipped[0].reason,
        SkipReason::RateLimited { .. }
    ));
    assert_eq!(
        lab.a.ledger().requests_to(Endpoint::NewOrder),
        orders_at_a,
        "refused locally"
    );

    // The CA asks for one.budget.example early: renewed at A, exempt.
    let moved = lab
        .a
        .drill_renewal_windows(1.0, 3, Duration::from_secs(86_400), None);
    assert!(!moved.is_empty());
    let renewed = set
        .ensure(
            &["one.budget.example"],
            &EnsureOptions::default().with_recheck_renewal_info(true),
        )
        .await
        .unwrap();
    assert_eq!(renewed.ca, "a");
    assert_eq!(renewed.ensured.source, CertificateSource::New);
    assert!(
        renewed.ensured.replaces.is_some(),
        "an ARI renewal at its own CA"
    );
    assert_eq!(lab.a.ledger().issued_for(&["one.budget.example"]), 2);
    assert_eq!(lab.b.ledger().issued_for(&["one.budget.example"]), 0);
}

/// (5) After A recovers from an outage, issuance returns to it: the first
/// issuance after `down_for` (and after the pause A asked for) probes it
/// and succeeds; a certificate B issued during the outage renews at A,
/// never sent to A as `replaces`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_preferred_ca_recovers_issuance_returns_to_it() {
    crate::common::init_tracing();
    let Some(lab) = lab("recover", TestCa::builder()).await else {
        return;
    };
    let (set, events) = set_of(&lab, |b| b, |s| s.down_for(Duration::from_millis(300))).await;
    lab.a.set_faults(down(1));
    let during = set
        .ensure(&["during.example"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(during.ca, "b");
    assert!(set.is_down("a"));
    lab.a.set_faults(Vec::new());
    // Past `down_for` and A's one-second pause.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = set
        .ensure(&["after.example"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(after.ca, "a");
    assert!(!set.is_down("a"));
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, CaSetEvent::Up { ca } if ca == "a"))
    );
    // The certificate issued at B during the outage renews at A.
    let renewal = set
        .ensure(
            &["during.example"],
            &EnsureOptions::default().with_force_new(true),
        )
        .await
        .unwrap();
    assert_eq!(renewal.ca, "a");
    assert!(
        renewal.ensured.replaces.is_none(),
        "B's certificate is never sent as replaces to A"
    );
    assert_eq!(lab.b.ledger().issued_for(&["during.example"]), 1);
    assert_eq!(lab.a.ledger().issued_for(&["during.example"]), 1);
    let current = set.current(&["during.example"]).await.unwrap().unwrap();
    assert_eq!(current.0, "a");
}

/// A renewer over the set: with A down, every certificate it keeps is
/// issued at B, once each, and its status and events name B. The
/// renewer's records stay under the first CA; each certificate is
/// scheduled by the CA holding it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewer_over_a_set_keeps_every_certificate_through_an_outage() {
    use sturdy_acme::renewer::{ManagedState, Renewer, RenewerEvent};
    crate::common::init_tracing();
    let Some(lab) = lab("renewer", TestCa::builder()).await else {
        return;
    };
    let (set, _) = set_of(&lab, |b| b, |s| s).await;
    lab.a.set_faults(down(600));
    let issued_at = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&issued_at);
    let renewer = Renewer::for_set(set)
        .policy(crate::renewer::policy())
        .on_event(move |e| {
            if let RenewerEvent::Issued { ca, .. } = e {
                seen.lock().unwrap().push(ca.clone());
            }
        })
        .build();
    renewer
        .add_all(crate::renewer::specs(
            (0..4).map(|i| format!("kept{i}.example")),
        ))
        .await
        .unwrap();
    let running = crate::renewer::start(&renewer);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = renewer.status();
        if status.count(ManagedState::Valid) == 4 {
            break status;
        }
        assert!(Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for c in &status.certificates {
        assert_eq!(c.ca.as_deref(), Some("b"), "{c:?}");
    }
    assert_eq!(*issued_at.lock().unwrap(), vec![Some("b".to_owned()); 4]);
    assert_eq!(lab.a.ledger().certificates.len(), 0);
    assert_eq!(lab.b.ledger().certificates.len(), 4);
    assert_eq!(lab.pebble.issued_count(), 0);
    renewer.shutdown();
    running.await.unwrap().unwrap();
}

/// A set's profile intents are asked of each CA by its own name, and the
/// certificate issued under the mapped name is judged by it: still good,
/// it is returned as it is (judged by the intent's name, it would count as
/// "another profile" and be renewed on every call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_intent_is_asked_by_each_cas_name_and_judged_by_it() {
    crate::common::init_tracing();
    let Some(lab) = lab("profiles", TestCa::builder().profiles(true)).await else {
        return;
    };
    let a = quick_client(&lab.a).await;
    let b = quick_client(&lab.b).await;
    let set = CaSet::builder()
        .ca(CaMember::new("a", issuer(a, &lab.store).build()).with_profile("short", "tlsserver"))
        .ca(CaMember::new("b", issuer(b, &lab.store).build()))
        .build()
        .unwrap();
    let options = EnsureOptions::default().with_certificate(
        sturdy_acme::CertificateOptions::default().with_profile(Some("short".into())),
    );
    let names = ["profiled.example"];
    let got = set.ensure(&names, &options).await.unwrap();
    assert_eq!(got.ca, "a");
    assert_eq!(
        got.ensured.certificate.profile,
        sturdy_acme::store::AskedProfile::Named("tlsserver".into())
    );
    let again = set.ensure(&names, &options).await.unwrap();
    assert_eq!(again.ensured.source, CertificateSource::Stored);
    assert_eq!(lab.a.ledger().issued_for(&names), 1);
    // One CA is one member: the same directory twice is refused.
    let c = lab.a.client_builder().build().await.unwrap();
    let d = lab.a.client_builder().build().await.unwrap();
    let twice = CaSet::builder()
        .ca(CaMember::new("one", issuer(c, &lab.store).build()))
        .ca(CaMember::new("two", issuer(d, &lab.store).build()))
        .build();
    assert!(matches!(twice, Err(Error::InvalidInput(_))));
}

/// The fleet simulation with two CAs (issue 30): the preferred CA is down
/// for 6 simulated hours while the second burst arrives. Every certificate
/// that arrives meanwhile is issued at the second CA; none expires, none
/// is issued twice, the down CA hears only a bounded number of requests
/// (each renewer's first try, then nothing while it is skipped), and after
/// it every certificate goes to the preferred CA again.
#[tokio::test(start_paused = true)]
async fn the_fleet_fails_over_during_a_six_hour_outage_without_duplicates() {
    use sturdy_acme_testca::simulation::{SecondCa, SimulationConfig, simulate};
    const HOUR: u64 = 3600;
    let report = simulate(SimulationConfig {
        certificates: 400,
        domains: 20,
        accounts: 2,
        days: 20,
        outage_at: Duration::from_secs(6 * HOUR - 600),
        outage: Duration::from_secs(6 * HOUR),
        second_ca: Some(SecondCa::default()),
        ..SimulationConfig::default()
    })
    .await
    .unwrap();
    eprintln!("{}", serde_json::to_string(&report).unwrap());
    let second = report.second_ca.clone().unwrap();
    assert_eq!(report.ever_expired, 0, "{report:?}");
    assert_eq!(report.never_issued, 0);
    assert_eq!(report.duplicates, 0);
    assert_eq!(report.rate_limited_429, 0);
    assert!(second.arrived_during_outage > 0, "{second:?}");
    assert!(
        second.issued_second_during_outage >= second.arrived_during_outage,
        "{second:?}"
    );
    // Failover within the down CA's transient budget and the set's bound,
    // never the outage's 6 hours.
    assert!(second.slowest_during_outage_s < 3600.0, "{second:?}");
    assert!(second.requests_to_down_ca < 100, "{second:?}");
    assert!(second.issued_first > 0);
    // Once it is back, everything goes to the preferred CA again: the
    // first issuance probes it and the others wait for that outcome.
    assert_eq!(second.issued_second_after_outage, 0, "{second:?}");
}

/// The CA's CAA recheck at finalize fails the order at A (Boulder since
/// 2026: the order becomes `invalid`, the CA's definitive word that it
/// yields no certificate). Within a set that order is given up at once,
/// not ordered again at A, and the set passes to B: issued there, one
/// certificate in all. (Before, A's issuer ordered again at A and the
/// second invalid order's journal blocked every failover.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_the_ca_fails_at_finalize_passes_to_the_next_ca() {
    crate::common::init_tracing();
    let Some(lab) = lab(
        "refused",
        TestCa::builder().caa("refused.example", sturdy_acme_testca::CaaPolicy::Forbid),
    )
    .await
    else {
        return;
    };
    let (set, _) = set_of(&lab, |b| b, |s| s).await;
    let names = ["refused.example"];
    let got = set.ensure(&names, &EnsureOptions::default()).await.unwrap();
    assert_eq!(got.ca, "b");
    let choice = got.choice.unwrap();
    assert!(
        matches!(&choice.skipped[0].reason, SkipReason::Refused { problem } if problem.contains("caa")),
        "{choice}"
    );
    assert_eq!(
        lab.a.ledger().requests_to(Endpoint::NewOrder),
        1,
        "not ordered again at A"
    );
    assert_eq!(issued(&lab, &names), (0, 1, 0));
}

/// A journal left beside the certificate it stored (a crash between the
/// save and the journal's delete) is not an order in flight: the set's
/// choice, not that CA, decides where the next certificate goes (here the
/// allow-list names only B).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_left_beside_its_certificate_does_not_pin_the_set_to_its_ca() {
    crate::common::init_tracing();
    let Some(lab) = lab("leftover", TestCa::builder()).await else {
        return;
    };
    let (set, _) = set_of(&lab, |b| b, |s| s).await;
    let names = ["leftover.example"];
    let first = set.ensure(&names, &EnsureOptions::default()).await.unwrap();
    assert_eq!(first.ca, "a");
    // The journal of that issuance, left at Downloaded beside it.
    let cert = first.ensured.certificate.clone();
    let account = lab
        .store
        .load_account(&lab.a.directory_url())
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<sturdy_acme::Identifier> = names
        .iter()
        .map(|n| sturdy_acme::Identifier::parse(n).unwrap())
        .collect();
    let key = IdentifierSetKey::for_account(lab.a.directory_url(), account.url.clone(), &ids);
    let mut journal =
        sturdy_acme::store::Journal::new(lab.a.directory_url(), account.url, ids.clone(), 0);
    journal.step = JournalStep::Downloaded;
    journal.key_pem = Some(cert.key_pem.clone());
    journal.certificate_url = Some(cert.url.clone());
    journal.chain_pem = Some(cert.chain_pem.clone());
    lab.store.save_journal(&key, &journal).await.unwrap();
    let options = EnsureOptions::default()
        .with_force_new(true)
        .with_certificate(sturdy_acme::CertificateOptions::default().with_allowed_cas(["b"]));
    let next = set.ensure(&names, &options).await.unwrap();
    assert_eq!(next.ca, "b");
    assert_eq!(lab.a.ledger().issued_for(&names), 1);
    assert_eq!(lab.b.ledger().issued_for(&names), 1);
}

/// A renewer over a set whose CAs have all spent their new-order budget:
/// the certificates left wait for the first refill as held by a limit
/// (`WaitingForLimit`, `RenewerEvent::Deferred`, nothing sent), not as
/// failures backing off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewer_over_a_set_waits_when_every_ca_is_rate_limited() {
    use sturdy_acme::renewer::{ManagedState, Renewer, RenewerEvent};
    crate::common::init_tracing();
    let one = RateLimits {
        new_orders_per_account: Some(Limit::new(1, Duration::from_secs(3 * 3600))),
        ..RateLimits::none()
    };
    let Some(lab) = lab("limited", TestCa::builder().rate_limits(one.clone())).await else {
        return;
    };
    let a = quick_client(&lab.a).await;
    let b = quick_client(&lab.b).await;
    let set = CaSet::builder()
        .ca(CaMember::new(
            "a",
            issuer(a, &lab.store).rate_limits(one.clone()).build(),
        ))
        .ca(CaMember::new(
            "b",
            issuer(b, &lab.store).rate_limits(one.clone()).build(),
        ))
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new((0usize, 0usize)));
    let log = Arc::clone(&seen);
    let renewer = Renewer::for_set(set)
        .policy(crate::renewer::policy())
        .on_event(move |e| match e {
            RenewerEvent::Deferred { .. } => log.lock().unwrap().0 += 1,
            RenewerEvent::Failed { .. } => log.lock().unwrap().1 += 1,
            _ => {}
        })
        .build();
    renewer
        .add_all(crate::renewer::specs(
            (0..4).map(|i| format!("held{i}.example")),
        ))
        .await
        .unwrap();
    let running = crate::renewer::start(&renewer);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = renewer.status();
        if status.count(ManagedState::Valid) == 2
            && status.count(ManagedState::WaitingForLimit) == 2
        {
            break status;
        }
        assert!(Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (deferred, failed) = *seen.lock().unwrap();
    assert!(deferred >= 2, "{status:?}");
    assert_eq!(failed, 0, "held by limits is not a failure");
    assert_eq!(lab.a.ledger().certificates.len(), 1);
    assert_eq!(lab.b.ledger().certificates.len(), 1);
    renewer.shutdown();
    running.await.unwrap().unwrap();
}
