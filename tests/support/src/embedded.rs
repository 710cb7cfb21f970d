//! The embedded test CA as an [`AcmeServer`] for the shared suite, in either
//! dialect: `Embedded<false>` speaks ACME v2, `Embedded<true>` ACME v1.

use std::net::TcpListener;
use std::sync::Arc;

use sturdy_acme::ClientBuilder;
use sturdy_acme::Dialect;
use sturdy_acme_testca::{StaticDns, TestCa};

use super::suite::{AcmeServer, ServerOptions};

/// The embedded CA with real validation on free loopback ports and an
/// in-memory DNS.
pub struct Embedded<const V1: bool> {
    /// The CA.
    pub ca: TestCa,
    /// Its dns-01 resolver.
    pub dns: StaticDns,
    http_port: u16,
    tls_port: u16,
}

/// The embedded CA speaking ACME v2.
pub type EmbeddedV2 = Embedded<false>;
/// The embedded CA speaking ACME v1.
pub type EmbeddedV1 = Embedded<true>;

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl<const V1: bool> AcmeServer for Embedded<V1> {
    async fn start(options: ServerOptions) -> Option<Self> {
        let dns = StaticDns::new();
        let (http_port, tls_port) = (free_port(), free_port());
        let mut builder = TestCa::builder()
            .dialect(if V1 { Dialect::V1 } else { Dialect::V2 })
            .alternate_chain(options.alternate_chain)
            .reuse_valid_authorizations(false);
        if options.real_validation {
            builder = builder.real_validation(http_port, tls_port, Arc::new(dns.clone()));
        }
        if let Some((kid, key)) = &options.eab {
            assert!(!V1, "ACME v1 has no external account binding");
            builder = builder.eab_key(kid, key).unwrap().eab_required(true);
        }
        let ca = builder.start().await.expect("test CA starts");
        Some(Self {
            ca,
            dns,
            http_port,
            tls_port,
        })
    }

    fn client_builder(&self) -> ClientBuilder {
        self.ca.client_builder()
    }

    fn http_port(&self) -> u16 {
        self.http_port
    }

    fn tls_port(&self) -> u16 {
        self.tls_port
    }

    async fn set_txt(&self, host: &str, value: &str) {
        self.dns.add_txt(host, value);
    }

    async fn issuing_roots(&self) -> Vec<String> {
        let mut roots = vec![self.ca.root_pem()];
        roots.extend(self.ca.alternate_root_pem());
        roots
    }

    async fn revocation_reason(&self, serial_hex: &str) -> Option<Option<u64>> {
        let serial = serial_hex.trim_start_matches('0');
        self.ca
            .ledger()
            .certificates
            .iter()
            .find(|c| c.serial.trim_start_matches('0') == serial)
            .map(|c| c.revoked.map(u64::from))
    }

    fn issued_count(&self) -> usize {
        self.ca.ledger().certificates.len()
    }
}
