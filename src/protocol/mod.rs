//! ACME wire formats: the JSON resources and request payloads, with no I/O.
//!
//! [`resources`] holds the server's objects (directory, account, order,
//! authorization, challenge) shared by every dialect; [`v2`] holds the
//! RFC 8555 request payloads and [`v1`] what the pre-RFC dialect (Boulder's
//! `acme-v01`) spelled differently.

pub mod choice;
pub mod endpoint;
pub mod identifier;
pub mod problem;
pub mod renewal_info;
pub mod resources;
pub mod timestamp;
#[cfg(feature = "v1")]
pub mod v1;
pub mod v2;

pub use endpoint::Endpoint;
pub use identifier::{Identifier, IdentifierSet, InvalidIdentifier};
pub use problem::{Problem, ProblemType};
pub use renewal_info::{CertId, RenewalInfo};
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
/// test CA (crate `sturdy-acme-testca`) serves either.
///
/// Example: [`Client`](crate::Client).
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

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    /// Any JSON value, nested a few levels.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::from),
                vec((any::<String>(), inner), 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// The request payloads serialize whatever they hold (moved here
        /// from the hostile-input campaign when the payloads became
        /// crate-private).
        #[test]
        fn request_payloads_serialize_any_content(
            contact in vec(any::<String>(), 0..4),
            s in any::<String>(),
            value in json_value(),
            names in vec(any::<String>(), 1..3),
        ) {
            let ids: Vec<Identifier> = names
                .iter()
                .map(|n| Identifier { kind: "dns".into(), value: n.clone() })
                .collect();
            let texts = [
                #[cfg(feature = "v1")]
                serde_json::to_string(&v1::NewRegistration { contact: &contact, agreement: Some(&s) }),
                #[cfg(feature = "v1")]
                serde_json::to_string(&v1::NewAuthorization { identifier: &ids[0] }),
                #[cfg(feature = "v1")]
                serde_json::to_string(&v1::ChallengeAnswer { kind: &s, key_authorization: &s }),
                #[cfg(feature = "v1")]
                serde_json::to_string(&v1::KeyChange { account: &s, new_key: &value }),
                serde_json::to_string(&v2::NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                    external_account_binding: Some(value.clone()),
                }),
                serde_json::to_string(&v2::NewOrder { identifiers: &ids, not_before: None, not_after: None, replaces: None, profile: None }),
                serde_json::to_string(&v2::Finalize { csr: s.clone() }),
                serde_json::to_string(&v2::Revocation { certificate: s.clone(), reason: Some(255) }),
                serde_json::to_string(&v2::KeyChange { account: &s, old_key: &value }),
                serde_json::to_string(&v2::AccountUpdate { contact: Some(&contact), status: Some(&s) }),
            ];
            for text in texts {
                let text = text.map_err(|e| TestCaseError::fail(format!("serialize: {e}")))?;
                prop_assert!(serde_json::from_str::<Value>(&text).is_ok(), "{}", text);
            }
        }
    }
}
