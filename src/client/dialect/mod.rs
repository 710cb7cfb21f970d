//! The ACME dialect as a strategy chosen once, when the directory is read
//! (the way rustls picks its TLS 1.2 or 1.3 handler): [`DialectImpl`] for
//! what differs per CA (accounts, orders, authorizations, challenges,
//! certificates, revocation) and [`OrderWire`] for what differs per order.
//! [`v2`] speaks RFC 8555; [`v1`] (cargo feature `v1`) the pre-RFC dialect
//! Boulder served at `acme-v01`. [`Account`], [`Order`] and
//! [`Authorization`](super::Authorization) call through them and never
//! branch on the dialect; the transport gets the dialect's
//! [`WireShape`](crate::transport::WireShape).

#[cfg(feature = "v1")]
pub(crate) mod v1;
pub(crate) mod v2;

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use super::order::OrderCore;
use super::{Account, AccountOptions, CertificateChain, Challenge, Client, NewOrder, Order};
use crate::crypto::{AccountKey, Csr};
use crate::error::{Error, Result};
use crate::protocol::{
    AccountResource, AuthorizationResource, ChallengeResource, Dialect, Directory, OrderStatus,
};
use crate::transport::{Response, WireShape};

/// A boxed, sendable future (the dialect traits are used as trait objects).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What differs between ACME dialects at one CA. One instance per
/// [`Client`], chosen from the directory.
pub(crate) trait DialectImpl: Send + Sync + Debug {
    /// Which dialect this is.
    fn dialect(&self) -> Dialect;

    /// Registers (or finds the existing) account of `key`.
    fn create_account<'a>(
        &'a self,
        client: Client,
        key: AccountKey,
        options: &'a AccountOptions,
    ) -> BoxFuture<'a, Result<Account>>;

    /// Looks up the account of `key` without creating one.
    fn find_account(&self, client: Client, key: AccountKey) -> BoxFuture<'_, Result<Account>>;

    /// POSTs `payload` to the account (`None`: reads it).
    fn post_account<'a>(
        &'a self,
        account: &'a Account,
        payload: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<AccountResource>>;

    /// The key-change URL and the inner JWS (signed by `new_key`) that
    /// rolls `account` over to it.
    fn key_change(&self, account: &Account, new_key: &AccountKey) -> Result<(String, Value)>;

    /// True when `key` already signs for `account` (after a key change
    /// whose outcome is unknown).
    fn key_owns_account<'a>(
        &'a self,
        account: &'a Account,
        key: &'a AccountKey,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Creates an order.
    fn new_order<'a>(
        &'a self,
        account: &'a Account,
        order: &'a NewOrder,
    ) -> BoxFuture<'a, Result<Order>>;

    /// Loads an order by its URL ([`Order::url`]).
    fn load_order<'a>(&'a self, account: &'a Account, url: &'a str)
    -> BoxFuture<'a, Result<Order>>;

    /// Downloads the chain at a certificate URL (its default chain; the
    /// caller picks a preferred one among the alternates).
    fn download_chain<'a>(
        &'a self,
        account: &'a Account,
        url: &'a str,
    ) -> BoxFuture<'a, Result<CertificateChain>>;

    /// The URLs in the account's orders list (at most `max_pages` pages).
    fn order_urls<'a>(
        &'a self,
        account: &'a Account,
        max_pages: usize,
    ) -> BoxFuture<'a, Result<Vec<String>>>;

    /// A revocation's error as RFC 8555 names it (`alreadyRevoked`).
    fn revocation_error(&self, error: Error) -> Error {
        error
    }

    /// Reads an authorization.
    fn read_authorization<'a>(
        &'a self,
        account: &'a Account,
        url: &'a str,
    ) -> BoxFuture<'a, Result<(AuthorizationResource, Response)>>;

    /// Deactivates an authorization.
    fn deactivate_authorization<'a>(
        &'a self,
        account: &'a Account,
        url: &'a str,
    ) -> BoxFuture<'a, Result<AuthorizationResource>>;

    /// The payload that tells the CA `challenge` is ready.
    fn challenge_answer(&self, challenge: &Challenge) -> Result<Value>;

    /// Parses a challenge from the CA's answer.
    fn parse_challenge(&self, response: &Response) -> Result<ChallengeResource>;

    /// Reads a challenge.
    fn read_challenge<'a>(
        &'a self,
        account: &'a Account,
        url: &'a str,
    ) -> BoxFuture<'a, Result<ChallengeResource>>;
}

/// What differs between dialects for one order (RFC 8555's order resource,
/// or v1's client-side order).
pub(crate) trait OrderWire: Send + Sync + Debug {
    /// A copy (orders are `Clone`).
    fn clone_box(&self) -> Box<dyn OrderWire>;

    /// Reads the order's state again.
    fn refresh<'a>(&'a mut self, order: &'a mut OrderCore) -> BoxFuture<'a, Result<()>>;

