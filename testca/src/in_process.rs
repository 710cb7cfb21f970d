//! A client's way into an embedded CA without sockets: each request is
//! handed to the CA's handler in the calling task, so a simulation on
//! tokio's paused clock only ever waits on timers (a socket's wait would
//! let the paused clock jump past every timeout).
//!
//! The CA's wire misbehaviours are acted out as a client would see them: a
//! dropped or truncated answer is a broken connection, a slow one runs into
//! the client's timeout, an endless or oversized body is over the cap.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use super::server::Handler;
use super::wire::{Reply, WireRequest};
use sturdy_acme::TransportFailure;
use sturdy_acme::{HttpAnswer, HttpClient, HttpRequest};

/// The embedded CA, reached in-process (see the module docs).
#[derive(Clone)]
pub(crate) struct InProcess {
    handler: Handler,
    /// Scheme and authority of the CA's URLs (`https://host`).
    base: String,
}

impl fmt::Debug for InProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcess")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl InProcess {
    pub(crate) fn new(handler: Handler, base: String) -> Self {
        Self { handler, base }
    }

    async fn answer(&self, request: HttpRequest<'_>) -> HttpAnswer {
        let HttpRequest {
            method,
            url,
            headers,
            body,
            timeout,
            max_body,
            ..
        } = request;
        let Some(path) = url
            .strip_prefix(&self.base)
            .filter(|p| p.is_empty() || p.starts_with('/'))
        else {
            return HttpAnswer::Failed {
                failure: TransportFailure::Connect,
                reason: format!("{url} is not a URL of the in-process CA at {}", self.base),
            };
        };
        let request = WireRequest {
            method,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_owned()
            },
            headers,
            body: body.unwrap_or_default(),
        };
        let answer = async {
            match (self.handler)(request).await {
                Reply::Delayed(delay, response) => {
                    tokio::time::sleep(delay).await;
                    Reply::Normal(response)
                }
                reply => reply,
            }
        };
        let Ok(reply) = tokio::time::timeout(timeout, answer).await else {
            return HttpAnswer::Failed {
                failure: TransportFailure::Timeout,
                reason: format!("no answer within {timeout:?}"),
            };
        };
        let broken = |reason: &str| HttpAnswer::Failed {
            failure: TransportFailure::Reset,
            reason: reason.to_owned(),
        };
        match reply {
            Reply::Normal(r) | Reply::Delayed(_, r) if r.body.len() > max_body => {
                HttpAnswer::TooLarge {
                    status: r.status.as_u16(),
                    headers: r.headers,
                }
            }
            Reply::Normal(r) | Reply::Delayed(_, r) => HttpAnswer::Answered {
                status: r.status.as_u16(),
                headers: r.headers,
                body: r.body,
            },
            Reply::Drop => broken("the connection closed without an answer"),
            Reply::Truncated(_) => broken("the connection closed in the middle of the body"),
            Reply::Endless { status, headers } => HttpAnswer::TooLarge {
                status: status.as_u16(),
                headers,
            },
            Reply::Oversized {
                status,
                headers,
                len,
            } => {
                if len > max_body as u64 {
                    HttpAnswer::TooLarge {
                        status: status.as_u16(),
                        headers,
                    }
                } else {
                    HttpAnswer::Answered {
                        status: status.as_u16(),
                        headers,
                        body: Bytes::from(vec![b'x'; len as usize]),
                    }
                }
            }
        }
    }
}

impl HttpClient for InProcess {
    fn exchange<'a>(
        &'a self,
        request: HttpRequest<'a>,
    ) -> Pin<Box<dyn Future<Output = HttpAnswer> + Send + 'a>> {
        Box::pin(self.answer(request))
    }
}
