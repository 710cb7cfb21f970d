//! Issue 27, defects 11–16 (the test CA's part): the embedded CA, which
//! other projects' tests trust to behave like Let's Encrypt, answers as
//! Boulder does: revocation by an account holding authorizations (RFC 8555
//! §7.6), what Let's Encrypt no longer issues (clientAuth, Must-Staple, IP
//! addresses outside `shortlived`, a notBefore that is not backdated),
//! `--ari-renew-after` windows, EAB with HS384/HS512, HEAD on renewalInfo, a
//! failed CAA recheck failing the order, and `replaces` refused in
//! Boulder's words (`alreadyReplaced` and the rest).
//!
//! Requests the crate's client would never send (a `replaces` it would
//! drop after `alreadyReplaced`, a Must-Staple CSR, an HS384 binding) are
//! built by hand.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sturdy_acme::{
    Account, AccountKey, AccountOptions, AuthorizationStatus, CertId, CertificateChain,
    CertificateKey, ChallengeType, Csr, Error, KeyAlgorithm, NewOrder, Order, OrderStatus,
    ProblemType, RetryPolicy, RevocationReason,
};
use sturdy_acme_testca::{CaaPolicy, TestCa};

use crate::common;

/// `Could not validate ARI 'replaces' field :: `, Boulder's prefix.
const REPLACES: &str = "Could not validate ARI 'replaces' field :: ";

fn b64(data: impl AsRef<[u8]>) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A serial as Boulder's messages spell it: 36 hex digits.
fn boulder_serial(chain: &CertificateChain) -> String {
    format!(
        "{:0>36}",
        chain.serial_hex().unwrap().trim_start_matches('0')
    )
}

fn leaf_der(chain: &CertificateChain) -> Vec<u8> {
    common::pem_certs(chain.pem()).remove(0).to_vec()
}

fn cert_id(chain: &CertificateChain) -> CertId {
    CertId::from_pem(chain.pem()).unwrap()
}

/// An account through the crate's client (no retries: every answer is the
/// CA's first).
async fn account_at(ca: &TestCa) -> Account {
    let client = ca
        .client_builder()
        .retry_policy(RetryPolicy::no_retries())
        .build()
        .await
        .unwrap();
    common::suite::account(&client, KeyAlgorithm::Es256).await
}

/// Orders `names` and answers its challenges: the order, ready.
async fn ready_order(account: &Account, order: &NewOrder) -> Result<Order, Error> {
    let mut order = account.new_order(order).await?;
    for authz in order.authorizations().await? {
        if authz.status() == AuthorizationStatus::Pending {
            authz
                .challenge(&ChallengeType::Http01)
                .or_else(|| authz.challenge(&ChallengeType::Dns01))
                .expect("a challenge")
                .respond()
                .await?;
        }
    }
    order.wait_ready().await?;
    Ok(order)
}

/// Orders, answers, finalizes and downloads a certificate for `names`.
async fn issue(account: &Account, names: &[&str]) -> Result<CertificateChain, Error> {
    let mut order = ready_order(account, &NewOrder::for_names(names)?).await?;
    order
        .finalize(Csr::Key(&CertificateKey::generate(Default::default())?))
        .await?;
    order.certificate().await
}

/// A DER CSR for `names` (P-256), with OCSP Must-Staple if asked.
fn csr_der(names: &[&str], must_staple: bool) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    if must_staple {
        // RFC 7633 id-pe-tlsfeature, SEQUENCE { INTEGER 5 (status_request) }.
        params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 24],
            vec![0x30, 0x03, 0x02, 0x01, 0x05],
        )];
    }
    params.serialize_request(&key).unwrap().der().to_vec()
}

/// The problem of an error, for assertions: status, type, detail.
fn problem_of(err: &Error) -> (Option<u16>, Option<ProblemType>, String) {
    (
        err.status(),
        err.problem_type().cloned(),
        err.problem()
            .and_then(|p| p.detail.clone())
            .unwrap_or_default(),
    )
}

