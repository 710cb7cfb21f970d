//! The CAA pre-flight against a real authoritative server (Knot DNS): each
//! verdict from real records, a nameserver that times out (through the
//! lab's proxy), and the issuer sending no newOrder while it does.

use std::sync::Arc;
use std::time::Duration;

use sturdy_acme::caa::{CaaChecker, CaaContext, CaaReport, CaaVerdict};
use sturdy_acme::dns::Dns;
use sturdy_acme::store::FileStore;
use sturdy_acme::{
    Backoff, CaaCause, Dialect, Endpoint, EnsureOptions, ErrorClass, Issuer, Jitter,
};
use sturdy_acme_testca::{ServerDns, TestCa};

use crate::common::knot::{DnsLab, TEST_CA_IDENTITY};
use crate::issuer::temp_store;

fn ctx() -> CaaContext {
    CaaContext {
        ca_identities: vec![TEST_CA_IDENTITY.into()],
        account_uri: Some("https://ca.invalid/acct/1".into()),
        validation_methods: vec!["dns-01".into()],
    }
}

async fn check(lab: &DnsLab, name: &str) -> CaaReport {
    let checker =
        CaaChecker::new(Dns::new(lab.dns_config())).query_timeout(Duration::from_millis(400));
    let mut reports = checker.check(&[name], &ctx()).await;
    reports.remove(0)
}

/// `err` is classed CAA with `cause`.
fn assert_caa(err: &sturdy_acme::Error, cause: CaaCause) {
    assert!(
        matches!(err.class(), ErrorClass::Caa { cause: c, .. } if c == cause),
        "{err}"
    );
}

fn forbidden_reason(report: &CaaReport) -> &str {
    match &report.verdict {
        CaaVerdict::Forbidden { reason, .. } => reason,
        other => panic!("{}: {other:?}", report.name),
    }
}

#[tokio::test]
async fn each_record_set_gets_its_verdict() {
    crate::common::init_tracing();
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    let allowed = check(&lab, "allowed.caa.test").await;
    let CaaVerdict::Allowed {
        at,
        record: Some(record),
    } = &allowed.verdict
    else {
        panic!("{allowed:?}")
    };
    assert_eq!(at, "allowed.caa.test");
    assert_eq!(record.value, TEST_CA_IDENTITY);
    assert!(allowed.queries.iter().all(|q| q.answered), "{allowed:?}");

    // issuewild for another CA, and issuewild only: the apex may be
    // issued, its wildcard not.
    let wild = check(&lab, "wild.caa.test").await;
    assert!(
        matches!(wild.verdict, CaaVerdict::Allowed { .. }),
        "{wild:?}"
    );
    let apex = check(&lab, "wildonly.caa.test").await;
    assert!(
        matches!(&apex.verdict, CaaVerdict::Allowed { at, record: None } if at == "wildonly.caa.test"),
        "{apex:?}"
    );

    // Each forbidding record set, and why.
    for (name, why) in [
        ("other.caa.test", "issue names other-ca.example"),
        ("*.wild.caa.test", "issuewild names other-ca.example"),
        ("*.wildonly.caa.test", "issuewild \";\" permits no CA"),
        (
            "account.caa.test",
            "this account is https://ca.invalid/acct/1",
        ),
        (
            "methods.caa.test",
            "validationmethods=http-01 excludes dns-01",
        ),
        ("critical.caa.test", "issuer-critical"),
        // A CNAME: the target's CAA records are the name's.
        ("aliased.caa.test", "issue names other-ca.example"),
    ] {
        let report = check(&lab, name).await;
        assert!(forbidden_reason(&report).contains(why), "{report:?}");
    }

    // No records on the climb: none.caa.test, caa.test, test.
    let none = check(&lab, "none.caa.test").await;
    assert_eq!(none.verdict, CaaVerdict::NoRecords, "{none:?}");
    let asked: Vec<&str> = none.queries.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(asked, ["none.caa.test", "caa.test", "test"]);

    // A subdomain inherits its parent's records.
    let below = check(&lab, "deep.below.other.caa.test").await;
    let CaaVerdict::Forbidden { at, .. } = &below.verdict else {
        panic!("{below:?}")
    };
    assert_eq!(at, "other.caa.test");
}

