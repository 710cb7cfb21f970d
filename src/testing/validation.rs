//! Challenge validation as the test CA's validation authority performs it:
//! http-01 (RFC 8555 §8.3), dns-01 (§8.4) and tls-alpn-01 (RFC 8737, with
//! IP identifiers per RFC 8738), with Boulder's problem types and wording.
//!
//! The CA connects to whatever address it is given: a test CA normally
//! resolves every DNS name to a loopback address. DNS questions (dns-01 TXT
//! lookups) go to a [`DnsResolver`]; [`StaticDns`] is an in-memory one whose
//! records and failures the test sets.
//!
//! ```
//! use sturdy_acme::testing::validation::{DnsError, DnsResolver, StaticDns};
//!
//! let dns = StaticDns::new();
//! dns.add_txt("_acme-challenge.example.test.", "value");
//! assert_eq!(dns.txt("_ACME-challenge.example.test").unwrap(), ["value"]);
//! dns.fail("_acme-challenge.broken.test", DnsError::ServFail);
//! assert!(matches!(dns.txt("_acme-challenge.broken.test"), Err(DnsError::ServFail)));
//! assert!(matches!(dns.txt("unknown.test"), Err(DnsError::NxDomain)));
//! ```
#![allow(
    clippy::result_large_err,
    reason = "validators hand the CA the problem document it stores in the challenge; \
              one per validation, its size does not matter"
)]

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, PeerMisbehaved};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use x509_parser::prelude::GeneralName;

use crate::crypto::challenge::{ACME_TLS_ALPN_PROTOCOL, dns01_txt_value, tls_alpn01_digest};
use crate::error::{Problem, ProblemType};
use crate::protocol::Identifier;

/// Answers the test CA's DNS questions (the TXT lookups of dns-01).
///
/// Implement it to plug in your own DNS; tests normally use [`StaticDns`].
pub trait DnsResolver: Send + Sync + fmt::Debug {
    /// The TXT records at `name` (lower case, without a trailing dot, e.g.
    /// `_acme-challenge.example.com`), one string per record (a record's
    /// character-strings concatenated).
    ///
    /// `Ok` with no records is a NOERROR/NODATA answer: the name exists but
    /// has no TXT record.
    fn txt(&self, name: &str) -> Result<Vec<String>, DnsError>;
}

/// Why a DNS lookup failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The name does not exist.
    #[error("NXDOMAIN")]
    NxDomain,
    /// The name servers failed to answer.
    #[error("SERVFAIL")]
    ServFail,
    /// No answer in time.
    #[error("query timed out")]
    Timeout,
}

#[derive(Debug, Default)]
struct Zone {
    /// Normalized name -> TXT records (empty: the name exists without TXT).
    txt: HashMap<String, Vec<String>>,
    /// Normalized name -> the error every lookup of it gets.
    failures: HashMap<String, DnsError>,
}

/// An in-memory [`DnsResolver`]: TXT records and failures set by the test.
///
/// Names are compared case-insensitively, with or without a trailing dot.
/// A name never set answers NXDOMAIN. Clones share the same records, so a
/// test can keep one and hand another to the CA.
#[derive(Debug, Default, Clone)]
pub struct StaticDns {
    zone: Arc<RwLock<Zone>>,
}

impl StaticDns {
    /// An empty zone (every lookup answers NXDOMAIN).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a TXT record at `name` (keeping any already there).
    pub fn add_txt(&self, name: &str, value: &str) {
        self.write()
            .txt
            .entry(normalize(name))
            .or_default()
            .push(value.to_owned());
    }

    /// Replaces the TXT records at `name`. An empty `values` leaves the name
    /// existing without TXT records (lookups answer with no records, not
    /// NXDOMAIN).
    pub fn set_txt(&self, name: &str, values: &[&str]) {
        self.write().txt.insert(
            normalize(name),
            values.iter().map(|v| (*v).to_owned()).collect(),
        );
    }

    /// Removes every TXT record at `name`: lookups answer NXDOMAIN again.
    pub fn clear_txt(&self, name: &str) {
        self.write().txt.remove(&normalize(name));
    }

    /// Makes every lookup of `name` fail with `error` until [`StaticDns::recover`].
    pub fn fail(&self, name: &str, error: DnsError) {
        self.write().failures.insert(normalize(name), error);
    }

