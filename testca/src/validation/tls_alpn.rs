//! tls-alpn-01 (RFC 8737, IP identifiers per RFC 8738): the handshake
//! offering only `acme-tls/1` and Boulder's checks of the validation
//! certificate.

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, PeerMisbehaved};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use x509_parser::prelude::GeneralName;

use super::{AFTER_CONNECT_TIMEOUT, CONNECT_TIMEOUT, io_reason};
use sturdy_acme::Identifier;
use sturdy_acme::challenge::{ACME_TLS_ALPN_PROTOCOL, tls_alpn01_digest};
use sturdy_acme::{Problem, ProblemType};

/// Validates a tls-alpn-01 challenge (RFC 8737): a TLS handshake with
/// `connect_ip:port` offering only ALPN `acme-tls/1`, SNI the DNS name (for
/// an IP identifier its reverse-DNS name, RFC 8738 §6), any certificate
/// accepted by the handshake (only its signatures are checked). Then, as
/// Boulder does: `acme-tls/1` must have been negotiated, and the
/// certificate must be self-signed, carry exactly one subjectAltName equal
/// to the identifier and a critical `acmeIdentifier` extension holding
/// SHA-256(key authorization).
///
/// Failures: `connection` (refused, reset, timeouts), `tls` (handshake
/// errors, e.g. the server refusing the ALPN protocol), `unauthorized` (no
/// ALPN negotiated, a wrong certificate), `malformed` (an identifier that
/// cannot be validated this way).
pub(crate) async fn validate_tls_alpn01(
    connect_ip: IpAddr,
    port: u16,
    identifier: &Identifier,
    key_authorization: &str,
    timeout: Duration,
) -> Result<(), Problem> {
    let unsupported = || {
        Problem::new(
            ProblemType::Malformed,
            format!("Identifier {identifier} cannot be validated with tls-alpn-01"),
        )
    };
    let sni = match (identifier.kind.as_str(), identifier.ip_addr()) {
        ("dns", _) if !identifier.is_wildcard() => identifier.value.clone(),
        ("ip", Some(ip)) => reverse_dns_name(ip),
        _ => return Err(unsupported()),
    };
    let server_name = ServerName::try_from(sni.clone()).map_err(|_| unsupported())?;
    let addr = SocketAddr::new(connect_ip, port);
    let connection =
        |reason: &str| Problem::new(ProblemType::Connection, format!("{connect_ip}: {reason}"));
    tracing::debug!(%identifier, %addr, sni, "tls-alpn-01 validation");

    let deadline = Instant::now() + timeout;
    let stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return Err(connection(CONNECT_TIMEOUT)),
        Ok(Err(e)) => return Err(connection(&io_reason(&e))),
        Ok(Ok(stream)) => stream,
    };
    let connector = tokio_rustls::TlsConnector::from(tls_alpn01_client_config()?);
    let tls = match timeout_at(deadline, connector.connect(server_name, stream)).await {
        Err(_) => return Err(connection(AFTER_CONNECT_TIMEOUT)),
        Ok(Err(e)) => {
            let tls_error = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            return Err(match tls_error {
                Some(tls_error) => Problem::new(
                    ProblemType::Tls,
                    format!("{connect_ip}: TLS handshake failed: {tls_error}"),
                ),
                None if e.kind() == io::ErrorKind::UnexpectedEof => {
                    connection("Connection closed during the TLS handshake")
                }
                None => connection(&io_reason(&e)),
            });
        }
        Ok(Ok(tls)) => tls,
    };
    let (_, session) = tls.get_ref();
    if session.alpn_protocol() != Some(ACME_TLS_ALPN_PROTOCOL) {
        return Err(Problem::new(
            ProblemType::Unauthorized,
            "Cannot negotiate ALPN protocol \"acme-tls/1\" for tls-alpn-01 challenge",
        ));
    }
    let Some(leaf) = session.peer_certificates().and_then(|c| c.first()) else {
        return Err(Problem::new(
            ProblemType::Unauthorized,
            "No certs presented for tls-alpn-01 challenge",
        ));
    };
    check_validation_certificate(leaf, identifier, key_authorization).map_err(|why| {
        Problem::new(
            ProblemType::Unauthorized,
            format!(
                "Incorrect validation certificate for tls-alpn-01 challenge. \
                 Requested {} from {addr}. {why}",
                identifier.value
            ),
        )
    })
}

/// The reverse-DNS name of an address (`1.0.0.127.in-addr.arpa`,
/// `…ip6.arpa`), the SNI of tls-alpn-01 for IP identifiers (RFC 8738 §6).
fn reverse_dns_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                let _ = write!(name, "{:x}.{:x}.", byte & 0x0f, byte >> 4);
            }
            name.push_str("ip6.arpa");
            name
        }
    }
}