#[tokio::test]
async fn a_nameserver_that_does_not_answer_is_named_with_its_wait() {
    crate::common::init_tracing();
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    // Slow but within the timeout: answered, the latency shows it.
    lab.proxy().delay_caa(Duration::from_millis(150));
    let slow = check(&lab, "www.slow.test").await;
    assert_eq!(slow.verdict, CaaVerdict::NoRecords, "{slow:?}");
    let first = &slow.queries[0];
    assert_eq!(first.nameserver.name, "ns.slow.test");
    assert!(first.latency >= Duration::from_millis(150), "{first:?}");

    // Dropped: unreachable, naming the nameserver and zone.
    lab.proxy().drop_caa(true);
    let down = check(&lab, "www.slow.test").await;
    let CaaVerdict::Unreachable {
        zone,
        server,
        after,
        ..
    } = &down.verdict
    else {
        panic!("{down:?}")
    };
    assert_eq!(zone.as_deref(), Some("slow.test"));
    assert!(
        server.contains("ns.slow.test") && server.contains(&lab.proxy().addr().to_string()),
        "{server}"
    );
    assert!(*after >= Duration::from_millis(400), "{after:?}");
    let summary = down.summary();
    assert!(
        summary.contains("unreachable") && summary.contains("ns.slow.test"),
        "{summary}"
    );
}

/// The embedded CA in `dialect`, validating and checking CAA through the
/// lab's DNS.
async fn ca_on(lab: &DnsLab, dialect: Dialect) -> TestCa {
    TestCa::builder()
        .dialect(dialect)
        .real_validation(0, 0, Arc::new(ServerDns::new(lab.dns_config())))
        .start()
        .await
        .unwrap()
}

/// The embedded CA, the lab's DNS behind it, an issuer with dns-01 by
/// RFC 2136 and the CAA pre-flight retried every 200 ms.
async fn issuer_on(lab: &DnsLab) -> (TestCa, Issuer<FileStore>, std::path::PathBuf) {
    let ca = ca_on(lab, Dialect::V2).await;
    let solver = lab.solver();
    let checker = CaaChecker::new(Dns::new(lab.dns_config()))
        .query_timeout(Duration::from_millis(300))
        .retry(
            Backoff::new(100, Duration::from_millis(200))
                .with_factor(1)
                .with_jitter(Jitter::None)
                .with_budget(Duration::from_secs(60)),
        );
    let dir = temp_store("caa");
    let issuer = Issuer::builder(ca.client().await.unwrap(), FileStore::open(&dir).unwrap())
        .solver(Arc::new(solver))
        .caa_preflight(Some(checker))
        .build();
    (ca, issuer, dir)
}