/// An account whose signed requests a test builds by hand (kid-signed,
/// ES256), with the same account in the crate's client.
struct Raw {
    http: reqwest::Client,
    directory: Value,
    key: AccountKey,
    kid: String,
    account: Account,
}

/// A raw answer: status, headers, body as JSON (`Null` if none).
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn problem(&self) -> (u16, &str, &str) {
        (
            self.status,
            self.body["type"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("urn:ietf:params:acme:error:"),
            self.body["detail"].as_str().unwrap_or_default(),
        )
    }
}

impl Raw {
    async fn new(ca: &TestCa) -> Self {
        let http = common::http_client_trusting(&ca.root_pem());
        let directory = common::get_json(&http, &ca.directory_url()).await;
        let key = AccountKey::generate(KeyAlgorithm::Es256).unwrap();
        let client = ca
            .client_builder()
            .retry_policy(RetryPolicy::no_retries())
            .build()
            .await
            .unwrap();
        let account = client
            .create_account(
                AccountKey::from_pkcs8_der(key.pkcs8_der()).unwrap(),
                &AccountOptions::agreeing_to_terms(),
            )
            .await
            .unwrap();
        Self {
            http,
            directory,
            key,
            kid: account.url().to_owned(),
            account,
        }
    }

    fn url(&self, name: &str) -> String {
        self.directory[name].as_str().unwrap().to_owned()
    }

