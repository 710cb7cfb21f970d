//! ACME v1 (the pre-RFC dialect, as Let's Encrypt's Boulder served it at
//! `acme-v01` until 2021): its request payloads and how its resources map
//! onto the shared ones in [`resources`](super::resources).
//!
//! Every v1 payload also carries a `resource` member naming its endpoint
//! (`new-reg`, `reg`, `new-authz`, `authz`, `challenge`, `new-cert`,
//! `revoke-cert`, `key-change`); the transport adds it when it signs, so the
//! payloads here do not.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::resources::{
    Account, AuthorizationStatus, Challenge, Directory, DirectoryMeta, OrderStatus,
};
use super::{AuthorizationResource, Identifier};
use super::{b64, b64_decode};

/// new-reg payload.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct NewRegistration<'a> {
    /// Contact URLs.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub contact: &'a [String],
    /// The terms-of-service URL agreed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<&'a str>,
}

/// new-authz payload.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NewAuthorization<'a> {
    /// The identifier (v1: DNS names only).
    pub identifier: &'a Identifier,
}

/// Challenge answer payload (`keyAuthorization` as pre-0.32 certbot sent
/// it; Boulder ignored it and computed its own).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChallengeAnswer<'a> {
    /// The challenge type.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The key authorization.
    pub key_authorization: &'a str,
}

/// The inner payload of a v1 key-change (Boulder, draft-05 style).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyChange<'a> {
    /// The registration URL.
    pub account: &'a str,
    /// The new key's JWK.
    pub new_key: &'a Value,
}

/// The v1 directory keys a client needs.
pub(crate) const DIRECTORY_KEYS: [&str; 3] = ["new-reg", "new-authz", "new-cert"];

/// A v1 directory's endpoints, by their v1 names.
#[derive(Debug, Clone)]
pub(crate) struct V1Directory {
    /// `new-authz`: one authorization per identifier.
    pub(crate) new_authz: String,
    /// `new-cert`: issues synchronously.
    pub(crate) new_cert: String,
}

/// Reads a v1 directory: its endpoints, and the shared [`Directory`]
/// as [`Client::directory`](crate::Client::directory) shows it to users
/// (`new_account` is `new-reg`, `new_order` is `new-authz`, `new_nonce` is
/// empty, `revoke_cert` and `key_change` are `revoke-cert` and
/// `key-change` (empty when absent), the terms come from
/// `meta.terms-of-service`; every v1 member is also kept verbatim in
/// `extra`). The v1 dialect itself reads only the endpoints.
pub(crate) fn directory(obj: &Map<String, Value>) -> Result<(Directory, V1Directory), String> {
    let url = |key: &str| -> Result<String, String> {
        match obj.get(key) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("directory member {key:?} is not a URL: {other}")),
        }
    };
    for key in DIRECTORY_KEYS {
        if url(key)?.is_empty() {
            let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            keys.sort_unstable();
            return Err(format!(
                "not an ACME v1 directory: no {key:?}; found keys {keys:?}"
            ));
        }
    }
    let mut meta = DirectoryMeta::default();
    if let Some(Value::Object(m)) = obj.get("meta") {
        for (k, v) in m {
            match (k.as_str(), v) {
                ("terms-of-service" | "termsOfService", Value::String(s)) => {
                    meta.terms_of_service = Some(s.clone());
                }
                ("website", Value::String(s)) => meta.website = Some(s.clone()),
                ("caaIdentities" | "caa-identities", Value::Array(a)) => {
                    meta.caa_identities = a
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect();
                }
                _ => {
                    meta.extra.insert(k.clone(), v.clone());
                }
            }
        }
    }
    let mut extra = obj.clone();
    extra.remove("meta");
    let endpoints = V1Directory {
        new_authz: url("new-authz")?,
        new_cert: url("new-cert")?,
    };
    let directory = Directory {
        new_nonce: String::new(),
        new_account: url("new-reg")?,
        new_order: url("new-authz")?,
        new_authz: None,
        revoke_cert: url("revoke-cert")?,
        key_change: url("key-change")?,
        renewal_info: None,
        meta,
        extra,
    };
    Ok((directory, endpoints))
}

/// A v1 challenge object: `uri` instead of `url`.
pub(crate) fn challenge(mut value: Value) -> Result<Challenge, serde_json::Error> {
    if let Value::Object(m) = &mut value
        && !m.contains_key("url")
        && let Some(uri) = m.remove("uri")
    {
        m.insert("url".into(), uri);
    }
    serde_json::from_value(value)
}

/// A v1 authorization object (its challenges carry `uri`; `combinations`
/// is kept in `extra`).
pub(crate) fn authorization(mut value: Value) -> Result<AuthorizationResource, serde_json::Error> {
    if let Some(Value::Array(challenges)) = value.get_mut("challenges") {
        for c in challenges.iter_mut() {
            if let Value::Object(m) = c
                && !m.contains_key("url")
                && let Some(uri) = m.remove("uri")
            {
                m.insert("url".into(), uri);
            }
        }
    }
    serde_json::from_value(value)
}

/// A v1 registration as an account object: `terms_of_service_agreed` is
/// whether it carries an `agreement`; `agreement`, `id`, `key`,
/// `initialIp`, `createdAt` stay in `extra`.
pub(crate) fn account(value: Value) -> Result<Account, serde_json::Error> {
    let mut account: Account = serde_json::from_value(value)?;
    if account.terms_of_service_agreed.is_none() {
        account.terms_of_service_agreed = Some(account.extra.contains_key("agreement"));
    }
    Ok(account)
}

