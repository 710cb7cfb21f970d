//! Self-tests of the test harness in `tests/common/`: Pebble + challtestsrv
//! management, DNS, request counting, the tls-alpn-01 responder and chain
//! verification. Real issuance through Pebble's VA is exercised by the
//! library's own client in `pebble_v2.rs`.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pebble::{Pebble, PebbleOptions};
use common::tls_alpn::{ACME_TLS_1, TlsAlpnResponder};
use common::verify::{issuer_cn, san_entries, serial_hex, subject_cn, verify_chain};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

#[tokio::test]
async fn pebble_serves_directory_over_trusted_https() {
    let Some(pebble) = Pebble::start(PebbleOptions::default()).await else {
        return;
    };
    let url = pebble.directory_url();
    assert!(url.starts_with("https://127.0.0.1:") && url.ends_with("/dir"));
    // A fresh client, trusting only the listener root.
    let client = common::http_client_trusting(&pebble.listener_root_pem());
    let dir = common::get_json(&client, &url).await;
    for key in [
        "newNonce",
        "newAccount",
        "newOrder",
        "revokeCert",
        "keyChange",
    ] {
        assert!(dir[key].is_string(), "directory lacks {key}: {dir}");
    }
    assert_eq!(dir["meta"]["externalAccountRequired"], false);
    assert_eq!(pebble.count_requests("GET /dir"), 1);
    assert_eq!(pebble.issued_count(), 0);

    // The listener CA must not be trusted by default: a client with only the
    // webpki roots fails.
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(common::ring_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let untrusting = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy()
        .build()
        .unwrap();
    assert!(untrusting.get(&url).send().await.is_err());
}

#[tokio::test]
async fn nonce_head_is_counted() {
    let Some(pebble) = Pebble::start(PebbleOptions::default()).await else {
        return;
    };
    let client = pebble.http_client();
    let dir = common::get_json(&client, &pebble.directory_url()).await;
    let new_nonce = dir["newNonce"].as_str().unwrap();
    assert!(new_nonce.ends_with("/nonce-plz"), "{new_nonce}");
    assert_eq!(pebble.count_requests("HEAD /nonce-plz"), 0);
    for expected in 1..=2 {
        let resp = client.head(new_nonce).send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        assert!(resp.headers().contains_key("replay-nonce"));
        assert_eq!(pebble.count_requests("HEAD /nonce-plz"), expected);
    }
    assert_eq!(pebble.count_requests("POST "), 0);
    assert_eq!(
        pebble.requests(),
        ["GET /dir", "HEAD /nonce-plz", "HEAD /nonce-plz"]
    );
}

#[tokio::test]
async fn management_api_roots_intermediates_and_cert_status() {
    let Some(pebble) = Pebble::start(PebbleOptions::default()).await else {
        return;
    };
    let root_pem = pebble.issuing_root_pem(0).await;
    let roots = common::pem_certs(&root_pem);
    assert_eq!(roots.len(), 1, "{root_pem}");
    let root_cn = subject_cn(&roots[0]);
    assert!(root_cn.starts_with("Pebble Root CA"), "{root_cn}");
    assert_eq!(issuer_cn(&roots[0]), root_cn, "root is self-issued");

    let inter_pem = pebble.intermediate_pem(0).await;
    let inters = common::pem_certs(&inter_pem);
    assert_eq!(inters.len(), 1, "{inter_pem}");
    assert_eq!(issuer_cn(&inters[0]), root_cn);

    // The listener CA is ours, not Pebble's issuing root.
    assert_ne!(
        common::pem_certs(&pebble.listener_root_pem())[0],
        roots[0],
        "listener CA and issuing root must differ"
    );

    // Unknown serial: Null.
    assert_eq!(
        pebble.cert_status("1234abcd").await,
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn options_alternate_roots_and_eab_reach_pebble() {
    let opts = PebbleOptions {
        alternate_roots: 1,
        chain_length: Some(2),
        eab_required: true,
        eab_keys: vec![(
            "kid-1".to_owned(),
            "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W".to_owned(),
        )],
        ..PebbleOptions::default()
    };
    let Some(pebble) = Pebble::start(opts).await else {
        return;
    };
    let dir = common::get_json(&pebble.http_client(), &pebble.directory_url()).await;
    assert_eq!(dir["meta"]["externalAccountRequired"], true, "{dir}");
    let root0 = pebble.issuing_root_pem(0).await;
    let root1 = pebble.issuing_root_pem(1).await;
    assert_ne!(root0, root1);
    assert_eq!(common::pem_certs(&root1).len(), 1);
    let log = pebble.log();
    assert!(log.contains("reject 0% of good nonces"), "{log}");
    assert!(log.contains("authz reuse for each identifier 0%"), "{log}");
}

#[tokio::test]
async fn challtestsrv_txt_records_and_no_ipv6() {
    let Some(pebble) = Pebble::start(PebbleOptions::default()).await else {
        return;
    };
    let host = "_acme-challenge.txt.example.test";
    assert!(pebble.query_txt(host).await.is_empty());
    pebble.set_txt(host, "first").await;
    pebble.set_txt(&format!("{host}."), "second").await;
    let mut got = pebble.query_txt(host).await;
    got.sort();
    assert_eq!(got, ["first", "second"]);
    pebble.clear_txt(host).await;
    assert!(pebble.query_txt(host).await.is_empty());

    // Every name resolves to 127.0.0.1 only.
    let a = pebble.dns_query("anything.example.test", 1).await;
    assert_eq!(a, [vec![127, 0, 0, 1]]);
    assert!(
        pebble
            .dns_query("anything.example.test", 28)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn two_pebbles_run_side_by_side() {
    let (a, b) = tokio::join!(
        Pebble::start(PebbleOptions::default()),
        Pebble::start(PebbleOptions {
            always_valid: true,
            ..PebbleOptions::default()
        })
    );
    let (Some(a), Some(b)) = (a, b) else {
        return;
    };
    let ports = |p: &Pebble| {
        [
            p.directory_url(),
            p.management_url(),
            p.challtestsrv_url(),
            p.http_port().to_string(),
            p.tls_port().to_string(),
            p.dns_server_addr().to_string(),
        ]
    };
    let (pa, pb) = (ports(&a), ports(&b));
    for x in &pa {
        assert!(!pb.contains(x), "{x} used by both: {pa:?} {pb:?}");
    }
    for p in [&a, &b] {
        let resp = p.http_client().get(p.directory_url()).send().await.unwrap();
        assert!(resp.status().is_success());
        // Each trusts only its own listener CA.
        assert_eq!(p.count_requests("GET /dir"), 1);
    }
    let other = common::http_client_trusting(&a.listener_root_pem());
    assert!(other.get(b.directory_url()).send().await.is_err());
    assert_ne!(a.issuing_root_pem(0).await, b.issuing_root_pem(0).await);
    assert!(b.log().contains("VA always returns valid"));
    assert!(!a.log().contains("VA always returns valid"));
}

#[test]
fn pebble_processes_are_gone_after_drop() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(pebble) = rt.block_on(Pebble::start(PebbleOptions::default())) else {
        return;
    };
    let dir = pebble.dir().to_owned();
    let port = pebble.management_url();
    let port: u16 = port.rsplit(':').next().unwrap().parse().unwrap();
    let dns = pebble.dns_server_addr();
    drop(pebble);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(std::net::TcpStream::connect(dns).is_err());
}

// ---------------------------------------------------------------------------
// tls-alpn-01 responder

/// Accepts any server certificate (the test inspects it instead).
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Connect like a validating CA would; returns the presented leaf.
async fn alpn_connect(port: u16, sni: Option<&str>, alpn: &[&[u8]]) -> Result<Vec<u8>, String> {
    let provider = common::ring_provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.enable_sni = sni.is_some();
    let name = ServerName::try_from(sni.unwrap_or("no-sni.invalid").to_owned()).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let conn = tls.get_ref().1;
    assert_eq!(conn.alpn_protocol(), Some(ACME_TLS_1));
    Ok(conn.peer_certificates().unwrap()[0].to_vec())
}

/// A tls-alpn-01 certificate for `name` (DNS name or IP) with the
/// acmeIdentifier extension over `digest`; returns (cert DER, PKCS#8 key DER).
fn alpn_cert(name: &str, digest: &[u8; 32]) -> (Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let cert = params.self_signed(&key).unwrap();
    (cert.der().to_vec(), key.serialize_der())
}

#[tokio::test]
async fn tls_alpn_responder_selects_certificate_by_sni() {
    let responder = TlsAlpnResponder::start(0).await;
    let port = responder.port();
    let (a_cert, a_key) = alpn_cert("a.example.test", &[1; 32]);
    let (b_cert, b_key) = alpn_cert("b.example.test", &[2; 32]);

    // Nothing set yet: handshake refused.
    assert!(
        alpn_connect(port, Some("a.example.test"), &[ACME_TLS_1])
            .await
            .is_err()
    );

    responder.set("a.example.test", a_cert.clone(), a_key);
    // Only one set: served with and without SNI (case and trailing dot ignored).
    assert_eq!(
        alpn_connect(port, Some("A.Example.Test"), &[ACME_TLS_1])
            .await
            .unwrap(),
        a_cert
    );
    assert_eq!(
        alpn_connect(port, None, &[ACME_TLS_1]).await.unwrap(),
        a_cert
    );

    responder.set("b.example.test.", b_cert.clone(), b_key);
    assert_eq!(
        alpn_connect(port, Some("b.example.test"), &[ACME_TLS_1])
            .await
            .unwrap(),
        b_cert
    );
    assert_eq!(
        alpn_connect(port, Some("a.example.test"), &[b"h2", ACME_TLS_1])
            .await
            .unwrap(),
        a_cert
    );
    // Two set: no SNI or unknown SNI is refused.
    assert!(alpn_connect(port, None, &[ACME_TLS_1]).await.is_err());
    assert!(
        alpn_connect(port, Some("c.example.test"), &[ACME_TLS_1])
            .await
            .is_err()
    );
    // ALPN acme-tls/1 is required.
    assert!(
        alpn_connect(port, Some("a.example.test"), &[b"h2"])
            .await
            .is_err()
    );
    assert!(
        alpn_connect(port, Some("a.example.test"), &[])
            .await
            .is_err()
    );

    // The extension is there, critical.
    let (_, parsed) = x509_parser::parse_x509_certificate(&a_cert).unwrap();
    let ext = parsed
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
        .expect("acmeIdentifier extension");
    assert!(ext.critical);

    responder.remove("a.example.test");
    assert!(
        alpn_connect(port, Some("a.example.test"), &[ACME_TLS_1])
            .await
            .is_err()
    );
    assert_eq!(
        responder.handshakes(),
        [
            Some("a.example.test".to_owned()),
            None,
            Some("b.example.test".to_owned()),
            Some("a.example.test".to_owned()),
        ]
    );

    drop(responder);
    // The port is released soon after the drop.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "port {port} still bound");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn tls_alpn_responder_ip_identifier_uses_reverse_name() {
    let responder = TlsAlpnResponder::start(0).await;
    let (ip_cert, ip_key) = alpn_cert("127.0.0.1", &[3; 32]);
    let (v6_cert, v6_key) = alpn_cert("::1", &[4; 32]);
    responder.set("127.0.0.1", ip_cert.clone(), ip_key);
    responder.set("::1", v6_cert.clone(), v6_key);
    assert_eq!(
        alpn_connect(
            responder.port(),
            Some("1.0.0.127.in-addr.arpa"),
            &[ACME_TLS_1]
        )
        .await
        .unwrap(),
        ip_cert
    );
    let v6_name = format!("1{}.ip6.arpa", ".0".repeat(31));
    assert_eq!(
        common::tls_alpn::reverse_dns_name("::1".parse().unwrap()),
        v6_name
    );
    assert_eq!(
        alpn_connect(responder.port(), Some(&v6_name), &[ACME_TLS_1])
            .await
            .unwrap(),
        v6_cert
    );
    assert_eq!(san_entries(&ip_cert), ["127.0.0.1"]);
}

// ---------------------------------------------------------------------------
// verify.rs without Pebble

fn test_chain() -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "Test Root");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["a.example.test".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x0a, 0xbc]));
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    (leaf_cert.pem(), ca_cert.pem())
}

#[test]
fn verify_chain_accepts_good_chain() {
    let (leaf, root) = test_chain();
    verify_chain(
        &leaf,
        &[root],
        &["a.example.test"],
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
    );
    assert_eq!(serial_hex(&leaf), "abc");
    assert_eq!(serial_hex(common::pem_certs(&leaf)[0].as_ref()), "abc");
    assert_eq!(issuer_cn(&common::pem_certs(&leaf)[0]), "Test Root");
}

#[test]
#[should_panic(expected = "leaf not valid for \"b.example.test\"")]
fn verify_chain_rejects_wrong_name() {
    let (leaf, root) = test_chain();
    verify_chain(&leaf, &[root], &["b.example.test"], &[]);
}

#[test]
#[should_panic(expected = "does not chain to a given root")]
fn verify_chain_rejects_wrong_root() {
    let (leaf, _) = test_chain();
    let (_, other_root) = test_chain();
    verify_chain(&leaf, &[other_root], &[], &[]);
}
