//! The management interface of a served test CA, as Pebble has one: a
//! service under test can be killed and its CA asked from outside what it
//! really did, and the CA's behaviour changed while it runs.
//!
//! Plain HTTP on a loopback address (it changes the CA's behaviour, so it
//! never listens elsewhere), JSON in and out:
//!
//! | request | answer |
//! |---|---|
//! | `GET /ledger` | every certificate issued (serial, names, account, issued, revoked), the identifier sets issued more than once, requests per endpoint, finalize requests and the order status each found |
//! | `GET /rate-limits` | the limits table the CA enforces (the same JSON as `--rate-limits FILE`) |
//! | `PUT /faults` | replaces the fault script (a JSON list of rules, as `--faults FILE`); `[]` clears it |
//! | `PUT /caa/DOMAIN` | the CAA answer for DOMAIN from now on: `"allow"`, `"forbid"`, `"timeout"` or `"timeout:N"` |
//! | `GET /root` | the root certificate (PEM) |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use sturdy_acme_testca::TestCa;
//!
//! let ca = TestCa::start().await?;
//! let management = ca.serve_management(([127, 0, 0, 1], 0).into()).await?;
//! println!("GET {}/ledger", management.url());
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use std::sync::Arc;

use crate::{CaaPolicy, FaultRule, TestCa, ca::Ca};

/// What the interface reaches of a CA: its core (shared with the CA's
/// fronts) and its root.
#[derive(Clone)]
struct Handle(Arc<Ca>, String);

/// The largest request body the interface reads (a fault script).
const MAX_BODY: usize = 1 << 20;

/// A running management interface; stops when dropped.
///
/// Example: the [module](self) documentation.
#[derive(Debug)]
pub struct ManagementServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ManagementServer {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ManagementServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestCa {
    /// Serves the management interface (see the [module](crate::management)
    /// documentation) on `addr`, which must be a loopback address (port 0:
    /// any free port), for as long as the returned server lives.
    pub async fn serve_management(&self, addr: SocketAddr) -> std::io::Result<ManagementServer> {
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the management interface listens on loopback only, not {addr}"),
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let ca = Handle(Arc::clone(&self.ca), self.root_pem());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of descriptors, say: wait instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let ca = ca.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let ca = ca.clone();
                        async move { Ok::<_, Infallible>(answer(&ca, request).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(ManagementServer { addr, task })
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("a valid response")
}

fn json_reply(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    reply(
        status,
        "application/json",
        serde_json::to_vec_pretty(value).expect("JSON values always serialize"),
    )
}

fn refused(status: StatusCode, why: impl Into<String>) -> Response<Full<Bytes>> {
    json_reply(status, &json!({ "error": why.into() }))
}

async fn answer(ca: &Handle, request: hyper::Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {MAX_BODY} bytes or broken"),
            );
        }
    };
    match (&method, path.as_str()) {
        (&Method::GET, "/ledger") => json_reply(StatusCode::OK, &ledger_json(ca)),
        (&Method::GET, "/rate-limits") => match serde_json::to_value(ca.0.rate_limits()) {
            Ok(limits) => json_reply(StatusCode::OK, &limits),
            Err(e) => refused(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        (&Method::GET, "/root") => reply(
            StatusCode::OK,
            "application/pem-certificate-chain",
            ca.1.clone(),
        ),
        (&Method::PUT, "/faults") => match serde_json::from_slice::<Vec<FaultRule>>(&body) {
            Ok(rules) => {
                let count = rules.len();
                ca.0.faults.replace(rules);
                json_reply(StatusCode::OK, &json!({ "faults": count }))
            }
            Err(e) => refused(StatusCode::BAD_REQUEST, format!("not a fault script: {e}")),
        },
        (&Method::PUT, caa) if caa.starts_with("/caa/") => {
            let domain = &caa["/caa/".len()..];
            let policy = serde_json::from_slice::<String>(&body)
                .map_err(|e| e.to_string())
                .and_then(|p| parse_caa_policy(&p));
            match policy {
                Ok(policy) if !domain.is_empty() => {
                    ca.0.set_caa(domain, policy);
                    json_reply(
                        StatusCode::OK,
                        &json!({ "domain": domain.to_ascii_lowercase() }),
                    )
                }
                Ok(_) => refused(StatusCode::BAD_REQUEST, "PUT /caa/DOMAIN names a domain"),
                Err(e) => refused(StatusCode::BAD_REQUEST, e),
            }
        }
        (_, "/ledger" | "/rate-limits" | "/root" | "/faults") => {
            refused(StatusCode::METHOD_NOT_ALLOWED, format!("{method} {path}"))
        }
        _ => refused(StatusCode::NOT_FOUND, format!("no {method} {path} here")),
    }
}

/// A CAA answer as the command line and the interface spell it: `allow`,
/// `forbid`, `timeout` or `timeout:N` (the first N lookups time out).
pub fn parse_caa_policy(text: &str) -> Result<CaaPolicy, String> {
    match text {
        "allow" => Ok(CaaPolicy::Allow),
        "forbid" => Ok(CaaPolicy::Forbid),
        "timeout" => Ok(CaaPolicy::Timeout),
        p => match p.strip_prefix("timeout:").and_then(|n| n.parse().ok()) {
            Some(n) => Ok(CaaPolicy::TimeoutTimes(n)),
            None => Err(format!(
                "CAA policy {p:?}: allow, forbid, timeout or timeout:N"
            )),
        },
    }
}

fn ledger_json(ca: &Handle) -> Value {
    let ledger = ca.0.ledger();
    let seconds =
        |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut sets: BTreeMap<Vec<String>, u64> = BTreeMap::new();
    let certificates: Vec<Value> = ledger
        .certificates
        .iter()
        .map(|c| {
            let names: Vec<String> = c.identifiers.iter().map(|i| i.value.clone()).collect();
            *sets.entry(names.clone()).or_default() += 1;
            json!({
                "serial": c.serial,
                "names": names,
                "account": c.account,
                "order": c.order,
                "issued_at": seconds(c.issued_at),
                "revoked": c.revoked,
            })
        })
        .collect();
    let duplicates: Vec<Value> = sets
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(names, n)| json!({ "names": names, "issued": n }))
        .collect();
    let requests: serde_json::Map<String, Value> = ledger
        .requests
        .iter()
        .map(|(endpoint, n)| (endpoint.as_str().to_owned(), json!(n)))
        .collect();
    let finalizations: Vec<Value> = ledger
        .finalizations
        .iter()
        .map(|f| json!({ "order": f.order, "status_before": f.status_before }))
        .collect();
    json!({
        "certificates": certificates,
        "duplicates": duplicates,
        "requests": requests,
        "finalizations": finalizations,
        "peak_in_flight": ledger.peak_in_flight,
    })
}
