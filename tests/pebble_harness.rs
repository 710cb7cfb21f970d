//! Self-tests of the test harness in `tests/common/`: Pebble + challtestsrv
//! management, DNS, request counting, the tls-alpn-01 responder and chain
//! verification. The last test drives a real issuance (with a minimal ACME
//! client private to this file) through all three challenge types, so that the
//! wiring Pebble's VA depends on (DNS answers, http/tls ports, reverse-DNS SNI
//! for IP identifiers) is proven independently of the library under test.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::pebble::{Pebble, PebbleOptions};
use common::tls_alpn::{ACME_TLS_1, TlsAlpnResponder};
use common::verify::{issuer_cn, san_entries, serial_hex, subject_cn, verify_chain};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

// ---------------------------------------------------------------------------
// A real issuance through Pebble's VA, with a minimal ACME client.

struct MiniAcme {
    client: reqwest::Client,
    dir: serde_json::Value,
    key: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    kid: Option<String>,
    nonce: Option<String>,
}

impl MiniAcme {
    async fn new(pebble: &Pebble) -> MiniAcme {
        let client = pebble.http_client();
        let dir = common::get_json(&client, &pebble.directory_url()).await;
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let mut me = MiniAcme {
            client,
            dir,
            key,
            rng,
            kid: None,
            nonce: None,
        };
        let url = me.dir["newAccount"].as_str().unwrap().to_owned();
        let (_, headers) = me
            .post(
                &url,
                Some(serde_json::json!({"termsOfServiceAgreed": true})),
            )
            .await;
        me.kid = Some(headers["location"].to_str().unwrap().to_owned());
        me
    }

