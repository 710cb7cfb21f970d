//! RFC 7807 problem documents as ACME servers send them (RFC 8555 §6.7),
//! with the problem types of both dialects.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Identifier;

macro_rules! problem_types {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// The `type` of an ACME problem document.
        ///
        /// Every RFC 8555 §6.7 type, Boulder's extras and the RFC 8555
        /// predecessors' `urn:acme:error:*` names (mapped to the same
        /// variants); anything else is kept verbatim in [`ProblemType::Other`].
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ProblemType {
            $($(#[$doc])* $variant,)*
            /// A type this crate does not know, kept exactly as the server sent it.
            Other(String),
        }

        impl ProblemType {
            /// The short name after the `urn:ietf:params:acme:error:` prefix
            /// (`None` for [`ProblemType::Other`]).
            pub fn short_name(&self) -> Option<&'static str> {
                match self {
                    $(Self::$variant => Some($name),)*
                    Self::Other(_) => None,
                }
            }

            fn from_short_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

problem_types! {
    /// The request specified an account that does not exist.
    AccountDoesNotExist => "accountDoesNotExist",
    /// The request specified a certificate to be revoked that has already been revoked.
    AlreadyRevoked => "alreadyRevoked",
    /// The CSR is unacceptable (e.g. due to a short key).
    BadCsr => "badCSR",
    /// The client sent an unacceptable anti-replay nonce.
    BadNonce => "badNonce",
    /// The JWS was signed by a public key the server does not support.
    BadPublicKey => "badPublicKey",
    /// The revocation reason provided is not allowed by the server.
    BadRevocationReason => "badRevocationReason",
    /// The JWS was signed with an algorithm the server does not support.
    BadSignatureAlgorithm => "badSignatureAlgorithm",
    /// CAA records forbid the CA from issuing a certificate (or could not be checked).
    Caa => "caa",
    /// Specific error conditions are indicated in the "subproblems" array.
    Compound => "compound",
    /// The server could not connect to the validation target.
    Connection => "connection",
    /// There was a problem with a DNS query during identifier validation.
    Dns => "dns",
    /// The request must include a value for the "externalAccountBinding" field.
    ExternalAccountRequired => "externalAccountRequired",
    /// Response received didn't match the challenge's requirements.
    IncorrectResponse => "incorrectResponse",
    /// A contact URL for an account was invalid.
    InvalidContact => "invalidContact",
    /// The request message was malformed.
    Malformed => "malformed",
    /// The request attempted to finalize an order that is not ready to be finalized.
    OrderNotReady => "orderNotReady",
    /// The request exceeds a rate limit.
    RateLimited => "rateLimited",
    /// The server will not issue certificates for the identifier.
    RejectedIdentifier => "rejectedIdentifier",
    /// The server experienced an internal error.
    ServerInternal => "serverInternal",
    /// The server received a TLS error during validation.
    Tls => "tls",
    /// The client lacks sufficient authorization.
    Unauthorized => "unauthorized",
    /// A contact URL for an account used an unsupported protocol scheme.
    UnsupportedContact => "unsupportedContact",
    /// An identifier is of an unsupported type.
    UnsupportedIdentifier => "unsupportedIdentifier",
    /// Visit the "instance" URL and take actions specified there.
    UserActionRequired => "userActionRequired",
    /// The certificate named in `replaces` was already replaced (ARI; Boulder).
    AlreadyReplaced => "alreadyReplaced",
    /// The request conflicts with the current state (Boulder, e.g. a key already in use).
    Conflict => "conflict",
    /// The profile asked for is not one the CA offers (draft-ietf-acme-profiles).
    InvalidProfile => "invalidProfile",
}

const V2_PREFIX: &str = "urn:ietf:params:acme:error:";
const V1_PREFIX: &str = "urn:acme:error:";

impl ProblemType {
    /// Parses a problem `type` URN (v2 or v1 form); unknown values are kept.
    pub fn from_urn(urn: &str) -> Self {
        urn.strip_prefix(V2_PREFIX)
            .or_else(|| urn.strip_prefix(V1_PREFIX))
            .and_then(|name| {
                // v1 spelled a few names differently.
                let name = match name {
                    "tls" | "tlsError" => "tls",
                    "connectionError" => "connection",
                    "unknownHost" => "dns",
                    "badCsr" => "badCSR",
                    "invalidEmail" => "invalidContact",
                    other => other,
                };
                Self::from_short_name(name)
            })
            .unwrap_or_else(|| Self::Other(urn.to_owned()))
    }

    /// The full RFC 8555 URN (or the verbatim value for [`ProblemType::Other`]).
    pub fn urn(&self) -> String {
        match self {
            Self::Other(s) => s.clone(),
            known => format!("{V2_PREFIX}{}", known.short_name().unwrap_or_default()),
        }
    }
}

impl fmt::Display for ProblemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Other(s) => f.write_str(s),
            known => f.write_str(known.short_name().unwrap_or_default()),
        }
    }
}

impl Serialize for ProblemType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.urn())
    }
}

impl<'de> Deserialize<'de> for ProblemType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::from_urn(&s))
    }
}

fn default_problem_type() -> ProblemType {
    // RFC 7807 §4.2: a missing type means "about:blank".
    ProblemType::Other("about:blank".to_owned())
}

/// An RFC 7807 problem document as an ACME server sends it (RFC 8555 §6.7).
///
/// # Example
///
/// ```
/// use sturdy_acme::{Problem, ProblemType};
///
/// let p: Problem = serde_json::from_str(r#"{
///     "type": "urn:ietf:params:acme:error:rateLimited",
///     "detail": "too many certificates already issued for exact set of domains",
///     "status": 429
/// }"#).unwrap();
/// assert_eq!(p.kind, ProblemType::RateLimited);
/// assert_eq!(p.status, Some(429));
/// ```
///
/// As part of an [`Error`](crate::Error): see there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// The problem type.
    #[serde(rename = "type", default = "default_problem_type")]
    pub kind: ProblemType,
    /// Human-readable explanation from the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The HTTP status the server put in the document (may differ from the response's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// A URL identifying this occurrence (e.g. for `userActionRequired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The identifier this problem is about (in subproblems and authorizations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    /// Per-identifier problems of a compound error (RFC 8555 §6.7.1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subproblems: Vec<Problem>,
    /// Any other members, kept as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    /// A problem of `kind` with a detail, for errors raised locally.
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: Some(detail.into()),
            status: None,
            instance: None,
            identifier: None,
            subproblems: Vec::new(),
            extra: serde_json::Map::new(),
        }
    }

    /// The identifiers named by this problem and its subproblems.
    pub fn identifiers(&self) -> Vec<&Identifier> {
        let mut out: Vec<&Identifier> = self.identifier.iter().collect();
        for sub in &self.subproblems {
            out.extend(sub.identifiers());
        }
        out
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(id) = &self.identifier {
            write!(f, " for {id}")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        for sub in &self.subproblems {
            write!(f, "; [{sub}]")?;
        }
        Ok(())
    }
}
