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
mod tls_provider;

pub use account_key::{AccountKey, KeyAlgorithm};
pub use csr::{CertificateKey, CertificateKeyType, Csr};
pub use jwk::thumbprint_of_jwk;
pub use jws::ExternalAccountKey;
pub use tls_provider::tls_provider;

pub(crate) use crate::protocol::{b64, b64_decode};