/// The rustls client configuration of tls-alpn-01: ring, ALPN `acme-tls/1`
/// only, any certificate accepted.
fn tls_alpn01_client_config() -> Result<Arc<rustls::ClientConfig>, Problem> {
    let provider = sturdy_acme::tls_provider();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Problem::new(ProblemType::ServerInternal, format!("TLS client: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![ACME_TLS_ALPN_PROTOCOL.to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any server certificate (the validation certificate is
/// self-signed and checked afterwards) but still verifies the handshake
/// signatures with the provider's algorithms.
///
/// rustls' own signature helpers parse the certificate with webpki, which
/// rejects the critical `acmeIdentifier` extension; the key is taken out
/// with x509-parser instead.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl AcceptAnyCertificate {
    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let bad_encoding = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
        let (_, x509) = x509_parser::parse_x509_certificate(cert).map_err(|_| bad_encoding())?;
        let spki = x509.public_key();
        // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, ... }
        let (_, spki_contents, _) = der_tlv(spki.raw)
            .filter(|(tag, _, _)| *tag == 0x30)
            .ok_or_else(bad_encoding)?;
        let (_, alg_id, _) = der_tlv(spki_contents)
            .filter(|(tag, _, _)| *tag == 0x30)
            .ok_or_else(bad_encoding)?;
        let candidates = self
            .0
            .signature_verification_algorithms
            .mapping
            .iter()
            .filter(|(scheme, _)| *scheme == dss.scheme)
            .flat_map(|(_, algs)| algs.iter());
        for alg in candidates {
            if alg.public_key_alg_id().as_ref() != alg_id {
                continue;
            }
            return alg
                .verify_signature(&spki.subject_public_key.data, message, dss.signature())
                .map(|()| HandshakeSignatureValid::assertion())
                .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature));
        }
        Err(rustls::Error::PeerMisbehaved(
            PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ))
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Splits one DER TLV off `input`: the tag, the contents and what follows.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const OID_ACME_IDENTIFIER: &str = "1.3.6.1.5.5.7.1.31";
const OID_SUBJECT_ALT_NAME: &str = "2.5.29.17";

/// Boulder's checks of a tls-alpn-01 certificate; the error is the sentence
/// that ends the problem detail.
fn check_validation_certificate(
    der: &[u8],
    identifier: &Identifier,
    key_authorization: &str,
) -> Result<(), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("Received certificate that could not be parsed: {e}."))?;

    if cert.subject().as_raw() != cert.issuer().as_raw() || cert.verify_signature(None).is_err() {
        return Err("Received certificate which is not self-signed.".into());
    }

    let mut seen = Vec::new();
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if seen.contains(&oid) {
            return Err(format!(
                "Received certificate with unexpected extensions: \"Extension OID {oid} seen twice\""
            ));
        }
        seen.push(oid);
    }
    for required in [OID_ACME_IDENTIFIER, OID_SUBJECT_ALT_NAME] {
        if !seen.iter().any(|oid| oid == required) {
            return Err(format!(
                "Received certificate with unexpected extensions: \
                 \"Required extension OID {required} is not present\""
            ));
        }
    }

    let san_names: Vec<GeneralName<'_>> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san.value.general_names.clone(),
        _ => Vec::new(),
    };
    let san_error = match san_names.as_slice() {
        [only] if san_matches(only, identifier) => None,
        [_] => Some("identifier does not match expected identifier"),
        _ => Some("wrong number of identifiers"),
    };
    if let Some(why) = san_error {
        let mut names: Vec<String> = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
            .chain(san_names.iter().map(describe_general_name))
            .map(|n| n.to_ascii_lowercase())
            .collect();
        names.sort();
        names.dedup();
        return Err(format!(
            "Received certificate with unexpected identifiers ({:?}): {why:?}",
            names.join(", ")
        ));
    }

    let digest = tls_alpn01_digest(key_authorization);
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == OID_ACME_IDENTIFIER)
        .ok_or("Received certificate with no acmeValidationV1 extension.")?;
    if !ext.critical {
        return Err(
            "Received certificate with acmeValidationV1 extension that is not Critical.".into(),
        );
    }
    // OCTET STRING (tag 4, length 32) holding the digest.
    let value = match ext.value {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
        _ => {
            return Err(
                "Received certificate with malformed acmeValidationV1 extension value.".into(),
            );
        }
    };
    if value != digest {
        return Err(format!(
            "Received certificate with acmeValidationV1 extension value {} but expected {}.",
            hex(value),
            hex(&digest)
        ));
    }
    Ok(())
}

