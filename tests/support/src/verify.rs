//! Checks on issued certificates.

use std::net::IpAddr;

use rustls::pki_types::{CertificateDer, ServerName, SignatureVerificationAlgorithm, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

/// ring's signature verification algorithms (no aws-lc-rs).
static RING_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_3072_8192_SHA384,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// Panics (with a description of every certificate involved) unless the first
/// certificate of `chain_pem` chains, through the other certificates of
/// `chain_pem` as intermediates, to one of `root_pems` (each may hold several
/// PEM blocks), is valid now for TLS server authentication, and is valid for
/// every name in `dns_names` and every address in `ips`.
pub fn verify_chain(chain_pem: &str, root_pems: &[String], dns_names: &[&str], ips: &[IpAddr]) {
    let chain = super::pem_certs(chain_pem);
    assert!(
        !chain.is_empty(),
        "verify_chain: no CERTIFICATE in the chain:\n{chain_pem}"
    );
    let roots: Vec<CertificateDer<'static>> =
        root_pems.iter().flat_map(|p| super::pem_certs(p)).collect();
    assert!(!roots.is_empty(), "verify_chain: no root certificate given");
    let anchors: Vec<_> = roots
        .iter()
        .map(|r| {
            webpki::anchor_from_trusted_cert(r)
                .unwrap_or_else(|e| panic!("verify_chain: unusable root ({e:?}): {}", describe(r)))
        })
        .collect();

    let describe_all = || {
        let mut text = String::from("chain:\n");
        for (i, c) in chain.iter().enumerate() {
            text.push_str(&format!("  [{i}] {}\n", describe(c)));
        }
        text.push_str("roots:\n");
        for r in &roots {
            text.push_str(&format!("  {}\n", describe(r)));
        }
        text
    };

    let leaf = EndEntityCert::try_from(&chain[0]).unwrap_or_else(|e| {
        panic!(
            "verify_chain: cannot parse the leaf ({e:?})\n{}",
            describe_all()
        )
    });
    leaf.verify_for_usage(
        RING_ALGS,
        &anchors,
        &chain[1..],
        UnixTime::now(),
        KeyUsage::server_auth(),
        None,
        None,
    )
    .unwrap_or_else(|e| {
        panic!(
            "verify_chain: the leaf does not chain to a given root: {e:?}\n{}",
            describe_all()
        )
    });

    for name in dns_names {
        let server_name = ServerName::try_from(*name)
            .unwrap_or_else(|e| panic!("verify_chain: {name:?} is not a valid name: {e}"));
        leaf.verify_is_valid_for_subject_name(&server_name)
            .unwrap_or_else(|e| {
                panic!(
                    "verify_chain: leaf not valid for {name:?}: {e:?}\n{}",
                    describe_all()
                )
            });
    }
    for ip in ips {
        let server_name = ServerName::IpAddress((*ip).into());
        leaf.verify_is_valid_for_subject_name(&server_name)
            .unwrap_or_else(|e| {
                panic!(
                    "verify_chain: leaf not valid for {ip}: {e:?}\n{}",
                    describe_all()
                )
            });
    }
}

/// The serial number of a certificate given as PEM (first CERTIFICATE block)
/// or DER, as lowercase hex without leading zeros: the form of the `Serial`
/// field of Pebble's `cert-status-by-serial` answers and of
/// `Pebble::issued_serials` (Pebble accepts any case / leading zeros in
/// requests; its own log line may keep one leading zero nibble).
pub fn serial_hex(cert_pem_or_der: impl AsRef<[u8]>) -> String {
    let der = to_der(cert_pem_or_der.as_ref());
    let cert = parse(&der);
    let hex: String = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The issuer's common name (empty if it has none).
pub fn issuer_cn(der: &[u8]) -> String {
    let cert = parse(der);
    first_cn(cert.issuer())
}

/// The subject's common name (empty if it has none).
pub fn subject_cn(der: &[u8]) -> String {
    let cert = parse(der);
    first_cn(cert.subject())
}

/// The subjectAltName entries: DNS names as-is, IP addresses in their usual
/// text form.
pub fn san_entries(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let cert = parse(der);
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => Some(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()),
                16 => Some(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn first_cn(name: &x509_parser::x509::X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn to_der(input: &[u8]) -> Vec<u8> {
    let trimmed = input.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(trimmed).expect("PEM is not UTF-8");
        let certs = super::pem_certs(text);
        let first = certs
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no CERTIFICATE block in:\n{text}"));
        first.to_vec()
    } else {
        input.to_vec()
    }
}

fn parse(der: &[u8]) -> x509_parser::certificate::X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der)
        .unwrap_or_else(|e| panic!("not a DER certificate: {e}"))
        .1
}

fn describe(der: &CertificateDer<'_>) -> String {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, c)) => format!(
            "subject={} issuer={} serial={} notBefore={} notAfter={} san={:?}",
            c.subject(),
            c.issuer(),
            c.raw_serial_as_string(),
            c.validity().not_before,
            c.validity().not_after,
            san_entries(der),
        ),
        Err(e) => format!("<unparsable certificate: {e}>"),
    }
}

/// The SubjectPublicKeyInfo (DER) of the first certificate in `pem`.
pub fn cert_spki(pem: &str) -> Vec<u8> {
    let block = pem::parse_many(pem)
        .unwrap()
        .into_iter()
        .find(|p| p.tag() == "CERTIFICATE")
        .expect("a certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(block.contents()).unwrap();
    cert.tbs_certificate.subject_pki.raw.to_vec()
}

/// The SubjectPublicKeyInfo (DER) of a PKCS#8 key.
pub fn key_spki(pem: &str) -> Vec<u8> {
    sturdy_acme::CertificateKey::from_pkcs8_pem(pem)
        .unwrap()
        .public_key_der()
}

/// Panics unless `out/key.pem` belongs to `out/cert.pem` and to the leaf of
/// `out/fullchain.pem` (read through the paths a server is given); returns
/// the key's SubjectPublicKeyInfo.
pub fn assert_pairs(out: &std::path::Path) -> Vec<u8> {
    let key = key_spki(&std::fs::read_to_string(out.join("key.pem")).unwrap());
    for name in ["cert.pem", "fullchain.pem"] {
        let cert = cert_spki(&std::fs::read_to_string(out.join(name)).unwrap());
        assert_eq!(
            key,
            cert,
            "key.pem does not belong to {name} in {}",
            out.display()
        );
    }
    key
}

/// A key and its self-signed certificate, as PEM.
pub fn key_and_cert(name: &str) -> (String, String) {
    let key = sturdy_acme::CertificateKey::generate(Default::default()).unwrap();
    let key_pem = key.to_pkcs8_pem().to_string();
    let pair = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&pair)
        .unwrap();
    (key_pem.to_string(), cert.pem())
}
