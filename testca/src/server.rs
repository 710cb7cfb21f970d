//! The test CA's HTTP(S) front end: accepts connections, turns each request
//! into a [`WireRequest`], asks the [`Handler`] for a [`Reply`] and acts it out
//! on the wire, including the misbehaviours (lost responses, truncated or
//! endless bodies, ...).
//!
//! Every connection runs in its own task; [`HttpsServer::shutdown`] (or
//! dropping the server) closes the listening socket at once and aborts the
//! accept loop together with every connection task.
//!
//! What a client can hold is bounded ([`ServerLimits`]): the number of
//! connections served at once (when full, the accept loop waits for one to
//! end), the time to finish the TLS handshake, to send a request head and
//! to send a request body, and the body's size.
//!
//! (Over 800 lines: the server is under 600; the rest are its tests, which
//! drive a real socket through every connection fault and belong beside it.)

use std::fmt;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;

use super::wire::{Reply, WireRequest, WireResponse};

/// The ACME logic behind the server: one call per request, answering with
/// what the server should do on the wire.
pub(crate) type Handler =
    Arc<dyn Fn(WireRequest) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// Error type of response bodies and of the per-request service.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Size of one chunk of filler for [`Reply::Endless`] and [`Reply::Oversized`].
const FILLER_CHUNK: usize = 16 * 1024;

/// The filler bytes; chunks are `Bytes::from_static` views of this, so
/// streaming filler never allocates.
static FILLER: [u8; FILLER_CHUNK] = [b'x'; FILLER_CHUNK];

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default for [`ServerLimits::header_read_timeout`].
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Default for [`ServerLimits::body_read_timeout`].
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Default for [`ServerLimits::max_connections`].
const MAX_CONNECTIONS: usize = 512;

/// Default for [`ServerLimits::max_request_body`].
const MAX_REQUEST_BODY: usize = 1 << 20;

/// After a request body went over the cap: how many more bytes are read and
/// discarded (so the client can read the 413 instead of a connection reset).
const DRAIN_LIMIT: usize = 1024 * 1024;

/// After a request body went over the cap: how long draining may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// [`Reply::Truncated`]: pause between sending the first half of the body and
/// aborting the connection, so hyper flushes the first half before it aborts.
const TRUNCATE_GRACE: Duration = Duration::from_millis(20);

/// Pause after a failed `accept` (e.g. out of file descriptors) before retrying.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// What one client may take of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerLimits {
    /// Connections served at once (at least 1); when all are taken, no
    /// connection is accepted until one ends (newcomers wait in the
    /// kernel's listen backlog).
    pub(crate) max_connections: usize,
    /// How long a client may take to send a request head, from the
    /// connection's start or the end of the previous response (so it also
    /// bounds idle keep-alive connections).
    pub(crate) header_read_timeout: Duration,
    /// How long a client may take to send a request body, from the end of
    /// its head; the connection is closed when it runs out.
    pub(crate) body_read_timeout: Duration,
    /// Request bodies longer than this are answered with an empty 413
    /// without calling the handler.
    pub(crate) max_request_body: usize,
}

/// 512 connections, 30 s for a request head, 30 s for a body of at most 1 MiB.
impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
            max_request_body: MAX_REQUEST_BODY,
        }
    }
}

/// The only ALPN protocol the HTTPS server offers.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// An HTTP/1.1 server (HTTPS with rustls, or plain HTTP) running on the
/// current tokio runtime. Stops on [`HttpsServer::shutdown`] or drop.
pub(crate) struct HttpsServer {
    /// The address the listener is bound to.
    local_addr: SocketAddr,
    /// The listening socket, shared with the accept loop; taken out (and so
    /// closed) synchronously by [`HttpsServer::shutdown`].
    listener: Arc<Mutex<Option<TcpListener>>>,
    /// The accept loop task; it owns the `JoinSet` of connection tasks, so
    /// aborting it aborts every connection too.
    accept_task: AbortHandle,
}