    /// Undoes [`StaticDns::fail`] for `name`.
    pub fn recover(&self, name: &str) {
        self.write().failures.remove(&normalize(name));
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Zone> {
        self.zone.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl DnsResolver for StaticDns {
    fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let name = normalize(name);
        let zone = self.zone.read().unwrap_or_else(|e| e.into_inner());
        if let Some(error) = zone.failures.get(&name) {
            return Err(*error);
        }
        zone.txt.get(&name).cloned().ok_or(DnsError::NxDomain)
    }
}

/// Lower case, no trailing dot.
fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The largest http-01 response body accepted.
const MAX_HTTP_BODY: usize = 16 * 1024;
/// The largest http-01 response head (status line and headers) accepted.
const MAX_HTTP_HEAD: usize = 16 * 1024;
/// How much longer than its content a chunked body may be on the wire.
const MAX_CHUNK_OVERHEAD: usize = 4 * 1024;
/// The longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 1024;
/// How much of an unexpected response a problem detail quotes.
const MAX_QUOTED: usize = 100;

/// Validates an http-01 challenge: `GET /.well-known/acme-challenge/<token>`
/// from `connect_ip:port` with `Host: <identifier>`, expecting a 200 whose
/// body (trailing whitespace removed, as Boulder does) is the key
/// authorization.
///
/// The CA connects to `connect_ip` whatever the identifier (it stands for
/// the DNS resolution; for an `ip` identifier pass the address itself).
/// Redirects are not followed (a 3xx fails like any non-200), the body is
/// capped at 16 KiB, and the whole exchange must finish within `timeout`.
///
/// Failures: `connection` (refused, reset, timeouts, no or broken HTTP
/// response), `unauthorized` (non-200, oversized body, wrong content),
/// `malformed` (an identifier or token that cannot be requested).
pub(crate) async fn validate_http01(
    connect_ip: IpAddr,
    port: u16,
    identifier: &Identifier,
    token: &str,
    key_authorization: &str,
    timeout: Duration,
) -> Result<(), Problem> {
    let host = match (identifier.kind.as_str(), identifier.ip_addr()) {
        ("dns", _) if !identifier.is_wildcard() => identifier.value.clone(),
        ("ip", Some(IpAddr::V4(ip))) => ip.to_string(),
        ("ip", Some(IpAddr::V6(ip))) => format!("[{ip}]"),
        _ => {
            return Err(Problem::new(
                ProblemType::Malformed,
                format!("Identifier {identifier} cannot be validated with http-01"),
            ));
        }
    };
    if token.is_empty()
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Problem::new(
            ProblemType::Malformed,
            format!("Invalid http-01 token {token:?}"),
        ));
    }
    let path = format!("/.well-known/acme-challenge/{token}");
    let url = if port == 80 {
        format!("http://{host}{path}")
    } else {
        format!("http://{host}:{port}{path}")
    };
    let connection = |reason: &str| {
        Problem::new(
            ProblemType::Connection,
            format!("{connect_ip}: Fetching {url}: {reason}"),
        )
    };
    tracing::debug!(%identifier, %connect_ip, port, %url, "http-01 validation");

    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::new(connect_ip, port);
    let mut stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return Err(connection(CONNECT_TIMEOUT)),
        Ok(Err(e)) => return Err(connection(&io_reason(&e))),
        Ok(Ok(stream)) => stream,
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sturdy-acme-test-ca\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    );
    let exchange = async {
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(FetchError::Io)?;
        read_http_response(&mut stream).await
    };
    let response = match timeout_at(deadline, exchange).await {
        Err(_) => return Err(connection(AFTER_CONNECT_TIMEOUT)),
        Ok(Err(FetchError::Io(e))) => return Err(connection(&io_reason(&e))),
        Ok(Err(FetchError::Malformed(why))) => {
            return Err(connection(&format!(
                "Error getting validation data ({why})"
            )));
        }
        Ok(Err(FetchError::TooLarge)) => {
            return Err(Problem::new(
                ProblemType::Unauthorized,
                format!(
                    "{connect_ip}: Invalid response from {url}: \
                     response body larger than {MAX_HTTP_BODY} bytes"
                ),
            ));
        }
        Ok(Ok(response)) => response,
    };
    if response.status != 200 {
        return Err(Problem::new(
            ProblemType::Unauthorized,
            format!(
                "{connect_ip}: Invalid response from {url}: {}",
                response.status
            ),
        ));
    }
    let body = String::from_utf8_lossy(&response.body);
    let payload = body.trim_end();
    if payload != key_authorization {
        return Err(Problem::new(
            ProblemType::Unauthorized,
            format!(
                "The key authorization file from the server did not match this challenge. \
                 Expected {key_authorization:?} (got {:?})",
                quote(payload)
            ),
        ));
    }
    Ok(())
}

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

