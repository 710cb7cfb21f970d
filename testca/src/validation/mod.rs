//! Challenge validation as the test CA's validation authority performs it:
//! http-01 (RFC 8555 §8.3), dns-01 (§8.4) and tls-alpn-01 (RFC 8737, with
//! IP identifiers per RFC 8738), with Boulder's problem types and wording.
//!
//! The CA connects to whatever address it is given: a test CA normally
//! resolves every DNS name to a loopback address. DNS questions (dns-01 TXT
//! lookups) go to a [`DnsResolver`]; [`StaticDns`] is an in-memory one whose
//! records and failures the test sets, [`ServerDns`] asks a real DNS server.
//!
//! ```
//! use sturdy_acme_testca::{LookupError, StaticDns};
//!
//! let dns = StaticDns::new();
//! dns.add_txt("_acme-challenge.example.test.", "value");
//! assert_eq!(dns.lookup("_ACME-challenge.example.test").unwrap(), ["value"]);
//! dns.fail("_acme-challenge.broken.test", LookupError::ServFail);
//! assert!(matches!(dns.lookup("_acme-challenge.broken.test"), Err(LookupError::ServFail)));
//! assert!(matches!(dns.lookup("unknown.test"), Err(LookupError::NxDomain)));
//! ```
#![allow(
    clippy::result_large_err,
    reason = "validators hand the CA the problem document it stores in the challenge; \
              one per validation, its size does not matter"
)]

mod dns;
mod http01;
mod tls_alpn;

use std::io;

pub(crate) use dns::validate_dns01;
pub use dns::{CaaFuture, DnsFuture, DnsResolver, LookupError, ServerDns, StaticDns};
pub(crate) use http01::validate_http01;
pub(crate) use tls_alpn::validate_tls_alpn01;

/// How much of an unexpected response a problem detail quotes.
const MAX_QUOTED: usize = 100;

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

/// What the validators' tests share: addresses, shorthands, raw servers.
#[cfg(test)]
mod test_support {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    use sturdy_acme::Identifier;
    use sturdy_acme::Problem;

    pub(super) const KA: &str = "tok-123.thumbprint";
    pub(super) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    pub(super) const TIMEOUT: Duration = Duration::from_secs(5);

    pub(super) fn dns(name: &str) -> Identifier {
        Identifier::dns(name).unwrap()
    }

    pub(super) fn detail(p: &Problem) -> &str {
        p.detail.as_deref().unwrap_or_default()
    }

    /// A port nothing listens on.
    pub(super) async fn closed_port() -> u16 {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        listener.local_addr().unwrap().port()
    }

    /// Accepts connections and never answers (held until the task ends).
    pub(super) fn silent_server(listener: TcpListener) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        })
    }

    /// Answers every request with `response` and records the requests' heads.
    pub(super) struct RawServer {
        pub(super) port: u16,
        pub(super) requests: Arc<Mutex<Vec<String>>>,
        pub(super) task: JoinHandle<()>,
    }

    impl Drop for RawServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    pub(super) async fn raw_server(response: Vec<u8>) -> RawServer {
        raw_server_with(response, true).await
    }

    /// Like [`raw_server`]; with `wait_for_request` false the response goes
    /// out as soon as the connection is accepted.
    pub(super) async fn raw_server_with(response: Vec<u8>, wait_for_request: bool) -> RawServer {
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
}