/// Shows the address only.
impl fmt::Debug for HttpsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Starting, inspecting and stopping the server.
impl HttpsServer {
    /// Binds `bind` (e.g. `127.0.0.1:0`) and starts serving on the current
    /// tokio runtime.
    ///
    /// With `tls` `Some`, serves HTTPS (rustls via tokio-rustls); the config's
    /// ALPN list is replaced by `["http/1.1"]` since only HTTP/1.1 is spoken.
    /// With `None`, serves plain HTTP. `limits` bounds connections, read
    /// times and request bodies.
    pub(crate) async fn start(
        bind: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: Handler,
        limits: ServerLimits,
    ) -> std::io::Result<HttpsServer> {
        let listener = TcpListener::bind(bind).await?;
        let local_addr = listener.local_addr()?;
        let tls_on = tls.is_some();
        let acceptor = tls.map(|config| TlsAcceptor::from(http11_only(config)));
        let listener = Arc::new(Mutex::new(Some(listener)));
        let accept_task = tokio::spawn(accept_loop(
            Arc::clone(&listener),
            acceptor,
            handler,
            limits,
        ))
        .abort_handle();
        tracing::debug!(%local_addr, tls = tls_on, "test CA server started");
        Ok(HttpsServer {
            local_addr,
            listener,
            accept_task,
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes every open connection (also done on drop).
    ///
    /// The listening socket is closed before this returns (new connections
    /// are refused, the port can be bound again); the connection tasks are
    /// aborted and their sockets closed as soon as the runtime gets to them.
    /// Calling it more than once is harmless.
    pub(crate) fn shutdown(&self) {
        let listener = lock(&self.listener).take();
        if listener.is_some() {
            tracing::debug!(local_addr = %self.local_addr, "test CA server shutting down");
        }
        drop(listener);
        self.accept_task.abort();
    }
}

/// Dropping the server shuts it down (see [`HttpsServer::shutdown`]).
impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Returns `config` with ALPN set to exactly `http/1.1` (cloning it if needed).
fn http11_only(config: Arc<rustls::ServerConfig>) -> Arc<rustls::ServerConfig> {
    if config.alpn_protocols.len() == 1 && config.alpn_protocols[0] == ALPN_HTTP11 {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Arc::new(config)
}

/// Locks `mutex`, ignoring poisoning (the guarded data stays consistent).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Accepts connections until the listener is taken away (or the task is
/// aborted), one task per connection, at most `limits.max_connections` at
/// once. Dropping this future drops the `JoinSet` and so aborts every
/// connection task.
async fn accept_loop(
    listener: Arc<Mutex<Option<TcpListener>>>,
    tls: Option<TlsAcceptor>,
    handler: Handler,
    limits: ServerLimits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        // Backpressure: no free slot, no accept.
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            break; // never closed
        };
        let accepted = poll_fn(|cx| match lock(&listener).as_ref() {
            Some(listener) => listener.poll_accept(cx).map(Some),
            None => Poll::Ready(None),
        })
        .await;
        // Reap finished connection tasks so the set only holds live ones.
        while let Some(done) = connections.try_join_next() {
            if let Err(e) = done {
                tracing::debug!(error = %e, "test CA connection task failed");
            }
        }
        match accepted {
            None => break,
            Some(Ok((stream, peer))) => {
                let connection =
                    serve_connection(stream, peer, tls.clone(), Arc::clone(&handler), limits);
                connections.spawn(async move {
                    connection.await;
                    drop(permit);
                });
            }
            Some(Err(e)) => {
                drop(permit);
                tracing::debug!(error = %e, "test CA accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}

/// Serves one accepted TCP connection (TLS handshake first if configured).
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    handler: Handler,
    limits: ServerLimits,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::trace!(%peer, error = %e, "set TCP_NODELAY failed");
    }
    match tls {
        None => serve_http(stream, peer, handler, limits).await,
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_http(stream, peer, handler, limits).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "test CA TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "test CA TLS handshake timed out"),
            }
        }
    }
}

/// Runs hyper's HTTP/1.1 server over `io` until the connection ends:
/// keep-alive on, and half-close allowed (a client that shuts down its write
/// side after the request still gets the response).
async fn serve_http<I>(io: I, peer: SocketAddr, handler: Handler, limits: ServerLimits)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(req, Arc::clone(&handler), limits));
    let result = http1::Builder::new()
        .keep_alive(true)
        .half_close(true)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(io), service)
        .await;
    match result {
        Ok(()) => tracing::trace!(%peer, "test CA connection closed"),
        // Includes the deliberate aborts of `Reply::Drop` and `Reply::Truncated`.
        Err(e) => tracing::trace!(%peer, error = %e, "test CA connection ended with an error"),
    }
}

/// The errors that end a connection on purpose: hyper closes it (or
/// aborts the response body) when a service or body returns one.
#[derive(Debug)]
enum Deliberate {
    /// [`Reply::Drop`]: close without answering.
    Drop,
    /// [`Reply::Truncated`]: abort the body halfway.
    Truncation,
    /// The request body took too long.
    BodyReadTimeout,
}