/// Validates a dns-01 challenge: a TXT record at `_acme-challenge.<name>`
/// (the name without a wildcard label) must hold
/// base64url(SHA-256(key authorization)).
///
/// Failures, as Boulder reports them: `dns` for a failed lookup (NXDOMAIN,
/// SERVFAIL, timeout), `unauthorized` for an answer without TXT records
/// ("No TXT record found at …") or without the expected value ("Incorrect
/// TXT record … found at …"), `malformed` for a non-DNS identifier.
pub(crate) fn validate_dns01(
    resolver: &dyn DnsResolver,
    identifier: &Identifier,
    key_authorization: &str,
) -> Result<(), Problem> {
    if identifier.kind != "dns" {
        return Err(Problem::new(
            ProblemType::Malformed,
            "Identifier type for DNS was not itself DNS",
        ));
    }
    let name = format!("_acme-challenge.{}", identifier.base_name());
    let expected = dns01_txt_value(key_authorization);
    tracing::debug!(%identifier, name, "dns-01 validation");
    let records = resolver.txt(&name).map_err(|e| {
        let detail = match e {
            DnsError::NxDomain => format!(
                "DNS problem: NXDOMAIN looking up TXT for {name} - \
                 check that a DNS record exists for this domain"
            ),
            DnsError::ServFail => format!(
                "DNS problem: SERVFAIL looking up TXT for {name} - \
                 the domain's nameservers may be malfunctioning"
            ),
            DnsError::Timeout => format!("DNS problem: query timed out looking up TXT for {name}"),
        };
        Problem::new(ProblemType::Dns, detail)
    })?;
    let Some(first) = records.first() else {
        return Err(Problem::new(
            ProblemType::Unauthorized,
            format!("No TXT record found at {name}"),
        ));
    };
    if records.contains(&expected) {
        return Ok(());
    }
    let and_more = match records.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    Err(Problem::new(
        ProblemType::Unauthorized,
        format!(
            "Incorrect TXT record {:?}{and_more} found at {name}",
            quote(first)
        ),
    ))
}

const CONNECT_TIMEOUT: &str = "Timeout during connect (likely firewall problem)";
const AFTER_CONNECT_TIMEOUT: &str = "Timeout after connect (your server may be slow or overloaded)";

/// The problem detail for a socket error (Boulder's wording).
fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "Connection refused".into(),
        io::ErrorKind::ConnectionReset => "Connection reset by peer".into(),
        io::ErrorKind::NetworkUnreachable => "Network unreachable".into(),
        io::ErrorKind::HostUnreachable => "Host unreachable".into(),
        io::ErrorKind::TimedOut => CONNECT_TIMEOUT.into(),
        _ => format!("Error getting validation data ({e})"),
    }
}

/// At most [`MAX_QUOTED`] characters of `s`, with `...` when cut.
fn quote(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_owned(),
    }
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

/// A parsed HTTP response (status and body only).
struct HttpResponse {
    status: u16,
    body: Vec<u8>,
}

/// Why an HTTP exchange failed after the connection was made.
enum FetchError {
    Io(io::Error),
    Malformed(String),
    TooLarge,
}

