//! The crate's client against the embedded test CA in ACME v1 mode
//! (Boulder's `acme-v01`): the shared suite through the same public API
//! calls as the v2 runs, dialect detection, the v1 wire (JWS headers,
//! `resource` values, status codes and headers), what v1 lacks, and the
//! lost-response trap of `new-cert`.

use crate::common;
use crate::common::{LedgerFinder, spki_of};
use sturdy_acme_test_support::shared_suite;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::embedded::EmbeddedV1;
use common::suite::{self, AcmeServer, ServerOptions, assert_v1_unsupported, ready_order};
use common::verify;
use serde_json::{Value, json};
use sturdy_acme::AuthorizationStatus;
use sturdy_acme::Dialect;
use sturdy_acme::FindFuture;
use sturdy_acme::RateLimitScope;
use sturdy_acme::{
    AccountKey, AccountOptions, CertificateFinder, CertificateKey, CertificateKeyType,
    ChallengeType, Client, Csr, Endpoint, Error, ExternalAccountKey, Identifier, KeyAlgorithm,
    NewOrder, OrderStatus, ProblemType, RevocationReason,
};
use sturdy_acme::{Event, Jitter, RetryPolicy};
use sturdy_acme_testca::{Fault, FaultRule, TestCa, TestCaBuilder, Trigger};

// ---------------------------------------------------------------------------
// The shared suite.

// What v1 has: the suite functions as they run against v2. Not here (v1
// lacks them; see the tests below): twenty names with a wildcard, an IP
// address certificate, external account binding, alternate chains.
shared_suite!(@tests EmbeddedV1;
    http01_real_validation_issues_a_verifying_certificate,
    dns01_real_validation_issues_a_verifying_certificate,
    tls_alpn01_real_validation_issues_a_verifying_certificate,
    es384_and_rsa_accounts_and_keys_issue_eddsa_is_refused,
    key_rollover_then_issue_with_new_key_old_key_refused,
    account_lookup_update_and_deactivation,
    revocation_by_account_key_and_by_certificate_key,
    order_failure_names_the_identifier,
);

#[tokio::test]
async fn twenty_names_in_one_v1_order_over_dns01() {
    let server = EmbeddedV1::start(ServerOptions::real()).await.unwrap();
    let mut names: Vec<String> = (0..19).map(|i| format!("n{i}.many.example.com")).collect();
    names.push("many.example.com".into());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let chain = suite::issue_and_verify(&server, ChallengeType::Dns01, &refs).await;
    assert_eq!(verify::san_entries(chain.leaf_der()).len(), 20);
    // One new-authz per name, one new-cert.
    let ledger = server.ca.ledger();
    assert_eq!(ledger.requests_to(Endpoint::NewOrder), 20);
    assert_eq!(ledger.requests_to(Endpoint::Finalize), 1);
    assert_eq!(ledger.issued_for(&refs), 1);
}

// ---------------------------------------------------------------------------
// What v1 lacks: typed, before any request.

async fn v1_ca() -> TestCa {
    TestCa::builder()
        .dialect(Dialect::V1)
        .start()
        .await
        .unwrap()
}

async fn v1_account(client: &Client) -> sturdy_acme::Account {
    client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256).unwrap(),
            &AccountOptions::agreeing_to_terms().with_contact("v1@example.com"),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn what_v1_lacks_is_unsupported_without_a_request() {
    let ca = v1_ca().await;
    let client = ca.client().await.unwrap();
    let account = v1_account(&client).await;
    let before = ca.ledger().requests.clone();
    let stats = client.request_stats();

    for order in [
        NewOrder::for_names(&["*.wild.example"]).unwrap(),
        NewOrder::for_names(&["127.0.0.1"]).unwrap(),
        NewOrder::for_names(&["ok.example", "192.0.2.1"]).unwrap(),
        NewOrder::for_names(&["window.example"])
            .unwrap()
            .with_not_after(time::OffsetDateTime::now_utc() + time::Duration::days(3)),
    ] {
        let err = account.new_order(&order).await.unwrap_err();
        assert_v1_unsupported(&err);
    }
    let err = account.order_urls(3).await.unwrap_err();
    assert_v1_unsupported(&err);
    let err = client
        .find_account(AccountKey::generate(KeyAlgorithm::Es256).unwrap())
        .await
        .unwrap_err();
    assert_v1_unsupported(&err);
    let eab =
        ExternalAccountKey::new("kid-1", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
    let err = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256).unwrap(),
            &AccountOptions::agreeing_to_terms().with_external_account(eab),
        )
        .await
        .unwrap_err();
    assert_v1_unsupported(&err);

    assert_eq!(client.request_stats(), stats, "nothing was sent");
    assert_eq!(ca.ledger().requests, before);
}

