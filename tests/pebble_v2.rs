//! The RFC 8555 client against Let's Encrypt's Pebble, with real challenge
//! validation (http-01 by the crate's responder, dns-01 through
//! pebble-challtestsrv, tls-alpn-01 by a test responder using the crate's
//! acmeIdentifier certificate).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::pebble::{Pebble, PebbleOptions};
use common::tls_alpn::TlsAlpnResponder;
use common::verify;
use sturdy_acme::protocol::AuthorizationStatus;
use sturdy_acme::solver::http01::Http01Responder;
use sturdy_acme::{
    Account, AccountKey, AccountOptions, CertificateChain, CertificateKey, CertificateKeyType,
    ChallengeType, Client, Csr, Endpoint, Error, ExternalAccountKey, KeyAlgorithm, NewOrder,
    OrderStatus, ProblemType, RevocationReason,
};

const RSA_KEY: &str = include_str!("data/rsa2048.pk8.pem");
const RSA_CERT_KEY: &str = include_str!("data/rsa2048-cert.pk8.pem");

async fn client(pebble: &Pebble) -> Client {
    Client::builder(pebble.directory_url())
        .root_certificates_pem(pebble.listener_root_pem())
        .built_in_roots(false)
        .timeout(Duration::from_secs(20))
        .build()
        .await
        .expect("directory")
}

async fn account(client: &Client, alg: KeyAlgorithm) -> Account {
    client
        .create_account(
            AccountKey::generate(alg).unwrap(),
            &AccountOptions::agreeing_to_terms().contact("admin@example.com"),
        )
        .await
        .expect("newAccount")
}

/// Everything that answers challenges for one Pebble.
struct Solvers<'a> {
    pebble: &'a Pebble,
    http: Option<Http01Responder>,
    tls: Option<TlsAlpnResponder>,
}

impl<'a> Solvers<'a> {
    async fn new(pebble: &'a Pebble, kind: &ChallengeType) -> Self {
        let http = match kind {
            ChallengeType::Http01 => Some(
                Http01Responder::bind(SocketAddr::from(([127, 0, 0, 1], pebble.http_port())))
                    .await
                    .expect("bind http-01 responder"),
            ),
            _ => None,
        };
        let tls = match kind {
            ChallengeType::TlsAlpn01 => Some(TlsAlpnResponder::start(pebble.tls_port()).await),
            _ => None,
        };
        Self { pebble, http, tls }
    }
}

/// Runs a whole order with `kind` challenges and returns the chain.
async fn issue(
    account: &Account,
    names: &[&str],
    kind: &ChallengeType,
    solvers: &Solvers<'_>,
    key: &CertificateKey,
) -> CertificateChain {
    let mut order = account
        .new_order(&NewOrder::for_names(names).unwrap())
        .await
        .expect("newOrder");
    assert_eq!(order.status(), OrderStatus::Pending);
    let mut challenges = Vec::new();
    for authz in order.authorizations().await.expect("authorizations") {
        assert_eq!(authz.status(), AuthorizationStatus::Pending);
        let ch = authz
            .challenge(kind)
            .unwrap_or_else(|| panic!("no {kind} for {}", authz.identifier()));
        match kind {
            ChallengeType::Http01 => solvers
                .http
                .as_ref()
                .unwrap()
                .tokens()
                .insert(ch.token().unwrap(), ch.key_authorization().unwrap()),
            ChallengeType::Dns01 => {
                solvers
                    .pebble
                    .set_txt(&ch.dns01_record_name(), &ch.dns01_txt_value().unwrap())
                    .await
            }
            ChallengeType::TlsAlpn01 => {
                let cert = ch.tls_alpn01_certificate().unwrap();
                solvers.tls.as_ref().unwrap().set(
                    &ch.identifier().value,
                    cert.certificate_der.clone(),
                    cert.private_key_pkcs8_der.to_vec(),
                )
            }
            other => panic!("{other}"),
        }
        challenges.push(ch);
    }
    for ch in &mut challenges {
        ch.respond().await.expect("challenge");
    }
    assert_eq!(order.wait_ready().await.expect("ready"), OrderStatus::Ready);
    order.finalize(Csr::Key(key)).await.expect("finalize");
    order.certificate().await.expect("certificate")
}

