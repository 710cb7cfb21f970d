//! http-01 (RFC 8555 §8.3): serve `/.well-known/acme-challenge/<token>`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::error::Result;

const PREFIX: &str = "/.well-known/acme-challenge/";

/// Tokens and their key authorizations, shared between whoever answers
/// challenges and whatever serves them (this crate's [`Http01Responder`] or
/// the caller's own web server through [`Http01Tokens::response_for_path`]).
///
/// Example: [`Http01Solver`], and real validation against it in
/// `sturdy_acme_testca::TestCaBuilder::with_http01_responder`.
#[derive(Debug, Clone, Default)]
pub struct Http01Tokens {
    map: Arc<RwLock<HashMap<String, String>>>,
}

impl Http01Tokens {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `key_authorization` for `token`.
    pub fn insert(&self, token: impl Into<String>, key_authorization: impl Into<String>) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.into(), key_authorization.into());
    }

    /// Stops serving `token`.
    pub fn remove(&self, token: &str) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
    }

    /// The key authorization for `token`.
    pub fn get(&self, token: &str) -> Option<String> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }

    /// The response body for a request path, if it is a known challenge path.
    pub fn response_for_path(&self, path: &str) -> Option<String> {
        self.get(path.strip_prefix(PREFIX)?)
    }

    /// How many tokens are served.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no token is served.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The http-01 [`Solver`](super::Solver): puts key authorizations in a
/// token map, which [`Http01Responder`] (or your own server, through
/// [`Http01Tokens::response_for_path`]) serves. Each constructor says who
/// serves the map.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use std::sync::Arc;
/// use sturdy_acme::solver::http01::{Http01Responder, Http01Solver, Http01Tokens};
///
/// // The crate's own responder serves the tokens (on port 80 in production).
/// let responder = Http01Responder::bind("127.0.0.1:0".parse().unwrap()).await?;
/// let _served = Http01Solver::for_responder(&responder);
/// // Or your own server serves them: answer
/// // `tokens.response_for_path(path)` for `/.well-known/acme-challenge/...`.
/// let tokens = Http01Tokens::new();
/// let _own = Arc::new(Http01Solver::new(tokens.clone()));
/// tokens.insert("tok", "tok.thumb");
/// assert_eq!(tokens.response_for_path("/.well-known/acme-challenge/tok").as_deref(), Some("tok.thumb"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Http01Solver {
    tokens: Http01Tokens,
}

impl Http01Solver {
    /// A solver filling `tokens`, which your own HTTP server serves (with
    /// [`Http01Tokens::response_for_path`]).
    pub fn new(tokens: Http01Tokens) -> Self {
        Self { tokens }
    }

    /// A solver whose tokens nobody serves: only for a CA that does not
    /// validate, such as the embedded test CA in its default always-valid
    /// mode. Against a real CA every http-01 challenge fails.
    pub fn unserved() -> Self {
        Self::new(Http01Tokens::new())
    }

    /// A solver filling the map `responder` serves.
    pub fn for_responder(responder: &Http01Responder) -> Self {
        Self::new(responder.tokens().clone())
    }

    /// The token map.
    pub fn tokens(&self) -> &Http01Tokens {
        &self.tokens
    }
}

impl super::Solver for Http01Solver {
    fn challenge_type(&self) -> crate::protocol::ChallengeType {
        crate::protocol::ChallengeType::Http01
    }

    fn present<'a>(&'a self, answer: &'a super::ChallengeAnswer) -> super::SolverFuture<'a> {
        self.tokens
            .insert(answer.token.clone(), answer.key_authorization.clone());
        Box::pin(async { Ok(()) })
    }

    fn cleanup<'a>(&'a self, answer: &'a super::ChallengeAnswer) -> super::SolverFuture<'a> {
        self.tokens.remove(&answer.token);
        Box::pin(async { Ok(()) })
    }
}

/// Default for [`Http01ResponderBuilder::max_connections`].
const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Default for [`Http01ResponderBuilder::header_read_timeout`].
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// First pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);

/// Longest pause between `accept` attempts while they keep failing.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A standalone HTTP/1.1 server answering http-01 challenges from a
/// [`Http01Tokens`] map. Stops when dropped, closing every open connection.
///
/// It is meant to face the internet on port 80, so it bounds what a client
/// can hold: at most [`max_connections`](Http01ResponderBuilder::max_connections)
/// connections are served at once (when full it stops accepting, and the
/// kernel's listen backlog queues newcomers, until a connection ends), and a
/// connection that does not send a complete request head within the
/// [`header_read_timeout`](Http01ResponderBuilder::header_read_timeout)
/// (the first request's, or the next one's on a keep-alive connection) is
/// closed. Failed `accept`s (e.g. the process ran out of file descriptors)
/// are retried with a growing pause instead of in a busy loop.
///
/// Example: [`Http01Solver`], and real validation against it in
/// `sturdy_acme_testca::TestCaBuilder::with_http01_responder`.
#[derive(Debug)]
pub struct Http01Responder {
    tokens: Http01Tokens,
    local_addr: SocketAddr,
    /// The accept loop; it owns the listener and every connection task, so
    /// aborting it closes them all.
    task: JoinHandle<()>,
}