/// Describes the deliberate end (seen in trace logs).
impl fmt::Display for Deliberate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Drop => "connection dropped on purpose (Reply::Drop)",
            Self::Truncation => "response body truncated on purpose (Reply::Truncated)",
            Self::BodyReadTimeout => "request body not received in time",
        })
    }
}

/// Lets it travel as hyper's service or body error.
impl std::error::Error for Deliberate {}

/// One request: read the (capped) body, ask the handler, build the response.
/// An `Err` makes hyper close the connection without writing anything.
async fn handle(
    req: Request<Incoming>,
    handler: Handler,
    limits: ServerLimits,
) -> Result<Response<ReplyBody>, BoxError> {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    let read = read_body(body, &parts.headers, limits.max_request_body);
    let Ok(body) = tokio::time::timeout(limits.body_read_timeout, read).await else {
        tracing::trace!(method = %parts.method, %path, "test CA request body timed out");
        return Err(Box::new(Deliberate::BodyReadTimeout));
    };
    let Some(body) = body? else {
        tracing::trace!(method = %parts.method, %path, reply = "413 (body over cap)", "test CA request");
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(full_response(WireResponse {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            headers,
            body: Bytes::new(),
        }));
    };
    let method = parts.method;
    let request = WireRequest {
        method: method.clone(),
        path: path.clone(),
        headers: parts.headers,
        body,
    };
    let reply = handler(request).await;
    tracing::trace!(%method, %path, reply = reply_kind(&reply), "test CA request");
    match reply {
        Reply::Normal(resp) => Ok(full_response(resp)),
        Reply::Drop => Err(Box::new(Deliberate::Drop)),
        Reply::Delayed(delay, resp) => {
            tokio::time::sleep(delay).await;
            Ok(full_response(resp))
        }
        Reply::Truncated(resp) => {
            let full_len = resp.body.len();
            let first_half = resp.body.slice(..full_len / 2);
            Ok(build_response(
                resp.status,
                resp.headers,
                Some(full_len as u64),
                ReplyBody::Truncated {
                    first_half: Some(first_half),
                    grace: None,
                    full_len: full_len as u64,
                },
            ))
        }
        Reply::Endless { status, headers } => {
            Ok(build_response(status, headers, None, ReplyBody::Endless))
        }
        Reply::Oversized {
            status,
            headers,
            len,
        } => Ok(build_response(
            status,
            headers,
            Some(len),
            ReplyBody::Oversized { remaining: len },
        )),
    }
}

/// The name of a reply's variant, for logging.
fn reply_kind(reply: &Reply) -> &'static str {
    match reply {
        Reply::Normal(_) => "normal",
        Reply::Drop => "drop",
        Reply::Delayed(..) => "delayed",
        Reply::Truncated(_) => "truncated",
        Reply::Endless { .. } => "endless",
        Reply::Oversized { .. } => "oversized",
    }
}

