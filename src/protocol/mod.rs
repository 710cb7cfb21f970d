//! ACME wire formats: the JSON resources and request payloads, with no I/O.
//!
//! [`resources`] holds the server's objects (directory, account, order,
//! authorization, challenge) shared by every dialect; [`v2`] holds the
//! RFC 8555 request payloads and [`v1`] what the pre-RFC dialect (Boulder's
//! `acme-v01`) spelled differently.

pub mod endpoint;
pub mod identifier;
pub mod problem;
pub mod resources;
pub mod timestamp;
#[cfg(feature = "v1")]
pub mod v1;
pub mod v2;

pub use endpoint::Endpoint;
pub use identifier::{Identifier, IdentifierSet};
pub use resources::{
    Account as AccountResource, AccountStatus, Authorization as AuthorizationResource,
    AuthorizationStatus, Challenge as ChallengeResource, ChallengeStatus, ChallengeType, Directory,
    DirectoryMeta, Order as OrderResource, OrderStatus,
};

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

/// Which ACME protocol a CA speaks.
///
/// A [`Client`](crate::Client) learns it from the directory (or is told with
/// [`ClientBuilder::dialect`](crate::ClientBuilder::dialect)); the embedded
/// test CA (feature `testing`) serves either.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// RFC 8555 (ACME v2), as Boulder and Pebble serve it today. The default.
    #[default]
    V2,
    /// The pre-RFC ACME v1 API as Let's Encrypt's Boulder served it at
    /// `acme-v01.api.letsencrypt.org` until 2021: directory keys `new-reg`,
    /// `new-authz`, `new-cert`, `revoke-cert`, `key-change`, no `newNonce`;
    /// a `resource` member in every payload; JWS signed with the `jwk`
    /// (never a `kid` or a `url`); one `new-authz` per identifier instead of
    /// orders; a synchronous `new-cert` answering the DER certificate.
    V1,
}

impl Dialect {
    /// `"v1"` or `"v2"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::V1 => "ACME v1",
            Self::V2 => "ACME v2 (RFC 8555)",
        })
    }
}
