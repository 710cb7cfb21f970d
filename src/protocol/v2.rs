//! RFC 8555 request payloads.

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::Identifier;

/// newAccount payload (RFC 8555 §7.3).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewAccount<'a> {
    /// Contact URLs.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub contact: &'a [String],
    /// Agreement to the terms of service.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub terms_of_service_agreed: bool,
    /// Only look up an existing account (§7.3.1).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub only_return_existing: bool,
    /// External account binding JWS (§7.3.4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_account_binding: Option<Value>,
}

/// newOrder payload (RFC 8555 §7.4).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NewOrder<'a> {
    /// Identifiers.
    pub identifiers: &'a [Identifier],
    /// Requested notBefore.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before: Option<OffsetDateTime>,
    /// Requested notAfter.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_after: Option<OffsetDateTime>,
    /// The CertID of the certificate this order replaces (RFC 9773).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<&'a str>,
    /// The certificate profile asked for (draft-ietf-acme-profiles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<&'a str>,
}

/// finalize payload (RFC 8555 §7.4).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Finalize {
    /// base64url DER CSR.
    pub csr: String,
}

/// revokeCert payload (RFC 8555 §7.6).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Revocation {
    /// base64url DER certificate.
    pub certificate: String,
    /// CRL reason code (RFC 5280 §5.3.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<u8>,
}

/// The inner payload of a keyChange request (RFC 8555 §7.3.5).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyChange<'a> {
    /// The account URL.
    pub account: &'a str,
    /// The old key's JWK.
    pub old_key: &'a Value,
}

/// Account update payload (RFC 8555 §7.3.2, §7.3.6).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct AccountUpdate<'a> {
    /// New contact list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<&'a [String]>,
    /// `"deactivated"` to deactivate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'a str>,
}
