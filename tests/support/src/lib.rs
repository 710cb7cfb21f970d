//! The shared test harness of the workspace's integration tests (the library's `tests/it` and the command-line tool's `cli/tests`): real servers, started and stopped per test.
//!
//! * [`pebble`]: starts a private Pebble ACME server plus `pebble-challtestsrv`
//!   (as its DNS server) on free loopback ports, one pair per test.
//! * [`postgres`]: starts a private PostgreSQL server (fresh cluster, free
//!   loopback port) per test; restart / stop / start again on demand.
//! * [`tcp_proxy`]: a TCP proxy between a client under test and a server,
//!   able to simulate a network partition (bytes held, nothing closed).
//! * [`verify`]: checks issued chains with rustls-webpki and pulls serials /
//!   names out of certificates.
//! * [`tls_alpn`]: a tls-alpn-01 (RFC 8737) responder for Pebble's VA to
//!   connect to.
//!
//! Everything here uses the *ring* rustls provider explicitly; nothing relies on
//! a process-wide default provider.
#![allow(dead_code)]

pub mod dns_proxy;
pub mod knot;
pub mod pebble;
pub mod postgres;
pub mod tcp_proxy;
pub mod tls_alpn;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;

/// The ring crypto provider, as an `Arc` ready for the rustls builders.
pub fn ring_provider() -> Arc<CryptoProvider> {
    sturdy_acme::tls_provider()
}

/// A fresh scratch directory name for this process (removed if a previous
/// run left it; not created).
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sturdy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// True when running under CI (`CI=true`), where a missing Pebble is a failure
/// instead of a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Install a `tracing` subscriber writing to the test's captured output,
/// filtered by `RUST_LOG` (default `sturdy_acme=debug`). Safe to call from
/// every test; only the first call in a process takes effect.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("sturdy_acme=debug"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// All `CERTIFICATE` blocks of a PEM string, as DER. Panics on malformed PEM.
pub fn pem_certs(pem_text: &str) -> Vec<CertificateDer<'static>> {
    let blocks =
        pem::parse_many(pem_text).unwrap_or_else(|e| panic!("malformed PEM ({e}):\n{pem_text}"));
    blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| CertificateDer::from(b.into_contents()))
        .collect()
}

/// A rustls `ClientConfig` (ring provider, TLS 1.2 + 1.3) trusting exactly the
/// certificates in `root_pems` (each string may hold several PEM blocks).
pub fn client_config_trusting(root_pems: &[&str]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for pem_text in root_pems {
        let certs = pem_certs(pem_text);
        assert!(!certs.is_empty(), "no CERTIFICATE block in:\n{pem_text}");
        for cert in certs {
            roots
                .add(cert)
                .unwrap_or_else(|e| panic!("cannot use root certificate: {e}"));
        }
    }
    rustls::ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .expect("ring provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A reqwest client (no proxy, TCP_NODELAY, 10 s timeout) whose TLS trusts only
/// `root_pem`. Use it for plain HTTPS requests in tests (not for the ACME
/// client under test, which builds its own).
pub fn http_client_trusting(root_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config_trusting(&[root_pem]))
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("building a reqwest client with a preconfigured rustls config")
}

/// GET `url` and parse the body as JSON; panics with the status and body on
/// failure.
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    let resp = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status();
    let body = resp
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: reading body: {e}"));
    assert!(status.is_success(), "GET {url}: {status}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

pub mod ca_thread;
pub mod embedded;
pub mod suite;

/// The SubjectPublicKeyInfo (DER) of a certificate.
pub fn spki_of(der: &[u8]) -> Vec<u8> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.public_key().raw.to_vec()
}

/// A [`CertificateFinder`](sturdy_acme::CertificateFinder) that searches the
/// embedded CA's ledger as a Certificate Transparency search would search
/// the logs; counts its calls.
pub struct LedgerFinder {
    /// The CA whose ledger is searched.
    pub ca: Arc<sturdy_acme_testca::TestCa>,
    /// How many times it was asked.
    pub calls: std::sync::atomic::AtomicUsize,
}

impl LedgerFinder {
    /// A finder over `ca`'s ledger.
    pub fn new(ca: &Arc<sturdy_acme_testca::TestCa>) -> Self {
        Self {
            ca: Arc::clone(ca),
            calls: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl sturdy_acme::CertificateFinder for LedgerFinder {
    fn find<'a>(
        &'a self,
        identifiers: &'a [sturdy_acme::Identifier],
        public_key_spki_der: &'a [u8],
        issued_after: std::time::SystemTime,
    ) -> sturdy_acme::FindFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let found = self.ca.ledger().certificates.into_iter().find(|c| {
                c.identifiers == identifiers
                    && c.issued_at >= issued_after
                    && spki_of(&c.leaf_der) == public_key_spki_der
            });
            Ok(found.map(|c| pem::encode(&pem::Pem::new("CERTIFICATE", c.leaf_der))))
        })
    }
}
