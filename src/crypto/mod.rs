//! Keys and signatures: account keys ([`AccountKey`]), JWK thumbprints and
//! JWS (RFC 7515/7638), certificate keys and CSRs ([`CertificateKey`]), and
//! the challenge values derived from a key ([`challenge`]).
//!
//! All signing uses `ring`. Private key bytes are held in
//! [`zeroize::Zeroizing`] buffers and never appear in `Debug` output or logs.

mod account_key;
pub mod challenge;
mod csr;
mod jwk;
pub(crate) mod jws;

pub use account_key::{AccountKey, KeyAlgorithm};
pub use csr::{CertificateKey, CertificateKeyType, Csr};
pub use jwk::thumbprint_of_jwk;
pub use jws::ExternalAccountKey;

use base64::Engine as _;

/// base64url without padding, as JOSE and ACME use it.
pub(crate) fn b64(data: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Decodes base64url, tolerating trailing `=` padding.
pub(crate) fn b64_decode(data: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(data.trim_end_matches('='))
        .ok()
}
