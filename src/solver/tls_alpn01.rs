//! tls-alpn-01 (RFC 8737): validation certificates served by a rustls
//! certificate resolver on the TLS listener the CA connects to (port 443).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use std::time::Duration;

use zeroize::Zeroizing;

use super::{ChallengeAnswer, Solver, SolverFuture};
use crate::crypto::challenge::{ACME_TLS_ALPN_PROTOCOL, tls_alpn01_certificate};
use crate::error::{Error, Result};
use crate::protocol::ChallengeType;
use crate::store::{Store, ValidationCertificate};

/// Validation certificates by server name, for a rustls server: a
/// [`ResolvesServerCert`] that answers handshakes offering ALPN
/// `acme-tls/1` with the validation certificate of the SNI name, and
/// delegates every other handshake to `fallback` (your normal certificates).
///
/// ```no_run
/// # use std::sync::Arc;
/// use sturdy_acme::solver::tls_alpn01::TlsAlpn01Resolver;
/// let resolver = Arc::new(TlsAlpn01Resolver::new(None));
/// let mut config = rustls::ServerConfig::builder_with_provider(sturdy_acme::tls_provider())
/// .with_safe_default_protocol_versions()
/// .unwrap()
/// .with_no_client_auth()
/// .with_cert_resolver(resolver.clone());
/// config.alpn_protocols = vec![b"acme-tls/1".to_vec(), b"http/1.1".to_vec()];
/// ```
pub struct TlsAlpn01Resolver {
    certs: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    fallback: Option<Arc<dyn ResolvesServerCert>>,
}

impl std::fmt::Debug for TlsAlpn01Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .certs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        f.debug_struct("TlsAlpn01Resolver")
            .field("names", &names)
            .finish_non_exhaustive()
    }
}

/// The SNI name a CA uses for an identifier: the DNS name, or for an IP
/// address its reverse-DNS name (RFC 8738 §6).
pub fn sni_name(identifier_value: &str) -> String {
    match identifier_value.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        Ok(IpAddr::V6(v6)) => {
            let mut labels = Vec::with_capacity(32);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0x0f));
                labels.push(format!("{:x}", byte >> 4));
            }
            format!("{}.ip6.arpa", labels.join("."))
        }
        Err(_) => identifier_value.trim_end_matches('.').to_ascii_lowercase(),
    }
}

impl TlsAlpn01Resolver {
    /// A resolver; `fallback` answers handshakes that are not tls-alpn-01.
    pub fn new(fallback: Option<Arc<dyn ResolvesServerCert>>) -> Self {
        Self {
            certs: RwLock::new(HashMap::new()),
            fallback,
        }
    }

    /// Serves `cert_der` (with its PKCS#8 key) for `identifier_value`.
    pub fn insert(
        &self,
        identifier_value: &str,
        cert_der: Vec<u8>,
        key_pkcs8_der: Vec<u8>,
    ) -> Result<()> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8_der));
        let signer = crate::crypto::tls_provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| Error::Crypto(format!("tls-alpn-01 key: {e}")))?;
        let certified = CertifiedKey::new(vec![cert_der.into()], signer);
        self.certs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sni_name(identifier_value), Arc::new(certified));
        Ok(())
    }

    /// Stops serving the certificate for `identifier_value`.
    pub fn remove(&self, identifier_value: &str) {
        self.certs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&sni_name(identifier_value));
    }
}

impl ResolvesServerCert for TlsAlpn01Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN_PROTOCOL));
        if acme {
            let name = hello
                .server_name()?
                .trim_end_matches('.')
                .to_ascii_lowercase();
            return self
                .certs
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&name)
                .cloned();
        }
        self.fallback.as_ref()?.resolve(hello)
    }
}

/// The tls-alpn-01 [`Solver`]: builds the validation certificate and puts it
/// in a [`TlsAlpn01Resolver`].
///
/// Example: [`TlsAlpn01Resolver`].
#[derive(Debug, Clone)]
pub struct TlsAlpn01Solver {
    resolver: Arc<TlsAlpn01Resolver>,
}

impl TlsAlpn01Solver {
    /// A solver filling `resolver`.
    pub fn new(resolver: Arc<TlsAlpn01Resolver>) -> Self {
        Self { resolver }
    }

    /// The resolver to install in your TLS listener.
    pub fn resolver(&self) -> &Arc<TlsAlpn01Resolver> {
        &self.resolver
    }
}

