//! The rustls crypto provider, chosen at build time: ring (feature `ring`,
//! the default) or aws-lc-rs (feature `aws-lc-rs`: post-quantum hybrid key
//! exchange X25519MLKEM768 preferred, and the provider FIPS builds use).
//! Every TLS connection of the library (the CA, the tls-alpn-01 responder)
//! goes through [`tls_provider`]; with both features, aws-lc-rs wins.
//!
//! Signing of JWS and CSRs stays with ring in both builds (see
//! docs/ARCHITECTURE.md).

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
compile_error!(
    "sturdy-acme needs a TLS crypto provider: enable the feature `ring` (default) or `aws-lc-rs`"
);

/// The rustls crypto provider this build uses for TLS (see the features
/// `ring`, the default, and `aws-lc-rs`).
///
/// ```
/// let provider = sturdy_acme::tls_provider();
/// assert!(!provider.cipher_suites.is_empty());
/// // For your own rustls configurations next to the library's:
/// let config = rustls::ClientConfig::builder_with_provider(provider)
///     .with_safe_default_protocol_versions()
///     .unwrap();
/// # let _ = config;
/// ```
pub fn tls_provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(build())).clone()
}

#[cfg(feature = "aws-lc-rs")]
fn build() -> CryptoProvider {
    // With rustls's `prefer-post-quantum` (enabled by this crate's
    // `aws-lc-rs` feature) X25519MLKEM768 comes first.
    rustls::crypto::aws_lc_rs::default_provider()
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn build() -> CryptoProvider {
    // rustls deprecates ring's provider for its lack of post-quantum key
    // exchange: that is the trade this build made (choose `aws-lc-rs`);
    // the one place the library names it.
    #[allow(deprecated)]
    rustls::crypto::ring::default_provider()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_offers_what_this_build_chose() {
        let names: Vec<String> = tls_provider()
            .kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect();
        assert!(names.iter().any(|n| n == "X25519"), "{names:?}");
        #[cfg(feature = "aws-lc-rs")]
        assert_eq!(names[0], "X25519MLKEM768", "post-quantum first: {names:?}");
        #[cfg(not(feature = "aws-lc-rs"))]
        assert!(!names.iter().any(|n| n.contains("MLKEM")), "{names:?}");
    }
}
