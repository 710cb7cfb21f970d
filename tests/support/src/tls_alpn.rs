//! A tls-alpn-01 (RFC 8737) responder for Pebble's VA.
//!
//! ```ignore
//! let responder = TlsAlpnResponder::start(pebble.tls_port()).await;
//! responder.set("example.test", cert_der, key_pkcs8_der);
//! ```
//!
//! It accepts TLS connections on 127.0.0.1, requires the client to offer ALPN
//! `acme-tls/1` (anything else fails the handshake), picks the certificate by
//! SNI, completes the handshake, sends close_notify and closes: no application
//! data is exchanged.
//!
//! SNI handling: names are compared case-insensitively without a trailing dot.
//! For an IP identifier Pebble sends the reverse-DNS name as SNI
//! (`1.0.0.127.in-addr.arpa` for 127.0.0.1, `…ip6.arpa` for IPv6): `set` with
//! an IP address registers the certificate under that name too. A client
//! hello without SNI gets the only certificate set, if exactly one is set.
//!
//! Pebble's VA makes three concurrent connections per validation.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The ALPN protocol of RFC 8737.
pub const ACME_TLS_1: &[u8] = b"acme-tls/1";

#[derive(Debug, Default)]
struct State {
    /// Normalized SNI -> certificate.
    certs: HashMap<String, Arc<CertifiedKey>>,
    /// Names as given to `set` (without the derived reverse-DNS aliases).
    primary: Vec<String>,
    /// SNI of every completed handshake (None = no SNI), in order.
    handshakes: Vec<Option<String>>,
}

#[derive(Debug)]
struct Resolver(Arc<Mutex<State>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offers_acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_1));
        if !offers_acme {
            return None;
        }
        let state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match hello.server_name() {
            Some(name) => state.certs.get(&normalize(name)).cloned(),
            None if state.primary.len() == 1 => state.certs.get(&state.primary[0]).cloned(),
            None => None,
        }
    }
}

/// See the module docs. Stops listening when dropped.
pub struct TlsAlpnResponder {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TlsAlpnResponder {
    /// Listen on `127.0.0.1:port` (0 = any free port, see [`Self::port`]).
    /// Panics if the port cannot be bound.
    pub async fn start(port: u16) -> TlsAlpnResponder {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("tls-alpn-01 responder: cannot bind 127.0.0.1:{port}: {e}"));
        let addr = listener.local_addr().expect("local_addr");
        let state = Arc::new(Mutex::new(State::default()));

        let mut config = rustls::ServerConfig::builder_with_provider(super::ring_provider())
            .with_safe_default_protocol_versions()
            .expect("ring provider supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(state.clone())));
        config.alpn_protocols = vec![ACME_TLS_1.to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let task_state = state.clone();
        let task = tokio::spawn(async move {
            // Dropping the JoinSet (when this task is aborted) aborts the
            // connection tasks too.
            let mut connections = JoinSet::new();
            loop {
                while connections.try_join_next().is_some() {}
                let tcp = match listener.accept().await {
                    Ok((tcp, _peer)) => tcp,
                    Err(_) => {
                        // e.g. EMFILE: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let state = task_state.clone();
                connections.spawn(async move {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp));
                    if let Ok(Ok(mut tls)) = handshake.await {
                        let sni = tls.get_ref().1.server_name().map(normalize);
                        state
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .handshakes
                            .push(sni);
                        let _ = tokio::time::timeout(Duration::from_secs(2), tls.shutdown()).await;
                    }
                });
            }
        });
        TlsAlpnResponder { state, addr, task }
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serve `cert_der` (with its PKCS#8 private key) to clients whose SNI is
    /// `server_name` (a DNS name, or an IP address: then its reverse-DNS name
    /// is registered too). Replaces any previous certificate for that name.
    /// Panics if the key is not a usable PKCS#8 key.
    pub fn set(&self, server_name: &str, cert_der: Vec<u8>, key_pkcs8_der: Vec<u8>) {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8_der));
        let signer = sturdy_acme::tls_provider()
            .key_provider
            .load_private_key(key)
            .unwrap_or_else(|e| panic!("tls-alpn-01 responder: unusable private key: {e}"));
        let certified = Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(cert_der)],
            signer,
        ));
        let name = normalize(server_name);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(ip) = name.parse::<IpAddr>() {
            state.certs.insert(reverse_dns_name(ip), certified.clone());
        }
        state.certs.insert(name.clone(), certified);
        if !state.primary.contains(&name) {
            state.primary.push(name);
        }
    }

    /// Stop serving a certificate for `server_name`.
    pub fn remove(&self, server_name: &str) {
        let name = normalize(server_name);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(ip) = name.parse::<IpAddr>() {
            state.certs.remove(&reverse_dns_name(ip));
        }
        state.certs.remove(&name);
        state.primary.retain(|n| *n != name);
    }

    /// Stop serving any certificate.
    pub fn clear(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.certs.clear();
        state.primary.clear();
    }

    /// The SNI (normalized; `None` = no SNI) of every handshake completed so
    /// far, in order.
    pub fn handshakes(&self) -> Vec<Option<String>> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .handshakes
            .clone()
    }
}

impl Drop for TlsAlpnResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Lowercase, without a trailing dot.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `1.0.0.127.in-addr.arpa` / `…ip6.arpa` (no trailing dot), as in RFC 8738.
pub fn reverse_dns_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut labels = Vec::with_capacity(34);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0x0f));
                labels.push(format!("{:x}", byte >> 4));
            }
            labels.push("ip6.arpa".to_owned());
            labels.join(".")
        }
    }
}