/// The DNS names to check a certificate against (a wildcard is checked
/// with a name it covers).
fn dns_names(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|n| n.parse::<IpAddr>().is_err())
        .map(|n| n.replace("*.", "covered-by-wildcard."))
        .collect()
}

async fn issue_and_verify(
    pebble: &Pebble,
    kind: ChallengeType,
    names: &[&str],
) -> CertificateChain {
    let client = client(pebble).await;
    let account = account(&client, KeyAlgorithm::Es256).await;
    let solvers = Solvers::new(pebble, &kind).await;
    let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
    let chain = issue(&account, names, &kind, &solvers, &key).await;
    let root = pebble.issuing_root_pem(0).await;
    let ips: Vec<IpAddr> = names.iter().filter_map(|n| n.parse().ok()).collect();
    let dns = dns_names(names);
    let dns: Vec<&str> = dns.iter().map(String::as_str).collect();
    verify::verify_chain(chain.pem(), &[root], &dns, &ips);
    chain
}

#[tokio::test]
async fn http01_real_validation_issues_a_verifying_certificate() {
    let Some(pebble) = Pebble::start(PebbleOptions::default()).await else {
        return;
    };
    let chain = issue_and_verify(
        &pebble,
        ChallengeType::Http01,
        &["http.example.com", "www.http.example.com"],
    )
    .await;
    assert_eq!(pebble.issued_count(), 1);
    assert!(chain.certificates_der().len() >= 2, "leaf + intermediate");
}

#[tokio::test]
async fn dns01_real_validation_issues_a_verifying_certificate() {
    let Some(pebble) = Pebble::start(PebbleOptions::default()).await else {
        return;
    };
    issue_and_verify(&pebble, ChallengeType::Dns01, &["dns.example.com"]).await;
    assert_eq!(pebble.issued_count(), 1);
}

#[tokio::test]
async fn tls_alpn01_real_validation_issues_a_verifying_certificate() {
    let Some(pebble) = Pebble::start(PebbleOptions::default()).await else {
        return;
    };
    issue_and_verify(&pebble, ChallengeType::TlsAlpn01, &["alpn.example.com"]).await;
    assert_eq!(pebble.issued_count(), 1);
}

#[tokio::test]
async fn twenty_names_with_a_wildcard_over_dns01() {
    let Some(pebble) = Pebble::start(PebbleOptions::default()).await else {
        return;
    };
    let mut names: Vec<String> = (0..18).map(|i| format!("n{i}.many.example.com")).collect();
    names.push("many.example.com".into());
    names.push("*.many.example.com".into());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let chain = issue_and_verify(&pebble, ChallengeType::Dns01, &refs).await;
    let sans = verify::san_entries(chain.leaf_der());
    assert_eq!(sans.len(), 20, "{sans:?}");
    assert!(sans.contains(&"*.many.example.com".to_string()));
}

#[tokio::test]
async fn ip_address_certificate_over_http01() {
    let Some(pebble) = Pebble::start(PebbleOptions::default()).await else {
        return;
    };
    let chain = issue_and_verify(&pebble, ChallengeType::Http01, &["127.0.0.1"]).await;
    assert_eq!(verify::san_entries(chain.leaf_der()), ["127.0.0.1"]);
}