/// Configures an [`Http01Responder`] before binding it; from
/// [`Http01Responder::builder`].
///
/// Example: [`Http01Solver`], and real validation against it in
/// `sturdy_acme_testca::TestCaBuilder::with_http01_responder`.
#[derive(Debug, Clone)]
#[must_use]
pub struct Http01ResponderBuilder {
    tokens: Http01Tokens,
    max_connections: usize,
    header_read_timeout: Duration,
}

impl Default for Http01ResponderBuilder {
    fn default() -> Self {
        Self {
            tokens: Http01Tokens::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

impl Http01ResponderBuilder {
    /// Serves this token map (default: a new, empty one).
    pub fn tokens(mut self, tokens: Http01Tokens) -> Self {
        self.tokens = tokens;
        self
    }

    /// How many connections are served at once (default 256; at least 1).
    /// When all are taken, no connection is accepted until one ends.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long a client may take to send a complete request head, counted
    /// from the connection's start or, on a keep-alive connection, from the
    /// end of the previous response (default 10 s). The connection is
    /// closed when it runs out.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Binds `addr` (port 80 in production; any port in tests) and serves.
    pub async fn bind(self, addr: SocketAddr) -> Result<Http01Responder> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let tokens = self.tokens.clone();
        let task = tokio::spawn(accept_loop(listener, self));
        tracing::info!(%local_addr, "http-01 responder listening");
        Ok(Http01Responder {
            tokens,
            local_addr,
            task,
        })
    }
}

impl Http01Responder {
    /// A builder with the default limits (256 connections, 10 s to send a
    /// request head) and an empty token map.
    pub fn builder() -> Http01ResponderBuilder {
        Http01ResponderBuilder::default()
    }

    /// Binds `addr` (port 80 in production; any port in tests) and serves,
    /// with the default limits.
    pub async fn bind(addr: SocketAddr) -> Result<Self> {
        Self::builder().bind(addr).await
    }

    /// Binds `addr` and serves the given token map, with the default limits.
    pub async fn bind_with(addr: SocketAddr, tokens: Http01Tokens) -> Result<Self> {
        Self::builder().tokens(tokens).bind(addr).await
    }

    /// The token map this responder serves.
    pub fn tokens(&self) -> &Http01Tokens {
        &self.tokens
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// Stops accepting and closes every open connection: the accept task owns
/// the listener and the connection tasks, so aborting it drops them all.
impl Drop for Http01Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections while a connection slot is free, one task per
/// connection. Dropping this future (when the responder is dropped) drops
/// the `JoinSet` and so aborts every connection task.
async fn accept_loop(listener: TcpListener, settings: Http01ResponderBuilder) {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let mut connections = JoinSet::new();
    // `Some` while accept keeps failing: the next pause.
    let mut backoff: Option<Duration> = None;
    loop {
        // Reap finished connection tasks so the set only holds live ones.
        while connections.try_join_next().is_some() {}
        // Backpressure: no free slot, no accept (the kernel queues newcomers).
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return; // never closed
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                if backoff.take().is_some() {
                    tracing::info!("http-01 responder accepting connections again");
                }
                connections.spawn(serve_connection(
                    stream,
                    peer,
                    settings.tokens.clone(),
                    settings.header_read_timeout,
                    permit,
                ));
            }
            Err(error) => {
                drop(permit);
                let pause = match backoff {
                    None => {
                        tracing::warn!(%error, "http-01 responder: accept failed, backing off");
                        ACCEPT_BACKOFF_MIN
                    }
                    Some(last) => {
                        tracing::debug!(%error, "http-01 responder: accept failed again");
                        (last * 2).min(ACCEPT_BACKOFF_MAX)
                    }
                };
                backoff = Some(pause);
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Serves one connection, holding its slot (`_permit`) until it ends.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tokens: Http01Tokens,
    header_read_timeout: Duration,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let tokens = tokens.clone();
        async move { Ok::<_, Infallible>(answer(&tokens, &req, peer)) }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "http-01 connection ended with an error");
    }
}

fn answer<B>(tokens: &Http01Tokens, req: &Request<B>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let found = if req.method() == hyper::Method::GET {
        tokens.response_for_path(path)
    } else {
        None
    };
    tracing::debug!(%peer, path, found = found.is_some(), "http-01 request");
    let (status, body) = match found {
        Some(ka) => (StatusCode::OK, ka),
        None => (StatusCode::NOT_FOUND, String::new()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "text/plain".parse().expect("static header"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_known_tokens_only() {
        let responder = Http01Responder::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        responder.tokens().insert("tok", "tok.thumb");
        let addr = responder.local_addr();
        let ok = get(addr, "/.well-known/acme-challenge/tok").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.ends_with("tok.thumb"), "{ok}");
        let missing = get(addr, "/.well-known/acme-challenge/other").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let elsewhere = get(addr, "/tok").await;
        assert!(elsewhere.starts_with("HTTP/1.1 404"), "{elsewhere}");
        responder.tokens().remove("tok");
        let gone = get(addr, "/.well-known/acme-challenge/tok").await;
        assert!(gone.starts_with("HTTP/1.1 404"), "{gone}");
    }

    /// Open file descriptors of this process (sockets included).
    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    /// The soft `RLIMIT_NOFILE` of this process, from /proc/self/limits.
    fn fd_soft_limit() -> usize {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let soft = line.split_whitespace().nth(3).unwrap();
        soft.parse().unwrap_or(usize::MAX)
    }

    /// Waits (up to 10 s) for the peer to close: EOF or a reset, not data
    /// and not silence.
    async fn closed_by_peer(stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {} // e.g. the rest of a response
                }
            }
        });
        read.await.is_ok()
    }

    /// 2,000 idle connections neither keep a real validation request from
    /// being answered nor make the responder hold more than its cap of
    /// sockets.
    #[tokio::test]
    async fn idle_connection_flood_is_bounded_and_real_requests_get_through() {
        const CAP: usize = 64;
        const MARGIN: usize = 100;
        let responder = Http01Responder::builder()
            .max_connections(CAP)
            .header_read_timeout(Duration::from_millis(500))
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        responder.tokens().insert("tok", "tok.thumb");
        let addr = responder.local_addr();
        let before = open_fds();
        // The test's own client sockets count too: leave room for them,
        // the responder's CAP and some slack under the soft limit.
        let attempts = 2000.min(fd_soft_limit().saturating_sub(before + CAP + 2 * MARGIN));
        assert!(
            attempts > CAP + MARGIN,
            "RLIMIT_NOFILE too low for this test"
        );

        // Idle clients: connect, send nothing, hold the socket until told.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let connected = Arc::new(AtomicUsize::new(0));
        let mut idle = JoinSet::new();
        for _ in 0..attempts {
            let mut stop = stop_rx.clone();
            let connected = Arc::clone(&connected);
            idle.spawn(async move {
                let connect = TcpStream::connect(addr);
                let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(60), connect).await
                else {
                    return;
                };
                connected.fetch_add(1, Ordering::SeqCst);
                let _ = stop.wait_for(|stop| *stop).await;
                drop(stream);
            });
        }
        tokio::task::yield_now().await;

        // A real request, while the flood is on: answered eventually.
        let mut get_request =
            tokio::spawn(async move { get(addr, "/.well-known/acme-challenge/tok").await });
        let mut max_fds = open_fds();
        let answer = loop {
            tokio::select! {
                answer = &mut get_request => break answer.unwrap(),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {
                    max_fds = max_fds.max(open_fds());
                }
            }
        };
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("tok.thumb"), "{answer}");
        // Let every connection attempt finish (connected or given up), still
        // watching the descriptor count.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while connected.load(Ordering::SeqCst) < attempts && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
            max_fds = max_fds.max(open_fds());
        }
        // And a little longer, for whatever is still being accepted.
        for _ in 0..25 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            max_fds = max_fds.max(open_fds());
        }
        let connected = connected.load(Ordering::SeqCst);
        eprintln!(
            "{attempts} idle connections ({connected} established): \
             fds before {before}, at most {max_fds}"
        );
        // The client side holds `attempts` sockets; the responder at most CAP.
        assert!(
            max_fds <= before + attempts + CAP + MARGIN,
            "{max_fds} descriptors open (before: {before}, clients: {attempts}, cap: {CAP})"
        );
        stop_tx.send_replace(true);
        while idle.join_next().await.is_some() {}
    }

    /// Dropping the responder closes the connections it is serving.
    #[tokio::test]
    async fn drop_closes_open_connections() {
        let responder = Http01Responder::builder()
            .header_read_timeout(Duration::from_secs(3600))
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        responder.tokens().insert("tok", "tok.thumb");
        // A keep-alive connection that got its answer and stays open.
        let mut stream = TcpStream::connect(responder.local_addr()).await.unwrap();
        stream
            .write_all(b"GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = Vec::new();
        while !String::from_utf8_lossy(&head).ends_with("tok.thumb") {
            let mut buf = [0u8; 256];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the answer");
            head.extend_from_slice(&buf[..n]);
        }
        // An idle one, accepted but without a request.
        let mut idle = TcpStream::connect(responder.local_addr()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;

        drop(responder);
        assert!(
            closed_by_peer(&mut stream).await,
            "keep-alive connection still open"
        );
        assert!(
            closed_by_peer(&mut idle).await,
            "idle connection still open"
        );
    }

    /// A client that sends no (or only part of a) request head is cut off
    /// after the header timeout; the responder keeps serving others.
    #[tokio::test]
    async fn silent_and_slow_clients_are_closed_after_the_header_timeout() {
        let responder = Http01Responder::builder()
            .header_read_timeout(Duration::from_millis(200))
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        responder.tokens().insert("tok", "tok.thumb");
        let addr = responder.local_addr();
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        assert!(
            closed_by_peer(&mut silent).await,
            "silent client still connected"
        );
        assert!(
            closed_by_peer(&mut slow).await,
            "slow client still connected"
        );
        let ok = get(addr, "/.well-known/acme-challenge/tok").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    }
}