impl Solver for TlsAlpn01Solver {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::TlsAlpn01
    }

    fn present<'a>(&'a self, answer: &'a ChallengeAnswer) -> SolverFuture<'a> {
        Box::pin(async move {
            let cert = tls_alpn01_certificate(&answer.identifier, &answer.key_authorization)?;
            self.resolver.insert(
                &answer.identifier.value,
                cert.certificate_der,
                cert.private_key_pkcs8_der.to_vec(),
            )
        })
    }

    fn cleanup<'a>(&'a self, answer: &'a ChallengeAnswer) -> SolverFuture<'a> {
        self.resolver.remove(&answer.identifier.value);
        Box::pin(async { Ok(()) })
    }
}

/// The tls-alpn-01 [`Solver`] of a fleet: publishes the validation
/// certificate through the store ([`Store::save_validation`]), so every
/// edge following the store's change feed answers the CA's `acme-tls/1`
/// handshake with it ([`CertificateResolver`](crate::serve::CertificateResolver)),
/// wherever the CA connects; the issuer itself serves nothing. After
/// saving it waits [`settle`](Self::with_settle) for the edges to apply
/// the change (the feed delivers in tens of milliseconds; 1 s by
/// default), then the issuer answers the challenge. Cleanup deletes it.
///
/// Two orders for one name at once (two accounts) would replace each
/// other's certificate, as with [`TlsAlpn01Resolver`]: the issuer's lease
/// keeps one order per set, not per name.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use sturdy_acme::solver::tls_alpn01::TlsAlpn01Publisher;
/// use sturdy_acme::store::MemoryStore;
/// use sturdy_acme::Issuer;
/// use sturdy_acme_testca::TestCa;
///
/// let ca = TestCa::builder().start_in_process()?;
/// let store = MemoryStore::new();
/// let solver = TlsAlpn01Publisher::new(store.clone()).with_settle(Duration::from_millis(100));
/// let issuer = Issuer::builder(ca.client().await?, store).solver(Arc::new(solver)).build();
/// # drop(issuer);
/// # Ok(()) }
/// ```
pub struct TlsAlpn01Publisher<S: Store> {
    store: S,
    settle: Duration,
}

impl<S: Store> std::fmt::Debug for TlsAlpn01Publisher<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAlpn01Publisher")
            .field("settle", &self.settle)
            .finish_non_exhaustive()
    }
}

impl<S: Store> TlsAlpn01Publisher<S> {
    /// A solver publishing through `store`, waiting 1 s after each save.
    pub fn new(store: S) -> Self {
        Self {
            store,
            settle: Duration::from_secs(1),
        }
    }

    /// How long to wait after saving a validation certificate before the
    /// challenge is answered (the edges' feed lag, with a margin).
    pub fn with_settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }
}

impl<S: Store> Solver for TlsAlpn01Publisher<S> {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::TlsAlpn01
    }

    fn present<'a>(&'a self, answer: &'a ChallengeAnswer) -> SolverFuture<'a> {
        Box::pin(async move {
            let cert = tls_alpn01_certificate(&answer.identifier, &answer.key_authorization)?;
            let validation = ValidationCertificate {
                name: sni_name(&answer.identifier.value),
                certificate_pem: pem("CERTIFICATE", &cert.certificate_der),
                key_pem: Zeroizing::new(pem("PRIVATE KEY", &cert.private_key_pkcs8_der)),
            };
            self.store.save_validation(&validation).await?;
            tokio::time::sleep(self.settle).await;
            Ok(())
        })
    }

    fn cleanup<'a>(&'a self, answer: &'a ChallengeAnswer) -> SolverFuture<'a> {
        Box::pin(async move {
            self.store
                .delete_validation(&sni_name(&answer.identifier.value))
                .await?;
            Ok(())
        })
    }
}

/// DER as PEM (RFC 7468), 64 characters a line.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    // Sized once, so no reallocation leaves a copy of a key behind.
    let mut out = String::with_capacity(text.len() + text.len() / 64 + 2 * label.len() + 40);
    out.push_str(&format!("-----BEGIN {label}-----\n"));
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(sni_name("127.0.0.1"), "1.0.0.127.in-addr.arpa");
        assert_eq!(
            sni_name("::1"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa"
        );
        assert_eq!(sni_name("A.Example."), "a.example");
    }
}
