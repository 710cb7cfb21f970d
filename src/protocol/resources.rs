//! The server's resources (RFC 8555 §7.1), as they arrive on the wire.
//!
//! Members a later RFC or a CA adds are kept in `extra` maps, never dropped.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::Identifier;
use super::problem::Problem;

/// The directory (RFC 8555 §7.1.1): where each endpoint lives.
///
/// Example: the client example on the [crate root](crate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Directory {
    /// `newNonce` URL.
    pub new_nonce: String,
    /// `newAccount` URL.
    pub new_account: String,
    /// `newOrder` URL.
    pub new_order: String,
    /// `newAuthz` URL (pre-authorization; rarely offered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_authz: Option<String>,
    /// `revokeCert` URL.
    pub revoke_cert: String,
    /// `keyChange` URL.
    pub key_change: String,
    /// `renewalInfo` URL (ACME Renewal Information, RFC 9773).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_info: Option<String>,
    /// Metadata about the CA.
    #[serde(default)]
    pub meta: DirectoryMeta,
    /// Any other members, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The directory's `meta` object.
///
/// Example: the client example on the [crate root](crate).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryMeta {
    /// URL of the current terms of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_of_service: Option<String>,
    /// The CA's website.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    /// Domain names the CA recognizes in CAA records as referring to itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caa_identities: Vec<String>,
    /// True if newAccount requires an external account binding.
    #[serde(default)]
    pub external_account_required: bool,
    /// Certificate profiles the CA offers (name → description).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub profiles: Map<String, Value>,
    /// Any other members, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Account status (RFC 8555 §7.1.6).
///
/// Example: the client example on the [crate root](crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AccountStatus {
    /// Usable.
    Valid,
    /// Deactivated by the client.
    Deactivated,
    /// Revoked by the server.
    Revoked,
}

/// An account object (RFC 8555 §7.1.2).
///
/// Example: the client example on the [crate root](crate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// Status.
    pub status: AccountStatus,
    /// Contact URLs (`mailto:`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contact: Vec<String>,
    /// Whether the terms of service were agreed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_of_service_agreed: Option<bool>,
    /// URL of the account's orders list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orders: Option<String>,
    /// Any other members (e.g. a bound external account), kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Order status (RFC 8555 §7.1.6).
///
/// Example: the client example on the [crate root](crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum OrderStatus {
    /// Authorizations not yet all valid.
    Pending,
    /// All authorizations valid; waiting for finalize.
    Ready,
    /// Finalize accepted; the certificate is being issued.
    Processing,
    /// Issued; the certificate can be downloaded.
    Valid,
    /// Failed (an authorization failed, it expired, or issuance failed).
    Invalid,
}

impl OrderStatus {
    /// The status as the wire spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ready => "ready",
            Self::Processing => "processing",
            Self::Valid => "valid",
            Self::Invalid => "invalid",
        }
    }
}

/// An order object (RFC 8555 §7.1.3).
///
/// Example: the client example on the [crate root](crate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Status.
    pub status: OrderStatus,
    /// When the order expires.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires: Option<OffsetDateTime>,
    /// The identifiers.
    pub identifiers: Vec<Identifier>,
    /// Requested notBefore.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before: Option<OffsetDateTime>,
    /// Requested notAfter.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_after: Option<OffsetDateTime>,
    /// Why the order is invalid, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
    /// Authorization URLs.
    #[serde(default)]
    pub authorizations: Vec<String>,
    /// Finalize URL.
    pub finalize: String,
    /// Certificate URL, once `valid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Any other members (e.g. `profile`, `replaces`), kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Authorization status (RFC 8555 §7.1.6).
///
/// Example: the client example on the [crate root](crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AuthorizationStatus {
    /// Waiting for a challenge to be answered and validated.
    Pending,
    /// Validated.
    Valid,
    /// Validation failed.
    Invalid,
    /// Deactivated by the client.
    Deactivated,
    /// Expired.
    Expired,
    /// Revoked by the server.
    Revoked,
}