#[tokio::test]
async fn no_new_order_is_sent_while_the_customers_nameserver_times_out() {
    crate::common::init_tracing();
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    let (ca, issuer, dir) = issuer_on(&lab).await;
    lab.proxy().drop_caa(true);
    let ensuring = tokio::spawn({
        let issuer = issuer.clone();
        async move {
            issuer
                .ensure(&["www.slow.test"], &EnsureOptions::default())
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert!(!ensuring.is_finished());
    assert_eq!(
        ca.ledger().requests_to(Endpoint::NewOrder),
        0,
        "no newOrder while DNS is down"
    );
    // Each round sends a question up to 3 times (UDP resends inside the
    // 300 ms deadline): more than 6 means more than two rounds.
    assert!(
        lab.proxy().caa_seen() > 6,
        "asked again: {}",
        lab.proxy().caa_seen()
    );
    lab.proxy().drop_caa(false);
    let ensured = tokio::time::timeout(Duration::from_secs(20), ensuring)
        .await
        .expect("issued once the nameserver answers")
        .unwrap()
        .unwrap();
    assert_eq!(ensured.source, sturdy_acme::CertificateSource::New);
    assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), 1);
    assert_eq!(ca.ledger().issued_for(&["www.slow.test"]), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_forbidding_record_fails_at_once_without_an_order() {
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    let (ca, issuer, dir) = issuer_on(&lab).await;
    let err = issuer
        .ensure(&["other.caa.test"], &EnsureOptions::default())
        .await
        .unwrap_err();
    match err.class() {
        ErrorClass::Caa { names, cause } => {
            assert_eq!(names, ["other.caa.test"]);
            assert_eq!(cause, CaaCause::Forbidden);
        }
        other => panic!("{other:?}: {err}"),
    }
    assert!(err.to_string().contains("other-ca.example"), "{err}");
    assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), 0);

    // Unreachable to the end: classed as the CA's CAA lookup failure.
    lab.proxy().drop_caa(true);
    let checker = CaaChecker::new(Dns::new(lab.dns_config()))
        .query_timeout(Duration::from_millis(200))
        .retry(Backoff::new(2, Duration::from_millis(50)).with_jitter(Jitter::None));
    let quick = Issuer::builder(ca.client().await.unwrap(), FileStore::open(&dir).unwrap())
        .solver(Arc::new(lab.solver()))
        .caa_preflight(Some(checker))
        .build();
    let err = quick
        .ensure(&["www.slow.test"], &EnsureOptions::default())
        .await
        .unwrap_err();
    assert_caa(&err, CaaCause::LookupFailed);
    assert!(err.to_string().contains("ns.slow.test"), "{err}");
    assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_embedded_ca_rechecks_caa_from_the_real_records_at_finalize() {
    embedded_ca_rechecks_caa(Dialect::V2).await;
}

#[tokio::test]
async fn the_embedded_v1_ca_rechecks_caa_from_the_real_records_at_new_cert() {
    embedded_ca_rechecks_caa(Dialect::V1).await;
}

/// The embedded CA in `dialect`, resolving through the lab: a forbidding
/// record and a nameserver that times out refuse at finalize (v2) or
/// new-cert (v1) with Boulder's wording; an allowing record issues.
async fn embedded_ca_rechecks_caa(dialect: Dialect) {
    crate::common::init_tracing();
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    let ca = ca_on(&lab, dialect).await;
    let client = ca
        .client_builder()
        .retry_policy(sturdy_acme::RetryPolicy::no_retries())
        .build()
        .await
        .unwrap();
    let dir = temp_store("caa-ca");
    // No pre-flight: the CA's own check is what refuses.
    let issuer = Issuer::builder(client, FileStore::open(&dir).unwrap())
        .solver(Arc::new(lab.solver()))
        .build();
    let err = issuer
        .ensure(&["other.caa.test"], &EnsureOptions::default())
        .await
        .unwrap_err();
    assert_caa(&err, CaaCause::Forbidden);
    assert!(
        err.to_string()
            .contains("CAA record for other.caa.test prevents issuance"),
        "{err}"
    );

    lab.proxy().drop_caa(true);
    let err = issuer
        .ensure(&["www.slow.test"], &EnsureOptions::default())
        .await
        .unwrap_err();
    assert_caa(&err, CaaCause::LookupFailed);
    assert!(
        err.to_string()
            .contains("query timed out looking up CAA for www.slow.test"),
        "{err}"
    );
    assert_eq!(ca.ledger().certificates.len(), 0);

    lab.proxy().drop_caa(false);
    if dialect == Dialect::V2 {
        // validationmethods=http-01, validated by dns-01: refused at
        // finalize; validationmethods=dns-01: issued. (v1 predates RFC 8657.)
        let finalized = ca.ledger().requests_to(Endpoint::Finalize);
        let err = issuer
            .ensure(&["methods.caa.test"], &EnsureOptions::default())
            .await
            .unwrap_err();
        assert_caa(&err, CaaCause::Forbidden);
        assert_eq!(ca.ledger().requests_to(Endpoint::Finalize), finalized + 1);
        issuer
            .ensure(&["dnsonly.caa.test"], &EnsureOptions::default())
            .await
            .unwrap();
    }

    // Allowed by its record: issued.
    issuer
        .ensure(&["allowed.caa.test"], &EnsureOptions::default())
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn nameservers_serving_different_records_give_an_inconsistent_verdict() {
    crate::common::init_tracing();
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    assert_eq!(check(&lab, "lag.test").await.verdict, CaaVerdict::NoRecords);
    // A new CAA record the lagging secondary has not transferred yet.
    lab.add_record("lag.test", "@", "CAA", "0 issue \"other-ca.example\"");
    let split = check(&lab, "lag.test").await;
    let CaaVerdict::Inconsistent { zone, answers, .. } = &split.verdict else {
        panic!("{split:?}")
    };
    assert_eq!(zone, "lag.test");
    assert!(
        answers
            .iter()
            .any(|a| a.starts_with("ns1.lag.test") && a.contains("other-ca.example"))
            && answers
                .iter()
                .any(|a| a.starts_with("ns2.lag.test") && a.contains("no CAA records")),
        "{answers:?}"
    );
    assert!(split.verdict.is_transient() && !split.verdict.may_issue());
    // Once the secondary has it, both agree: forbidden.
    lab.refresh_secondary().await;
    let agreed = check(&lab, "lag.test").await;
    assert!(
        forbidden_reason(&agreed).contains("other-ca.example"),
        "{agreed:?}"
    );
}

/// An http-01 solver that serves nothing and counts its presents.
#[derive(Default)]
struct CountingHttp01(std::sync::atomic::AtomicUsize);

impl sturdy_acme::solver::Solver for CountingHttp01 {
    fn challenge_type(&self) -> sturdy_acme::ChallengeType {
        sturdy_acme::ChallengeType::Http01
    }
    fn present<'a>(
        &'a self,
        _: &'a sturdy_acme::solver::ChallengeAnswer,
    ) -> sturdy_acme::solver::SolverFuture<'a> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
    fn cleanup<'a>(
        &'a self,
        _: &'a sturdy_acme::solver::ChallengeAnswer,
    ) -> sturdy_acme::solver::SolverFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn validationmethods_steer_the_challenge_and_accounturi_matches_our_account() {
    crate::common::init_tracing();
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    let (ca, issuer, dir) = issuer_on(&lab).await;
    // http-01 preferred (and unserved: the CA cannot reach it), dns-01
    // second.
    let http = Arc::new(CountingHttp01::default());
    let steered = Issuer::builder(
        ca.client().await.unwrap(),
        FileStore::open(dir.join("steered")).unwrap(),
    )
    .solver(Arc::clone(&http) as Arc<dyn sturdy_acme::solver::Solver>)
    .solver(Arc::new(lab.solver()))
    .caa_preflight(Some(
        CaaChecker::new(Dns::new(lab.dns_config())).query_timeout(Duration::from_millis(300)),
    ))
    .build();
    // Without a CAA restriction the preferred http-01 is used, and fails.
    let err = steered
        .ensure(&["allowed.caa.test"], &EnsureOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err.class(), ErrorClass::Validation { .. }),
        "{err}"
    );
    assert_eq!(http.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    // validationmethods=dns-01: dns-01 is chosen, http-01 never presented.
    let ensured = steered
        .ensure(&["dnsonly.caa.test"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(ensured.source, sturdy_acme::CertificateSource::New);
    assert_eq!(http.0.load(std::sync::atomic::Ordering::SeqCst), 1);

    // accounturi naming our own account permits; another account's does
    // not, and the error says which account we are.
    let account = issuer.account().await.unwrap();
    lab.add_record(
        "caa.test",
        "ours",
        "CAA",
        &format!(
            "0 issue \"{TEST_CA_IDENTITY}; accounturi={}\"",
            account.url()
        ),
    );
    let ensured = issuer
        .ensure(&["ours.caa.test"], &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(ensured.source, sturdy_acme::CertificateSource::New);
    let err = issuer
        .ensure(&["account.caa.test"], &EnsureOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("this account is {}", account.url())),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_set_the_ledger_refuses_is_refused_before_any_dns_question() {
    crate::common::init_tracing();
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    let ca = ca_on(&lab, Dialect::V2).await;
    let dir = temp_store("caa-ledger");
    let issuer = Issuer::builder(ca.client().await.unwrap(), FileStore::open(&dir).unwrap())
        .solver(Arc::new(lab.solver()))
        .rate_limits(sturdy_acme::RateLimits {
            new_orders_per_account: Some(sturdy_acme::Limit::new(1, Duration::from_secs(3600))),
            ..sturdy_acme::RateLimits::none()
        })
        .caa_preflight(Some(
            CaaChecker::new(Dns::new(lab.dns_config())).query_timeout(Duration::from_millis(300)),
        ))
        .build();
    issuer
        .ensure(&["allowed.caa.test"], &EnsureOptions::default())
        .await
        .unwrap();
    // The account's one order is spent; the customer's DNS is down too.
    lab.proxy().drop_caa(true);
    let started = std::time::Instant::now();
    let err = issuer
        .ensure(&["www.slow.test"], &EnsureOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err.class(), ErrorClass::RateLimited { .. }),
        "{err}"
    );
    assert_eq!(lab.proxy().caa_seen(), 0, "no CAA question was asked");
    assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), 1);
    eprintln!("refused after {:?}", started.elapsed());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 27, defect 5: a zone with a second NS record whose name has no
/// address (after a move to another DNS provider) is checked at the
/// nameserver that answers, as a CA's resolver does: the verdict is the
/// records' (not `Failed`), and the report names the dangling nameserver.
#[tokio::test]
async fn a_dangling_nameserver_is_skipped_and_named() {
    crate::common::init_tracing();
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    let zone = Dns::new(lab.dns_config())
        .zone_of("www.dangling.test")
        .await
        .unwrap();
    assert_eq!(zone.apex, "dangling.test");
    let names: Vec<&str> = zone.nameservers.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["ns1.example.test"]);
    assert_eq!(zone.dangling.len(), 1, "{zone:?}");
    assert_eq!(zone.dangling[0].name, "ns-gone.example.test");

    let allowed = check(&lab, "allowed.dangling.test").await;
    assert!(
        matches!(&allowed.verdict, CaaVerdict::Allowed { at, record: Some(_) } if at == "allowed.dangling.test"),
        "{allowed:?}"
    );
    let none = check(&lab, "www.dangling.test").await;
    assert_eq!(none.verdict, CaaVerdict::NoRecords, "{none:?}");
    for report in [&allowed, &none] {
        assert_eq!(report.dangling, zone.dangling, "{report:?}");
        assert!(
            report.summary().contains("ns-gone.example.test"),
            "{}",
            report.summary()
        );
        assert!(report.queries.iter().all(|q| q.answered), "{report:?}");
    }
    // A zone without one is reported without any.
    let clean = check(&lab, "allowed.caa.test").await;
    assert!(clean.dangling.is_empty(), "{clean:?}");
}
