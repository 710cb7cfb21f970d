//! The shared suite against the embedded test CA (real validation of all
//! three challenge types on loopback), plus the rejections a real CA makes,
//! which the embedded CA must make too.

use crate::common;
use sturdy_acme_test_support::shared_suite;

use std::sync::Arc;

use common::embedded::{EmbeddedV2, free_port};
use common::suite::{self, AcmeServer, ServerOptions, Solvers, issue};
use common::verify;
use serde_json::{Value, json};
use sturdy_acme::{
    AccountKey, CertificateKey, CertificateKeyType, ChallengeType, Csr, Endpoint, Identifier,
    KeyAlgorithm, NewOrder, OrderStatus, ProblemType,
};
use sturdy_acme_testca::{StaticDns, TestCa};

shared_suite!(EmbeddedV2);

// ---------------------------------------------------------------------------
// Rejections real CAs make. Raw requests are built by hand here, because the
// crate's client never sends them.

/// A hand-rolled signed POST for rejection tests.
struct Raw {
    http: reqwest::Client,
    directory: Value,
}

impl Raw {
    async fn new(ca: &TestCa) -> Self {
        let http = common::http_client_trusting(&ca.root_pem());
        let directory = common::get_json(&http, &ca.directory_url()).await;
        Self { http, directory }
    }

    fn url(&self, name: &str) -> String {
        self.directory[name].as_str().unwrap().to_owned()
    }

    async fn nonce(&self) -> String {
        let r = self.http.head(self.url("newNonce")).send().await.unwrap();
        r.headers()["replay-nonce"].to_str().unwrap().to_owned()
    }