#[tokio::test]
async fn v1_has_one_chain_and_a_preference_falls_back_to_it() {
    let ca = v1_ca().await;
    let client = ca.client().await.unwrap();
    let account = v1_account(&client).await;
    let mut order = account
        .new_order(&NewOrder::for_names(&["chain.example"]).unwrap())
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
    order.wait_ready().await.unwrap();
    let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
    order.finalize(Csr::Key(&key)).await.unwrap();
    let default = order.certificate().await.unwrap();
    assert!(default.alternate_urls().is_empty());
    let preferred = order
        .certificate_chain(Some(&sturdy_acme::ChainPreference::root_name(
            "No Such Root",
        )))
        .await
        .unwrap();
    assert_eq!(preferred, default);
    verify::verify_chain(default.pem(), &[ca.root_pem()], &["chain.example"], &[]);
}

// ---------------------------------------------------------------------------
// Detection.

/// Serves `body` as the directory over plain HTTP, to every request.
async fn serve_directory(body: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/directory")
}

#[tokio::test]
async fn detects_v1_and_v2_and_forced_dialects_work() {
    let v1 = v1_ca().await;
    let v2 = TestCa::start().await.unwrap();

    let client = v1.client().await.unwrap();
    assert_eq!(client.dialect(), Dialect::V1);
    let dir = client.directory();
    assert_eq!(dir.new_nonce, "");
    assert!(dir.new_account.ends_with("/acme/new-reg"), "{dir:?}");
    assert!(dir.new_order.ends_with("/acme/new-authz"), "{dir:?}");
    assert!(dir.revoke_cert.ends_with("/acme/revoke-cert"), "{dir:?}");
    assert!(dir.key_change.ends_with("/acme/key-change"), "{dir:?}");
    assert!(
        dir.extra["new-cert"]
            .as_str()
            .unwrap()
            .ends_with("/acme/new-cert")
    );
    assert!(
        dir.meta
            .terms_of_service
            .as_deref()
            .unwrap()
            .ends_with("/terms")
    );
    let client = v2.client().await.unwrap();
    assert_eq!(client.dialect(), Dialect::V2);

    // Forced to what the CA speaks: works.
    let client = v1
        .client_builder()
        .dialect(Dialect::V1)
        .build()
        .await
        .unwrap();
    assert_eq!(client.dialect(), Dialect::V1);
    let account = v1_account(&client).await;
    assert_eq!(account.dialect(), Dialect::V1);
    let client = v2
        .client_builder()
        .dialect(Dialect::V2)
        .build()
        .await
        .unwrap();
    assert_eq!(client.dialect(), Dialect::V2);

    // Forced to the other: a typed error naming what was found.
    let err = v1
        .client_builder()
        .dialect(Dialect::V2)
        .build()
        .await
        .unwrap_err();
    match &err {
        Error::InvalidResponse { reason, .. } => {
            assert!(reason.contains("newNonce"), "{reason}");
            assert!(reason.contains("new-reg"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let err = v2
        .client_builder()
        .dialect(Dialect::V1)
        .build()
        .await
        .unwrap_err();
    match &err {
        Error::InvalidResponse { reason, .. } => {
            assert!(reason.contains("ACME v1"), "{reason}");
            assert!(reason.contains("newAccount"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_directory_of_neither_dialect_is_a_typed_error_naming_its_keys() {
    for body in [
        json!({"hello": "http://x/a", "meta": {}}),
        // v1's keys next to v2's newNonce: neither.
        json!({"newNonce": "http://x/n", "new-reg": "http://x/r",
               "new-authz": "http://x/a", "new-cert": "http://x/c"}),
        // Half a v1 directory.
        json!({"new-reg": "http://x/r", "new-authz": "http://x/a"}),
    ] {
        let keys: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
        let url = serve_directory(body.to_string()).await;
        // Issue 16, defect 9: plain http is refused unless asked for.
        let refused = Client::builder(&url).build().await.unwrap_err();
        assert!(
            matches!(&refused, Error::InvalidInput(m) if m.contains("Danger::accept_plain_http")),
            "{refused:?}"
        );
        let err = Client::builder(&url)
            .danger(sturdy_acme::Danger::new().accept_plain_http())
            .build()
            .await
            .unwrap_err();
        match &err {
            Error::InvalidResponse { reason, .. } => {
                for key in &keys {
                    assert!(reason.contains(&format!("{key:?}")), "{key} in {reason}");
                }
            }
            other => panic!("{other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// The wire.

fn expected_resource(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::NewAccount => "new-reg",
        Endpoint::Account => "reg",
        Endpoint::NewOrder => "new-authz",
        Endpoint::Authorization => "authz",
        Endpoint::Challenge => "challenge",
        Endpoint::Finalize => "new-cert",
        Endpoint::Revoke => "revoke-cert",
        Endpoint::KeyChange => "key-change",
        other => panic!("no signed v1 request goes to {other}"),
    }
}

fn b64_json(s: &str) -> Value {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn every_v1_request_is_signed_with_alg_jwk_nonce_and_names_its_resource() {
    let ca = v1_ca().await;
    let client = ca.client().await.unwrap();
    let key = AccountKey::generate(KeyAlgorithm::Es256).unwrap();
    let old_jwk = key.jwk().clone();
    let account = client
        .create_account(
            key,
            &AccountOptions::agreeing_to_terms().with_contact("w@example.com"),
        )
        .await
        .unwrap();
    let mut order = account
        .new_order(&NewOrder::for_names(&["wire.example", "www.wire.example"]).unwrap())
        .await
        .unwrap();
    for authz in order.authorizations().await.unwrap() {
        let mut ch = authz.challenge(&ChallengeType::Http01).unwrap();
        ch.respond().await.unwrap();
    }
    order.wait_ready().await.unwrap();
    let cert_key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
    order.finalize(Csr::Key(&cert_key)).await.unwrap();
    let chain = order.certificate().await.unwrap();
    account
        .revoke_certificate(chain.leaf_der(), Some(RevocationReason::Superseded))
        .await
        .unwrap();
    account
        .update_contacts(&["mailto:w2@example.com".into()])
        .await
        .unwrap();
    let new_key = AccountKey::generate(KeyAlgorithm::Es256).unwrap();
    let new_jwk = new_key.jwk().clone();
    let rolled = account.change_key(new_key).await.unwrap();
    rolled.refresh().await.unwrap();
    rolled.deactivate().await.unwrap();

    let recorded = ca.recorded_jws();
    let endpoints: BTreeSet<Endpoint> = recorded.iter().map(|r| r.endpoint).collect();
    assert_eq!(
        endpoints,
        BTreeSet::from([
            Endpoint::NewAccount,
            Endpoint::Account,
            Endpoint::NewOrder,
            Endpoint::Challenge,
            Endpoint::Finalize,
            Endpoint::Revoke,
            Endpoint::KeyChange,
        ]),
        "authorizations and certificates are read with a plain GET, never signed"
    );
    for r in &recorded {
        let keys: Vec<&str> = r
            .protected
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["alg", "jwk", "nonce"], "{r:?}");
        assert_eq!(r.protected["alg"], "ES256");
        let payload = r.payload.as_ref().unwrap_or_else(|| panic!("{r:?}"));
        assert_eq!(payload["resource"], expected_resource(r.endpoint), "{r:?}");
        let jwk = &r.protected["jwk"];
        assert!(*jwk == old_jwk || *jwk == new_jwk, "{r:?}");
    }
    // new-reg carried the contact and the agreement to the directory's terms.
    let new_reg = &recorded[0];
    assert_eq!(new_reg.endpoint, Endpoint::NewAccount);
    let terms = client.directory().meta.terms_of_service.clone().unwrap();
    assert_eq!(
        new_reg.payload,
        Some(
            json!({"resource": "new-reg", "contact": ["mailto:w@example.com"], "agreement": terms})
        )
    );
    // Challenge answers: type and key authorization.
    for r in recorded
        .iter()
        .filter(|r| r.endpoint == Endpoint::Challenge)
    {
        let p = r.payload.as_ref().unwrap();
        assert_eq!(p["type"], "http-01");
        assert!(p["keyAuthorization"].as_str().unwrap().contains('.'), "{p}");
    }
    // key-change: the inner JWS (new key, no nonce, no url) with resource spliced in.
    let kc = recorded
        .iter()
        .find(|r| r.endpoint == Endpoint::KeyChange)
        .unwrap();
    assert_eq!(kc.protected["jwk"], old_jwk);
    let outer = kc.payload.as_ref().unwrap();
    let inner_header = b64_json(outer["protected"].as_str().unwrap());
    assert_eq!(inner_header, json!({"alg": "ES256", "jwk": new_jwk}));
    let inner_payload = b64_json(outer["payload"].as_str().unwrap());
    assert_eq!(
        inner_payload,
        json!({"account": account.url(), "newKey": new_jwk})
    );
    // After the rollover, requests are signed by the new key.
    let last = recorded.last().unwrap();
    assert_eq!(last.endpoint, Endpoint::Account);
    assert_eq!(last.protected["jwk"], new_jwk);
    assert_eq!(
        last.payload,
        Some(json!({"resource": "reg", "status": "deactivated"}))
    );
}

#[tokio::test]
async fn v2_requests_keep_url_and_kid_and_carry_no_resource() {
    let ca = TestCa::start().await.unwrap();
    let client = ca.client().await.unwrap();
    let account = v1_account(&client).await;
    account
        .new_order(&NewOrder::for_names(&["v2.example"]).unwrap())
        .await
        .unwrap();
    let recorded = ca.recorded_jws();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert!(recorded[0].protected.get("jwk").is_some());
    assert_eq!(recorded[1].protected["kid"], account.url());
    for r in &recorded {
        assert!(r.protected.get("url").is_some(), "{r:?}");
        assert!(
            r.payload.as_ref().unwrap().get("resource").is_none(),
            "{r:?}"
        );
    }
}

#[tokio::test]
async fn new_cert_201_with_location_and_link_up_becomes_the_chain() {
    let ca = v1_ca().await;
    let client = ca.client().await.unwrap();
    let account = v1_account(&client).await;
    let mut order = account
        .new_order(&NewOrder::for_names(&["up.example"]).unwrap())
        .await
        .unwrap();
    assert_eq!(order.dialect(), Dialect::V1);
    assert!(order.url().starts_with("urn:sturdy-acme:v1-order:"));
    assert_eq!(order.status(), OrderStatus::Pending);
    assert!(order.state().finalize.ends_with("/acme/new-cert"));
    let authzs = order.authorizations().await.unwrap();
    assert_eq!(authzs.len(), 1);
    assert_eq!(order.state().authorizations, [authzs[0].url().to_owned()]);
    let mut ch = authzs[0].challenge(&ChallengeType::Http01).unwrap();
    assert!(ch.url().contains("/acme/challenge/"), "{}", ch.url());
    // 202 Accepted, body with `uri`: read as the challenge.
    ch.respond().await.unwrap();
    assert_eq!(ch.url(), authzs[0].state().challenges[0].url);
    assert_eq!(order.wait_ready().await.unwrap(), OrderStatus::Ready);

    let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
    let before = ca.ledger().requests_to(Endpoint::Certificate);
    assert_eq!(
        order.finalize(Csr::Key(&key)).await.unwrap(),
        OrderStatus::Valid
    );
    let cert_url = order.state().certificate.clone().unwrap();
    assert!(cert_url.contains("/acme/cert/"), "{cert_url}");
    let chain = order.certificate().await.unwrap();
    assert_eq!(chain.url(), cert_url);
    assert_eq!(chain.certificates_der().len(), 2, "leaf + the `up` issuer");
    let ledger = ca.ledger();
    assert_eq!(
        ledger.requests_to(Endpoint::Certificate) - before,
        1,
        "only the issuer was fetched: the leaf came with the 201"
    );
    assert_eq!(chain.leaf_der(), ledger.certificates[0].leaf_der);
    verify::verify_chain(chain.pem(), &[ca.root_pem()], &["up.example"], &[]);
    // Cached: no second download.
    order.certificate().await.unwrap();
    assert_eq!(ca.ledger().requests_to(Endpoint::Certificate) - before, 1);

    // The order's URL now names the certificate: an order rebuilt from it
    // is valid and downloads the chain (GET the certificate, then `up`).
    let rebuilt_url = order.url().to_owned();
    let mut rebuilt = account.order(&rebuilt_url).await.unwrap();
    assert_eq!(rebuilt.status(), OrderStatus::Valid);
    assert_eq!(rebuilt.identifiers(), order.identifiers());
    let again = rebuilt.certificate().await.unwrap();
    assert_eq!(again.pem(), chain.pem());
}

#[tokio::test]
async fn an_order_rebuilt_from_its_url_continues() {
    let ca = v1_ca().await;
    let client = ca.client().await.unwrap();
    let account = v1_account(&client).await;
    let order = account
        .new_order(&NewOrder::for_names(&["a.resume.example", "b.resume.example"]).unwrap())
        .await
        .unwrap();
    let url = order.url().to_owned();
    // Another process (the issuer's journal) rebuilds it from its URL.
    let mut order = account.order(&url).await.unwrap();
    assert_eq!(order.url(), url);
    assert_eq!(order.status(), OrderStatus::Pending);
    for authz in order.authorizations().await.unwrap() {
        assert_eq!(authz.status(), AuthorizationStatus::Pending);
        authz.challenges()[0].clone().respond().await.unwrap();
    }
    order.wait_ready().await.unwrap();
    let mut order = account.order(&url).await.unwrap();
    assert_eq!(order.status(), OrderStatus::Ready);
    order
        .finalize(Csr::Key(
            &CertificateKey::generate(Default::default()).unwrap(),
        ))
        .await
        .unwrap();
    order.certificate().await.unwrap();
    let err = account
        .order("https://ca.example/acme/order/1")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
}

#[tokio::test]
async fn duplicate_registration_409_is_the_same_account() {
    let ca = v1_ca().await;
    let client = ca.client().await.unwrap();
    let key = AccountKey::generate(KeyAlgorithm::Es256).unwrap();
    let pem = key.to_pkcs8_pem();
    let first = client
        .create_account(key, &AccountOptions::agreeing_to_terms())
        .await
        .unwrap();
    assert!(first.url().contains("/acme/reg/"), "{}", first.url());
    let resource = first.resource().unwrap();
    assert_eq!(resource.terms_of_service_agreed, Some(true));
    let stats = client.request_stats();
    let again = client
        .create_account(
            AccountKey::from_pkcs8_pem(&pem).unwrap(),
            &AccountOptions::agreeing_to_terms(),
        )
        .await
        .unwrap();
    assert_eq!(again.url(), first.url());
    let spent = client.request_stats().since(&stats);
    // new-reg (409 + Location), then the agreement to the registration URL.
    assert_eq!(spent.get(Endpoint::NewAccount), 1, "{spent}");
    assert_eq!(spent.get(Endpoint::Account), 1, "{spent}");
    assert_eq!(
        again.resource().unwrap().extra["agreement"],
        json!(client.directory().meta.terms_of_service)
    );
    // Without agreeing, the 409 alone answers: no further request.
    let stats = client.request_stats();
    let third = client
        .create_account(
            AccountKey::from_pkcs8_pem(&pem).unwrap(),
            &AccountOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(third.url(), first.url());
    assert_eq!(client.request_stats().since(&stats).total(), 1);
}

#[tokio::test]
async fn a_registration_that_did_not_agree_is_refused_typed() {
    let ca = v1_ca().await;
    let client = ca.client().await.unwrap();
    let account = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256).unwrap(),
            &AccountOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        account.resource().unwrap().terms_of_service_agreed,
        Some(false)
    );
    let err = account
        .new_order(&NewOrder::for_names(&["disagree.example"]).unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        err.problem_type(),
        Some(&ProblemType::Unauthorized),
        "{err}"
    );
    assert_eq!(err.status(), Some(403));
    assert!(err.to_string().contains("agree"), "{err}");
}

#[tokio::test]
async fn an_empty_nonce_pool_heads_the_request_url() {
    // The directory's nonce is spent on the first new-reg, whose bare 500
    // carries none: the retry needs a fresh nonce, from HEAD on new-reg.
    let ca = v1_builder()
        .faults(vec![FaultRule::new(
            Endpoint::NewAccount,
            Trigger::Nth(1),
            Fault::Empty500,
        )])
        .start()
        .await
        .unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    let client = ca
        .client_builder()
        .retry_policy(fast_retries(3))
        .on_event(move |e| {
            if let Event::Exchange {
                method: "HEAD",
                url,
                status,
                ..
            } = e
            {
                seen.lock().unwrap().push((url.clone(), *status));
            }
        })
        .build()
        .await
        .unwrap();
    v1_account(&client).await;
    let heads = heads.lock().unwrap().clone();
    let new_reg = client.directory().new_account.clone();
    // Boulder answered HEAD on a POST-only URL with a 405 and a nonce.
    assert_eq!(heads, [(new_reg, Some(405))]);
    assert_eq!(ca.ledger().requests_to(Endpoint::NewNonce), 1);
}

#[tokio::test]
async fn already_revoked_is_the_typed_problem_in_v1_too() {
    let ca = v1_ca().await;
    let client = ca.client().await.unwrap();
    let account = v1_account(&client).await;
    let chain = issue_one(&account, "revoked.example").await;
    account
        .revoke_certificate(chain.leaf_der(), None)
        .await
        .unwrap();
    let err = account
        .revoke_certificate(chain.leaf_der(), None)
        .await
        .unwrap_err();
    assert_eq!(
        err.problem_type(),
        Some(&ProblemType::AlreadyRevoked),
        "{err}"
    );
    assert_eq!(err.status(), Some(409));
}

// ---------------------------------------------------------------------------
// The lost-response trap.

fn v1_builder() -> TestCaBuilder {
    TestCa::builder().dialect(Dialect::V1)
}

fn fast_retries(attempts: u32) -> RetryPolicy {
    let defaults = RetryPolicy::default();
    defaults.with_transient(
        defaults
            .transient()
            .with_max_attempts(attempts)
            .with_base(Duration::from_millis(10))
            .with_max_delay(Duration::from_millis(20))
            .with_jitter(Jitter::None),
    )
}

async fn issue_one(account: &sturdy_acme::Account, name: &str) -> sturdy_acme::CertificateChain {
    let mut order = ready_order(account, name).await;
    let key = CertificateKey::generate(Default::default()).unwrap();
    order.finalize(Csr::Key(&key)).await.unwrap();
    order.certificate().await.unwrap()
}

async fn trap_setup(
    trigger: Trigger,
    finder: bool,
    policy: RetryPolicy,
) -> (Arc<TestCa>, Client, Option<Arc<LedgerFinder>>) {
    let ca = Arc::new(
        v1_builder()
            .faults(vec![FaultRule::new(
                Endpoint::Finalize,
                trigger,
                Fault::DropAfterCommit,
            )])
            .start()
            .await
            .unwrap(),
    );
    let finder = finder.then(|| Arc::new(LedgerFinder::new(&ca)));
    let mut builder = ca
        .client_builder()
        .retry_policy(policy)
        .new_cert_budget(3, Duration::from_secs(7 * 24 * 3600))
        // The budget is what these tests pin: repeats allowed up to it.
        .new_cert_blind_repeats(10);
    if let Some(f) = &finder {
        builder = builder.certificate_finder(f.clone());
    }
    (ca.clone(), builder.build().await.unwrap(), finder)
}

#[tokio::test]
async fn a_lost_new_cert_answer_is_recovered_by_the_finder_without_a_second_new_cert() {
    let (ca, client, finder) = trap_setup(Trigger::Nth(1), true, fast_retries(5)).await;
    let account = v1_account(&client).await;
    let mut order = ready_order(&account, "lost.example").await;
    let key = CertificateKey::generate(Default::default()).unwrap();
    assert_eq!(
        order.finalize(Csr::Key(&key)).await.unwrap(),
        OrderStatus::Valid
    );
    let chain = order.certificate().await.unwrap();
    let ledger = ca.ledger();
    assert_eq!(
        ledger.requests_to(Endpoint::Finalize),
        1,
        "no second new-cert"
    );
    assert_eq!(ledger.issued_for(&["lost.example"]), 1);
    assert_eq!(chain.leaf_der(), ledger.certificates[0].leaf_der);
    assert_eq!(finder.unwrap().calls.load(Ordering::SeqCst), 1);
    assert!(order.url().starts_with("urn:sturdy-acme:v1-order:"));
}

#[tokio::test]
async fn a_later_finalize_asks_the_finder_before_repeating() {
    // No retries: the first finalize gives up on the lost answer, after
    // asking the finder once (it finds nothing: the log lags). The caller's
    // second finalize asks again before sending anything, and finds it.
    let ca = Arc::new(
        v1_builder()
            .faults(vec![FaultRule::new(
                Endpoint::Finalize,
                Trigger::Nth(1),
                Fault::DropAfterCommit,
            )])
            .start()
            .await
            .unwrap(),
    );
    let lagging = Arc::new(LaggingFinder {
        inner: Arc::new(LedgerFinder::new(&ca)),
        lag: AtomicUsize::new(1),
    });
    let client = ca
        .client_builder()
        .retry_policy(RetryPolicy::no_retries())
        .certificate_finder(lagging.clone())
        .build()
        .await
        .unwrap();
    let account = v1_account(&client).await;
    let mut order = ready_order(&account, "later.example").await;
    let key = CertificateKey::generate(Default::default()).unwrap();
    let err = order.finalize(Csr::Key(&key)).await.unwrap_err();
    assert_eq!(err.class(), sturdy_acme::ErrorClass::Transient, "{err:?}");
    assert_eq!(
        lagging.lag.load(Ordering::SeqCst),
        0,
        "asked before giving up"
    );
    assert_eq!(ca.ledger().requests_to(Endpoint::Finalize), 1);
    // Again: the finder now sees it; nothing is sent.
    assert_eq!(
        order.finalize(Csr::Key(&key)).await.unwrap(),
        OrderStatus::Valid
    );
    assert_eq!(lagging.inner.calls.load(Ordering::SeqCst), 1);
    assert_eq!(ca.ledger().requests_to(Endpoint::Finalize), 1);
    assert_eq!(ca.ledger().issued_for(&["later.example"]), 1);
    assert_eq!(
        order.certificate().await.unwrap().leaf_der(),
        ca.ledger().certificates[0].leaf_der
    );
}

/// Finds nothing the first `lag` times, then asks `inner`.
struct LaggingFinder {
    inner: Arc<LedgerFinder>,
    lag: AtomicUsize,
}

impl CertificateFinder for LaggingFinder {
    fn find<'a>(
        &'a self,
        identifiers: &'a [Identifier],
        public_key_spki_der: &'a [u8],
        issued_after: SystemTime,
    ) -> FindFuture<'a> {
        if self
            .lag
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Box::pin(async { Ok(None) });
        }
        self.inner
            .find(identifiers, public_key_spki_der, issued_after)
    }
}

#[tokio::test]
async fn without_a_finder_repeats_stop_at_the_budget() {
    let (ca, client, _) = trap_setup(Trigger::Always, false, fast_retries(10)).await;
    let account = v1_account(&client).await;
    let mut order = ready_order(&account, "budget.example").await;
    let key = CertificateKey::generate(Default::default()).unwrap();
    let err = order.finalize(Csr::Key(&key)).await.unwrap_err();
    match &err {
        Error::RateLimitedLocally {
            limit,
            scope,
            reason,
            retry_at,
        } => {
            assert_eq!(
                limit,
                "v1 new-cert budget (duplicate certificates per exact set)"
            );
            assert_eq!(*scope, RateLimitScope::ExactSet);
            assert!(reason.contains("3 new-cert requests"), "{reason}");
            assert!(
                reason.contains("may mean the certificate exists"),
                "{reason}"
            );
            assert!(*retry_at > SystemTime::now() + Duration::from_secs(6 * 24 * 3600));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.is_rate_limited());
    let ledger = ca.ledger();
    assert_eq!(
        ledger.requests_to(Endpoint::Finalize),
        3,
        "never more than the budget"
    );
    // The CA committed every one of them: the duplicates the budget bounds.
    assert_eq!(ledger.issued_for(&["budget.example"]), 3);

    // Later calls, on this order or a new one for the same set, are
    // refused without a request; another set has its own budget.
    let err = order.finalize(Csr::Key(&key)).await.unwrap_err();
    assert!(matches!(err, Error::RateLimitedLocally { .. }), "{err:?}");
    let mut again = ready_order(&account, "budget.example").await;
    let err = again.finalize(Csr::Key(&key)).await.unwrap_err();
    assert!(matches!(err, Error::RateLimitedLocally { .. }), "{err:?}");
    assert_eq!(ca.ledger().requests_to(Endpoint::Finalize), 3);
    ca.set_faults(Vec::new());
    issue_one(&account, "other.example").await;
    assert_eq!(ca.ledger().requests_to(Endpoint::Finalize), 4);
}

#[tokio::test]
async fn a_finder_that_finds_nothing_lets_the_repeat_through() {
    // A finder that finds nothing (a log that never shows the
    // certificate): the client repeats, within the budget, and the CA
    // issues a duplicate. The finder bounds nothing; the budget does.
    struct Nothing(AtomicUsize);
    impl CertificateFinder for Nothing {
        fn find<'a>(&'a self, _: &'a [Identifier], _: &'a [u8], _: SystemTime) -> FindFuture<'a> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(None) })
        }
    }
    let ca = v1_builder()
        .faults(vec![FaultRule::new(
            Endpoint::Finalize,
            Trigger::Nth(1),
            Fault::DropAfterCommit,
        )])
        .start()
        .await
        .unwrap();
    let nothing = Arc::new(Nothing(AtomicUsize::new(0)));
    let client = ca
        .client_builder()
        .retry_policy(fast_retries(5))
        .certificate_finder(nothing.clone())
        .new_cert_blind_repeats(1)
        .build()
        .await
        .unwrap();
    let account = v1_account(&client).await;
    let mut order = ready_order(&account, "twice.example").await;
    order
        .finalize(Csr::Key(
            &CertificateKey::generate(Default::default()).unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(
        nothing.0.load(Ordering::SeqCst),
        1,
        "asked before the repeat"
    );
    assert_eq!(ca.ledger().requests_to(Endpoint::Finalize), 2);
    assert_eq!(ca.ledger().issued_for(&["twice.example"]), 2);
}

/// Issue 16, defect 3: by default a new-cert whose answer was lost is
/// never repeated blind: a typed error that says why, one request.
#[tokio::test]
async fn a_lost_new_cert_is_not_repeated_blind_by_default() {
    let ca = v1_builder()
        .faults(vec![FaultRule::new(
            Endpoint::Finalize,
            Trigger::Always,
            Fault::DropAfterCommit,
        )])
        .start()
        .await
        .unwrap();
    let client = ca
        .client_builder()
        .retry_policy(fast_retries(5))
        .build()
        .await
        .unwrap();
    let account = v1_account(&client).await;
    let mut order = ready_order(&account, "once.example").await;
    let key = CertificateKey::generate(Default::default()).unwrap();
    let err = order.finalize(Csr::Key(&key)).await.unwrap_err();
    assert!(
        matches!(&err, Error::OutcomeUnknown { reason, .. } if reason.contains("new_cert_blind_repeats")),
        "{err:?}"
    );
    let err = order.finalize(Csr::Key(&key)).await.unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err:?}");
    assert_eq!(ca.ledger().requests_to(Endpoint::Finalize), 1);
    assert_eq!(ca.ledger().issued_for(&["once.example"]), 1);
}

/// Issue 16, defect 3: a new-cert answered with success whose body is
/// broken (truncated, not a certificate, no Location) was issued: it is
/// never sent again; a certificate body that is unusable is fetched from
/// its Location instead.
#[tokio::test]
async fn a_committed_new_cert_with_a_broken_answer_is_never_sent_again() {
    use sturdy_acme_testca::CannedAnswer;
    for (i, fault) in [
        Fault::TruncatedAfterCommit,
        Fault::CannedAfterCommit(CannedAnswer::new(201, "application/pkix-cert", "garbage")),
        Fault::InvalidJsonAfterCommit,
    ]
    .into_iter()
    .enumerate()
    {
        let ca = v1_builder()
            .faults(vec![FaultRule::new(
                Endpoint::Finalize,
                Trigger::Always,
                fault.clone(),
            )])
            .start()
            .await
            .unwrap();
        let client = ca
            .client_builder()
            .retry_policy(fast_retries(5))
            .new_cert_blind_repeats(10)
            .build()
            .await
            .unwrap();
        let account = v1_account(&client).await;
        let name = format!("broken{i}.example");
        let mut order = ready_order(&account, &name).await;
        let key = CertificateKey::generate(Default::default()).unwrap();
        let result = order.finalize(Csr::Key(&key)).await;
        assert_eq!(
            ca.ledger().requests_to(Endpoint::Finalize),
            1,
            "{fault:?}: {result:?}"
        );
        assert_eq!(ca.ledger().issued_for(&[name.as_str()]), 1);
        if let Err(e) = &result {
            assert!(
                matches!(e, Error::ProtocolViolation { reason, .. } if reason.contains("issued")),
                "{fault:?}: {e:?}"
            );
        }
    }
}

#[tokio::test]
async fn new_cert_has_its_own_longer_timeout() {
    // Every other request must answer within 300 ms; new-cert takes 1 s.
    let ca = v1_builder()
        .faults(vec![FaultRule::new(
            Endpoint::Finalize,
            Trigger::Nth(1),
            Fault::SlowAfterCommit { delay_ms: 1000 },
        )])
        .start()
        .await
        .unwrap();
    let client = ca
        .client_builder()
        .timeout(Duration::from_millis(300))
        .new_cert_timeout(Duration::from_secs(10))
        .retry_policy(RetryPolicy::no_retries())
        .build()
        .await
        .unwrap();
    let account = v1_account(&client).await;
    let mut order = ready_order(&account, "slow.example").await;
    order
        .finalize(Csr::Key(
            &CertificateKey::generate(Default::default()).unwrap(),
        ))
        .await
        .expect("new-cert waited past the general timeout");
    assert_eq!(ca.ledger().requests_to(Endpoint::Finalize), 1);

    // And it is a timeout of its own: shorter than the answer, it fails.
    let ca = v1_builder()
        .faults(vec![FaultRule::new(
            Endpoint::Finalize,
            Trigger::Nth(1),
            Fault::SlowAfterCommit { delay_ms: 2000 },
        )])
        .start()
        .await
        .unwrap();
    let client = ca
        .client_builder()
        .new_cert_timeout(Duration::from_millis(300))
        .retry_policy(RetryPolicy::no_retries())
        .build()
        .await
        .unwrap();
    let account = v1_account(&client).await;
    let mut order = ready_order(&account, "slow.example").await;
    let err = order
        .finalize(Csr::Key(
            &CertificateKey::generate(Default::default()).unwrap(),
        ))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn a_caller_csr_is_read_for_the_budget_and_the_finder() {
    let (ca, client, finder) = trap_setup(Trigger::Nth(1), true, fast_retries(5)).await;
    let account = v1_account(&client).await;
    let mut order = ready_order(&account, "der.example").await;
    let key = CertificateKey::generate(Default::default()).unwrap();
    let der = key
        .csr_der(&[Identifier::dns("der.example").unwrap()])
        .unwrap();
    order.finalize(Csr::Der(&der)).await.unwrap();
    assert_eq!(ca.ledger().requests_to(Endpoint::Finalize), 1);
    assert_eq!(finder.unwrap().calls.load(Ordering::SeqCst), 1);
    let chain = order.certificate().await.unwrap();
    assert_eq!(spki_of(chain.leaf_der()), key.public_key_der());
}

// ---------------------------------------------------------------------------
// The issuer (journal, stored certificates) on v1, unchanged.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issuer_works_against_v1() {
    use sturdy_acme::CertificateSource;
    use sturdy_acme::solver::http01::Http01Solver;
    use sturdy_acme::store::FileStore;
    let ca = v1_ca().await;
    let dir = std::env::temp_dir().join(format!("sturdy-v1-issuer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let client = ca.client().await.unwrap();
    let issuer = sturdy_acme::Issuer::builder(client, FileStore::open(&dir).unwrap())
        .solver(Arc::new(Http01Solver::unserved()))
        .build();
    let names = ["issuer.v1.example", "www.issuer.v1.example"];
    let first = issuer
        .ensure(&names, &sturdy_acme::EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(first.source, CertificateSource::New);
    let again = issuer
        .ensure(&names, &sturdy_acme::EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(again.source, CertificateSource::Stored);
    assert_eq!(ca.ledger().issued_for(&names), 1);
    verify::verify_chain(&first.certificate.chain_pem, &[ca.root_pem()], &names, &[]);
    std::fs::remove_dir_all(&dir).unwrap();
}