fn san_matches(name: &GeneralName<'_>, identifier: &Identifier) -> bool {
    match (name, identifier.kind.as_str()) {
        (GeneralName::DNSName(dns), "dns") => dns.eq_ignore_ascii_case(&identifier.value),
        (GeneralName::IPAddress(bytes), "ip") => {
            ip_from_bytes(bytes).is_some_and(|ip| Some(ip) == identifier.ip_addr())
        }
        _ => false,
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn describe_general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(dns) => (*dns).to_owned(),
        GeneralName::IPAddress(bytes) => match ip_from_bytes(bytes) {
            Some(ip) => ip.to_string(),
            None => hex(bytes),
        },
        GeneralName::RFC822Name(email) => (*email).to_owned(),
        GeneralName::URI(uri) => (*uri).to_owned(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::test_support::*;
    use rcgen::{CertificateParams, CustomExtension, Issuer, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;
    use std::sync::Mutex;
    use sturdy_acme::challenge::tls_alpn01_certificate;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    /// A TLS server presenting one certificate, recording the SNI of every
    /// client hello.
    struct TlsServer {
        port: u16,
        sni: Arc<Mutex<Vec<Option<String>>>>,
        task: JoinHandle<()>,
    }

    impl Drop for TlsServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Presents the same certificate to every client, recording the SNI
    /// (before the client can finish its handshake).
    #[derive(Debug)]
    struct OneCert {
        cert: Arc<CertifiedKey>,
        sni: Arc<Mutex<Vec<Option<String>>>>,
    }

    impl ResolvesServerCert for OneCert {
        fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            let name = hello.server_name().map(str::to_owned);
            self.sni.lock().unwrap().push(name);
            Some(Arc::clone(&self.cert))
        }
    }

    async fn tls_server(cert_der: Vec<u8>, key_der: Vec<u8>, alpn: &[&[u8]]) -> TlsServer {
        let sni = Arc::new(Mutex::new(Vec::new()));
        let provider = sturdy_acme::tls_provider();
        // `with_single_cert` would reject the critical acmeIdentifier
        // extension (webpki does not know it); a CertifiedKey is not checked.
        let key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der)))
            .unwrap();
        let certified = Arc::new(CertifiedKey::new(vec![CertificateDer::from(cert_der)], key));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(OneCert {
                cert: certified,
                sni: Arc::clone(&sni),
            }));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let _ = tls.shutdown().await;
                }
            }
        });
        TlsServer { port, sni, task }
    }

    async fn alpn_responder(id: &Identifier, ka: &str) -> TlsServer {
        let cert = tls_alpn01_certificate(id, ka).unwrap();
        tls_server(
            cert.certificate_der,
            cert.private_key_pkcs8_der.to_vec(),
            &[ACME_TLS_ALPN_PROTOCOL],
        )
        .await
    }

    /// A certificate for `names`, with the acmeIdentifier extension holding
    /// the digest of KA (`critical` as given) if `acme`, self-signed unless
    /// `foreign_issuer`.
    fn custom_cert(names: &[&str], acme: Option<bool>, foreign_issuer: bool) -> (Vec<u8>, Vec<u8>) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        if let Some(critical) = acme {
            let mut ext = CustomExtension::new_acme_identifier(&tls_alpn01_digest(KA));
            ext.set_criticality(critical);
            params.custom_extensions.push(ext);
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = if foreign_issuer {
            let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let mut ca_params = CertificateParams::default();
            ca_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "Other CA");
            params
                .signed_by(&key, &Issuer::new(ca_params, ca_key))
                .unwrap()
        } else {
            params.self_signed(&key).unwrap()
        };
        (cert.der().to_vec(), key.serialize_der())
    }

    async fn alpn01(port: u16, id: &Identifier) -> Result<(), Problem> {
        validate_tls_alpn01(LOCALHOST, port, id, KA, TIMEOUT).await
    }

    #[tokio::test]
    async fn tls_alpn01_succeeds_for_dns_and_ip_identifiers() {
        let id = dns("alpn.example.test");
        let server = alpn_responder(&id, KA).await;
        alpn01(server.port, &id).await.unwrap();
        assert_eq!(
            server.sni.lock().unwrap().as_slice(),
            [Some("alpn.example.test".to_owned())]
        );

        let ip = Identifier::ip(LOCALHOST);
        let server = alpn_responder(&ip, KA).await;
        alpn01(server.port, &ip).await.unwrap();
        assert_eq!(
            server.sni.lock().unwrap().as_slice(),
            [Some("1.0.0.127.in-addr.arpa".to_owned())]
        );
    }

    #[tokio::test]
    async fn tls_alpn01_rejects_wrong_certificates() {
        let id = dns("alpn.example.test");
        let expect_bad_cert = |p: Problem, needle: &str| {
            assert_eq!(p.kind, ProblemType::Unauthorized, "{p}");
            let d = detail(&p);
            assert!(
                d.starts_with(
                    "Incorrect validation certificate for tls-alpn-01 challenge. \
                     Requested alpn.example.test from 127.0.0.1:"
                ),
                "{d}"
            );
            assert!(d.contains(needle), "{d}");
        };

        // Digest of another key authorization.
        let server = alpn_responder(&id, "tok-123.other").await;
        let p = alpn01(server.port, &id).await.unwrap_err();
        expect_bad_cert(p, "acmeValidationV1 extension value");
        assert!(
            detail(&alpn01(server.port, &id).await.unwrap_err())
                .contains(&format!("but expected {}.", hex(&tls_alpn01_digest(KA))))
        );

        // Another name.
        let server = alpn_responder(&dns("other.example.test"), KA).await;
        let p = alpn01(server.port, &id).await.unwrap_err();
        expect_bad_cert(p, "unexpected identifiers (\"other.example.test");

        // Two names.
        let (cert, key) = custom_cert(&["alpn.example.test", "b.example.test"], Some(true), false);
        let server = tls_server(cert, key, &[ACME_TLS_ALPN_PROTOCOL]).await;
        let p = alpn01(server.port, &id).await.unwrap_err();
        expect_bad_cert(p, "wrong number of identifiers");

        // No acmeIdentifier extension.
        let (cert, key) = custom_cert(&["alpn.example.test"], None, false);
        let server = tls_server(cert, key, &[ACME_TLS_ALPN_PROTOCOL]).await;
        let p = alpn01(server.port, &id).await.unwrap_err();
        expect_bad_cert(
            p,
            "Required extension OID 1.3.6.1.5.5.7.1.31 is not present",
        );

        // Not critical.
        let (cert, key) = custom_cert(&["alpn.example.test"], Some(false), false);
        let server = tls_server(cert, key, &[ACME_TLS_ALPN_PROTOCOL]).await;
        let p = alpn01(server.port, &id).await.unwrap_err();
        expect_bad_cert(p, "not Critical");

        // Not self-signed.
        let (cert, key) = custom_cert(&["alpn.example.test"], Some(true), true);
        let server = tls_server(cert, key, &[ACME_TLS_ALPN_PROTOCOL]).await;
        let p = alpn01(server.port, &id).await.unwrap_err();
        expect_bad_cert(p, "not self-signed");

        // The right certificate for an IP identifier is not one for a name.
        let ip = Identifier::ip(LOCALHOST);
        let server = alpn_responder(&id, KA).await;
        let p = alpn01(server.port, &ip).await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized);
        assert!(detail(&p).contains("unexpected identifiers"), "{p}");
    }

    #[tokio::test]
    async fn tls_alpn01_requires_the_alpn_protocol() {
        let id = dns("alpn.example.test");
        let cert = tls_alpn01_certificate(&id, KA).unwrap();

        // A server without ALPN completes the handshake without a protocol.
        let server = tls_server(
            cert.certificate_der.clone(),
            cert.private_key_pkcs8_der.to_vec(),
            &[],
        )
        .await;
        let p = alpn01(server.port, &id).await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized);
        assert_eq!(
            detail(&p),
            "Cannot negotiate ALPN protocol \"acme-tls/1\" for tls-alpn-01 challenge"
        );

        // A server speaking other protocols refuses the handshake.
        let server = tls_server(
            cert.certificate_der.clone(),
            cert.private_key_pkcs8_der.to_vec(),
            &[b"h2", b"http/1.1"],
        )
        .await;
        let p = alpn01(server.port, &id).await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Tls, "{p}");
        assert!(
            detail(&p).starts_with("127.0.0.1: TLS handshake failed"),
            "{p}"
        );
    }

    #[tokio::test]
    async fn tls_alpn01_connection_failures() {
        let id = dns("alpn.example.test");
        let closed = closed_port().await;
        let p = alpn01(closed, &id).await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Connection);
        assert_eq!(detail(&p), "127.0.0.1: Connection refused");

        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = silent_server(listener);
        let p = validate_tls_alpn01(LOCALHOST, port, &id, KA, Duration::from_millis(300))
            .await
            .unwrap_err();
        task.abort();
        assert_eq!(p.kind, ProblemType::Connection);
        assert_eq!(
            detail(&p),
            "127.0.0.1: Timeout after connect (your server may be slow or overloaded)"
        );

        // Plain HTTP instead of TLS.
        let http = raw_server_with(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(), false).await;
        let p = alpn01(http.port, &id).await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Tls, "{p}");

        let p = alpn01(closed, &dns("*.example.test")).await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Malformed);
    }

    #[test]
    fn reverse_names() {
        assert_eq!(reverse_dns_name(LOCALHOST), "1.0.0.127.in-addr.arpa");
        assert_eq!(
            reverse_dns_name("2001:db8::567:89ab".parse().unwrap()),
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }
}
