//! A successful answer as the transport hands it up, and the one place a
//! `Retry-After` header is read.

use bytes::Bytes;
use http::HeaderMap;
use serde::de::DeserializeOwned;
use std::time::SystemTime;

use crate::error::{Error, RequestInfo, Result, RetryAfter};

/// A successful (2xx) response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) method: &'static str,
    pub(crate) url: String,
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// Its `Retry-After`, parsed once on arrival against the client's
    /// clock.
    pub(crate) retry_after: Option<RetryAfter>,
}

impl Response {
    pub(crate) fn info(&self) -> Box<RequestInfo> {
        Box::new(RequestInfo {
            method: self.method,
            url: self.url.clone(),
            status: Some(self.status),
            retry_after: self.retry_after,
        })
    }

    /// The body as JSON of type `T`.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| Error::InvalidResponse {
            request: self.info(),
            reason: format!("body is not the expected JSON: {e}"),
        })
    }

    /// The `Location` header, required.
    pub(crate) fn location(&self) -> Result<String> {
        self.header("location")
            .ok_or_else(|| Error::InvalidResponse {
                request: self.info(),
                reason: "no Location header".into(),
            })
    }

    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The `Retry-After` it carried (parsed on arrival, on the client's
    /// clock).
    pub(crate) fn retry_after(&self) -> Option<RetryAfter> {
        self.retry_after
    }

    /// The body as UTF-8 text.
    pub(crate) fn text(&self) -> Result<String> {
        String::from_utf8(self.body.to_vec()).map_err(|_| Error::InvalidResponse {
            request: self.info(),
            reason: "body is not UTF-8".into(),
        })
    }
}

/// The `Retry-After` of an answer, parsed against `now` (the client's
/// clock): the one place the header is read.
pub(super) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<RetryAfter> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| RetryAfter::parse(v, now))
}