    fn jwk(&self) -> serde_json::Value {
        use ring::signature::KeyPair as _;
        let point = self.key.public_key().as_ref(); // 0x04 || x || y
        serde_json::json!({
            "crv": "P-256",
            "kty": "EC",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    fn key_authorization(&self, token: &str) -> String {
        let jwk = self.jwk();
        // RFC 7638: members in lexicographic order, no whitespace.
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        let thumb = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        format!("{token}.{}", URL_SAFE_NO_PAD.encode(thumb.as_ref()))
    }

    /// POST (payload) or POST-as-GET (None); panics on an error status.
    async fn post(
        &mut self,
        url: &str,
        payload: Option<serde_json::Value>,
    ) -> (serde_json::Value, reqwest::header::HeaderMap) {
        let (status, body, headers) = self.post_raw(url, payload).await;
        assert!(status.is_success(), "POST {url}: {status}: {body}");
        let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
        (json, headers)
    }

    async fn post_raw(
        &mut self,
        url: &str,
        payload: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, String, reqwest::header::HeaderMap) {
        let nonce = match self.nonce.take() {
            Some(n) => n,
            None => {
                let new_nonce = self.dir["newNonce"].as_str().unwrap();
                let resp = self.client.head(new_nonce).send().await.unwrap();
                resp.headers()["replay-nonce"].to_str().unwrap().to_owned()
            }
        };
        let mut protected = serde_json::json!({"alg": "ES256", "nonce": nonce, "url": url});
        match &self.kid {
            Some(kid) => protected["kid"] = kid.clone().into(),
            None => protected["jwk"] = self.jwk(),
        }
        let protected = URL_SAFE_NO_PAD.encode(protected.to_string());
        let payload = payload
            .map(|p| URL_SAFE_NO_PAD.encode(p.to_string()))
            .unwrap_or_default();
        let signature = self
            .key
            .sign(&self.rng, format!("{protected}.{payload}").as_bytes())
            .unwrap();
        let body = serde_json::json!({
            "protected": protected,
            "payload": payload,
            "signature": URL_SAFE_NO_PAD.encode(signature.as_ref()),
        });
        let resp = self
            .client
            .post(url)
            .header("content-type", "application/jose+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        if let Some(n) = headers.get("replay-nonce") {
            self.nonce = Some(n.to_str().unwrap().to_owned());
        }
        (status, resp.text().await.unwrap(), headers)
    }

    async fn poll_until_valid(&mut self, url: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (obj, _) = self.post(url, None).await;
            match obj["status"].as_str() {
                Some("valid") => return obj,
                Some("invalid") => panic!("{url} became invalid: {obj:#}"),
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "{url} not valid in time: {obj:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Minimal http-01 responder: serves `/.well-known/acme-challenge/<token>`.
async fn http01_server(
    port: u16,
    tokens: Arc<Mutex<HashMap<String, String>>>,
) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("binding http-01 port {port}: {e}"));
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            let tokens = tokens.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let path = head.split_whitespace().nth(1).unwrap_or("");
                let token = path.strip_prefix("/.well-known/acme-challenge/");
                let body = token.and_then(|t| tokens.lock().unwrap().get(t).cloned());
                let resp = match body {
                    Some(b) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                        b.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_owned()
                    }
                };
                let _ = tcp.write_all(resp.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    })
}

#[tokio::test]
async fn real_validation_of_all_challenge_types_and_cert_status() {
    let Some(pebble) = Pebble::start(PebbleOptions::default()).await else {
        return;
    };
    let alpn = TlsAlpnResponder::start(pebble.tls_port()).await;
    let tokens = Arc::new(Mutex::new(HashMap::new()));
    let http = http01_server(pebble.http_port(), tokens.clone()).await;
    let mut acme = MiniAcme::new(&pebble).await;

    // identifier -> challenge type to use
    let plan = [
        ("dns", "alpn.example.test", "tls-alpn-01"),
        ("ip", "127.0.0.1", "tls-alpn-01"),
        ("dns", "web.example.test", "http-01"),
        ("dns", "txt.example.test", "dns-01"),
    ];
    let identifiers: Vec<_> = plan
        .iter()
        .map(|(t, v, _)| serde_json::json!({"type": t, "value": v}))
        .collect();
    let new_order = acme.dir["newOrder"].as_str().unwrap().to_owned();
    let (order, headers) = acme
        .post(
            &new_order,
            Some(serde_json::json!({ "identifiers": identifiers })),
        )
        .await;
    let order_url = headers["location"].to_str().unwrap().to_owned();

    let mut authz_urls = Vec::new();
    for authz_url in order["authorizations"].as_array().unwrap() {
        let authz_url = authz_url.as_str().unwrap().to_owned();
        let (authz, _) = acme.post(&authz_url, None).await;
        let value = authz["identifier"]["value"].as_str().unwrap();
        let (_, _, kind) = plan.iter().find(|(_, v, _)| *v == value).unwrap();
        let chall = authz["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == *kind)
            .unwrap_or_else(|| panic!("no {kind} for {value}: {authz:#}"));
        let token = chall["token"].as_str().unwrap();
        let key_auth = acme.key_authorization(token);
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, key_auth.as_bytes())
            .as_ref()
            .try_into()
            .unwrap();
        match *kind {
            "tls-alpn-01" => {
                let (cert, key) = alpn_cert(value, &digest);
                alpn.set(value, cert, key);
            }
            "http-01" => {
                tokens.lock().unwrap().insert(token.to_owned(), key_auth);
            }
            "dns-01" => {
                pebble
                    .set_txt(
                        &format!("_acme-challenge.{value}"),
                        &URL_SAFE_NO_PAD.encode(digest),
                    )
                    .await;
            }
            _ => unreachable!(),
        }
        let chall_url = chall["url"].as_str().unwrap().to_owned();
        acme.post(&chall_url, Some(serde_json::json!({}))).await;
        authz_urls.push(authz_url);
    }
    for url in &authz_urls {
        acme.poll_until_valid(url).await;
    }
    // Pebble's VA connected to the responder with the expected SNIs.
    let snis = alpn.handshakes();
    assert!(
        snis.contains(&Some("alpn.example.test".to_owned())),
        "{snis:?}"
    );
    assert!(
        snis.contains(&Some("1.0.0.127.in-addr.arpa".to_owned())),
        "{snis:?}"
    );

    let csr_key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = plan.iter().map(|(_, v, _)| (*v).to_owned()).collect();
    let csr = rcgen::CertificateParams::new(names)
        .unwrap()
        .serialize_request(&csr_key)
        .unwrap();
    let finalize = order["finalize"].as_str().unwrap().to_owned();
    acme.post(
        &finalize,
        Some(serde_json::json!({"csr": URL_SAFE_NO_PAD.encode(csr.der())})),
    )
    .await;
    let order = acme.poll_until_valid(&order_url).await;
    let cert_url = order["certificate"].as_str().unwrap().to_owned();
    let (chain, _) = acme.post(&cert_url, None).await;
    let chain = chain.as_str().expect("PEM chain").to_owned();

    let root = pebble.issuing_root_pem(0).await;
    verify_chain(
        &chain,
        &[root],
        &["alpn.example.test", "web.example.test", "txt.example.test"],
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
    );
    let leaf = &common::pem_certs(&chain)[0];
    let inter = &common::pem_certs(&pebble.intermediate_pem(0).await)[0];
    assert_eq!(issuer_cn(leaf), subject_cn(inter));

    let serial = serial_hex(&chain);
    assert_eq!(pebble.issued_count(), 1);
    assert_eq!(pebble.issued_serials(), std::slice::from_ref(&serial));
    let status = pebble.cert_status(&serial).await;
    assert_eq!(status["Status"], "Valid", "{status:#}");
    assert_eq!(status["Serial"], serial.as_str());
    assert_eq!(
        common::pem_certs(status["Certificate"].as_str().unwrap())[0],
        *leaf
    );
    // Upper case and leading zeros are accepted too.
    assert_eq!(
        pebble
            .cert_status(&format!("00{}", serial.to_uppercase()))
            .await["Serial"],
        serial.as_str()
    );

    assert_eq!(pebble.count_requests("POST /order-plz"), 1);
    assert_eq!(pebble.count_requests("POST /sign-me-up"), 1);
    assert_eq!(pebble.count_requests("POST /chalZ/"), plan.len());
    assert_eq!(pebble.count_requests("POST /finalize-order/"), 1);
    assert_eq!(pebble.count_requests("POST /certZ/"), 1);
    assert_eq!(pebble.count_requests("HEAD /nonce-plz"), 1);

    // Revocation shows up in cert-status.
    let revoke = acme.dir["revokeCert"].as_str().unwrap().to_owned();
    acme.post(
        &revoke,
        Some(serde_json::json!({"certificate": URL_SAFE_NO_PAD.encode(leaf), "reason": 4})),
    )
    .await;
    let status = pebble.cert_status(&serial).await;
    assert_eq!(status["Status"], "Revoked", "{status:#}");
    assert_eq!(status["Reason"], 4, "{status:#}");
    assert!(status["RevokedAt"].is_string(), "{status:#}");

    http.abort();
}
