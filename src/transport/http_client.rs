//! The transport hook: a way to send the client's requests other than its
//! built-in HTTPS client (an embedded test CA in this process, a proxy, a
//! recorder), set with [`ClientBuilder::http_client`](crate::ClientBuilder::http_client).
//!
//! Everything above the hook stays the same: the governor, the nonce pool,
//! JWS signing, classification of answers and the retry decision. The hook
//! only carries one request and reports what came back, in the terms the
//! transport needs to tell "never sent" from "answered" from "unknown".

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::error::TransportFailure;

/// One request the client hands to an [`HttpClient`].
///
/// Example: [`HttpClient`].
#[derive(Debug)]
#[non_exhaustive]
pub struct HttpRequest<'a> {
    /// `GET`, `HEAD` or `POST`.
    pub method: Method,
    /// The absolute URL (one the CA's directory or answers named).
    pub url: &'a str,
    /// `Content-Type` (for a JWS body), `Accept` where the client asks for a
    /// particular media type, `User-Agent` and `Accept-Language`.
    pub headers: HeaderMap,
    /// The body of a `POST` (a flattened JWS).
    pub body: Option<Bytes>,
    /// How long the whole exchange may take: past it, answer
    /// [`HttpAnswer::Failed`] with [`TransportFailure::Timeout`].
    pub timeout: Duration,
    /// The largest body the client reads: a longer one is
    /// [`HttpAnswer::TooLarge`], never read whole.
    pub max_body: usize,
}

impl<'a> HttpRequest<'a> {
    /// A request as the client would hand it over (for a hook's own
    /// tests): no headers, no body, a 10 s timeout and a 1 MiB cap.
    ///
    /// ```
    /// use sturdy_acme::HttpRequest;
    ///
    /// let mut request = HttpRequest::new(http::Method::GET, "https://ca.example/directory");
    /// request.timeout = std::time::Duration::from_secs(2);
    /// assert_eq!(request.max_body, 1 << 20);
    /// ```
    pub fn new(method: Method, url: &'a str) -> Self {
        Self {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            timeout: Duration::from_secs(10),
            max_body: 1 << 20,
        }
    }
}

/// What one exchange through an [`HttpClient`] came to.
///
/// Example: [`HttpClient`].
#[derive(Debug)]
#[non_exhaustive]
pub enum HttpAnswer {
    /// A whole answer (whatever its status).
    Answered {
        /// The HTTP status.
        status: u16,
        /// The response headers (`Replay-Nonce`, `Location`, `Link`,
        /// `Retry-After`, `Content-Type` are read).
        headers: HeaderMap,
        /// The body, at most [`HttpRequest::max_body`] bytes.
        body: Bytes,
    },
    /// The body was longer than [`HttpRequest::max_body`] (or never ended).
    TooLarge {
        /// The HTTP status.
        status: u16,
        /// The response headers.
        headers: HeaderMap,
    },
    /// No usable answer. [`TransportFailure::Connect`] promises the request
    /// was never written (a non-idempotent request may then be sent again);
    /// every other kind leaves it unknown whether the CA acted.
    Failed {
        /// Which kind of failure a socket would have shown.
        failure: TransportFailure,
        /// What happened, for the error message (never a body).
        reason: String,
    },
}

/// Sends the client's HTTP requests in place of the built-in HTTPS client:
/// everything above it (the governor, nonces, signing, classification and
/// retries) stays the client's; the hook only carries one request and
/// reports what came back.
///
/// The future must honour [`HttpRequest::timeout`] and
/// [`HttpRequest::max_body`]; it must not follow redirects.
///
/// ```
/// use std::future::Future;
/// use std::pin::Pin;
/// use sturdy_acme::{HttpAnswer, HttpClient, HttpRequest, TransportFailure};
///
/// /// A client for a network that is down: every request fails before it is sent.
/// #[derive(Debug)]
/// struct Offline;
///
/// impl HttpClient for Offline {
///     fn exchange<'a>(
///         &'a self,
///         request: HttpRequest<'a>,
///     ) -> Pin<Box<dyn Future<Output = HttpAnswer> + Send + 'a>> {
///         Box::pin(async move {
///             HttpAnswer::Failed {
///                 failure: TransportFailure::Connect,
///                 reason: format!("offline: {}", request.url),
///             }
///         })
///     }
/// }
///
/// # async fn run() {
/// let built = sturdy_acme::Client::builder("https://ca.example/directory")
///     .retry_policy(sturdy_acme::RetryPolicy::no_retries())
///     .http_client(std::sync::Arc::new(Offline))
///     .build()
///     .await;
/// assert!(built.is_err());
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run());
/// ```
pub trait HttpClient: Send + Sync + std::fmt::Debug {
    /// Carries one request and reports what came back.
    fn exchange<'a>(
        &'a self,
        request: HttpRequest<'a>,
    ) -> Pin<Box<dyn Future<Output = HttpAnswer> + Send + 'a>>;
}