impl AuthorizationStatus {
    /// The status as the wire spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Deactivated => "deactivated",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// An authorization object (RFC 8555 §7.1.4).
///
/// Example: the client example on the [crate root](crate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// The identifier (without `*.` for wildcards; see `wildcard`).
    pub identifier: Identifier,
    /// Status.
    pub status: AuthorizationStatus,
    /// When it expires.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires: Option<OffsetDateTime>,
    /// The challenges offered.
    #[serde(default)]
    pub challenges: Vec<Challenge>,
    /// True when this authorization is for a wildcard name.
    #[serde(default)]
    pub wildcard: bool,
    /// Any other members, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Challenge type.
///
/// Example: the client example on the [crate root](crate).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChallengeType {
    /// `http-01` (RFC 8555 §8.3).
    Http01,
    /// `dns-01` (RFC 8555 §8.4).
    Dns01,
    /// `tls-alpn-01` (RFC 8737).
    TlsAlpn01,
    /// Anything else, kept as sent.
    Other(String),
}

impl ChallengeType {
    /// The type as the wire spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Http01 => "http-01",
            Self::Dns01 => "dns-01",
            Self::TlsAlpn01 => "tls-alpn-01",
            Self::Other(s) => s,
        }
    }

    /// Parses a wire name.
    pub fn from_name(s: &str) -> Self {
        match s {
            "http-01" => Self::Http01,
            "dns-01" => Self::Dns01,
            "tls-alpn-01" => Self::TlsAlpn01,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for ChallengeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ChallengeType {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::from_name(s))
    }
}

impl Serialize for ChallengeType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ChallengeType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from_name(&String::deserialize(d)?))
    }
}

/// Challenge status (RFC 8555 §7.1.6).
///
/// Example: the client example on the [crate root](crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ChallengeStatus {
    /// Not yet answered.
    Pending,
    /// Answered; the CA is validating.
    Processing,
    /// Validated.
    Valid,
    /// Validation failed.
    Invalid,
}

/// A challenge object (RFC 8555 §7.1.5, §8).
///
/// Example: the client example on the [crate root](crate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Challenge {
    /// Type.
    #[serde(rename = "type")]
    pub kind: ChallengeType,
    /// URL to answer it at.
    pub url: String,
    /// Status.
    pub status: ChallengeStatus,
    /// The token (http-01, dns-01, tls-alpn-01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// When it was validated.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub validated: Option<OffsetDateTime>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
    /// Any other members, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_keeps_unknown_fields() {
        let json = r#"{
          "newNonce": "https://ca/nonce", "newAccount": "https://ca/acct",
          "newOrder": "https://ca/order", "revokeCert": "https://ca/revoke",
          "keyChange": "https://ca/kc", "renewalInfo": "https://ca/ari",
          "xyz": {"a": 1},
          "meta": {"termsOfService": "https://ca/tos", "website": "https://ca",
                   "caaIdentities": ["ca.example"], "externalAccountRequired": true,
                   "profiles": {"classic": "the default"}, "futureThing": [1,2]}
        }"#;
        let d: Directory = serde_json::from_str(json).unwrap();
        assert_eq!(d.meta.caa_identities, ["ca.example"]);
        assert!(d.meta.external_account_required);
        assert_eq!(d.meta.extra["futureThing"], serde_json::json!([1, 2]));
        assert_eq!(d.extra["xyz"]["a"], 1);
        assert_eq!(d.renewal_info.as_deref(), Some("https://ca/ari"));
        assert_eq!(d.meta.profiles["classic"], "the default");
    }

    #[test]
    fn order_parses_rfc_example() {
        let json = r#"{
          "status": "pending",
          "expires": "2016-01-05T14:09:07.99Z",
          "notBefore": "2016-01-01T00:00:00Z",
          "notAfter": "2016-01-08T00:00:00Z",
          "identifiers": [{ "type": "dns", "value": "www.example.org" },
                          { "type": "dns", "value": "example.org" }],
          "authorizations": ["https://example.com/acme/authz/PAniVnsZcis",
                             "https://example.com/acme/authz/r4HqLzrSrpI"],
          "finalize": "https://example.com/acme/order/TOlocE8rfgo/finalize",
          "profile": "tlsserver"
        }"#;
        let o: Order = serde_json::from_str(json).unwrap();
        assert_eq!(o.status, OrderStatus::Pending);
        assert_eq!(o.authorizations.len(), 2);
        assert_eq!(o.extra["profile"], "tlsserver");
        assert!(o.expires.is_some());
    }
}
