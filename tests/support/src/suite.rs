//! The happy-path integration suite, written once and run against every
//! ACME server the crate is tested with (Pebble, the embedded test CA): the
//! embedded CA must not be friendlier than a real one.
//!
//! A test file implements [`AcmeServer`] for its server and expands
//! [`shared_suite!`](crate::shared_suite) to get one `#[tokio::test]` per suite function.
//!
//! The functions also run against an ACME v1 server (tests/embedded_v1.rs)
//! where v1 has what they use; where v1 lacks one step (looking an account
//! up without registering), that step asserts the typed `Unsupported`
//! instead (`client.dialect()`).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::tls_alpn::TlsAlpnResponder;
use super::verify;
use sturdy_acme::AuthorizationStatus;
use sturdy_acme::solver::http01::Http01Responder;
use sturdy_acme::{
    Account, AccountKey, AccountOptions, CertificateChain, CertificateKey, CertificateKeyType,
    ChallengeType, Client, ClientBuilder, Csr, Dialect, Error, ExternalAccountKey, KeyAlgorithm,
    NewOrder, Order, OrderStatus, ProblemType, RevocationReason,
};

/// What a suite test needs from the server it runs against.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Validate challenges for real (else every challenge is valid at once).
    pub real_validation: bool,
    /// Require external account binding with this (kid, base64url HMAC key).
    pub eab: Option<(String, String)>,
    /// Offer alternate chains.
    pub alternate_chain: bool,
}

impl ServerOptions {
    /// Real challenge validation.
    pub fn real() -> Self {
        Self {
            real_validation: true,
            ..Self::default()
        }
    }
}

/// An ACME server under test.
pub trait AcmeServer: Sized {
    /// Starts one (None: skipped outside CI because the server is missing).
    fn start(options: ServerOptions) -> impl Future<Output = Option<Self>>;
    /// A client builder trusting the server's HTTPS listener.
    fn client_builder(&self) -> ClientBuilder;
    /// Where http-01 is validated (on 127.0.0.1).
    fn http_port(&self) -> u16;
    /// Where tls-alpn-01 is validated (on 127.0.0.1).
    fn tls_port(&self) -> u16;
    /// Publishes a dns-01 TXT record.
    fn set_txt(&self, host: &str, value: &str) -> impl Future<Output = ()>;
    /// The issuing roots (PEM): the default chain's first, then alternates'.
    fn issuing_roots(&self) -> impl Future<Output = Vec<String>>;
    /// None: unknown serial; Some(None): valid; Some(Some(code)): revoked.
    fn revocation_reason(&self, serial_hex: &str) -> impl Future<Output = Option<Option<u64>>>;
    /// Certificates issued so far.
    fn issued_count(&self) -> usize;
}

/// Creates an order for `names` and answers each pending authorization
/// (http-01, or dns-01 where only that is offered, e.g. wildcards), then
/// waits until it is ready. Meant for CAs that validate at once
/// (always-valid mode).
pub async fn try_ready_order(account: &Account, names: &[&str]) -> Result<Order, Error> {
    let mut order = account.new_order(&NewOrder::for_names(names)?).await?;
    for authz in order.authorizations().await? {
        if authz.status() != AuthorizationStatus::Pending {
            continue;
        }
        authz
            .challenge(&ChallengeType::Http01)
            .or_else(|| authz.challenge(&ChallengeType::Dns01))
            .expect("an http-01 or dns-01 challenge")
            .respond()
            .await?;
    }
    order.wait_ready().await?;
    Ok(order)
}

/// [`try_ready_order`] for one name, panicking on failure.
pub async fn ready_order(account: &Account, name: &str) -> Order {
    try_ready_order(account, &[name])
        .await
        .unwrap_or_else(|e| panic!("order for {name} not ready: {e}"))
}