/// Reads more bytes into `buf`; `Ok(0)` at end of stream.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, FetchError> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await.map_err(FetchError::Io)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Reads one HTTP/1.x response: status line, headers, and a body framed by
/// `Transfer-Encoding: chunked`, `Content-Length` or the end of the stream.
async fn read_http_response(stream: &mut TcpStream) -> Result<HttpResponse, FetchError> {
    let malformed = |why: &str| FetchError::Malformed(why.to_owned());
    let mut buf = Vec::with_capacity(4096);
    let head_len = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_HTTP_HEAD {
            return Err(malformed("response headers too large"));
        }
        if read_more(stream, &mut buf).await? == 0 {
            return Err(malformed(if buf.is_empty() {
                "the server closed the connection without a response"
            } else {
                "the connection closed in the response headers"
            }));
        }
    };
    let head = std::str::from_utf8(&buf[..head_len - 4])
        .map_err(|_| malformed("response headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = parse_status_line(lines.next().unwrap_or_default())
        .ok_or_else(|| malformed("malformed HTTP status line"))?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed("malformed HTTP header"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let len = value
                .parse::<usize>()
                .map_err(|_| malformed("malformed Content-Length"))?;
            if content_length.is_some_and(|l| l != len) {
                return Err(malformed("conflicting Content-Length headers"));
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        }
    }

    let mut raw = buf.split_off(head_len);
    let body = if chunked {
        loop {
            if let Some(body) = decode_chunked(&raw)? {
                break body;
            }
            if raw.len() > MAX_HTTP_BODY + MAX_CHUNK_OVERHEAD {
                return Err(FetchError::TooLarge);
            }
            if read_more(stream, &mut raw).await? == 0 {
                return Err(malformed("the connection closed in a chunked body"));
            }
        }
    } else if let Some(len) = content_length {
        if len > MAX_HTTP_BODY {
            return Err(FetchError::TooLarge);
        }
        while raw.len() < len {
            if read_more(stream, &mut raw).await? == 0 {
                return Err(FetchError::Malformed(format!(
                    "the connection closed after {} of {len} body bytes",
                    raw.len()
                )));
            }
        }
        raw.truncate(len);
        raw
    } else {
        loop {
            if raw.len() > MAX_HTTP_BODY {
                return Err(FetchError::TooLarge);
            }
            if read_more(stream, &mut raw).await? == 0 {
                break raw;
            }
        }
    };
    if body.len() > MAX_HTTP_BODY {
        return Err(FetchError::TooLarge);
    }
    Ok(HttpResponse { status, body })
}

/// The status code of `HTTP/1.x NNN reason`.
fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|c| (100..=999).contains(c))
}

/// Decodes a complete chunked body; `Ok(None)` while more input is needed.
/// Trailers after the last chunk are not waited for.
///
/// The sizes are the server's: a chunk that would take the body over
/// [`MAX_HTTP_BODY`] is `TooLarge` before any arithmetic on it, and a size
/// line longer than [`MAX_CHUNK_LINE`] is `Malformed`.
fn decode_chunked(mut raw: &[u8]) -> Result<Option<Vec<u8>>, FetchError> {
    let malformed = |why: &str| FetchError::Malformed(why.to_owned());
    let mut body = Vec::new();
    loop {
        let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return if raw.len() > MAX_CHUNK_LINE {
                Err(malformed("chunk size line too long"))
            } else {
                Ok(None)
            };
        };
        if line_end > MAX_CHUNK_LINE {
            return Err(malformed("chunk size line too long"));
        }
        let line =
            std::str::from_utf8(&raw[..line_end]).map_err(|_| malformed("malformed chunk size"))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| malformed("malformed chunk size"))?;
        if size == 0 {
            return Ok(Some(body));
        }
        // body.len() <= MAX_HTTP_BODY, so neither this nor the offsets
        // below (all within MAX_HTTP_BODY + MAX_CHUNK_LINE + 4) overflow.
        if size > MAX_HTTP_BODY - body.len() {
            return Err(FetchError::TooLarge);
        }
        let data_start = line_end + 2;
        let data_end = data_start + size;
        let Some(data) = raw.get(data_start..data_end) else {
            return Ok(None);
        };
        match raw.get(data_end..data_end + 2) {
            None => return Ok(None),
            Some(b"\r\n") => {}
            Some(_) => return Err(malformed("malformed chunk")),
        }
        body.extend_from_slice(data);
        raw = &raw[data_end + 2..];
    }
}