    async fn nonce(&self) -> String {
        let r = self.http.head(self.url("newNonce")).send().await.unwrap();
        r.headers()["replay-nonce"].to_str().unwrap().to_owned()
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, self.key.pkcs8_der(), &rng)
                .unwrap();
        pair.sign(&rng, msg).unwrap().as_ref().to_vec()
    }

    /// POSTs `payload` signed with `header` (nonce and url added).
    async fn post_with(&self, url: &str, mut header: Value, payload: &Value) -> Answer {
        header["nonce"] = json!(self.nonce().await);
        header["url"] = json!(url);
        let protected = b64(header.to_string());
        // `Null`: POST-as-GET, an empty payload.
        let payload = match payload {
            Value::Null => String::new(),
            p => b64(p.to_string()),
        };
        let signature = b64(self.sign(format!("{protected}.{payload}").as_bytes()));
        let r = self
            .http
            .post(url)
            .header("content-type", "application/jose+json")
            .body(
                json!({"protected": protected, "payload": payload, "signature": signature})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// A kid-signed POST.
    async fn post(&self, url: &str, payload: &Value) -> Answer {
        self.post_with(url, json!({"alg": "ES256", "kid": self.kid}), payload)
            .await
    }

    /// newOrder for DNS `names`, replacing `replaces`.
    async fn new_order(&self, names: &[&str], replaces: &str) -> Answer {
        let identifiers: Vec<Value> = names
            .iter()
            .map(|n| json!({"type": "dns", "value": n}))
            .collect();
        self.post(
            &self.url("newOrder"),
            &json!({"identifiers": identifiers, "replaces": replaces}),
        )
        .await
    }
}

/// Defect 13, RFC 8555 §7.6 (a MUST), as Boulder: an account holding valid
/// authorizations for every name of another account's certificate may
/// revoke it (recorded as cessationOfOperation, whatever it asked); an
/// account without them is refused in Boulder's words.
#[tokio::test]
async fn an_account_holding_authorizations_for_every_name_may_revoke_the_certificate() {
    let ca = TestCa::start().await.unwrap();
    let subscriber = account_at(&ca).await;
    let names = ["rev.example", "www.rev.example"];
    let chain = issue(&subscriber, &names).await.unwrap();
    let der = leaf_der(&chain);
    // Another account validates both names (its order is left ready).
    let holder = account_at(&ca).await;
    ready_order(&holder, &NewOrder::for_names(&names).unwrap())
        .await
        .unwrap();
    // One validating only one of them is not enough.
    let partial = account_at(&ca).await;
    ready_order(&partial, &NewOrder::for_names(&["rev.example"]).unwrap())
        .await
        .unwrap();
    let refused = format!(
        "Unable to revoke :: requester does not control all identifiers in cert with serial {:?}",
        boulder_serial(&chain)
    );
    for stranger in [&partial, &account_at(&ca).await] {
        let err = stranger
            .revoke_certificate(&der, Some(RevocationReason::KeyCompromise))
            .await
            .unwrap_err();
        assert_eq!(
            problem_of(&err),
            (Some(403), Some(ProblemType::Unauthorized), refused.clone()),
            "{err}"
        );
    }
    // Signed with another key than the certificate's: Boulder's words.
    let err = holder
        .client()
        .revoke_with_certificate_key(
            &der,
            &CertificateKey::generate(Default::default()).unwrap(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        problem_of(&err),
        (
            Some(403),
            Some(ProblemType::Unauthorized),
            "Unable to revoke :: JWK embedded in revocation request must be the same public key as the cert to be revoked".to_owned()
        ),
        "{err}"
    );
    assert_eq!(ca.ledger().certificates[0].revoked, None);
    holder
        .revoke_certificate(&der, Some(RevocationReason::KeyCompromise))
        .await
        .expect("the holder of the authorizations may revoke it");
    assert_eq!(
        ca.ledger().certificates[0].revoked,
        Some(RevocationReason::CessationOfOperation.code()),
        "Boulder records cessationOfOperation for a revocation by control"
    );
}

/// Defect 14: the certificate carries the serverAuth EKU only, no OCSP URL
/// (Let's Encrypt dropped both), and a notBefore backdated as Boulder's
/// (58 min 30 s: 90% of its 1 h 5 min `maxValidityBackdate`).
#[tokio::test]
async fn certificates_are_server_auth_only_without_ocsp_and_backdated() {
    use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};
    let ca = TestCa::start().await.unwrap();
    let account = account_at(&ca).await;
    let before = SystemTime::now();
    let chain = issue(&account, &["eku.example"]).await.unwrap();
    let after = SystemTime::now();
    let der = leaf_der(&chain);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let eku = cert
        .extended_key_usage()
        .unwrap()
        .expect("an EKU extension")
        .value;
    assert!(eku.server_auth, "serverAuth");
    assert!(
        !eku.client_auth,
        "no clientAuth (gone from every LE profile)"
    );
    assert!(eku.other.is_empty(), "{:?}", eku.other);
    let ocsp = x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_OCSP;
    for ext in cert.extensions() {
        if let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() {
            assert!(
                aia.accessdescs.iter().all(|d| d.access_method != ocsp),
                "an OCSP URL"
            );
        }
    }
    let (not_before, _) = chain.validity().unwrap();
    let unix = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    let backdate = 58 * 60 + 30;
    assert!(
        not_before >= unix(before) - backdate - 1 && not_before <= unix(after) - backdate,
        "notBefore {not_before}, issued between {} and {}",
        unix(before),
        unix(after)
    );
}

/// Defect 14: a CSR asking for OCSP Must-Staple is refused at finalize
/// with Boulder's problem (403 unauthorized); the order stays ready and a
/// CSR without it is issued.
#[tokio::test]
async fn a_must_staple_csr_is_refused_at_finalize_and_the_order_stays_ready() {
    let ca = TestCa::start().await.unwrap();
    let account = account_at(&ca).await;
    let mut order = ready_order(&account, &NewOrder::for_names(&["staple.example"]).unwrap())
        .await
        .unwrap();
    let err = order
        .finalize(Csr::Der(&csr_der(&["staple.example"], true)))
        .await
        .unwrap_err();
    assert_eq!(
        problem_of(&err),
        (
            Some(403),
            Some(ProblemType::Unauthorized),
            "Error finalizing order :: OCSP must-staple extension is no longer available: see https://letsencrypt.org/2024/12/05/ending-ocsp".to_owned()
        ),
        "{err}"
    );
    assert!(ca.ledger().certificates.is_empty());
    assert_eq!(order.refresh().await.unwrap().status, OrderStatus::Ready);
    order
        .finalize(Csr::Der(&csr_der(&["staple.example"], false)))
        .await
        .unwrap();
    order.certificate().await.unwrap();
    assert_eq!(ca.ledger().certificates.len(), 1);
}

/// Defect 14: an IP address under `classic` or `tlsserver` (asked for or
/// the default) is Boulder's `rejectedIdentifier`, not `invalidProfile`;
/// too many names is `malformed`.
#[tokio::test]
async fn an_ip_address_outside_shortlived_is_a_rejected_identifier() {
    let ca = TestCa::builder().profiles(true).start().await.unwrap();
    let account = account_at(&ca).await;
    let ip = || NewOrder::for_names(&["192.0.2.8"]).unwrap();
    for (order, who) in [
        (ip().with_profile("classic"), "Profile \"classic\""),
        (ip().with_profile("tlsserver"), "Profile \"tlsserver\""),
        (ip(), "Default profile"),
    ] {
        let err = account.new_order(&order).await.unwrap_err();
        assert_eq!(
            problem_of(&err),
            (
                Some(400),
                Some(ProblemType::RejectedIdentifier),
                format!(
                    "Error creating new order :: {who} does not permit IP address identifiers. See available profiles at https://letsencrypt.org/docs/profiles/."
                )
            ),
            "{err}"
        );
    }
    account
        .new_order(&ip().with_profile("shortlived"))
        .await
        .expect("shortlived allows IP addresses");
    let many: Vec<String> = (0..26).map(|i| format!("n{i}.many.example")).collect();
    let err = account
        .new_order(
            &NewOrder::for_names(&many)
                .unwrap()
                .with_profile("tlsserver"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        problem_of(&err),
        (
            Some(400),
            Some(ProblemType::Malformed),
            "Error creating new order :: Order cannot contain more than 25 identifiers".to_owned()
        ),
        "{err}"
    );
}

/// Defect 15: `renewal_info(Some(d))` (`--ari-renew-after`) serves what it
/// promises: a window opening `d` after issuance and lasting an hour; with
/// 0 a window already past, so a client picking any moment in it (RFC 9773
/// §4.2) renews now.
#[tokio::test]
async fn ari_renew_after_serves_an_hour_long_window_or_one_already_past() {
    let ca = TestCa::builder()
        .renewal_info(Some(Duration::from_secs(3600)))
        .start()
        .await
        .unwrap();
    let account = account_at(&ca).await;
    let before = SystemTime::now();
    let chain = issue(&account, &["hour.example"]).await.unwrap();
    let after = SystemTime::now();
    let info = account
        .client()
        .renewal_info(&cert_id(&chain))
        .await
        .unwrap();
    assert_eq!(
        info.window_end.duration_since(info.window_start).unwrap(),
        Duration::from_secs(3600),
        "{info:?}"
    );
    let hour = Duration::from_secs(3600);
    assert!(
        info.window_start + Duration::from_secs(1) >= before + hour
            && info.window_start <= after + hour,
        "{info:?}"
    );

    let ca = TestCa::builder()
        .renewal_info(Some(Duration::ZERO))
        .start()
        .await
        .unwrap();
    let account = account_at(&ca).await;
    let chain = issue(&account, &["now.example"]).await.unwrap();
    let info = account
        .client()
        .renewal_info(&cert_id(&chain))
        .await
        .unwrap();
    let asked = SystemTime::now();
    assert!(info.window_start < info.window_end, "{info:?}");
    assert!(
        info.window_end <= asked,
        "the whole window is past: {info:?}"
    );
    for fraction in [0.0, 0.5, 1.0] {
        assert!(info.renewal_time(fraction, asked) <= asked, "{info:?}");
    }
}

/// Defect 16: an external account binding MAC'd with HS384 or HS512 is
/// accepted like HS256 (RFC 8555 lets the CA support any MAC algorithm);
/// an unknown one is refused, and so is a wrong MAC.
#[tokio::test]
async fn eab_bindings_with_hs256_hs384_and_hs512_are_accepted() {
    let hmac_key = [7u8; 32];
    let ca = TestCa::builder()
        .eab_key("kid-1", &b64(hmac_key))
        .unwrap()
        .eab_required(true)
        .start()
        .await
        .unwrap();
    let http = common::http_client_trusting(&ca.root_pem());
    let directory = common::get_json(&http, &ca.directory_url()).await;
    let new_account = directory["newAccount"].as_str().unwrap().to_owned();
    let attempt = |alg: &'static str, mac: Option<ring::hmac::Algorithm>, tamper: bool| {
        let (http, new_account) = (http.clone(), new_account.clone());
        let directory = directory.clone();
        async move {
            let key = AccountKey::generate(KeyAlgorithm::Es256).unwrap();
            let nonce = http
                .head(directory["newNonce"].as_str().unwrap())
                .send()
                .await
                .unwrap()
                .headers()["replay-nonce"]
                .to_str()
                .unwrap()
                .to_owned();
            let eab_protected =
                b64(json!({"alg": alg, "kid": "kid-1", "url": new_account}).to_string());
            let eab_payload = b64(key.jwk().to_string());
            let input = format!("{eab_protected}.{eab_payload}");
            let mut mac = ring::hmac::sign(
                &ring::hmac::Key::new(mac.unwrap_or(ring::hmac::HMAC_SHA256), &hmac_key),
                input.as_bytes(),
            )
            .as_ref()
            .to_vec();
            if tamper {
                mac[0] ^= 1;
            }
            let payload = json!({
                "termsOfServiceAgreed": true,
                "externalAccountBinding": {
                    "protected": eab_protected,
                    "payload": eab_payload,
                    "signature": b64(mac),
                }
            });
            let protected = b64(
                json!({"alg": "ES256", "jwk": key.jwk(), "nonce": nonce, "url": new_account})
                    .to_string(),
            );
            let payload = b64(payload.to_string());
            let signature = {
                use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
                let rng = ring::rand::SystemRandom::new();
                let pair = EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    key.pkcs8_der(),
                    &rng,
                )
                .unwrap();
                b64(pair
                    .sign(&rng, format!("{protected}.{payload}").as_bytes())
                    .unwrap())
            };
            let r = http
                .post(&new_account)
                .header("content-type", "application/jose+json")
                .body(
                    json!({"protected": protected, "payload": payload, "signature": signature})
                        .to_string(),
                )
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap_or_default();
            (status, body)
        }
    };
    for (alg, mac) in [
        ("HS256", ring::hmac::HMAC_SHA256),
        ("HS384", ring::hmac::HMAC_SHA384),
        ("HS512", ring::hmac::HMAC_SHA512),
    ] {
        let (status, body) = attempt(alg, Some(mac), false).await;
        assert_eq!(status, 201, "{alg}: {body}");
        let (status, body) = attempt(alg, Some(mac), true).await;
        assert_eq!(status, 403, "{alg} with a wrong MAC: {body}");
    }
    let (status, body) = attempt("HS1", None, false).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (400, Some("urn:ietf:params:acme:error:malformed")),
        "{body}"
    );
}