/// One `#[tokio::test]` per suite function, against server type `$server`.
#[macro_export]
macro_rules! shared_suite {
    ($server:ty) => {
        $crate::shared_suite!(@tests $server;
            http01_real_validation_issues_a_verifying_certificate,
            dns01_real_validation_issues_a_verifying_certificate,
            tls_alpn01_real_validation_issues_a_verifying_certificate,
            twenty_names_with_a_wildcard_over_dns01,
            ip_address_certificate_over_http01,
            es384_and_rsa_accounts_and_keys_issue_eddsa_is_refused,
            external_account_binding_required,
            key_rollover_then_issue_with_new_key_old_key_refused,
            account_lookup_update_and_deactivation,
            revocation_by_account_key_and_by_certificate_key,
            alternate_chains_and_preferred_issuer,
            order_failure_names_the_identifier,
        );
    };
    (@tests $server:ty; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                common::suite::$name::<$server>().await;
            }
        )*
    };
}

const RSA_KEY: &str = include_str!("../data/rsa2048.pk8.pem");
const RSA_CERT_KEY: &str = include_str!("../data/rsa2048-cert.pk8.pem");

pub async fn client<S: AcmeServer>(server: &S) -> Client {
    server
        .client_builder()
        .timeout(Duration::from_secs(20))
        .build()
        .await
        .expect("directory")
}

pub async fn account(client: &Client, alg: KeyAlgorithm) -> Account {
    client
        .create_account(
            AccountKey::generate(alg).unwrap(),
            &AccountOptions::agreeing_to_terms().with_contact("admin@example.com"),
        )
        .await
        .expect("newAccount")
}

/// Everything that answers challenges for one Pebble.
pub struct Solvers<'a, S> {
    server: &'a S,
    http: Option<Http01Responder>,
    tls: Option<TlsAlpnResponder>,
}

impl<'a, S: AcmeServer> Solvers<'a, S> {
    pub async fn new(server: &'a S, kind: &ChallengeType) -> Self {
        let http = match kind {
            ChallengeType::Http01 => Some(
                Http01Responder::bind(SocketAddr::from(([127, 0, 0, 1], server.http_port())))
                    .await
                    .expect("bind http-01 responder"),
            ),
            _ => None,
        };
        let tls = match kind {
            ChallengeType::TlsAlpn01 => Some(TlsAlpnResponder::start(server.tls_port()).await),
            _ => None,
        };
        Self { server, http, tls }
    }
}

/// Runs a whole order with `kind` challenges and returns the chain.
pub async fn issue<S: AcmeServer>(
    account: &Account,
    names: &[&str],
    kind: &ChallengeType,
    solvers: &Solvers<'_, S>,
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
                    .server
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
pub fn dns_names(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|n| n.parse::<IpAddr>().is_err())
        .map(|n| n.replace("*.", "covered-by-wildcard."))
        .collect()
}

pub async fn issue_and_verify<S: AcmeServer>(
    server: &S,
    kind: ChallengeType,
    names: &[&str],
) -> CertificateChain {
    let client = client(server).await;
    let account = account(&client, KeyAlgorithm::Es256).await;
    let solvers = Solvers::new(server, &kind).await;
    let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
    let chain = issue(&account, names, &kind, &solvers, &key).await;
    let root = server.issuing_roots().await.remove(0);
    let ips: Vec<IpAddr> = names.iter().filter_map(|n| n.parse().ok()).collect();
    let dns = dns_names(names);
    let dns: Vec<&str> = dns.iter().map(String::as_str).collect();
    verify::verify_chain(chain.pem(), &[root], &dns, &ips);
    chain
}

