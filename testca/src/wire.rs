//! The test CA's HTTPS server: plain requests in, [`Reply`]s out, with the
//! wire-level misbehaviours the fault script asks for.
//!
//! Interface contract (the ACME logic in `ca.rs` only sees these types).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

/// A request as the ACME logic sees it (body fully read, capped).
#[derive(Debug, Clone)]
pub(crate) struct WireRequest {
    pub(crate) method: Method,
    /// Path and query, e.g. `/acme/order/3`.
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// A complete response.
#[derive(Debug, Clone)]
pub(crate) struct WireResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// What the server does with a request.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Send this response.
    Normal(WireResponse),
    /// Close the connection without answering (the "lost response").
    Drop,
    /// Wait, then send the response (a response slower than the client's timeout).
    Delayed(Duration, WireResponse),
    /// Announce the full Content-Length, send only the first half of the body, close.
    Truncated(WireResponse),
    /// Status and headers, then a chunked body that never ends.
    Endless {
        status: StatusCode,
        headers: HeaderMap,
    },
    /// Status and headers with `Content-Length: len`, then `len` bytes of filler.
    Oversized {
        status: StatusCode,
        headers: HeaderMap,
        len: u64,
    },
}