/// Defect 16: HEAD on renewalInfo is answered like GET (status, headers)
/// without a body, as Boulder allows it.
#[tokio::test]
async fn renewal_info_answers_head_like_get_without_a_body() {
    let ca = TestCa::builder().renewal_info(None).start().await.unwrap();
    let account = account_at(&ca).await;
    let chain = issue(&account, &["head.example"]).await.unwrap();
    let http = common::http_client_trusting(&ca.root_pem());
    let directory = common::get_json(&http, &ca.directory_url()).await;
    let base = directory["renewalInfo"].as_str().unwrap();
    let url = format!("{base}/{}", cert_id(&chain));
    let get = http.get(&url).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 200);
    let get_retry_after = get.headers()["retry-after"].clone();
    let get_body = get.bytes().await.unwrap();
    assert!(!get_body.is_empty());
    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(head.headers()["retry-after"], get_retry_after);
    assert_eq!(
        head.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert!(head.bytes().await.unwrap().is_empty(), "no body");
    // An unknown certificate: the same 404 as GET.
    let unknown = format!("{base}/{}", CertId::new(&[1, 2, 3], &[4]));
    let head = http.head(&unknown).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 404);
    // Other methods stay refused.
    let put = http.put(&url).send().await.unwrap();
    assert_eq!(put.status().as_u16(), 405);
}