    async fn post(&self, url: &str, body: &Value, content_type: &str) -> (u16, Value) {
        let r = self
            .http
            .post(url)
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn b64(data: impl AsRef<[u8]>) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Signs like the crate does, but with any header the test wants.
fn jws(key: &AccountKey, header: Value, payload: &str) -> Value {
    let protected = b64(header.to_string());
    let payload = b64(payload);
    let sig = sign(key, format!("{protected}.{payload}").as_bytes());
    json!({"protected": protected, "payload": payload, "signature": b64(sig)})
}

fn sign(key: &AccountKey, msg: &[u8]) -> Vec<u8> {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.pkcs8_der(), &rng).unwrap();
    pair.sign(&rng, msg).unwrap().as_ref().to_vec()
}

fn problem_type(body: &Value) -> &str {
    body["type"].as_str().unwrap_or("")
}

#[tokio::test]
async fn rejects_what_real_cas_reject_in_jws() {
    let ca = TestCa::start().await.unwrap();
    let raw = Raw::new(&ca).await;
    let key = AccountKey::generate(KeyAlgorithm::Es256).unwrap();
    let new_account = raw.url("newAccount");
    let payload = r#"{"termsOfServiceAgreed":true}"#;
    let header =
        |nonce: &str, url: &str| json!({"alg":"ES256","jwk":key.jwk(),"nonce":nonce,"url":url});

    // A good request works, and its nonce cannot be used again.
    let nonce = raw.nonce().await;
    let body = jws(&key, header(&nonce, &new_account), payload);
    let (status, _) = raw.post(&new_account, &body, "application/jose+json").await;
    assert_eq!(status, 201);
    let (status, p) = raw.post(&new_account, &body, "application/jose+json").await;
    assert_eq!(
        (status, problem_type(&p)),
        (400, "urn:ietf:params:acme:error:badNonce"),
        "{p}"
    );

    // Wrong url.
    let nonce = raw.nonce().await;
    let body = jws(&key, header(&nonce, "https://127.0.0.1/elsewhere"), payload);
    let (status, p) = raw.post(&new_account, &body, "application/jose+json").await;
    assert_eq!(
        (status, problem_type(&p)),
        (400, "urn:ietf:params:acme:error:malformed"),
        "{p}"
    );
    assert!(p["detail"].as_str().unwrap().contains("url"), "{p}");

    // Bad signature.
    let nonce = raw.nonce().await;
    let mut body = jws(&key, header(&nonce, &new_account), payload);
    let other = AccountKey::generate(KeyAlgorithm::Es256).unwrap();
    let protected = body["protected"].as_str().unwrap().to_owned();
    let payload_b64 = body["payload"].as_str().unwrap().to_owned();
    body["signature"] = json!(b64(sign(
        &other,
        format!("{protected}.{payload_b64}").as_bytes()
    )));
    let (status, p) = raw.post(&new_account, &body, "application/jose+json").await;
    assert_eq!(status, 400, "{p}");
    assert_eq!(
        problem_type(&p),
        "urn:ietf:params:acme:error:malformed",
        "{p}"
    );

    // kid and jwk together; kid on newAccount; jwk where kid is required.
    let nonce = raw.nonce().await;
    let both = json!({"alg":"ES256","jwk":key.jwk(),"kid":"x","nonce":nonce,"url":new_account});
    let (status, p) = raw
        .post(
            &new_account,
            &jws(&key, both, payload),
            "application/jose+json",
        )
        .await;
    assert_eq!(
        (status, problem_type(&p)),
        (400, "urn:ietf:params:acme:error:malformed"),
        "{p}"
    );
    let nonce = raw.nonce().await;
    let kid = json!({"alg":"ES256","kid":format!("{}/acme/acct/0", ca.directory_url().trim_end_matches("/dir")),"nonce":nonce,"url":new_account});
    let (status, p) = raw
        .post(
            &new_account,
            &jws(&key, kid, payload),
            "application/jose+json",
        )
        .await;
    assert_eq!(
        (status, problem_type(&p)),
        (400, "urn:ietf:params:acme:error:malformed"),
        "{p}"
    );
    let new_order = raw.url("newOrder");
    let nonce = raw.nonce().await;
    let body = jws(
        &key,
        header(&nonce, &new_order),
        r#"{"identifiers":[{"type":"dns","value":"a.example"}]}"#,
    );
    let (status, p) = raw.post(&new_order, &body, "application/jose+json").await;
    assert_eq!(
        (status, problem_type(&p)),
        (400, "urn:ietf:params:acme:error:malformed"),
        "{p}"
    );

    // Unknown kid.
    let nonce = raw.nonce().await;
    let kid = json!({"alg":"ES256","kid":format!("{}/acme/acct/99", ca.directory_url().trim_end_matches("/dir")),"nonce":nonce,"url":new_order});
    let (status, p) = raw
        .post(&new_order, &jws(&key, kid, "{}"), "application/jose+json")
        .await;
    assert_eq!(
        (status, problem_type(&p)),
        (400, "urn:ietf:params:acme:error:accountDoesNotExist"),
        "{p}"
    );

    // Wrong Content-Type (Pebble: 415), missing nonce, unsupported alg.
    let nonce = raw.nonce().await;
    let body = jws(&key, header(&nonce, &new_account), payload);
    let (status, p) = raw.post(&new_account, &body, "application/json").await;
    assert_eq!(
        (status, problem_type(&p)),
        (415, "urn:ietf:params:acme:error:malformed"),
        "{p}"
    );
    let body = jws(
        &key,
        json!({"alg":"ES256","jwk":key.jwk(),"url":new_account}),
        payload,
    );
    let (status, p) = raw.post(&new_account, &body, "application/jose+json").await;
    assert_eq!(
        (status, problem_type(&p)),
        (400, "urn:ietf:params:acme:error:badNonce"),
        "{p}"
    );
    let nonce = raw.nonce().await;
    let body = jws(
        &key,
        json!({"alg":"HS256","jwk":key.jwk(),"nonce":nonce,"url":new_account}),
        payload,
    );
    let (status, p) = raw.post(&new_account, &body, "application/jose+json").await;
    assert_eq!(
        (status, problem_type(&p)),
        (400, "urn:ietf:params:acme:error:badSignatureAlgorithm"),
        "{p}"
    );

    // Garbage bodies get a problem, never a crash.
    for garbage in [
        json!("x"),
        json!({"protected": 1}),
        json!({"protected":"!!","payload":"","signature":""}),
    ] {
        let (status, p) = raw
            .post(&new_account, &garbage, "application/jose+json")
            .await;
        assert_eq!(
            (status, problem_type(&p)),
            (400, "urn:ietf:params:acme:error:malformed"),
            "{p}"
        );
    }

    // A plain GET on a resource is refused: POST-as-GET only.
    let r = raw.http.get(&new_order).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
}

#[tokio::test]
async fn finalize_rules_not_ready_extra_names_twice() {
    let ca = TestCa::builder()
        .validation(sturdy_acme_testca::ValidationMode::Real {
            http_port: free_port(),
            tls_port: free_port(),
            dns: Arc::new(StaticDns::new()),
        })
        .start()
        .await
        .unwrap();
    let client = ca.client().await.unwrap();
    let account = suite::account(&client, KeyAlgorithm::Es256).await;
    let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();

    // Finalize before ready: 403 orderNotReady (the client refuses locally;
    // force it by sending our own CSR through a fresh order object's state).
    let mut order = account
        .new_order(&NewOrder::for_names(&["fin.example.com"]).unwrap())
        .await
        .unwrap();
    assert_eq!(order.status(), OrderStatus::Pending);
    let err = order.finalize(Csr::Key(&key)).await.unwrap_err();
    assert!(matches!(err, sturdy_acme::Error::InvalidInput(_)), "{err}");
    let raw = Raw::new(&ca).await;
    let acct_key = AccountKey::from_pkcs8_der(account.key().pkcs8_der()).unwrap();
    let finalize_url = order.state().finalize.clone();
    let csr = key.csr_der(order.identifiers()).unwrap();
    let nonce = raw.nonce().await;
    let body = jws(
        &acct_key,
        json!({"alg":"ES256","kid":account.url(),"nonce":nonce,"url":finalize_url}),
        &json!({"csr": b64(&csr)}).to_string(),
    );
    let (status, p) = raw
        .post(&finalize_url, &body, "application/jose+json")
        .await;
    assert_eq!(
        (status, problem_type(&p)),
        (403, "urn:ietf:params:acme:error:orderNotReady"),
        "{p}"
    );
}

#[tokio::test]
async fn csr_with_extra_names_and_second_finalize_are_refused() {
    let ca = TestCa::start().await.unwrap();
    let client = ca.client().await.unwrap();
    let account = suite::account(&client, KeyAlgorithm::Es256).await;
    let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
    let mut order = account
        .new_order(&NewOrder::for_names(&["csr.example.com"]).unwrap())
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

    let extra = key
        .csr_der(&[
            Identifier::dns("csr.example.com").unwrap(),
            Identifier::dns("extra.example.com").unwrap(),
        ])
        .unwrap();
    let err = order.finalize(Csr::Der(&extra)).await.unwrap_err();
    assert_eq!(err.problem_type(), Some(&ProblemType::BadCsr), "{err}");

    // The account key as certificate key.
    let acct_as_cert = CertificateKey::from_pkcs8_der(account.key().pkcs8_der()).unwrap();
    let same = acct_as_cert.csr_der(order.identifiers()).unwrap();
    let err = order.finalize(Csr::Der(&same)).await.unwrap_err();
    assert_eq!(err.problem_type(), Some(&ProblemType::BadCsr), "{err}");

    assert_eq!(
        order.finalize(Csr::Key(&key)).await.unwrap(),
        OrderStatus::Valid
    );
    let chain = order.certificate().await.unwrap();
    verify::verify_chain(chain.pem(), &[ca.root_pem()], &["csr.example.com"], &[]);

    // A second finalize: the order is valid, not ready.
    let raw = Raw::new(&ca).await;
    let acct_key = AccountKey::from_pkcs8_der(account.key().pkcs8_der()).unwrap();
    let url = order.state().finalize.clone();
    let csr = key.csr_der(order.identifiers()).unwrap();
    let nonce = raw.nonce().await;
    let body = jws(
        &acct_key,
        json!({"alg":"ES256","kid":account.url(),"nonce":nonce,"url":url}),
        &json!({"csr": b64(&csr)}).to_string(),
    );
    let (status, p) = raw.post(&url, &body, "application/jose+json").await;
    assert_eq!(
        (status, problem_type(&p)),
        (403, "urn:ietf:params:acme:error:orderNotReady"),
        "{p}"
    );
    assert_eq!(ca.ledger().issued_for(&["csr.example.com"]), 1);
}

#[tokio::test]
async fn pending_orders_are_reused_and_processing_is_polled() {
    let ca = TestCa::builder()
        .finalize_processing(std::time::Duration::from_millis(200))
        .poll_retry_after(1)
        .start()
        .await
        .unwrap();
    let client = ca.client().await.unwrap();
    let account = suite::account(&client, KeyAlgorithm::Es256).await;
    let first = account
        .new_order(&NewOrder::for_names(&["reuse.example.com"]).unwrap())
        .await
        .unwrap();
    let second = account
        .new_order(&NewOrder::for_names(&["REUSE.example.com."]).unwrap())
        .await
        .unwrap();
    assert_eq!(
        first.url(),
        second.url(),
        "Boulder hands back the pending order"
    );

    let mut order = second;
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
    assert_eq!(
        order.finalize(Csr::Key(&key)).await.unwrap(),
        OrderStatus::Processing
    );
    let before = client.request_stats().get(Endpoint::Order);
    order.certificate().await.unwrap();
    let polls = client.request_stats().get(Endpoint::Order) - before;
    // Retry-After: 1 is honoured: one poll (after ~1 s) sees it valid.
    assert_eq!(polls, 1, "polls while processing");
    assert_eq!(ca.ledger().issued_for(&["reuse.example.com"]), 1);
}

#[tokio::test]
async fn ledger_counts_requests_and_issuances() {
    let server = EmbeddedV2::start(ServerOptions::default()).await.unwrap();
    let ca = &server.ca;
    let client = ca.client().await.unwrap();
    let account = suite::account(&client, KeyAlgorithm::Es256).await;
    let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
    let solvers = Solvers::new(&server, &ChallengeType::Dns01).await;
    issue(
        &account,
        &["l1.example.com", "l2.example.com"],
        &ChallengeType::Dns01,
        &solvers,
        &key,
    )
    .await;
    let ledger = ca.ledger();
    assert_eq!(ledger.issued_for(&["L2.example.com", "l1.example.com"]), 1);
    assert_eq!(ledger.issued_for(&["l1.example.com"]), 0);
    assert_eq!(
        ledger.requests_to(Endpoint::NewNonce),
        client.request_stats().get(Endpoint::NewNonce)
    );
    assert_eq!(ledger.requests_to(Endpoint::Finalize), 1);
    assert_eq!(ledger.requests_to(Endpoint::NewOrder), 1);
}
