//! http-01 (RFC 8555 §8.3): serve `/.well-known/acme-challenge/<token>`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::Result;

const PREFIX: &str = "/.well-known/acme-challenge/";

/// Tokens and their key authorizations, shared between whoever answers
/// challenges and whatever serves them (this crate's [`Http01Responder`] or
/// the caller's own web server through [`Http01Tokens::response_for_path`]).
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
/// [`Http01Tokens::response_for_path`]) serves.
#[derive(Debug, Clone, Default)]
pub struct Http01Solver {
    tokens: Http01Tokens,
}

impl Http01Solver {
    /// A solver filling `tokens`.
    pub fn new(tokens: Http01Tokens) -> Self {
        Self { tokens }
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

/// A standalone HTTP/1.1 server answering http-01 challenges from a
/// [`Http01Tokens`] map. Stops when dropped.
#[derive(Debug)]
pub struct Http01Responder {
    tokens: Http01Tokens,
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Http01Responder {
    /// Binds `addr` (port 80 in production; any port in tests) and serves.
    pub async fn bind(addr: SocketAddr) -> Result<Self> {
        Self::bind_with(addr, Http01Tokens::new()).await
    }

    /// Binds `addr` and serves the given token map.
    pub async fn bind_with(addr: SocketAddr, tokens: Http01Tokens) -> Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let served = tokens.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let tokens = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let tokens = tokens.clone();
                        async move { Ok::<_, Infallible>(answer(&tokens, &req, peer)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        tracing::info!(%local_addr, "http-01 responder listening");
        Ok(Self {
            tokens,
            local_addr,
            task,
        })
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

impl Drop for Http01Responder {
    fn drop(&mut self) {
        self.task.abort();
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
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
}