/// A v1 order's status, computed from its authorizations: any failed one
/// makes it `invalid`, all valid `ready`, a certificate `valid`.
pub(crate) fn order_status(authorizations: &[AuthorizationStatus], issued: bool) -> OrderStatus {
    if issued {
        return OrderStatus::Valid;
    }
    if authorizations.iter().any(|s| {
        matches!(
            s,
            AuthorizationStatus::Invalid
                | AuthorizationStatus::Deactivated
                | AuthorizationStatus::Expired
                | AuthorizationStatus::Revoked
        )
    }) {
        OrderStatus::Invalid
    } else if authorizations
        .iter()
        .all(|s| *s == AuthorizationStatus::Valid)
    {
        OrderStatus::Ready
    } else {
        OrderStatus::Pending
    }
}

/// The prefix of a v1 order's synthetic URL.
pub(crate) const ORDER_URN_PREFIX: &str = "urn:sturdy-acme:v1-order:";

/// What a v1 (client-side) order is made of, and its synthetic URL: v1 has
/// no order resource, so the order's URL is
/// `urn:sturdy-acme:v1-order:<base64url JSON>` holding its identifiers,
/// authorization URLs and (once issued) certificate URL, from which the
/// order can be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OrderRef {
    #[serde(rename = "i")]
    pub(crate) identifiers: Vec<Identifier>,
    #[serde(rename = "a")]
    pub(crate) authorizations: Vec<String>,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub(crate) certificate: Option<String>,
}

impl OrderRef {
    pub(crate) fn to_url(&self) -> String {
        let json = serde_json::to_vec(self).expect("order reference serializes");
        format!("{ORDER_URN_PREFIX}{}", b64(json))
    }

    pub(crate) fn parse(url: &str) -> Option<Self> {
        let data = b64_decode(url.strip_prefix(ORDER_URN_PREFIX)?)?;
        let order: Self = serde_json::from_slice(&data).ok()?;
        (!order.identifiers.is_empty() && order.identifiers.len() == order.authorizations.len())
            .then_some(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn boulder_directory_maps_onto_the_shared_one() {
        let v = json!({
            "new-reg": "https://ca/acme/new-reg",
            "new-authz": "https://ca/acme/new-authz",
            "new-cert": "https://ca/acme/new-cert",
            "revoke-cert": "https://ca/acme/revoke-cert",
            "Ln9Rk3xQ": "https://community.letsencrypt.org/t/adding-random-entries-to-the-directory/33417",
            "meta": {"terms-of-service": "https://ca/terms", "caaIdentities": ["ca.example"], "website": "https://ca"}
        });
        let (d, endpoints) = directory(v.as_object().unwrap()).unwrap();
        assert_eq!(d.new_nonce, "");
        assert_eq!(d.new_account, "https://ca/acme/new-reg");
        assert_eq!(d.new_order, "https://ca/acme/new-authz");
        assert_eq!(endpoints.new_authz, "https://ca/acme/new-authz");
        assert_eq!(endpoints.new_cert, "https://ca/acme/new-cert");
        assert_eq!(d.key_change, "");
        assert_eq!(d.extra["new-cert"], "https://ca/acme/new-cert");
        assert!(d.extra.contains_key("Ln9Rk3xQ"));
        assert_eq!(d.meta.terms_of_service.as_deref(), Some("https://ca/terms"));
        assert_eq!(d.meta.caa_identities, ["ca.example"]);

        let err = directory(json!({"new-reg": "x"}).as_object().unwrap()).unwrap_err();
        assert!(err.contains("new-authz"), "{err}");
    }

    #[test]
    fn v1_objects_parse() {
        let a = authorization(json!({
            "identifier": {"type": "dns", "value": "example.com"},
            "status": "pending",
            "expires": "2018-03-08T11:02:18.863490566Z",
            "challenges": [{"type": "http-01", "status": "pending",
                "uri": "https://ca/acme/challenge/A/1", "token": "tok"}],
            "combinations": [[0]]
        }))
        .unwrap();
        assert_eq!(a.challenges[0].url, "https://ca/acme/challenge/A/1");
        assert_eq!(a.extra["combinations"], json!([[0]]));

        let c = challenge(
            json!({"type": "dns-01", "status": "invalid", "uri": "u", "token": "t",
            "error": {"type": "urn:acme:error:connection", "detail": "x", "status": 400}}),
        )
        .unwrap();
        assert_eq!(
            c.error.unwrap().kind,
            crate::protocol::problem::ProblemType::Connection
        );

        let r = account(json!({"id": 3, "key": {}, "contact": ["mailto:a@b"],
            "agreement": "https://ca/terms", "status": "valid"}))
        .unwrap();
        assert_eq!(r.terms_of_service_agreed, Some(true));
        assert_eq!(r.extra["agreement"], "https://ca/terms");
    }

    #[test]
    fn order_status_and_reference() {
        use AuthorizationStatus::*;
        assert_eq!(order_status(&[Valid, Pending], false), OrderStatus::Pending);
        assert_eq!(order_status(&[Valid, Valid], false), OrderStatus::Ready);
        assert_eq!(order_status(&[Valid, Invalid], false), OrderStatus::Invalid);
        assert_eq!(order_status(&[Valid], true), OrderStatus::Valid);

        let r = OrderRef {
            identifiers: vec![Identifier::dns("a.example").unwrap()],
            authorizations: vec!["https://ca/acme/authz/1".into()],
            certificate: None,
        };
        let url = r.to_url();
        assert!(url.starts_with(ORDER_URN_PREFIX));
        assert_eq!(OrderRef::parse(&url), Some(r));
        assert_eq!(OrderRef::parse("https://ca/acme/order/1"), None);
        assert_eq!(OrderRef::parse("urn:sturdy-acme:v1-order:!!"), None);
    }
}
