//! An edge's resolver: memory per certificate, handshakes per second with
//! N certificates loaded versus one, and the time to apply changes.
//!
//! ```text
//! cargo bench --bench serve -- --certificates 100000 --changes 10000
//! ```
//!
//! Prints: the RSS the resolver added per certificate (certificates made
//! and installed a thousand at a time, each batch dropped once applied);
//! the SNI lookup's cost and full TLS 1.3 handshakes per second (client
//! and server in this process, bytes passed in memory, one core) with all
//! N loaded and with one; and the time to apply `--changes` replacements,
//! as one batch and one at a time.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ServerConfig, ServerConnection,
};
use sturdy_acme::Identifier;
use sturdy_acme::serve::{CertificateResolver, Update};
use sturdy_acme::store::{IdentifierSetKey, StoredCertificate};
use zeroize::Zeroizing;

#[derive(Parser, Debug)]
#[command(about = "Measure the edge's certificate resolver")]
struct Args {
    /// Certificates loaded.
    #[arg(long, default_value_t = 100_000)]
    certificates: usize,
    /// Replacements applied (the change benchmark).
    #[arg(long, default_value_t = 10_000)]
    changes: usize,
    /// Seconds of handshakes per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
}

/// `VmRSS` of this process, in KB (Linux).
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn name(i: usize) -> String {
    format!("site{i}.customer{}.example", i % 977)
}

fn update(i: usize, generation: u64) -> Update {
    let n = name(i);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec![n.clone()])
        .expect("name")
        .self_signed(&key)
        .expect("certificate");
    let id = Identifier::dns(&n).expect("name");
    let now = SystemTime::now() + Duration::from_secs(generation);
    (
        IdentifierSetKey::for_account(
            "https://ca.example/dir",
            "https://ca.example/acct/1",
            std::slice::from_ref(&id),
        ),
        Some(StoredCertificate {
            identifiers: vec![id],
            chain_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
            url: format!("https://ca.example/cert/{i}"),
            not_before: now,
            not_after: now + Duration::from_secs(90 * 86_400),
            serial: format!("{i:x}-{generation}"),
            revoked: None,
            renewal: None,
            profile: Default::default(),
        }),
    )
}

/// Accepts any server certificate: the benchmark measures the server.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One handshake, the bytes passed in memory.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) {
    let mut buf = Vec::with_capacity(8192);
    while client.is_handshaking() || server.is_handshaking() {
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf).expect("client writes");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).expect("server reads");
        }
        server.process_new_packets().expect("server handshake");
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).expect("server writes");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).expect("client reads");
        }
        client.process_new_packets().expect("client handshake");
    }
}

/// Handshakes per second against `resolver` for names drawn from `0..n`.
fn handshakes_per_second(resolver: Arc<CertificateResolver>, n: usize, seconds: f64) -> f64 {
    let provider = sturdy_acme::tls_provider();
    let server = Arc::new(
        ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_cert_resolver(resolver),
    );
    let client = Arc::new(
        ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    );
    let started = Instant::now();
    let mut done = 0u64;
    let mut i = 0usize;
    while started.elapsed().as_secs_f64() < seconds {
        i = (i + 7919) % n;
        let sni = ServerName::try_from(name(i)).expect("name");
        let mut c = ClientConnection::new(Arc::clone(&client), sni).expect("client");
        let mut s = ServerConnection::new(Arc::clone(&server)).expect("server");
        handshake(&mut c, &mut s);
        done += 1;
    }
    done as f64 / started.elapsed().as_secs_f64()
}

/// Nanoseconds per SNI lookup over names drawn from `0..n`.
fn lookup_ns(resolver: &CertificateResolver, n: usize) -> f64 {
    let names: Vec<String> = (0..1000).map(|k| name((k * 7919) % n)).collect();
    let rounds = 2000;
    let started = Instant::now();
    let mut found = 0usize;
    for _ in 0..rounds {
        for n in &names {
            found += usize::from(resolver.resolve_name(n).is_some());
        }
    }
    assert_eq!(found, rounds * names.len(), "every name resolves");
    started.elapsed().as_nanos() as f64 / found as f64
}

fn main() {
    let args = Args::parse();
    let n = args.certificates.max(1);
    println!(
        "edge resolver: {n} certificates (P-256, one name each), {} changes",
        args.changes
    );

    let base = rss_kb();
    let many = Arc::new(CertificateResolver::new());
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<Update> = chunk.iter().map(|&i| update(i, 0)).collect();
        assert!(many.apply(batch).is_empty());
    }
    let loaded = rss_kb();
    println!(
        "  loaded in {:.1} s (making the certificates included); RSS +{:.1} MB: {:.0} bytes per certificate",
        started.elapsed().as_secs_f64(),
        (loaded - base) as f64 / 1024.0,
        (loaded - base) as f64 * 1024.0 / n as f64
    );

    let one = Arc::new(CertificateResolver::new());
    one.apply([update(0, 0)]);
    println!(
        "  SNI lookup: {:.0} ns with {n} loaded, {:.0} ns with one",
        lookup_ns(&many, n),
        lookup_ns(&one, 1)
    );
    let with_many = handshakes_per_second(Arc::clone(&many), n, args.seconds);
    let with_one = handshakes_per_second(one, 1, args.seconds);
    println!(
        "  TLS 1.3 handshakes per second (one core, in memory): {with_many:.0} with {n} loaded, {with_one:.0} with one ({:.3}x)",
        with_many / with_one
    );

    let changes = args.changes.min(n);
    let replacements: Vec<Update> = (0..changes)
        .map(|i| update(i * (n / changes.max(1)), 1))
        .collect();
    let started = Instant::now();
    assert!(many.apply(replacements).is_empty());
    let batch = started.elapsed();
    let singles: Vec<Update> = (0..changes)
        .map(|i| update(i * (n / changes.max(1)), 2))
        .collect();
    let started = Instant::now();
    for u in singles {
        assert!(many.apply([u]).is_empty());
    }
    let single = started.elapsed();
    println!(
        "  {changes} replacements applied: {:.0} ms as one batch, {:.0} ms one at a time ({:.1} us each; key parsing included)",
        batch.as_secs_f64() * 1e3,
        single.as_secs_f64() * 1e3,
        single.as_secs_f64() * 1e6 / changes.max(1) as f64
    );
    println!("  RSS at the end: {:.1} MB", rss_kb() as f64 / 1024.0);
}
