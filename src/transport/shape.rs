//! How a dialect shapes requests on the wire: the JWS header form, the
//! payload as sent, where a fresh nonce comes from, a timeout of its own.

use std::borrow::Cow;
use std::time::Duration;

use serde_json::Value;

use crate::crypto::jws::JwsHeader;
use crate::error::Result;
use crate::protocol::Endpoint;

/// How a dialect shapes requests on the wire (see the module docs).
pub(crate) trait WireShape: Send + Sync + std::fmt::Debug {
    /// The JWS protected header form.
    fn header(&self) -> JwsHeader;
    /// The payload as sent to `endpoint` at `url` (`None`: POST-as-GET).
    fn payload<'a>(
        &self,
        endpoint: Endpoint,
        url: &str,
        payload: Option<&'a Value>,
    ) -> Result<Option<Cow<'a, Value>>>;
    /// True when a fresh nonce is taken by `HEAD`ing the request's own URL
    /// (a CA without newNonce).
    fn nonce_from_request_url(&self) -> bool;
    /// A timeout of its own for a POST to `endpoint`.
    fn post_timeout(&self, endpoint: Endpoint) -> Option<Duration>;
}

/// RFC 8555's wire: payloads as given, nonces from newNonce.
#[derive(Debug)]
pub(crate) struct Rfc8555Shape;

impl WireShape for Rfc8555Shape {
    fn header(&self) -> JwsHeader {
        JwsHeader::Rfc8555
    }
    fn payload<'a>(
        &self,
        _: Endpoint,
        _: &str,
        payload: Option<&'a Value>,
    ) -> Result<Option<Cow<'a, Value>>> {
        Ok(payload.map(Cow::Borrowed))
    }
    fn nonce_from_request_url(&self) -> bool {
        false
    }
    fn post_timeout(&self, _: Endpoint) -> Option<Duration> {
        None
    }
}