#[tokio::test]
async fn es384_and_rsa_accounts_and_keys_issue_eddsa_is_refused() {
    let Some(pebble) = Pebble::start(PebbleOptions {
        always_valid: true,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let client = client(&pebble).await;
    let solvers = Solvers::new(&pebble, &ChallengeType::Http01).await;
    let root = pebble.issuing_root_pem(0).await;

    let es384 = account(&client, KeyAlgorithm::Es384).await;
    assert_eq!(es384.key().algorithm(), KeyAlgorithm::Es384);
    let p384 = CertificateKey::generate(CertificateKeyType::P384).unwrap();
    let chain = issue(
        &es384,
        &["es384.example.com"],
        &ChallengeType::Http01,
        &solvers,
        &p384,
    )
    .await;
    verify::verify_chain(
        chain.pem(),
        std::slice::from_ref(&root),
        &["es384.example.com"],
        &[],
    );

    let rsa_key = AccountKey::from_pkcs8_pem(RSA_KEY).unwrap();
    assert_eq!(rsa_key.algorithm(), KeyAlgorithm::Rs256);
    let rsa = client
        .create_account(rsa_key, &AccountOptions::agreeing_to_terms())
        .await
        .expect("RS256 account");
    let rsa_cert_key = CertificateKey::from_pkcs8_pem(RSA_CERT_KEY).unwrap();
    let chain = issue(
        &rsa,
        &["rsa.example.com"],
        &ChallengeType::Http01,
        &solvers,
        &rsa_cert_key,
    )
    .await;
    verify::verify_chain(chain.pem(), &[root], &["rsa.example.com"], &[]);

    let err = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::EdDsa).unwrap(),
            &AccountOptions::agreeing_to_terms(),
        )
        .await
        .expect_err("Pebble 2.4 does not accept EdDSA");
    let problem = err
        .problem()
        .unwrap_or_else(|| panic!("typed problem expected: {err:?}"));
    assert!(
        matches!(
            problem.kind,
            ProblemType::BadSignatureAlgorithm | ProblemType::BadPublicKey
        ),
        "{problem:?}"
    );
    assert_eq!(err.status(), Some(400), "{err}");
}

#[tokio::test]
async fn external_account_binding_required() {
    let hmac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let Some(pebble) = Pebble::start(PebbleOptions {
        always_valid: true,
        eab_required: true,
        eab_keys: vec![("kid-1".into(), hmac.into())],
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let client = client(&pebble).await;
    assert!(client.directory().meta.external_account_required);

    // Without EAB: refused locally, no request.
    let before = client.request_stats();
    let err = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256).unwrap(),
            &AccountOptions::agreeing_to_terms(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert_eq!(client.request_stats(), before);

    // Wrong HMAC key: the CA's typed error.
    let wrong =
        ExternalAccountKey::new("kid-1", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
    let err = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256).unwrap(),
            &AccountOptions::agreeing_to_terms().external_account(wrong),
        )
        .await
        .unwrap_err();
    assert!(err.problem().is_some(), "{err:?}");
    assert_eq!(
        err.problem_type(),
        Some(&ProblemType::Unauthorized),
        "{err}"
    );

    // Unknown kid: typed error too.
    let unknown = ExternalAccountKey::new("kid-2", hmac).unwrap();
    let err = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256).unwrap(),
            &AccountOptions::agreeing_to_terms().external_account(unknown),
        )
        .await
        .unwrap_err();
    assert!(err.problem().is_some(), "{err:?}");

    // Right key: an account that can order.
    let eab = ExternalAccountKey::new("kid-1", hmac).unwrap();
    let account = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256).unwrap(),
            &AccountOptions::agreeing_to_terms().external_account(eab),
        )
        .await
        .expect("account with EAB");
    let solvers = Solvers::new(&pebble, &ChallengeType::Http01).await;
    let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
    issue(
        &account,
        &["eab.example.com"],
        &ChallengeType::Http01,
        &solvers,
        &key,
    )
    .await;
}

