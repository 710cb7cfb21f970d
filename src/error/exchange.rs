//! What an error knows of the HTTP exchange it came from: the request
//! ([`RequestInfo`]) and, when no complete answer arrived, why
//! ([`TransportFailure`]). Below the error and its classification, which
//! both read it.

use std::fmt;

use super::retry_after::RetryAfter;

/// What is known about the HTTP exchange an error came from.
///
/// Example: [`Error`](crate::Error) and [`ErrorClass`](crate::ErrorClass).
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// HTTP method (`POST`, `HEAD`, `GET`).
    pub method: &'static str,
    /// The request URL.
    pub url: String,
    /// The HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// The response's `Retry-After`, parsed, if it sent one.
    pub retry_after: Option<RetryAfter>,
}

impl fmt::Display for RequestInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.url)?;
        if let Some(status) = self.status {
            write!(f, " -> {status}")?;
        }
        Ok(())
    }
}

/// Why an exchange failed before a complete, well-formed answer arrived.
///
/// Example: [`Error`](crate::Error) and [`ErrorClass`](crate::ErrorClass).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportFailure {
    /// The request or the connection timed out.
    Timeout,
    /// The connection could not be established.
    Connect,
    /// The connection broke while sending or receiving (reset, closed early).
    Reset,
    /// Anything else the HTTP stack reported.
    Other,
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "timed out",
            Self::Connect => "connection failed",
            Self::Reset => "connection broken",
            Self::Other => "HTTP failure",
        })
    }
}