/// Defect 11 (the CA's part), as Boulder since boulder#8610: a CAA recheck
/// failing at finalize makes the order `invalid` with the caa problem,
/// answered at once (and under asynchronous finalization, after
/// `processing`).
#[tokio::test]
async fn a_caa_recheck_failure_at_finalize_makes_the_order_invalid() {
    for processing in [Duration::ZERO, Duration::from_millis(300)] {
        let ca = TestCa::builder()
            .finalize_processing(processing)
            .start()
            .await
            .unwrap();
        let account = account_at(&ca).await;
        let mut order = ready_order(&account, &NewOrder::for_names(&["caa.example"]).unwrap())
            .await
            .unwrap();
        ca.set_caa("caa.example", CaaPolicy::Forbid);
        let answered = order
            .finalize(Csr::Key(
                &CertificateKey::generate(Default::default()).unwrap(),
            ))
            .await;
        if processing.is_zero() {
            let err = answered.unwrap_err();
            assert_eq!(err.status(), Some(403), "{err}");
            assert_eq!(err.problem_type(), Some(&ProblemType::Caa), "{err}");
        } else {
            assert_eq!(answered.unwrap(), OrderStatus::Processing);
        }
        let mut state = order.refresh().await.unwrap().clone();
        for _ in 0..100 {
            if state.status != OrderStatus::Processing {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            state = order.refresh().await.unwrap().clone();
        }
        assert_eq!(
            state.status,
            OrderStatus::Invalid,
            "{processing:?}: {state:?}"
        );
        let error = state.error.expect("the order's error");
        assert_eq!(error.kind, ProblemType::Caa);
        assert!(
            error.detail.as_deref().unwrap_or_default().starts_with(
                "Error finalizing order :: rechecking caa: While processing CAA for caa.example: CAA record for caa.example prevents issuance"
            ),
            "{error:?}"
        );
        assert!(ca.ledger().certificates.is_empty());
    }
}

/// Defect 11 (the CA's part): `alreadyReplaced` exactly as Boulder answers
/// it while the certificate has a pending, ready or valid replacement
/// order; an order that turned invalid (a failed CAA recheck) frees
/// `replaces`.
#[tokio::test]
async fn already_replaced_is_boulders_and_an_invalid_replacement_frees_replaces() {
    let ca = TestCa::builder().renewal_info(None).start().await.unwrap();
    let raw = Raw::new(&ca).await;
    let chain = issue(&raw.account, &["repl.example"]).await.unwrap();
    let id = cert_id(&chain);
    let already = format!(
        "{REPLACES}cannot indicate an order replaces certificate with serial {:?}, which already has a replacement order",
        boulder_serial(&chain)
    );
    // A first replacement order: accepted, echoed, left ready.
    let first = raw.new_order(&["repl.example"], id.as_str()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body["replaces"], id.as_str());
    assert_eq!(first.body["status"], "ready", "its authorization is reused");
    let again = raw.new_order(&["repl.example"], id.as_str()).await;
    assert_eq!(again.problem(), (409, "alreadyReplaced", already.as_str()));
    // The first one fails its CAA recheck at finalize: invalid.
    ca.set_caa("repl.example", CaaPolicy::Forbid);
    let finalize = first.body["finalize"].as_str().unwrap();
    let refused = raw
        .post(
            finalize,
            &json!({"csr": b64(csr_der(&["repl.example"], false))}),
        )
        .await;
    assert_eq!(refused.problem().0, 403);
    assert_eq!(refused.problem().1, "caa");
    let location = first.headers["location"].to_str().unwrap().to_owned();
    let order = raw.post(&location, &Value::Null).await;
    assert_eq!(order.body["status"], "invalid", "{}", order.body);
    // ... which frees replaces: a second replacement order is accepted.
    ca.set_caa("repl.example", CaaPolicy::Allow);
    let second = raw.new_order(&["repl.example"], id.as_str()).await;
    assert_eq!(second.status, 201, "{}", second.body);
    let again = raw.new_order(&["repl.example"], id.as_str()).await;
    assert_eq!(again.problem(), (409, "alreadyReplaced", already.as_str()));
    // Once valid, the certificate stays replaced.
    let finalize = second.body["finalize"].as_str().unwrap();
    let done = raw
        .post(
            finalize,
            &json!({"csr": b64(csr_der(&["repl.example"], false))}),
        )
        .await;
    assert_eq!(done.body["status"], "valid", "{}", done.body);
    let again = raw.new_order(&["repl.example"], id.as_str()).await;
    assert_eq!(again.problem(), (409, "alreadyReplaced", already.as_str()));
}

/// Defect 12 (the CA's part): the ways Let's Encrypt refuses a bad
/// `replaces`, in Boulder's words: another account's certificate (403
/// unauthorized), another CA's certificate (404 malformed, "did not match a
/// known issuer"), no shared identifier (400 malformed), an unknown serial
/// (404 malformed). A name covered by the replaced certificate's wildcard
/// is shared, as Boulder's `VerifyHostname` judges it.
#[tokio::test]
async fn bad_replaces_are_refused_in_boulders_words() {
    let ca = TestCa::builder().renewal_info(None).start().await.unwrap();
    let owner = Raw::new(&ca).await;
    let chain = issue(&owner.account, &["x.example"]).await.unwrap();
    let id = cert_id(&chain);

    let other = Raw::new(&ca).await;
    let answer = other.new_order(&["x.example"], id.as_str()).await;
    let detail = format!(
        "{REPLACES}requester account did not request the certificate being replaced by this order"
    );
    assert_eq!(answer.problem(), (403, "unauthorized", detail.as_str()));

    let answer = owner.new_order(&["y.example"], id.as_str()).await;
    let detail = format!(
        "{REPLACES}identifiers in this order do not match any identifiers in the certificate being replaced"
    );
    assert_eq!(answer.problem(), (400, "malformed", detail.as_str()));

    let (aki, _) = id.as_str().split_once('.').unwrap();
    let unknown = format!("{aki}.{}", b64([0x7f, 1, 2, 3]));
    let answer = owner.new_order(&["x.example"], &unknown).await;
    let detail = format!(
        "{REPLACES}request included `replaces` field, but no current certificate with serial {:?} exists",
        format!("{:0>36}", "7f010203")
    );
    assert_eq!(answer.problem(), (404, "malformed", detail.as_str()));

    let answer = owner.new_order(&["x.example"], "not-a-cert-id").await;
    let detail = format!("{REPLACES}Invalid path");
    assert_eq!(answer.problem(), (400, "malformed", detail.as_str()));

    // After a CA switch: the certificate of another CA.
    let switched = TestCa::builder().renewal_info(None).start().await.unwrap();
    let moved = Raw::new(&switched).await;
    let answer = moved.new_order(&["x.example"], id.as_str()).await;
    let detail = format!(
        "{REPLACES}path contained an Authority Key Identifier that did not match a known issuer"
    );
    assert_eq!(answer.problem(), (404, "malformed", detail.as_str()));

    // A wildcard certificate covers a name one label below.
    let wild = issue(&owner.account, &["*.w.example"]).await.unwrap();
    let answer = owner
        .new_order(&["a.w.example"], cert_id(&wild).as_str())
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
}