#[tokio::test]
async fn key_rollover_then_issue_with_new_key_old_key_refused() {
    let Some(pebble) = Pebble::start(PebbleOptions {
        always_valid: true,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let client = client(&pebble).await;
    let old = account(&client, KeyAlgorithm::Es256).await;
    let new_key = AccountKey::generate(KeyAlgorithm::Es384).unwrap();
    let new_thumb = new_key.thumbprint().to_owned();
    let new = old.change_key(new_key).await.expect("keyChange");
    assert_eq!(new.url(), old.url());
    assert_eq!(new.key().thumbprint(), new_thumb);

    let solvers = Solvers::new(&pebble, &ChallengeType::Http01).await;
    let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
    issue(
        &new,
        &["rolled.example.com"],
        &ChallengeType::Http01,
        &solvers,
        &key,
    )
    .await;

    let err = old
        .new_order(&NewOrder::for_names(&["old.example.com"]).unwrap())
        .await
        .expect_err("old key must be refused");
    assert!(err.problem().is_some(), "{err:?}");
    assert!(matches!(err.status(), Some(400..=403)), "{err}");

    // The new key finds the account; the old key finds nothing.
    let found = client
        .find_account(AccountKey::from_pkcs8_der(new.key().pkcs8_der()).unwrap())
        .await
        .expect("find by new key");
    assert_eq!(found.url(), old.url());
    let err = client
        .find_account(AccountKey::from_pkcs8_der(old.key().pkcs8_der()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        err.problem_type(),
        Some(&ProblemType::AccountDoesNotExist),
        "{err}"
    );
}

#[tokio::test]
async fn account_lookup_update_and_deactivation() {
    let Some(pebble) = Pebble::start(PebbleOptions {
        always_valid: true,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let client = client(&pebble).await;
    let key = AccountKey::generate(KeyAlgorithm::Es256).unwrap();
    let pem = key.to_pkcs8_pem();
    let err = client
        .find_account(AccountKey::from_pkcs8_pem(&pem).unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        err.problem_type(),
        Some(&ProblemType::AccountDoesNotExist),
        "{err}"
    );

    let account = client
        .create_account(
            key,
            &AccountOptions::agreeing_to_terms().contact("a@example.com"),
        )
        .await
        .unwrap();
    // Registering the same key again returns the same account.
    let again = client
        .create_account(
            AccountKey::from_pkcs8_pem(&pem).unwrap(),
            &AccountOptions::agreeing_to_terms(),
        )
        .await
        .unwrap();
    assert_eq!(again.url(), account.url());
    let found = client
        .find_account(AccountKey::from_pkcs8_pem(&pem).unwrap())
        .await
        .unwrap();
    assert_eq!(found.url(), account.url());

    let updated = account
        .update_contacts(&["mailto:b@example.com".into()])
        .await
        .unwrap();
    assert_eq!(updated.contact, ["mailto:b@example.com"]);
    assert_eq!(
        account.refresh().await.unwrap().contact,
        ["mailto:b@example.com"]
    );

    let deactivated = account.deactivate().await.unwrap();
    assert_eq!(
        deactivated.status,
        sturdy_acme::protocol::AccountStatus::Deactivated
    );
    let err = account
        .new_order(&NewOrder::for_names(&["x.example.com"]).unwrap())
        .await
        .expect_err("deactivated account must be refused");
    assert_eq!(
        err.problem_type(),
        Some(&ProblemType::Unauthorized),
        "{err}"
    );
    assert_eq!(err.status(), Some(403), "{err}");
}

#[tokio::test]
async fn revocation_by_account_key_and_by_certificate_key() {
    let Some(pebble) = Pebble::start(PebbleOptions {
        always_valid: true,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let client = client(&pebble).await;
    let account = account(&client, KeyAlgorithm::Es256).await;
    let solvers = Solvers::new(&pebble, &ChallengeType::Http01).await;

    let key1 = CertificateKey::generate(CertificateKeyType::P256).unwrap();
    let chain1 = issue(
        &account,
        &["rev1.example.com"],
        &ChallengeType::Http01,
        &solvers,
        &key1,
    )
    .await;
    let serial1 = verify::serial_hex(chain1.leaf_der());
    assert_eq!(pebble.cert_status(&serial1).await["Status"], "Valid");
    account
        .revoke_certificate(chain1.leaf_der(), Some(RevocationReason::Superseded))
        .await
        .expect("revoke by account key");
    let status = pebble.cert_status(&serial1).await;
    assert_eq!(status["Status"], "Revoked", "{status}");
    assert_eq!(status["Reason"], 4, "{status}");

    // Again: alreadyRevoked, typed.
    let err = account
        .revoke_certificate(chain1.leaf_der(), None)
        .await
        .unwrap_err();
    assert_eq!(
        err.problem_type(),
        Some(&ProblemType::AlreadyRevoked),
        "{err}"
    );

    let key2 = CertificateKey::generate(CertificateKeyType::P384).unwrap();
    let chain2 = issue(
        &account,
        &["rev2.example.com"],
        &ChallengeType::Http01,
        &solvers,
        &key2,
    )
    .await;
    let serial2 = verify::serial_hex(chain2.leaf_der());
    client
        .revoke_with_certificate_key(
            chain2.leaf_der(),
            &key2,
            Some(RevocationReason::KeyCompromise),
        )
        .await
        .expect("revoke by certificate key");
    let status = pebble.cert_status(&serial2).await;
    assert_eq!(status["Status"], "Revoked", "{status}");
    assert_eq!(status["Reason"], 1, "{status}");

    // A key that is neither the account's nor the certificate's is refused.
    let key3 = CertificateKey::generate(CertificateKeyType::P256).unwrap();
    let chain3 = issue(
        &account,
        &["rev3.example.com"],
        &ChallengeType::Http01,
        &solvers,
        &key3,
    )
    .await;
    let stranger = CertificateKey::generate(CertificateKeyType::P256).unwrap();
    let err = client
        .revoke_with_certificate_key(chain3.leaf_der(), &stranger, None)
        .await
        .unwrap_err();
    assert!(err.problem().is_some(), "{err:?}");
    assert_eq!(
        pebble
            .cert_status(&verify::serial_hex(chain3.leaf_der()))
            .await["Status"],
        "Valid"
    );
}

#[tokio::test]
async fn alternate_chains_and_preferred_issuer() {
    let Some(pebble) = Pebble::start(PebbleOptions {
        always_valid: true,
        alternate_roots: 2,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let client = client(&pebble).await;
    let account = account(&client, KeyAlgorithm::Es256).await;
    let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();

    let roots = [
        pebble.issuing_root_pem(0).await,
        pebble.issuing_root_pem(1).await,
        pebble.issuing_root_pem(2).await,
    ];
    let root_cns: Vec<String> = roots
        .iter()
        .map(|pem| verify::subject_cn(&common::pem_certs(pem)[0]))
        .collect();

    let mut order = account
        .new_order(&NewOrder::for_names(&["alt.example.com"]).unwrap())
        .await
        .unwrap();
    for authz in order.authorizations().await.unwrap() {
        let mut ch = authz.challenge(&ChallengeType::Http01).unwrap();
        ch.respond().await.unwrap();
    }
    order.wait_ready().await.unwrap();
    order.finalize(Csr::Key(&key)).await.unwrap();
    let default = order.certificate().await.unwrap();
    assert_eq!(default.alternate_urls().len(), 2, "two alternates offered");
    let default_cn = default.top_issuer_common_name().unwrap();
    assert!(
        root_cns.contains(&default_cn),
        "{default_cn} in {root_cns:?}"
    );

    for (i, cn) in root_cns.iter().enumerate() {
        let chain = order.certificate_chain(Some(cn)).await.unwrap();
        assert_eq!(chain.top_issuer_common_name().as_deref(), Some(cn.as_str()));
        verify::verify_chain(
            chain.pem(),
            std::slice::from_ref(&roots[i]),
            &["alt.example.com"],
            &[],
        );
        assert_eq!(
            chain.leaf_der(),
            default.leaf_der(),
            "same leaf, other chain"
        );
    }
    // An unknown preference falls back to the default chain.
    let chain = order.certificate_chain(Some("No Such Root")).await.unwrap();
    assert_eq!(chain.pem(), default.pem());
}

#[tokio::test]
async fn nonce_rejections_are_retried_without_extra_new_nonce_requests() {
    let Some(pebble) = Pebble::start(PebbleOptions {
        always_valid: true,
        nonce_reject_percent: 50,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let client = Client::builder(pebble.directory_url())
        .root_certificates_pem(pebble.listener_root_pem())
        .built_in_roots(false)
        .bad_nonce_retries(40)
        .build()
        .await
        .unwrap();
    let account = account(&client, KeyAlgorithm::Es256).await;
    let solvers = Solvers::new(&pebble, &ChallengeType::Http01).await;
    let root = pebble.issuing_root_pem(0).await;
    for i in 0..10 {
        let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        let name = format!("nonce{i}.example.com");
        let chain = issue(&account, &[&name], &ChallengeType::Http01, &solvers, &key).await;
        verify::verify_chain(chain.pem(), std::slice::from_ref(&root), &[&name], &[]);
    }
    assert_eq!(pebble.issued_count(), 10);
    let stats = client.request_stats();
    // The pool was empty exactly once (the first request); every badNonce
    // answer carried the nonce used for the retry.
    assert_eq!(stats.get(Endpoint::NewNonce), 1, "{stats}");
    assert_eq!(
        pebble.count_requests("HEAD /nonce-plz") + pebble.count_requests("GET /nonce-plz"),
        1
    );
    let rejected = pebble.log().matches("badNonce").count();
    eprintln!("badNonce rejections seen in Pebble's log: {rejected}; client requests: {stats}");
}

#[tokio::test]
async fn order_failure_names_the_identifier() {
    // Real validation with nothing answering: the authorization fails and
    // the error names the identifier and carries the CA's problem.
    let Some(pebble) = Pebble::start(PebbleOptions::default()).await else {
        return;
    };
    let client = client(&pebble).await;
    let account = account(&client, KeyAlgorithm::Es256).await;
    let mut order = account
        .new_order(&NewOrder::for_names(&["nobody.example.com"]).unwrap())
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
    let err = order.wait_ready().await.unwrap_err();
    match &err {
        Error::ValidationFailed {
            identifier,
            problem,
        } => {
            assert_eq!(identifier.value, "nobody.example.com");
            let problem = problem.as_ref().expect("problem from the challenge");
            assert_eq!(problem.kind, ProblemType::Connection, "{problem:?}");
        }
        other => panic!("expected ValidationFailed, got {other:?}"),
    }
    assert_eq!(err.identifiers()[0].value, "nobody.example.com");
}

/// Measures requests per certificate and wall time (printed; run with
/// `--nocapture`). The only assertions are about counts, never time.
#[tokio::test]
async fn measure_twenty_sequential_issuances() {
    let Some(pebble) = Pebble::start(PebbleOptions {
        always_valid: true,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let client = client(&pebble).await;
    let account = account(&client, KeyAlgorithm::Es256).await;
    let solvers = Solvers::new(&pebble, &ChallengeType::Http01).await;
    // One warm-up certificate (fills the nonce pool, opens the connection).
    let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
    issue(
        &account,
        &["warm.example.com"],
        &ChallengeType::Http01,
        &solvers,
        &key,
    )
    .await;

    let before = client.request_stats();
    let started = Instant::now();
    for i in 0..20 {
        let name = format!("m{i}.example.com");
        issue(&account, &[&name], &ChallengeType::Http01, &solvers, &key).await;
    }
    let elapsed = started.elapsed();
    let used = client.request_stats().since(&before);
    eprintln!(
        "MEASURE pebble: 20 sequential issuances in {elapsed:.2?} ({:.1} ms each); \
         {:.2} requests per certificate: {used}",
        elapsed.as_secs_f64() * 1000.0 / 20.0,
        used.total() as f64 / 20.0
    );
    assert_eq!(used.get(Endpoint::NewNonce), 0, "warm pool: {used}");
    assert_eq!(used.get(Endpoint::NewOrder), 20);
    assert_eq!(used.get(Endpoint::Finalize), 20);
    assert_eq!(used.get(Endpoint::Certificate), 20);
    assert_eq!(pebble.issued_count(), 21);
}