    /// Sends the CSR `der` (made from `csr`) and returns the new status.
    fn finalize<'a>(
        &'a mut self,
        order: &'a mut OrderCore,
        csr: Csr<'a>,
        der: Vec<u8>,
    ) -> BoxFuture<'a, Result<OrderStatus>>;

    /// The default chain at the certificate URL `url`.
    fn download<'a>(
        &'a mut self,
        order: &'a OrderCore,
        url: &'a str,
    ) -> BoxFuture<'a, Result<CertificateChain>>;

    /// The order is resumed after a finalize that may have been sent
    /// (`sent`: when, and how many times, if it was the last step).
    fn resume_after_finalize(&mut self, _order: &mut OrderCore, _sent: Option<(SystemTime, u32)>) {}

    /// True when `error`, the failure of a finalize, proves nothing was
    /// issued although the order itself cannot say so (a journal may then
    /// go back to before finalize).
    fn refusal_issued_nothing(&self, _order: &OrderCore, _error: &Error) -> bool {
        false
    }

    /// A chain in hand without a request, which has no URL to download it
    /// from again.
    fn chain_in_hand(&self) -> Option<&CertificateChain> {
        None
    }

    /// True when the order's status is computed from its authorizations
    /// on every refresh (ACME v1's client-side order), so a pending order
    /// needs no watch of its authorizations.
    fn status_from_authorizations(&self) -> bool {
        false
    }
}

impl Clone for Box<dyn OrderWire> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// The settings a dialect takes from the [`ClientBuilder`](super::ClientBuilder).
#[derive(Debug, Clone, Default)]
pub(crate) struct DialectSettings {
    /// ACME v1's new-cert settings.
    #[cfg(feature = "v1")]
    pub(crate) v1: v1::V1Settings,
}

/// The chosen dialect, its directory, and the shape it gives the transport.
pub(crate) struct Selected {
    pub(crate) dialect: Arc<dyn DialectImpl>,
    pub(crate) directory: Directory,
    pub(crate) shape: Option<Box<dyn WireShape>>,
}

/// Parses a directory of the `forced` dialect, or detects it: `newNonce`,
/// `newAccount` and `newOrder` make a v2 directory; `new-reg`, `new-authz`
/// and `new-cert` without `newNonce` a v1 one. Anything else is refused,
/// naming the keys found.
pub(crate) fn select(
    body: &[u8],
    forced: Option<Dialect>,
    settings: &DialectSettings,
) -> std::result::Result<Selected, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("directory is not JSON: {e}"))?;
    let Some(obj) = value.as_object() else {
        return Err("directory is not a JSON object".into());
    };
    let has = |keys: &[&str]| keys.iter().all(|k| obj.contains_key(*k));
    let dialect = match forced {
        Some(d) => d,
        None if has(&v2::DIRECTORY_KEYS) => Dialect::V2,
        None if has(&V1_DIRECTORY_KEYS) && !obj.contains_key("newNonce") => Dialect::V1,
        None => {
            return Err(format!(
                "not an ACME directory: neither v2 (newNonce, newAccount, newOrder) \
                 nor v1 (new-reg, new-authz, new-cert); found keys {:?}",
                sorted_keys(obj)
            ));
        }
    };
    let _ = settings;
    match dialect {
        Dialect::V2 => v2::V2::select(value),
        #[cfg(feature = "v1")]
        Dialect::V1 => v1::V1::select(obj, &settings.v1),
        #[cfg(not(feature = "v1"))]
        Dialect::V1 => Err(
            "this is an ACME v1 directory (new-reg, new-authz, new-cert), and this build of \
             sturdy-acme has no ACME v1 (cargo feature `v1`)"
                .into(),
        ),
    }
}

/// The v1 directory keys a client needs (detection works without the `v1`
/// feature, to say why such a directory is refused).
const V1_DIRECTORY_KEYS: [&str; 3] = ["new-reg", "new-authz", "new-cert"];

/// A directory's keys, sorted (for error messages).
pub(crate) fn sorted_keys(obj: &serde_json::Map<String, Value>) -> Vec<&str> {
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(body: &[u8], forced: Option<Dialect>) -> std::result::Result<Dialect, String> {
        select(body, forced, &DialectSettings::default()).map(|s| s.dialect.dialect())
    }

    #[test]
    fn directories_are_detected_or_refused_by_name() {
        let v2 =
            br#"{"newNonce":"https://ca/n","newAccount":"https://ca/a","newOrder":"https://ca/o",
            "revokeCert":"https://ca/r","keyChange":"https://ca/k"}"#;
        let v1 =
            br#"{"new-reg":"https://ca/r","new-authz":"https://ca/a","new-cert":"https://ca/c",
            "revoke-cert":"https://ca/x","meta":{"terms-of-service":"https://ca/t"}}"#;
        assert_eq!(detect(v2, None).unwrap(), Dialect::V2);
        #[cfg(feature = "v1")]
        {
            let selected = select(v1, None, &DialectSettings::default()).unwrap();
            assert_eq!(selected.dialect.dialect(), Dialect::V1);
            assert_eq!(selected.directory.new_account, "https://ca/r");
            assert_eq!(detect(v1, Some(Dialect::V1)).unwrap(), Dialect::V1);
            let err = detect(v2, Some(Dialect::V1)).unwrap_err();
            assert!(err.contains("new-reg") && err.contains("newOrder"), "{err}");
        }
        #[cfg(not(feature = "v1"))]
        {
            let err = detect(v1, None).unwrap_err();
            assert!(err.contains("feature `v1`"), "{err}");
        }
        let err = detect(v1, Some(Dialect::V2)).unwrap_err();
        assert!(err.contains("newNonce") && err.contains("new-reg"), "{err}");
        let err = detect(br#"{"hello":"x","meta":{}}"#, None).unwrap_err();
        assert!(err.contains(r#"["hello", "meta"]"#), "{err}");
        // v1 keys next to newNonce: not v1.
        let mixed = br#"{"newNonce":"n","new-reg":"r","new-authz":"a","new-cert":"c"}"#;
        assert!(detect(mixed, None).is_err());
        assert!(detect(b"[]", None).is_err());
    }
}
