//! dns-01 through RFC 2136 against a real authoritative server (Knot DNS):
//! the solver's UPDATEs, the CA validating through the same server, CNAME
//! delegation, a lagging secondary, cleanup.

use std::sync::Arc;
use std::time::Duration;

use sturdy_acme::dns::{Dns, TsigKey};
use sturdy_acme::solver::dns01::{Rfc2136Config, Rfc2136Solver};
use sturdy_acme::store::FileStore;
use sturdy_acme::{CertificateSource, EnsureOptions, Issuer};
use sturdy_acme_testca::{ServerDns, TestCa};

use crate::common::knot::DnsLab;
use crate::issuer::temp_store;

/// The embedded CA validating dns-01 through the lab's primary.
async fn ca_on(lab: &DnsLab) -> TestCa {
    TestCa::builder()
        .real_validation(0, 0, Arc::new(ServerDns::new(lab.dns_config())))
        .start()
        .await
        .unwrap()
}

async fn issue(lab: &DnsLab, names: &[&str]) -> (TestCa, Arc<Rfc2136Solver>) {
    let ca = ca_on(lab).await;
    let solver = Arc::new(lab.solver());
    let dir = temp_store("dns01");
    let issuer = Issuer::builder(ca.client().await.unwrap(), FileStore::open(&dir).unwrap())
        .solver(solver.clone())
        .build();
    let ensured = issuer
        .ensure(names, &EnsureOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{names:?}: {e}\n{}", lab.logs()));
    assert_eq!(ensured.source, CertificateSource::New);
    assert_eq!(ca.ledger().issued_for(names), 1);
    std::fs::remove_dir_all(&dir).unwrap();
    (ca, solver)
}

#[tokio::test]
async fn a_single_name_is_issued_through_dns_update_and_cleaned_up() {
    crate::common::init_tracing();
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    issue(&lab, &["www.example.test"]).await;
    assert!(
        lab.txt(lab.resolver(), "_acme-challenge.www.example.test")
            .await
            .is_empty(),
        "the record is gone"
    );
}

#[tokio::test]
async fn a_wildcard_and_its_apex_share_one_name_in_one_order() {
    crate::common::init_tracing();
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    issue(&lab, &["example.test", "*.example.test"]).await;
    assert!(
        lab.txt(lab.resolver(), "_acme-challenge.example.test")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_cname_at_acme_challenge_is_followed_into_the_delegated_zone() {
    crate::common::init_tracing();
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    let s = lab.solver();
    // The record lands at the CNAME's target, in the other zone.
    let zone = s
        .publish("_acme-challenge.alias.example.test.", "delegated-value")
        .await
        .unwrap();
    assert_eq!(zone.apex, "acme-delegated.test");
    assert_eq!(
        lab.txt(lab.resolver(), "alias.acme-delegated.test").await,
        ["delegated-value"]
    );
    s.unpublish("_acme-challenge.alias.example.test.", "delegated-value")
        .await
        .unwrap();
    assert!(
        lab.txt(lab.resolver(), "alias.acme-delegated.test")
            .await
            .is_empty()
    );

    // And the whole loop: the CA follows the same CNAME.
    issue(&lab, &["alias.example.test"]).await;
    assert!(
        lab.txt(lab.resolver(), "alias.acme-delegated.test")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn concurrent_values_at_one_name_do_not_clobber_each_other() {
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    let s = lab.solver();
    let name = "_acme-challenge.www.example.test";
    let (a, b) = tokio::join!(s.publish(name, "value-a"), s.publish(name, "value-b"));
    a.unwrap();
    b.unwrap();
    let mut values = lab.txt(lab.resolver(), name).await;
    values.sort();
    assert_eq!(values, ["value-a", "value-b"]);
    s.unpublish(name, "value-a").await.unwrap();
    assert_eq!(
        lab.txt(lab.resolver(), name).await,
        ["value-b"],
        "only ours deleted"
    );
    s.unpublish(name, "value-b").await.unwrap();
    assert!(lab.txt(lab.resolver(), name).await.is_empty());
}

#[tokio::test]
async fn the_solver_waits_for_a_lagging_secondary() {
    crate::common::init_tracing();
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    let s = Arc::new(lab.solver());
    let name = "_acme-challenge.lag.test";
    let publishing = tokio::spawn({
        let s = Arc::clone(&s);
        async move { s.publish(name, "lagging-value").await }
    });
    // The primary has it at once; the secondary transfers only when told.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(lab.txt(lab.resolver(), name).await, ["lagging-value"]);
    assert!(lab.txt(lab.secondary_addr(), name).await.is_empty());
    assert!(
        !publishing.is_finished(),
        "present returned while ns2 lagged"
    );
    lab.refresh_secondary().await;
    let zone = tokio::time::timeout(Duration::from_secs(5), publishing)
        .await
        .expect("present returns once both serve the value")
        .unwrap()
        .unwrap();
    assert_eq!(zone.nameservers.len(), 2, "{zone:?}");

    // Without the refresh, the wait ends in a typed error naming ns2.
    let impatient = Rfc2136Solver::new(
        Dns::new(lab.dns_config()),
        Rfc2136Config::new(lab.resolver(), Some(lab.tsig_key().parse().unwrap()))
            .poll_interval(Duration::from_millis(50), Duration::from_millis(100))
            .propagation_timeout(Duration::from_millis(600)),
    );
    let err = impatient.publish(name, "second-value").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("ns2.lag.test") && !text.contains("ns1.lag.test"),
        "{text}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn an_update_with_the_wrong_key_is_refused_with_a_typed_error() {
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    let wrong: TsigKey = "sturdy-update.:hmac-sha256:d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA=="
        .parse()
        .unwrap();
    let s = Rfc2136Solver::new(
        Dns::new(lab.dns_config()),
        Rfc2136Config::new(lab.resolver(), Some(wrong)),
    );
    let err = s
        .publish("_acme-challenge.www.example.test", "v")
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("NOTAUTH") || err.to_string().contains("REFUSED"),
        "{err}"
    );
    let unsigned = Rfc2136Solver::new(
        Dns::new(lab.dns_config()),
        Rfc2136Config::new(lab.resolver(), None),
    );
    let err = unsigned
        .publish("_acme-challenge.www.example.test", "v")
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(
        lab.txt(lab.resolver(), "_acme-challenge.www.example.test")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn pebble_validates_rfc2136_records_through_the_same_server() {
    use crate::common::pebble::{Pebble, PebbleOptions};
    use crate::common::suite::AcmeServer;
    crate::common::init_tracing();
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    let Some(pebble) = Pebble::start(PebbleOptions {
        dns_server: Some(lab.recursive_resolver()),
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let client = pebble.client_builder().build().await.unwrap();
    let solver = Arc::new(lab.solver());
    let dir = temp_store("dns01-pebble");
    // The pre-flight on too (Pebble announces no CAA identity: named here).
    let issuer = Issuer::builder(client, FileStore::open(&dir).unwrap())
        .solver(solver)
        .caa_preflight(Some(
            sturdy_acme::caa::CaaChecker::new(Dns::new(lab.dns_config()))
                .ca_identities(vec!["pebble.letsencrypt.org".into()]),
        ))
        .build();
    for names in [
        &["www.example.test"][..],
        &["example.test", "*.example.test"][..],
        &["alias.example.test"][..],
    ] {
        let ensured = issuer
            .ensure(names, &EnsureOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{names:?}: {e}\n{}", pebble.log()));
        assert_eq!(ensured.source, CertificateSource::New, "{names:?}");
    }
    assert_eq!(pebble.issued_count(), 3);
    for name in [
        "_acme-challenge.www.example.test",
        "_acme-challenge.example.test",
        "alias.acme-delegated.test",
    ] {
        assert!(
            lab.txt(lab.resolver(), name).await.is_empty(),
            "{name} cleaned up"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_issuer_answers_no_challenge_while_a_secondary_lags() {
    use sturdy_acme::Endpoint;
    crate::common::init_tracing();
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    let ca = ca_on(&lab).await;
    let dir = temp_store("dns01-lag");
    let issuer = Issuer::builder(ca.client().await.unwrap(), FileStore::open(&dir).unwrap())
        .solver(Arc::new(lab.solver()))
        .build();
    let ensuring = tokio::spawn({
        let issuer = issuer.clone();
        async move {
            issuer
                .ensure(&["lag.test"], &EnsureOptions::default())
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        lab.txt(lab.resolver(), "_acme-challenge.lag.test")
            .await
            .len(),
        1,
        "the primary has the value"
    );
    assert_eq!(ca.ledger().requests_to(Endpoint::NewOrder), 1);
    assert_eq!(
        ca.ledger().requests_to(Endpoint::Challenge),
        0,
        "no challenge answered while ns2 lags"
    );
    lab.refresh_secondary().await;
    let ensured = tokio::time::timeout(Duration::from_secs(20), ensuring)
        .await
        .expect("issued once both serve it")
        .unwrap()
        .unwrap();
    assert_eq!(ensured.source, CertificateSource::New);
    assert!(ca.ledger().requests_to(Endpoint::Challenge) >= 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 27, defect 5: a zone whose NS set names a nameserver without an
/// address: the record is published, waited for at the nameserver that
/// answers, and the certificate issued.
#[tokio::test]
async fn a_zone_with_a_dangling_nameserver_still_publishes() {
    crate::common::init_tracing();
    let Some(lab) = DnsLab::start().await else {
        return;
    };
    let s = lab.solver();
    let zone = s
        .publish("_acme-challenge.www.dangling.test", "dangling-value")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    assert_eq!(zone.apex, "dangling.test");
    assert_eq!(zone.nameservers.len(), 1, "{zone:?}");
    assert_eq!(zone.dangling[0].name, "ns-gone.example.test");
    assert_eq!(
        lab.txt(lab.resolver(), "_acme-challenge.www.dangling.test")
            .await,
        ["dangling-value"]
    );
    s.unpublish("_acme-challenge.www.dangling.test", "dangling-value")
        .await
        .unwrap();
    issue(&lab, &["www.dangling.test"]).await;
}
