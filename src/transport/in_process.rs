//! A CA reached in this process, without sockets (the embedded test CA's
//! in-process front, feature `testing`): what the transport needs of it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::error::TransportFailure;

/// What one in-process exchange came to.
pub(crate) enum InProcessAnswer {
    /// A whole answer.
    Answered {
        /// The status.
        status: u16,
        /// The headers.
        headers: HeaderMap,
        /// The body (within the cap).
        body: Bytes,
    },
    /// The body was over the cap (or never ended).
    TooLarge {
        /// The status.
        status: u16,
        /// The headers.
        headers: HeaderMap,
    },
    /// No usable answer.
    Failed {
        /// Which kind of failure a socket would have shown.
        failure: TransportFailure,
        /// What happened.
        reason: String,
    },
}

/// A CA in this process that answers requests handed to it.
pub(crate) trait InProcessCa: Send + Sync + std::fmt::Debug {
    /// One exchange: `url` must be one of this CA's.
    fn exchange<'a>(
        &'a self,
        method: Method,
        url: &'a str,
        body: Option<Vec<u8>>,
        accept: Option<&'a str>,
        timeout: Duration,
        max_body: usize,
    ) -> Pin<Box<dyn Future<Output = InProcessAnswer> + Send + 'a>>;
}