/// What an ACME v1 client refuses: typed, naming v1.
#[track_caller]
pub fn assert_v1_unsupported(err: &Error) {
    match err {
        Error::Unsupported(why) => assert!(why.contains("ACME v1"), "{why}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

pub async fn http01_real_validation_issues_a_verifying_certificate<S: AcmeServer>() {
    let Some(server) = S::start(ServerOptions::real()).await else {
        return;
    };
    let chain = issue_and_verify(
        &server,
        ChallengeType::Http01,
        &["http.example.com", "www.http.example.com"],
    )
    .await;
    assert_eq!(server.issued_count(), 1);
    assert!(chain.certificates_der().len() >= 2, "leaf + intermediate");
}

pub async fn dns01_real_validation_issues_a_verifying_certificate<S: AcmeServer>() {
    let Some(server) = S::start(ServerOptions::real()).await else {
        return;
    };
    issue_and_verify(&server, ChallengeType::Dns01, &["dns.example.com"]).await;
    assert_eq!(server.issued_count(), 1);
}

pub async fn tls_alpn01_real_validation_issues_a_verifying_certificate<S: AcmeServer>() {
    let Some(server) = S::start(ServerOptions::real()).await else {
        return;
    };
    issue_and_verify(&server, ChallengeType::TlsAlpn01, &["alpn.example.com"]).await;
    assert_eq!(server.issued_count(), 1);
}

pub async fn twenty_names_with_a_wildcard_over_dns01<S: AcmeServer>() {
    let Some(server) = S::start(ServerOptions::real()).await else {
        return;
    };
    let mut names: Vec<String> = (0..18).map(|i| format!("n{i}.many.example.com")).collect();
    names.push("many.example.com".into());
    names.push("*.many.example.com".into());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let chain = issue_and_verify(&server, ChallengeType::Dns01, &refs).await;
    let sans = verify::san_entries(chain.leaf_der());
    assert_eq!(sans.len(), 20, "{sans:?}");
    assert!(sans.contains(&"*.many.example.com".to_string()));
}

pub async fn ip_address_certificate_over_http01<S: AcmeServer>() {
    let Some(server) = S::start(ServerOptions::real()).await else {
        return;
    };
    let chain = issue_and_verify(&server, ChallengeType::Http01, &["127.0.0.1"]).await;
    assert_eq!(verify::san_entries(chain.leaf_der()), ["127.0.0.1"]);
}

pub async fn es384_and_rsa_accounts_and_keys_issue_eddsa_is_refused<S: AcmeServer>() {
    let Some(server) = S::start(ServerOptions::default()).await else {
        return;
    };
    let client = client(&server).await;
    let solvers = Solvers::new(&server, &ChallengeType::Http01).await;
    let root = server.issuing_roots().await.remove(0);

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
        .expect_err("EdDSA is refused (as by Pebble 2.4 and Boulder)");
    let problem = err
        .problem()
        .unwrap_or_else(|| panic!("typed problem expected: {err:?}"));
    // Boulder's v1 answered an unsupported algorithm with `malformed`.
    let v1_malformed = client.dialect() == Dialect::V1 && problem.kind == ProblemType::Malformed;
    assert!(
        v1_malformed
            || matches!(
                problem.kind,
                ProblemType::BadSignatureAlgorithm | ProblemType::BadPublicKey
            ),
        "{problem:?}"
    );
    assert_eq!(err.status(), Some(400), "{err}");
}

pub async fn external_account_binding_required<S: AcmeServer>() {
    let hmac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let Some(server) = S::start(ServerOptions {
        eab: Some(("kid-1".into(), hmac.into())),
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let client = client(&server).await;
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
            &AccountOptions::agreeing_to_terms().with_external_account(wrong),
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
            &AccountOptions::agreeing_to_terms().with_external_account(unknown),
        )
        .await
        .unwrap_err();
    assert!(err.problem().is_some(), "{err:?}");

    // Right key: an account that can order.
    let eab = ExternalAccountKey::new("kid-1", hmac).unwrap();
    let account = client
        .create_account(
            AccountKey::generate(KeyAlgorithm::Es256).unwrap(),
            &AccountOptions::agreeing_to_terms().with_external_account(eab),
        )
        .await
        .expect("account with EAB");
    let solvers = Solvers::new(&server, &ChallengeType::Http01).await;
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

pub async fn key_rollover_then_issue_with_new_key_old_key_refused<S: AcmeServer>() {
    let Some(server) = S::start(ServerOptions::default()).await else {
        return;
    };
    let client = client(&server).await;
    let old = account(&client, KeyAlgorithm::Es256).await;
    let new_key = AccountKey::generate(KeyAlgorithm::Es384).unwrap();
    let new_thumb = new_key.thumbprint().to_owned();
    let new = old.change_key(new_key).await.expect("keyChange");
    assert_eq!(new.url(), old.url());
    assert_eq!(new.key().thumbprint(), new_thumb);

    let solvers = Solvers::new(&server, &ChallengeType::Http01).await;
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

    if client.dialect() == Dialect::V1 {
        // v1 has no lookup without registering.
        let err = client
            .find_account(AccountKey::from_pkcs8_der(new.key().pkcs8_der()).unwrap())
            .await
            .unwrap_err();
        assert_v1_unsupported(&err);
        return;
    }
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

pub async fn account_lookup_update_and_deactivation<S: AcmeServer>() {
    let Some(server) = S::start(ServerOptions::default()).await else {
        return;
    };
    let client = client(&server).await;
    let key = AccountKey::generate(KeyAlgorithm::Es256).unwrap();
    let pem = key.to_pkcs8_pem();
    let v1 = client.dialect() == Dialect::V1;
    let err = client
        .find_account(AccountKey::from_pkcs8_pem(&pem).unwrap())
        .await
        .unwrap_err();
    if v1 {
        assert_v1_unsupported(&err);
    } else {
        assert_eq!(
            err.problem_type(),
            Some(&ProblemType::AccountDoesNotExist),
            "{err}"
        );
    }

    let account = client
        .create_account(
            key,
            &AccountOptions::agreeing_to_terms().with_contact("a@example.com"),
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
    if !v1 {
        let found = client
            .find_account(AccountKey::from_pkcs8_pem(&pem).unwrap())
            .await
            .unwrap();
        assert_eq!(found.url(), account.url());
    }

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
    assert_eq!(deactivated.status, sturdy_acme::AccountStatus::Deactivated);
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

pub async fn revocation_by_account_key_and_by_certificate_key<S: AcmeServer>() {
    let Some(server) = S::start(ServerOptions::default()).await else {
        return;
    };
    let client = client(&server).await;
    let account = account(&client, KeyAlgorithm::Es256).await;
    let solvers = Solvers::new(&server, &ChallengeType::Http01).await;

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
    assert_eq!(server.revocation_reason(&serial1).await, Some(None));
    account
        .revoke_certificate(chain1.leaf_der(), Some(RevocationReason::Superseded))
        .await
        .expect("revoke by account key");
    assert_eq!(server.revocation_reason(&serial1).await, Some(Some(4)));

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
    assert_eq!(server.revocation_reason(&serial2).await, Some(Some(1)));

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
        server
            .revocation_reason(&verify::serial_hex(chain3.leaf_der()))
            .await,
        Some(None)
    );
}

pub async fn alternate_chains_and_preferred_issuer<S: AcmeServer>() {
    let Some(server) = S::start(ServerOptions {
        alternate_chain: true,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let client = client(&server).await;
    let account = account(&client, KeyAlgorithm::Es256).await;
    let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();

    let roots = server.issuing_roots().await;
    assert!(roots.len() >= 2, "an alternate root is offered");
    let root_cns: Vec<String> = roots
        .iter()
        .map(|pem| verify::subject_cn(&super::pem_certs(pem)[0]))
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
    assert_eq!(
        default.alternate_urls().len(),
        roots.len() - 1,
        "one alternate per extra root"
    );
    let default_cn = default.top_issuer_common_name().unwrap();
    assert!(
        root_cns.contains(&default_cn),
        "{default_cn} in {root_cns:?}"
    );

    for (i, cn) in root_cns.iter().enumerate() {
        let by_name = sturdy_acme::ChainPreference::root_name(cn.as_str());
        let chain = order.certificate_chain(Some(&by_name)).await.unwrap();
        assert_eq!(chain.top_issuer_common_name().as_deref(), Some(cn.as_str()));
        // The same chain chosen by the root's key instead of its name.
        let by_key = sturdy_acme::ChainPreference::RootKey(verify::cert_spki(&roots[i]));
        let keyed = order.certificate_chain(Some(&by_key)).await.unwrap();
        assert_eq!(keyed.pem(), chain.pem(), "by key as by name: {cn}");
        assert!(keyed.leads_to(&by_key));
        if roots.len() > 1 {
            let other = verify::cert_spki(&roots[(i + 1) % roots.len()]);
            assert!(!keyed.leads_to(&sturdy_acme::ChainPreference::RootKey(other)));
        }
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
    let unknown = sturdy_acme::ChainPreference::root_name("No Such Root");
    let chain = order.certificate_chain(Some(&unknown)).await.unwrap();
    assert_eq!(chain.pem(), default.pem());
}

pub async fn order_failure_names_the_identifier<S: AcmeServer>() {
    // Real validation with nothing answering: the authorization fails and
    // the error names the identifier and carries the CA's problem.
    let Some(server) = S::start(ServerOptions::real()).await else {
        return;
    };
    let client = client(&server).await;
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