/// Reads the whole request body if it is at most `max` bytes (`Some`), or
/// returns `None` when it is longer (declared or actual), after draining a
/// bounded amount of the rest. An `Err` (client sent a broken body or went
/// away) closes the connection.
async fn read_body(
    mut body: Incoming,
    headers: &HeaderMap,
    max: usize,
) -> Result<Option<Bytes>, BoxError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let declared_too_long = declared.is_some_and(|len| len > max as u64);
    if !declared_too_long {
        let mut buf = Vec::with_capacity(declared.map_or(0, |len| len as usize));
        let mut too_long = false;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                if buf.len() + data.len() > max {
                    too_long = true;
                    break;
                }
                buf.extend_from_slice(&data);
            }
        }
        if !too_long {
            return Ok(Some(Bytes::from(buf)));
        }
    }
    // The client waits for "100 Continue" before sending: don't invite it.
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !(declared_too_long && expects_continue) {
        let drain = async {
            let mut drained = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    drained += data.len();
                    if drained > DRAIN_LIMIT {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    }
    Ok(None)
}

/// The response for a complete [`WireResponse`] (with its real Content-Length).
fn full_response(resp: WireResponse) -> Response<ReplyBody> {
    let len = resp.body.len() as u64;
    let body = if resp.body.is_empty() {
        ReplyBody::Full(None)
    } else {
        ReplyBody::Full(Some(resp.body))
    };
    build_response(resp.status, resp.headers, Some(len), body)
}

/// Assembles a response: any framing headers from the handler are replaced
/// by `Content-Length: content_length` (when `Some` and the status allows a
/// body) or left to hyper (chunked) when `None`.
fn build_response(
    status: StatusCode,
    mut headers: HeaderMap,
    content_length: Option<u64>,
    body: ReplyBody,
) -> Response<ReplyBody> {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
    let body_allowed = !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED);
    if let (Some(len), true) = (content_length, body_allowed) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Every response body the server sends, streamed without buffering more
/// than one chunk.
enum ReplyBody {
    /// A complete body (`None` once sent, or when empty).
    Full(Option<Bytes>),
    /// [`Reply::Truncated`]: the first half, a short pause, then an error
    /// (which makes hyper abort the connection).
    Truncated {
        /// The first half of the body, until sent.
        first_half: Option<Bytes>,
        /// The pause after the first half (created on first use).
        grace: Option<Pin<Box<Sleep>>>,
        /// The length of the whole body (as announced).
        full_len: u64,
    },
    /// [`Reply::Endless`]: filler chunks forever.
    Endless,
    /// [`Reply::Oversized`]: filler chunks until `remaining` bytes are sent.
    Oversized {
        /// Bytes still to send.
        remaining: u64,
    },
}

/// Streams each kind of body; `size_hint` gives hyper the announced length
/// (exact for everything but [`ReplyBody::Endless`], which goes chunked).
impl Body for ReplyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ReplyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ReplyBody::Truncated {
                first_half, grace, ..
            } => {
                if let Some(first) = first_half.take() {
                    return Poll::Ready(Some(Ok(Frame::data(first))));
                }
                // Returning Pending here lets hyper flush the head and the
                // first half before the error makes it drop the connection.
                let sleep =
                    grace.get_or_insert_with(|| Box::pin(tokio::time::sleep(TRUNCATE_GRACE)));
                match sleep.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Deliberate::Truncation)))),
                }
            }
            ReplyBody::Endless => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&FILLER))))),
            ReplyBody::Oversized { remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let n = usize::try_from(*remaining).map_or(FILLER_CHUNK, |r| r.min(FILLER_CHUNK));
                *remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&FILLER[..n])))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReplyBody::Full(data) => data.is_none(),
            ReplyBody::Truncated { .. } | ReplyBody::Endless => false,
            ReplyBody::Oversized { remaining } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplyBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ReplyBody::Truncated { full_len, .. } => SizeHint::with_exact(*full_len),
            ReplyBody::Endless => SizeHint::default(),
            ReplyBody::Oversized { remaining } => SizeHint::with_exact(*remaining),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Request bodies above this get a 413 in these tests.
    const MAX_BODY: usize = 1024;

    /// Length of the body of `/truncated`.
    const TRUNCATED_LEN: usize = 1000;

    /// The default limits, with bodies capped at [`MAX_BODY`].
    fn limits() -> ServerLimits {
        ServerLimits {
            max_request_body: MAX_BODY,
            ..ServerLimits::default()
        }
    }

    /// A self-signed certificate for 127.0.0.1: the server config and a
    /// client config trusting it (both on the ring provider).
    fn tls_pair() -> (Arc<rustls::ServerConfig>, rustls::ClientConfig) {
        let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert_der = key.cert.der().clone();
        let key_der =
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
        let provider = sturdy_acme::tls_provider();
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der.clone()], key_der)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert_der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), client)
    }

    /// A response with `body` and an `x-test` header.
    fn ok(body: impl Into<Bytes>) -> WireResponse {
        let mut headers = HeaderMap::new();
        headers.insert("x-test", HeaderValue::from_static("yes"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        WireResponse {
            status: StatusCode::OK,
            headers,
            body: body.into(),
        }
    }

    /// Picks the reply from the request path; counts calls in `calls`.
    fn test_handler(calls: Arc<AtomicUsize>) -> Handler {
        Arc::new(move |req: WireRequest| {
            calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let route = req.path.split('?').next().unwrap_or_default().to_owned();
                match route.as_str() {
                    "/normal" => Reply::Normal(ok("hello")),
                    "/echo" => {
                        let mut resp = ok(req.body.clone());
                        resp.headers
                            .insert("x-path", HeaderValue::from_str(&req.path).unwrap());
                        resp.headers.insert(
                            "x-method",
                            HeaderValue::from_str(req.method.as_str()).unwrap(),
                        );
                        if let Some(v) = req.headers.get("x-in") {
                            resp.headers.insert("x-in-echo", v.clone());
                        }
                        Reply::Normal(resp)
                    }
                    "/drop" => Reply::Drop,
                    "/delayed" => Reply::Delayed(Duration::from_secs(1), ok("late")),
                    "/truncated" => Reply::Truncated(ok(vec![b'a'; TRUNCATED_LEN])),
                    "/endless" => Reply::Endless {
                        status: StatusCode::OK,
                        headers: HeaderMap::new(),
                    },
                    "/oversized" => Reply::Oversized {
                        status: StatusCode::OK,
                        headers: HeaderMap::new(),
                        len: 100_000_000,
                    },
                    _ => Reply::Normal(WireResponse {
                        status: StatusCode::NOT_FOUND,
                        headers: HeaderMap::new(),
                        body: Bytes::new(),
                    }),
                }
            })
        })
    }

    /// A test server plus what the tests look at.
    struct Setup {
        /// The running server.
        server: HttpsServer,
        /// `https://127.0.0.1:port` or `http://...`.
        base: String,
        /// A client for `base` with a 500 ms timeout.
        client: reqwest::Client,
        /// Handler calls so far.
        calls: Arc<AtomicUsize>,
    }

    /// Starts a server (HTTPS when `tls`) and a client for it.
    async fn setup(tls: bool) -> Setup {
        setup_with_timeout(tls, Duration::from_millis(500)).await
    }

    /// Like [`setup`], with the client's overall timeout `timeout`.
    async fn setup_with_timeout(tls: bool, timeout: Duration) -> Setup {
        let calls = Arc::new(AtomicUsize::new(0));
        let (server_tls, client_tls) = tls_pair();
        let server = HttpsServer::start(
            "127.0.0.1:0".parse().unwrap(),
            tls.then_some(server_tls),
            test_handler(Arc::clone(&calls)),
            limits(),
        )
        .await
        .unwrap();
        let scheme = if tls { "https" } else { "http" };
        let base = format!("{scheme}://{}", server.local_addr());
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(client_tls)
            .no_proxy()
            .timeout(timeout)
            .build()
            .unwrap();
        Setup {
            server,
            base,
            client,
            calls,
        }
    }

    /// Sends raw bytes on a fresh plain TCP connection, half-closes, and
    /// returns everything the server sends until EOF (or an error).
    async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (Vec<u8>, Option<std::io::Error>) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut out = Vec::new();
        let result = tokio::time::timeout(Duration::from_secs(1), stream.read_to_end(&mut out))
            .await
            .expect("server neither answered nor closed");
        (out, result.err())
    }

    /// Normal over HTTPS: status, headers, body; the request reaches the handler intact.
    #[tokio::test]
    async fn normal_https_returns_body_and_headers() {
        let s = setup(true).await;
        let resp = s
            .client
            .get(format!("{}/normal?x=1", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-test"], "yes");
        assert_eq!(resp.headers()["content-type"], "text/plain");
        assert_eq!(resp.content_length(), Some(5));
        assert_eq!(resp.bytes().await.unwrap(), "hello");

        // Method, path + query, headers and body reach the handler
        // (on the same keep-alive connection).
        let resp = s
            .client
            .post(format!("{}/echo?a=b&c", s.base))
            .header("x-in", "42")
            .body("payload")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-path"], "/echo?a=b&c");
        assert_eq!(resp.headers()["x-method"], "POST");
        assert_eq!(resp.headers()["x-in-echo"], "42");
        assert_eq!(resp.bytes().await.unwrap(), "payload");
        assert_eq!(s.calls.load(Ordering::SeqCst), 2);
    }

    /// Normal over plain HTTP.
    #[tokio::test]
    async fn normal_plain_http() {
        let s = setup(false).await;
        let resp = s
            .client
            .get(format!("{}/normal", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-test"], "yes");
        assert_eq!(resp.bytes().await.unwrap(), "hello");

        let resp = s
            .client
            .get(format!("{}/nope", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.content_length(), Some(0));
    }

    /// Drop: a connection error (no status, not a timeout); on the wire, EOF without a byte.
    #[tokio::test]
    async fn drop_is_a_connection_error_not_a_status() {
        let s = setup(true).await;
        let start = Instant::now();
        let err = s
            .client
            .get(format!("{}/drop", s.base))
            .send()
            .await
            .unwrap_err();
        eprintln!("Drop over HTTPS: {err:?}");
        assert!(!err.is_timeout(), "{err:?}");
        assert!(err.status().is_none(), "{err:?}");
        assert!(start.elapsed() < Duration::from_millis(400));

        let plain = setup(false).await;
        let err = plain
            .client
            .get(format!("{}/drop", plain.base))
            .send()
            .await
            .unwrap_err();
        eprintln!("Drop over HTTP: {err:?}");
        assert!(!err.is_timeout(), "{err:?}");
        assert!(err.status().is_none(), "{err:?}");

        // On the wire: not a single byte, just EOF.
        let (bytes, err) = raw_exchange(
            plain.server.local_addr(),
            b"GET /drop HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
        assert!(err.is_none(), "{err:?}");
    }

    /// Delayed longer than the client timeout: `is_timeout()`.
    #[tokio::test]
    async fn delayed_beyond_client_timeout_is_a_timeout() {
        let s = setup_with_timeout(true, Duration::from_millis(200)).await;
        let start = Instant::now();
        let err = s
            .client
            .get(format!("{}/delayed", s.base))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert!(start.elapsed() < Duration::from_millis(900));
    }

    /// Delayed shorter than the client timeout: the response arrives late.
    #[tokio::test]
    async fn delayed_within_timeout_arrives() {
        let s = setup_with_timeout(false, Duration::from_millis(1500)).await;
        let start = Instant::now();
        let resp = s
            .client
            .get(format!("{}/delayed", s.base))
            .send()
            .await
            .unwrap();
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert_eq!(resp.bytes().await.unwrap(), "late");
    }

    /// Truncated: the head arrives, reading the body fails; on the wire, exactly half the body.
    #[tokio::test]
    async fn truncated_status_arrives_body_fails() {
        let s = setup(true).await;
        let resp = s
            .client
            .get(format!("{}/truncated", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.content_length(), Some(TRUNCATED_LEN as u64));
        let err = resp.bytes().await.unwrap_err();
        eprintln!("Truncated over HTTPS: {err:?}");
        assert!(err.is_body() || err.is_decode(), "{err:?}");
        assert!(!err.is_timeout(), "{err:?}");

        let plain = setup(false).await;
        let resp = plain
            .client
            .get(format!("{}/truncated", plain.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let err = resp.bytes().await.unwrap_err();
        eprintln!("Truncated over HTTP: {err:?}");
        assert!(err.is_body() || err.is_decode(), "{err:?}");

        // On the wire: the head with the full length, exactly half the body, EOF.
        let (bytes, err) = raw_exchange(
            plain.server.local_addr(),
            b"GET /truncated HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        assert!(err.is_none(), "{err:?}");
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("content-length: 1000"), "{head}");
        assert_eq!(body.len(), TRUNCATED_LEN / 2);
    }

    /// Endless: chunked filler as long as the client reads; the server survives the client leaving.
    #[tokio::test]
    async fn endless_streams_until_the_client_stops() {
        let s = setup(true).await;
        let mut resp = s
            .client
            .get(format!("{}/endless", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.content_length(), None);
        assert_eq!(resp.headers()["transfer-encoding"], "chunked");
        let mut total = 0usize;
        while total < 1024 * 1024 {
            let chunk = resp.chunk().await.unwrap().expect("endless body ended");
            assert!(chunk.iter().all(|&b| b == b'x'));
            total += chunk.len();
        }
        drop(resp);
        // The server is still fine afterwards.
        let resp = s
            .client
            .get(format!("{}/normal", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.bytes().await.unwrap(), "hello");
    }

    /// Oversized: the full Content-Length is announced and filler streams.
    #[tokio::test]
    async fn oversized_announces_full_length() {
        let s = setup(true).await;
        let mut resp = s
            .client
            .get(format!("{}/oversized", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.content_length(), Some(100_000_000));
        let mut total = 0usize;
        for _ in 0..8 {
            let chunk = resp.chunk().await.unwrap().expect("body ended early");
            assert!(chunk.iter().all(|&b| b == b'x'));
            total += chunk.len();
        }
        assert!(total > 0);
    }

    /// The Oversized body yields exactly `len` bytes in filler chunks.
    #[test]
    fn oversized_body_sends_exactly_len_bytes() {
        let mut body = ReplyBody::Oversized {
            remaining: 3 * FILLER_CHUNK as u64 + 5,
        };
        assert_eq!(body.size_hint().exact(), Some(3 * FILLER_CHUNK as u64 + 5));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut sizes = Vec::new();
        while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
            sizes.push(frame.unwrap().into_data().unwrap().len());
        }
        assert_eq!(sizes, [FILLER_CHUNK, FILLER_CHUNK, FILLER_CHUNK, 5]);
        assert!(body.is_end_stream());
    }

    /// Request bodies over the cap (declared or chunked) get 413 and never reach the handler.
    #[tokio::test]
    async fn request_body_over_cap_gets_413_without_handler() {
        let s = setup(true).await;
        let resp = s
            .client
            .post(format!("{}/echo", s.base))
            .body(vec![b'b'; MAX_BODY + 1])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413);
        assert_eq!(resp.bytes().await.unwrap().len(), 0);
        assert_eq!(s.calls.load(Ordering::SeqCst), 0);

        // Exactly at the cap is fine.
        let resp = s
            .client
            .post(format!("{}/echo", s.base))
            .body(vec![b'b'; MAX_BODY])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.bytes().await.unwrap().len(), MAX_BODY);
        assert_eq!(s.calls.load(Ordering::SeqCst), 1);

        // A chunked body (no Content-Length) that grows over the cap.
        let plain = setup(false).await;
        let chunk = "c".repeat(MAX_BODY / 2 + 1);
        let request = format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
             {len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
            len = chunk.len()
        );
        let (bytes, _) = raw_exchange(plain.server.local_addr(), request.as_bytes()).await;
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
        assert_eq!(plain.calls.load(Ordering::SeqCst), 0);
    }

    /// Garbage, hang-ups, failed handshakes and half requests neither panic nor stop the server.
    #[tokio::test]
    async fn garbage_and_failed_handshakes_do_not_hurt() {
        let s = setup(true).await;
        // Garbage instead of a TLS ClientHello.
        let (bytes, _) = raw_exchange(s.server.local_addr(), b"\x00\x01garbage\r\n\r\n").await;
        assert!(bytes.len() < 100);
        // Connect and hang up immediately.
        drop(TcpStream::connect(s.server.local_addr()).await.unwrap());
        // A client that does not trust the certificate.
        let (_, untrusting) = tls_pair();
        let other = reqwest::Client::builder()
            .use_preconfigured_tls(untrusting)
            .no_proxy()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let err = other
            .get(format!("{}/normal", s.base))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err:?}");

        let plain = setup(false).await;
        let (bytes, _) =
            raw_exchange(plain.server.local_addr(), b"\x16\x03\x01 not http\r\n\r\n").await;
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 400"),
            "{text}"
        );
        // Half a request, then half-close.
        let (bytes, _) = raw_exchange(
            plain.server.local_addr(),
            b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
        )
        .await;
        assert!(!String::from_utf8_lossy(&bytes).contains("200 OK"));

        // Both servers still work.
        let resp = s
            .client
            .get(format!("{}/normal", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.bytes().await.unwrap(), "hello");
        let resp = plain
            .client
            .get(format!("{}/normal", plain.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.bytes().await.unwrap(), "hello");
    }

    /// `shutdown()` closes the port at once and ends open connections.
    #[tokio::test]
    async fn shutdown_refuses_new_connections_and_closes_open_ones() {
        let s = setup(true).await;
        let addr = s.server.local_addr();
        let resp = s
            .client
            .get(format!("{}/normal", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.bytes().await.unwrap(), "hello");
        // An endless response in flight.
        let mut endless = s
            .client
            .get(format!("{}/endless", s.base))
            .send()
            .await
            .unwrap();
        endless.chunk().await.unwrap().unwrap();

        s.server.shutdown();
        let err = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);

        // The open connection is closed: the endless body fails soon.
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match endless.chunk().await {
                Ok(Some(_)) => assert!(Instant::now() < deadline, "still streaming"),
                Ok(None) => panic!("endless body ended cleanly"),
                Err(_) => break,
            }
        }
        s.server.shutdown(); // idempotent
    }

    /// Dropping the server frees the port and ends every task (accept loop and connections).
    #[tokio::test]
    async fn drop_frees_the_port_and_every_task() {
        let calls = Arc::new(AtomicUsize::new(0));
        let handler = test_handler(Arc::clone(&calls));
        let server = HttpsServer::start(
            "127.0.0.1:0".parse().unwrap(),
            None,
            Arc::clone(&handler),
            limits(),
        )
        .await
        .unwrap();
        let addr = server.local_addr();
        // Two idle keep-alive connections and one stuck in a delayed reply.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let _idle2 = TcpStream::connect(addr).await.unwrap();
        let mut stuck = TcpStream::connect(addr).await.unwrap();
        stuck
            .write_all(b"GET /delayed HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(Arc::strong_count(&handler) > 1);

        drop(server);
        // The port is free again right away.
        let rebound = std::net::TcpListener::bind(addr).unwrap();
        drop(rebound);
        // Every task is gone: the handler is only referenced here, and the
        // open connections see EOF.
        let deadline = Instant::now() + Duration::from_secs(1);
        while Arc::strong_count(&handler) > 1 {
            assert!(Instant::now() < deadline, "server tasks still alive");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(1), idle.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
        let n = tokio::time::timeout(Duration::from_secs(1), stuck.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0);
    }

    /// A plain-HTTP server with these limits (bodies capped at [`MAX_BODY`]).
    async fn plain_with(limits: ServerLimits) -> (HttpsServer, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let server = HttpsServer::start(
            "127.0.0.1:0".parse().unwrap(),
            None,
            test_handler(Arc::clone(&calls)),
            ServerLimits {
                max_request_body: MAX_BODY,
                ..limits
            },
        )
        .await
        .unwrap();
        (server, calls)
    }

    /// Reads until EOF or an error, for up to 10 s; `None` if the peer
    /// neither answered fully nor closed by then.
    async fn read_until_closed(stream: &mut TcpStream) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        read.ok().map(|()| out)
    }

    /// With every connection slot taken, a new connection is not served
    /// until one ends; then it is.
    #[tokio::test]
    async fn connection_cap_holds_newcomers_until_a_slot_frees() {
        let (server, calls) = plain_with(ServerLimits {
            max_connections: 2,
            header_read_timeout: Duration::from_secs(3600),
            ..ServerLimits::default()
        })
        .await;
        let addr = server.local_addr();
        // Two served connections (each proves it was accepted).
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /normal HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            held.push(s);
        }
        // A third: the kernel completes the handshake, the server does not serve it.
        let mut third = TcpStream::connect(addr).await.unwrap();
        third
            .write_all(b"GET /normal HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
        assert!(early.is_err(), "served beyond the cap: {early:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // A slot frees: the third is served.
        drop(held.pop());
        let answer = read_until_closed(&mut third).await.expect("never served");
        assert!(answer.starts_with(b"HTTP/1.1 200"));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    /// A client that sends no request head is cut off after the header
    /// timeout; one that stops in the middle of its body after the body
    /// timeout, without reaching the handler.
    #[tokio::test]
    async fn slow_heads_and_bodies_are_cut_off() {
        let (server, calls) = plain_with(ServerLimits {
            header_read_timeout: Duration::from_millis(200),
            body_read_timeout: Duration::from_millis(200),
            ..ServerLimits::default()
        })
        .await;
        let addr = server.local_addr();
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut slow_body = TcpStream::connect(addr).await.unwrap();
        slow_body
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
            .await
            .unwrap();
        let closed = read_until_closed(&mut silent).await;
        assert!(closed.is_some(), "silent connection still open");
        let answer = read_until_closed(&mut slow_body)
            .await
            .expect("slow body still open");
        assert!(!answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // Others are still served.
        let (bytes, _) = raw_exchange(addr, b"GET /normal HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(bytes.starts_with(b"HTTP/1.1 200"));
    }

    /// A chunk size of 2^64-1 (or an endless size line) in a request body
    /// is refused without reaching the handler, and the server goes on.
    #[tokio::test]
    async fn hostile_request_chunk_sizes_are_refused() {
        let (server, calls) = plain_with(ServerLimits::default()).await;
        let addr = server.local_addr();
        let long_line = format!("{}1\r\n", "0".repeat(64 * 1024));
        for body in [
            "ffffffffffffffff\r\nabc\r\n0\r\n\r\n",
            "5\r\nhello\r\nffffffffffffffff\r\nabc\r\n0\r\n\r\n",
            "10000000000000000\r\nabc\r\n0\r\n\r\n",
            long_line.as_str(),
        ] {
            let request = format!(
                "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
            );
            let (bytes, _) = raw_exchange(addr, request.as_bytes()).await;
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 4"),
                "{}",
                &text[..text.len().min(200)]
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        let (bytes, _) = raw_exchange(addr, b"GET /normal HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(bytes.starts_with(b"HTTP/1.1 200"));
    }
}