/// The rustls client configuration of tls-alpn-01: ring, ALPN `acme-tls/1`
/// only, any certificate accepted.
fn tls_alpn01_client_config() -> Result<Arc<rustls::ClientConfig>, Problem> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
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
    use crate::crypto::challenge::tls_alpn01_certificate;
    use crate::solver::http01::Http01Responder;
    use rcgen::{CertificateParams, CustomExtension, Issuer, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;
    use std::net::Ipv4Addr;
    use std::sync::Mutex;
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    const KA: &str = "tok-123.thumbprint";
    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const TIMEOUT: Duration = Duration::from_secs(5);

    fn dns(name: &str) -> Identifier {
        Identifier::dns(name).unwrap()
    }

    fn detail(p: &Problem) -> &str {
        p.detail.as_deref().unwrap_or_default()
    }

    /// A port nothing listens on.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        listener.local_addr().unwrap().port()
    }

    /// Accepts connections and never answers (held until the task ends).
    fn silent_server(listener: TcpListener) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        })
    }

    /// Answers every request with `response` and records the requests' heads.
    struct RawServer {
        port: u16,
        requests: Arc<Mutex<Vec<String>>>,
        task: JoinHandle<()>,
    }

    impl Drop for RawServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn raw_server(response: Vec<u8>) -> RawServer {
        raw_server_with(response, true).await
    }

    /// Like [`raw_server`]; with `wait_for_request` false the response goes
    /// out as soon as the connection is accepted.
    async fn raw_server_with(response: Vec<u8>, wait_for_request: bool) -> RawServer {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while wait_for_request && !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).into_owned());
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            }
        });
        RawServer {
            port,
            requests,
            task,
        }
    }

    async fn http01(port: u16, id: &Identifier, token: &str) -> Result<(), Problem> {
        validate_http01(LOCALHOST, port, id, token, KA, TIMEOUT).await
    }

    #[tokio::test]
    async fn http01_succeeds_against_the_responder() {
        let responder = Http01Responder::bind((LOCALHOST, 0).into()).await.unwrap();
        let port = responder.local_addr().port();
        responder.tokens().insert("tok-123", KA);
        http01(port, &dns("example.test"), "tok-123").await.unwrap();
        http01(port, &Identifier::ip(LOCALHOST), "tok-123")
            .await
            .unwrap();
        // Trailing whitespace is ignored.
        responder.tokens().insert("tok-123", format!("{KA}\r\n"));
        http01(port, &dns("example.test"), "tok-123").await.unwrap();
    }

    #[tokio::test]
    async fn http01_sends_host_and_path() {
        let body = KA;
        let server = raw_server(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
        .await;
        http01(server.port, &dns("Host.example.test"), "tok-123")
            .await
            .unwrap();
        http01(
            server.port,
            &Identifier::ip("::1".parse().unwrap()),
            "tok-123",
        )
        .await
        .unwrap();
        let requests = server.requests.lock().unwrap().clone();
        assert!(
            requests[0].starts_with("GET /.well-known/acme-challenge/tok-123 HTTP/1.1\r\n"),
            "{}",
            requests[0]
        );
        assert!(requests[0].contains("\r\nHost: host.example.test\r\n"));
        assert!(requests[0].contains("\r\nConnection: close\r\n"));
        assert!(
            requests[1].contains("\r\nHost: [::1]\r\n"),
            "{}",
            requests[1]
        );
    }

    #[tokio::test]
    async fn http01_reads_chunked_and_unframed_bodies() {
        let chunked = raw_server(
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
                &KA[..5],
                KA.len() - 5,
                &KA[5..]
            )
            .into_bytes(),
        )
        .await;
        http01(chunked.port, &dns("example.test"), "tok-123")
            .await
            .unwrap();
        let unframed = raw_server(format!("HTTP/1.0 200 OK\r\n\r\n{KA}\n").into_bytes()).await;
        http01(unframed.port, &dns("example.test"), "tok-123")
            .await
            .unwrap();
    }

    /// A responder announcing a chunk of 2^64-1 bytes fails validation as
    /// an oversized body (it used to panic the validation task, leaving the
    /// challenge `processing` for ever).
    #[tokio::test]
    async fn http01_hostile_chunk_size_is_refused() {
        let server = raw_server(
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}\r\n\
                 ffffffffffffffff\r\n{}\r\n0\r\n\r\n",
                &KA[..5],
                &KA[5..]
            )
            .into_bytes(),
        )
        .await;
        let p = http01(server.port, &dns("example.test"), "tok-123")
            .await
            .unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized, "{p}");
        assert!(detail(&p).contains("response body larger than"), "{p}");
    }

    #[tokio::test]
    async fn http01_failures() {
        let responder = Http01Responder::bind((LOCALHOST, 0).into()).await.unwrap();
        let port = responder.local_addr().port();
        let id = dns("example.test");

        // Unknown token: 404.
        let p = http01(port, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized);
        assert_eq!(
            detail(&p),
            format!(
                "127.0.0.1: Invalid response from \
                 http://example.test:{port}/.well-known/acme-challenge/tok-123: 404"
            )
        );
        assert_eq!(p.status, None);

        // Wrong content.
        responder.tokens().insert("tok-123", "tok-123.other");
        let p = http01(port, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized);
        assert_eq!(
            detail(&p),
            "The key authorization file from the server did not match this challenge. \
             Expected \"tok-123.thumbprint\" (got \"tok-123.other\")"
        );
        // Leading whitespace is not forgiven (Boulder trims only the end).
        responder.tokens().insert("tok-123", format!(" {KA}"));
        assert!(http01(port, &id, "tok-123").await.is_err());

        // Nothing listening.
        let closed = closed_port().await;
        let p = http01(closed, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Connection);
        assert_eq!(
            detail(&p),
            format!(
                "127.0.0.1: Fetching http://example.test:{closed}/.well-known/acme-challenge/tok-123: \
                 Connection refused"
            )
        );

        // A server that never answers.
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let silent = listener.local_addr().unwrap().port();
        let task = silent_server(listener);
        let p = validate_http01(
            LOCALHOST,
            silent,
            &id,
            "tok-123",
            KA,
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        task.abort();
        assert_eq!(p.kind, ProblemType::Connection);
        assert!(
            detail(&p).ends_with("Timeout after connect (your server may be slow or overloaded)"),
            "{p}"
        );

        // Malformed input.
        let p = http01(port, &id, "../etc").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Malformed);
        let p = http01(port, &dns("*.example.test"), "tok-123")
            .await
            .unwrap_err();
        assert_eq!(p.kind, ProblemType::Malformed);
    }

    #[tokio::test]
    async fn http01_bad_responses() {
        let id = dns("example.test");
        let redirect = raw_server(
            b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.test/\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        )
        .await;
        let p = http01(redirect.port, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized);
        assert!(detail(&p).ends_with(": 302"), "{p}");

        let big = "a".repeat(MAX_HTTP_BODY + 1);
        let oversized = raw_server(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{big}",
                big.len()
            )
            .into_bytes(),
        )
        .await;
        let p = http01(oversized.port, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized);
        assert!(detail(&p).contains("larger than 16384 bytes"), "{p}");
        let unframed = raw_server(format!("HTTP/1.1 200 OK\r\n\r\n{big}").into_bytes()).await;
        let p = http01(unframed.port, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized);

        let garbage = raw_server(b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec()).await;
        let p = http01(garbage.port, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Connection);
        assert!(detail(&p).contains("Error getting validation data"), "{p}");

        let empty = raw_server(Vec::new()).await;
        let p = http01(empty.port, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Connection);

        let truncated =
            raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort".to_vec()).await;
        let p = http01(truncated.port, &id, "tok-123").await.unwrap_err();
        assert_eq!(p.kind, ProblemType::Connection);
        assert!(detail(&p).contains("after 5 of 100 body bytes"), "{p}");
    }

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
        let provider = Arc::new(rustls::crypto::ring::default_provider());
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

    #[test]
    fn dns01() {
        let dns_zone = StaticDns::new();
        let id = dns("example.test");
        let value = dns01_txt_value(KA);

        // Nothing there: NXDOMAIN.
        let p = validate_dns01(&dns_zone, &id, KA).unwrap_err();
        assert_eq!(p.kind, ProblemType::Dns);
        assert_eq!(
            detail(&p),
            "DNS problem: NXDOMAIN looking up TXT for _acme-challenge.example.test - \
             check that a DNS record exists for this domain"
        );

        // The right value among others; names are case- and dot-insensitive.
        dns_zone.add_txt("_ACME-Challenge.Example.Test.", "unrelated");
        dns_zone.add_txt("_acme-challenge.example.test", &value);
        validate_dns01(&dns_zone, &id, KA).unwrap();
        // Wildcards are validated at the base name.
        validate_dns01(&dns_zone, &dns("*.example.test"), KA).unwrap();

        // Wrong values only.
        dns_zone.set_txt("_acme-challenge.example.test", &["wrong", "also-wrong"]);
        let p = validate_dns01(&dns_zone, &id, KA).unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized);
        assert_eq!(
            detail(&p),
            "Incorrect TXT record \"wrong\" (and 1 more) found at _acme-challenge.example.test"
        );

        // The name exists without TXT records.
        dns_zone.set_txt("_acme-challenge.example.test", &[]);
        let p = validate_dns01(&dns_zone, &id, KA).unwrap_err();
        assert_eq!(p.kind, ProblemType::Unauthorized);
        assert_eq!(
            detail(&p),
            "No TXT record found at _acme-challenge.example.test"
        );

        // Failures.
        dns_zone.add_txt("_acme-challenge.example.test", &value);
        dns_zone.fail("_acme-challenge.example.test", DnsError::ServFail);
        let p = validate_dns01(&dns_zone, &id, KA).unwrap_err();
        assert_eq!(p.kind, ProblemType::Dns);
        assert!(detail(&p).starts_with("DNS problem: SERVFAIL looking up TXT"));
        dns_zone.fail("_acme-challenge.example.test", DnsError::Timeout);
        let p = validate_dns01(&dns_zone, &id, KA).unwrap_err();
        assert_eq!(p.kind, ProblemType::Dns);
        assert_eq!(
            detail(&p),
            "DNS problem: query timed out looking up TXT for _acme-challenge.example.test"
        );
        dns_zone.recover("_acme-challenge.example.test");
        validate_dns01(&dns_zone, &id, KA).unwrap();

        // Cleared: NXDOMAIN again; clones share the zone.
        dns_zone.clone().clear_txt("_acme-challenge.example.test");
        assert_eq!(
            dns_zone.txt("_acme-challenge.example.test"),
            Err(DnsError::NxDomain)
        );

        // Long wrong values are cut in the detail.
        dns_zone.add_txt("_acme-challenge.example.test", &"x".repeat(300));
        let p = validate_dns01(&dns_zone, &id, KA).unwrap_err();
        assert!(
            detail(&p).contains(&format!("\"{}...\"", "x".repeat(100))),
            "{p}"
        );

        let p = validate_dns01(&dns_zone, &Identifier::ip(LOCALHOST), KA).unwrap_err();
        assert_eq!(p.kind, ProblemType::Malformed);
    }

    #[test]
    fn chunked_decoding() {
        assert_eq!(
            decode_chunked(b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n")
                .ok()
                .flatten(),
            Some(b"abcde".to_vec())
        );
        assert!(matches!(decode_chunked(b"3\r\nab"), Ok(None)));
        assert!(matches!(
            decode_chunked(b"3\r\nabcXY"),
            Err(FetchError::Malformed(_))
        ));
        assert!(matches!(
            decode_chunked(b"zz\r\n"),
            Err(FetchError::Malformed(_))
        ));
        // A hostile chunk size: refused, no overflow (it used to panic
        // once a first chunk was in).
        for raw in [
            &b"ffffffffffffffff\r\nabc"[..],
            b"5\r\nhello\r\nffffffffffffffff\r\nabc",
            b"5\r\nhello\r\nfffffffffffffffb\r\nabc",
        ] {
            assert!(matches!(decode_chunked(raw), Err(FetchError::TooLarge)));
        }
        assert!(matches!(
            decode_chunked(b"10000000000000000\r\n"),
            Err(FetchError::Malformed(_))
        ));
        // An endless size line (leading zeros, extensions) is refused
        // without waiting for its end.
        let long_line = format!("{}5;x={}", "0".repeat(600), "y".repeat(600));
        assert!(matches!(
            decode_chunked(long_line.as_bytes()),
            Err(FetchError::Malformed(_))
        ));
        assert!(matches!(
            decode_chunked(format!("{long_line}\r\nhello\r\n0\r\n\r\n").as_bytes()),
            Err(FetchError::Malformed(_))
        ));
        assert_eq!(parse_status_line("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line("HTTP/1.0 404"), Some(404));
        assert_eq!(parse_status_line("HTTP/2 200"), None);
        assert_eq!(parse_status_line("HTTP/1.1 20x OK"), None);
    }
}
