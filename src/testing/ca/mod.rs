//! The ACME server side of the test CA: resources, JWS checks, validation,
//! issuance, rate limits, CAA and the fault script, answering through
//! [`Reply`]s.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::mem::size_of;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::time::Instant;

use super::faults::{Fault, FaultScript};
use super::jws::{self, PublicJwk, Rejection, Signer};
use super::limits::{Buckets, RateLimits, registered_domain};
use super::pki::{self, KeyKind, Pki};
use super::recorded::{self, Ring};
use super::server::ServerLimits;
use super::validation::{self, DnsResolver};
use super::wire::{Reply, WireRequest, WireResponse};
use super::{CaaPolicy, Dialect, IssuedCertificate, Ledger, RecordedJws};
use crate::crypto::{b64, b64_decode};
use crate::error::{Problem, ProblemType};
use crate::protocol::{
    AccountResource, AccountStatus, AuthorizationResource, AuthorizationStatus, ChallengeResource,
    ChallengeStatus, ChallengeType, Directory, DirectoryMeta, Identifier, OrderResource,
    OrderStatus,
};
use crate::transport::Endpoint;

// ACME v1 (`Dialect::V1`) lives in v1.rs, a child of this module so that it
// shares the state, nonces, validation and issuance below instead of copying them.
mod v1;

/// The response a [`Fault::Canned`] script asks for.
fn canned(answer: &super::faults::CannedAnswer) -> WireResponse {
    let mut headers = HeaderMap::new();
    if let Some(ct) = answer
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        headers.insert("content-type", ct);
    }
    WireResponse {
        status: StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        headers,
        body: Bytes::from(answer.body.clone()),
    }
}

/// How the test CA validates challenges.
#[derive(Debug, Clone)]
pub enum ValidationMode {
    /// Every challenge answered is valid at once, nothing is contacted.
    AlwaysValid,
    /// Real validation: http-01 on `127.0.0.1:http_port`, tls-alpn-01 on
    /// `127.0.0.1:tls_port` (every DNS name resolves to 127.0.0.1; only
    /// loopback IP identifiers can be validated), dns-01 through `dns`.
    Real {
        /// Port for http-01.
        http_port: u16,
        /// Port for tls-alpn-01.
        tls_port: u16,
        /// TXT lookups for dns-01.
        dns: Arc<dyn DnsResolver>,
    },
}

/// The test CA's settings (see [`TestCaBuilder`](super::TestCaBuilder)).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) validation: ValidationMode,
    pub(crate) validation_delay: Duration,
    pub(crate) finalize_processing: Duration,
    pub(crate) poll_retry_after: Option<u64>,
    pub(crate) rate_limits: RateLimits,
    pub(crate) caa: HashMap<String, CaaPolicy>,
    pub(crate) eab_required: bool,
    pub(crate) eab_keys: HashMap<String, Vec<u8>>,
    pub(crate) alternate_chain: bool,
    pub(crate) accept_eddsa: bool,
    pub(crate) reuse_pending_orders: bool,
    pub(crate) reuse_valid_authorizations: bool,
    pub(crate) certificate_lifetime: Duration,
    pub(crate) orders_per_page: usize,
    pub(crate) blocked_domains: Vec<String>,
    pub(crate) dialect: Dialect,
    /// Signed requests kept for [`TestCa::recorded_jws`](super::TestCa::recorded_jws):
    /// at most this many (0: none) ...
    pub(crate) recorded_jws_entries: usize,
    /// ... taking at most about this much memory.
    pub(crate) recorded_jws_bytes: usize,
    /// Finalize requests kept for [`Ledger::finalizations`].
    pub(crate) recorded_finalizations: usize,
    /// The HTTP server's connection and read limits.
    pub(crate) server: ServerLimits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            validation: ValidationMode::AlwaysValid,
            validation_delay: Duration::ZERO,
            finalize_processing: Duration::ZERO,
            poll_retry_after: None,
            rate_limits: RateLimits::default(),
            caa: HashMap::new(),
            eab_required: false,
            eab_keys: HashMap::new(),
            alternate_chain: false,
            accept_eddsa: false,
            reuse_pending_orders: true,
            reuse_valid_authorizations: true,
            certificate_lifetime: Duration::from_secs(90 * 24 * 3600),
            orders_per_page: 10,
            blocked_domains: Vec::new(),
            dialect: Dialect::V2,
            recorded_jws_entries: recorded::DEFAULT_JWS_ENTRIES,
            recorded_jws_bytes: recorded::DEFAULT_JWS_BYTES,
            recorded_finalizations: recorded::DEFAULT_FINALIZATIONS,
            server: ServerLimits::default(),
        }
    }
}

const JSON: &str = "application/json";
const PROBLEM_JSON: &str = "application/problem+json";
const MAX_NONCES: usize = 10_000;
const MAX_IDENTIFIERS: usize = 100;

#[derive(Debug)]
struct AccountRec {
    key: PublicJwk,
    status: AccountStatus,
    contact: Vec<String>,
    eab_kid: Option<String>,
}

#[derive(Debug)]
struct OrderRec {
    account: usize,
    status: OrderStatus,
    identifiers: Vec<Identifier>,
    authzs: Vec<usize>,
    not_before: Option<OffsetDateTime>,
    not_after: Option<OffsetDateTime>,
    expires: OffsetDateTime,
    error: Option<Problem>,
    cert: Option<usize>,
    ready_at: Option<Instant>,
}

#[derive(Debug)]
struct ChallRec {
    kind: ChallengeType,
    token: String,
    status: ChallengeStatus,
    validated: Option<OffsetDateTime>,
    error: Option<Problem>,
}

#[derive(Debug)]
struct AuthzRec {
    account: usize,
    identifier: Identifier,
    wildcard: bool,
    status: AuthorizationStatus,
    expires: OffsetDateTime,
    challenges: Vec<ChallRec>,
}

#[derive(Debug)]
struct CertRec {
    account: usize,
    /// `None` for a certificate issued through v1's new-cert (no order).
    order: Option<usize>,
    identifiers: Vec<Identifier>,
    serial: String,
    leaf_der: Vec<u8>,
    spki: Vec<u8>,
    chain_pem: String,
    alternate_chain_pem: Option<String>,
    issued_at: SystemTime,
    revoked: Option<u8>,
}

#[derive(Debug)]
struct State {
    accounts: Vec<AccountRec>,
    by_thumbprint: HashMap<String, usize>,
    orders: Vec<OrderRec>,
    authzs: Vec<AuthzRec>,
    certs: Vec<CertRec>,
    nonces: HashSet<String>,
    nonce_order: VecDeque<String>,
    buckets: Buckets,
    requests: BTreeMap<Endpoint, u64>,
    /// Finalize requests: the order and its status when the request came.
    finalizations: Ring<(usize, OrderStatus)>,
    caa_timeouts_seen: HashMap<String, u32>,
    v1: v1::V1State,
    jws_log: Ring<RecordedJws>,
}

impl State {
    /// An empty state whose logs keep what `config` says.
    fn new(config: &Config) -> Self {
        Self {
            accounts: Vec::new(),
            by_thumbprint: HashMap::new(),
            orders: Vec::new(),
            authzs: Vec::new(),
            certs: Vec::new(),
            nonces: HashSet::new(),
            nonce_order: VecDeque::new(),
            buckets: Buckets::default(),
            requests: BTreeMap::new(),
            finalizations: Ring::new(config.recorded_finalizations, usize::MAX),
            caa_timeouts_seen: HashMap::new(),
            v1: v1::V1State::default(),
            jws_log: Ring::new(config.recorded_jws_entries, config.recorded_jws_bytes),
        }
    }
}

/// The test CA's server logic.
pub(crate) struct Ca {
    pub(crate) config: Mutex<Config>,
    pub(crate) pki: Pki,
    pub(crate) faults: FaultScript,
    base: OnceLock<String>,
    state: Mutex<State>,
    rng: SystemRandom,
    /// Whether signed requests are recorded at all.
    records_jws: bool,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// What a route produced: a response, or a rejection to render.
type Answer = Result<WireResponse, Rejection>;

/// A request's route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Directory,
    NewNonce,
    NewAccount,
    Account(usize),
    Orders(usize),
    NewOrder,
    Order(usize),
    Finalize(usize),
    Authz(usize),
    Challenge(usize, usize),
    Certificate(usize, bool),
    Revoke,
    KeyChange,
    Terms,
    NotFound,
}

impl Route {
    fn parse(path: &str) -> Self {
        let path = path.split('?').next().unwrap_or("");
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let id = |s: &str| s.parse::<usize>().ok();
        match parts.as_slice() {
            ["dir"] => Self::Directory,
            ["terms"] => Self::Terms,
            ["acme", "new-nonce"] => Self::NewNonce,
            ["acme", "new-account"] => Self::NewAccount,
            ["acme", "new-order"] => Self::NewOrder,
            ["acme", "revoke-cert"] => Self::Revoke,
            ["acme", "key-change"] => Self::KeyChange,
            ["acme", "acct", a] => id(a).map_or(Self::NotFound, Self::Account),
            ["acme", "acct", a, "orders"] => id(a).map_or(Self::NotFound, Self::Orders),
            ["acme", "order", o] => id(o).map_or(Self::NotFound, Self::Order),
            ["acme", "order", o, "finalize"] => id(o).map_or(Self::NotFound, Self::Finalize),
            ["acme", "authz", a] => id(a).map_or(Self::NotFound, Self::Authz),
            ["acme", "chall", a, c] => match (id(a), id(c)) {
                (Some(a), Some(c)) => Self::Challenge(a, c),
                _ => Self::NotFound,
            },
            ["acme", "cert", c] => id(c).map_or(Self::NotFound, |c| Self::Certificate(c, false)),
            ["acme", "cert", c, "alt"] => {
                id(c).map_or(Self::NotFound, |c| Self::Certificate(c, true))
            }
            _ => Self::NotFound,
        }
    }

    fn endpoint(&self) -> Endpoint {
        match self {
            Self::Directory => Endpoint::Directory,
            Self::NewNonce => Endpoint::NewNonce,
            Self::NewAccount => Endpoint::NewAccount,
            Self::Account(_) => Endpoint::Account,
            Self::Orders(_) => Endpoint::Orders,
            Self::NewOrder => Endpoint::NewOrder,
            Self::Order(_) => Endpoint::Order,
            Self::Finalize(_) => Endpoint::Finalize,
            Self::Authz(_) => Endpoint::Authorization,
            Self::Challenge(..) => Endpoint::Challenge,
            Self::Certificate(..) => Endpoint::Certificate,
            Self::Revoke => Endpoint::Revoke,
            Self::KeyChange => Endpoint::KeyChange,
            Self::Terms | Self::NotFound => Endpoint::Other,
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

fn now_utc() -> OffsetDateTime {
    rfc3339(OffsetDateTime::now_utc())
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

impl Ca {
    pub(crate) fn new(config: Config, pki: Pki, faults: FaultScript) -> Self {
        Self {
            state: Mutex::new(State::new(&config)),
            records_jws: config.recorded_jws_entries > 0,
            config: Mutex::new(config),
            pki,
            faults,
            base: OnceLock::new(),
            rng: SystemRandom::new(),
        }
    }

    /// Sets `https://127.0.0.1:PORT` once the listener is bound.
    pub(crate) fn set_base(&self, base: String) {
        let _ = self.base.set(base);
    }

    fn base(&self) -> &str {
        self.base
            .get()
            .map(String::as_str)
            .unwrap_or("https://127.0.0.1")
    }

    pub(crate) fn directory_url(&self) -> String {
        match self.dialect() {
            Dialect::V1 => format!("{}/directory", self.base()),
            _ => format!("{}/dir", self.base()),
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .dialect
    }

    fn config(&self) -> Config {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    fn account_url(&self, id: usize) -> String {
        self.url(&format!("/acme/acct/{id}"))
    }

    fn order_url(&self, id: usize) -> String {
        self.url(&format!("/acme/order/{id}"))
    }

    fn authz_url(&self, id: usize) -> String {
        self.url(&format!("/acme/authz/{id}"))
    }

    fn cert_url(&self, id: usize) -> String {
        self.url(&format!("/acme/cert/{id}"))
    }

    /// A snapshot of what happened, for assertions.
    pub(crate) fn ledger(&self) -> Ledger {
        let v1 = self.dialect() == Dialect::V1;
        let state = self.state();
        Ledger {
            certificates: state
                .certs
                .iter()
                .map(|c| IssuedCertificate {
                    serial: c.serial.clone(),
                    identifiers: c.identifiers.clone(),
                    account: if v1 {
                        self.v1_reg_url(c.account)
                    } else {
                        self.account_url(c.account)
                    },
                    order: match c.order {
                        Some(o) => self.order_url(o),
                        None => self.v1_cert_url(&c.serial),
                    },
                    issued_at: c.issued_at,
                    revoked: c.revoked,
                    leaf_der: c.leaf_der.clone(),
                })
                .collect(),
            requests: state.requests.clone(),
            finalizations: state
                .finalizations
                .iter()
                .map(|(id, status)| super::FinalizeRecord {
                    order: self.order_url(*id),
                    status_before: *status,
                })
                .collect(),
        }
    }

    pub(crate) fn recorded_jws(&self) -> Vec<RecordedJws> {
        self.state().jws_log.iter().cloned().collect()
    }

    fn fresh_nonce(&self, state: &mut State) -> String {
        let mut bytes = [0u8; 16];
        self.rng.fill(&mut bytes).expect("system RNG");
        let nonce = b64(bytes);
        if state.nonce_order.len() >= MAX_NONCES
            && let Some(old) = state.nonce_order.pop_front()
        {
            state.nonces.remove(&old);
        }
        state.nonces.insert(nonce.clone());
        state.nonce_order.push_back(nonce.clone());
        nonce
    }

    /// Handles one request: counts it, applies the fault script, routes it.
    pub(crate) async fn handle(self: &Arc<Self>, req: WireRequest) -> Reply {
        let v1 = self.dialect() == Dialect::V1;
        let route = Route::parse(&req.path);
        let endpoint = if v1 {
            v1::endpoint(&req)
        } else {
            route.endpoint()
        };
        // Decoded before taking the lock: the body may be 1 MiB of JSON.
        let recorded = (self.records_jws && req.method == Method::POST)
            .then(|| jws::decode_unverified(&req.body))
            .flatten()
            .map(|(protected, payload)| {
                let jws = RecordedJws {
                    endpoint,
                    path: req.path.clone(),
                    protected,
                    payload,
                };
                let cost = recorded::jws_cost(&jws);
                (jws, cost)
            });
        {
            let mut state = self.state();
            let count = state.requests.entry(endpoint).or_default();
            *count = count.saturating_add(1);
            if let Some((jws, cost)) = recorded
                && !state.jws_log.push(jws, cost)
            {
                tracing::debug!(?endpoint, cost, "test CA: request too large to record");
            }
            if !v1
                && let Route::Finalize(id) = route
                && id < state.orders.len()
            {
                Self::refresh_order(&mut state, id);
                let status = state.orders[id].status;
                state
                    .finalizations
                    .push((id, status), size_of::<(usize, OrderStatus)>());
            }
        }
        // badNonce only makes sense for a signed POST.
        let fault = self
            .faults
            .decide(endpoint)
            .filter(|f| *f != Fault::BadNonce || req.method == Method::POST);
        if let Some(fault) = &fault
            && !fault.commits()
        {
            tracing::debug!(?endpoint, ?fault, "test CA: fault instead of an answer");
            return if v1 {
                self.v1_pre_commit_fault(fault)
            } else {
                self.pre_commit_fault(fault)
            };
        }
        let response = if v1 {
            self.v1_route(&req).await
        } else {
            self.route(route, &req).await
        };
        match fault {
            None => Reply::Normal(response),
            Some(fault) => {
                tracing::debug!(?endpoint, ?fault, "test CA: fault after committing");
                match fault {
                    Fault::Empty500AfterCommit => Reply::Normal(WireResponse {
                        status: StatusCode::INTERNAL_SERVER_ERROR,
                        headers: HeaderMap::new(),
                        body: Bytes::new(),
                    }),
                    Fault::DropAfterCommit => Reply::Drop,
                    Fault::SlowAfterCommit { delay_ms } => {
                        Reply::Delayed(Duration::from_millis(delay_ms), response)
                    }
                    Fault::TruncatedAfterCommit => Reply::Truncated(response),
                    Fault::InvalidJsonAfterCommit => Reply::Normal(WireResponse {
                        status: StatusCode::OK,
                        headers: response.headers,
                        body: Bytes::from_static(b"{\"status\": \"val"),
                    }),
                    Fault::CannedAfterCommit(answer) => Reply::Normal(canned(&answer)),
                    _ => Reply::Normal(response),
                }
            }
        }
    }

    fn pre_commit_fault(&self, fault: &Fault) -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static(JSON));
        match fault {
            Fault::Empty500 => Reply::Normal(WireResponse {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                headers: HeaderMap::new(),
                body: Bytes::new(),
            }),
            Fault::Unavailable { retry_after } => {
                let mut headers = HeaderMap::new();
                headers.insert("retry-after", header(&retry_after.header_value()));
                Reply::Normal(WireResponse {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    headers,
                    body: Bytes::new(),
                })
            }
            Fault::BadNonce => Reply::Normal(self.problem_response(&Rejection::new(
                ProblemType::BadNonce,
                400,
                "JWS has an invalid anti-replay nonce",
            ))),
            Fault::RateLimited { retry_after_secs } => {
                let mut r = self.problem_response(&Rejection::new(
                    ProblemType::RateLimited,
                    429,
                    "too many requests (fault script)",
                ));
                r.headers
                    .insert("retry-after", header(&retry_after_secs.to_string()));
                Reply::Normal(r)
            }
            Fault::EndlessBody => Reply::Endless {
                status: StatusCode::OK,
                headers,
            },
            Fault::OversizedBody { bytes } => Reply::Oversized {
                status: StatusCode::OK,
                headers,
                len: *bytes,
            },
            Fault::Canned(answer) => Reply::Normal(canned(answer)),
            _ => Reply::Drop,
        }
    }

    fn problem_response(&self, r: &Rejection) -> WireResponse {
        let mut problem = Problem::new(r.kind.clone(), r.detail.clone());
        problem.status = Some(r.status);
        self.problem_doc_response(r.status, &problem)
    }

    fn problem_doc_response(&self, status: u16, problem: &Problem) -> WireResponse {
        let nonce = {
            let mut state = self.state();
            self.fresh_nonce(&mut state)
        };
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static(PROBLEM_JSON));
        headers.insert("replay-nonce", header(&nonce));
        headers.insert(
            "link",
            header(&format!("<{}>;rel=\"index\"", self.directory_url())),
        );
        WireResponse {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            headers,
            body: Bytes::from(serde_json::to_vec(problem).expect("problem serializes")),
        }
    }

    /// A JSON response to a POST, with a fresh nonce and the index link.
    fn json_response(
        &self,
        status: StatusCode,
        body: &impl serde::Serialize,
        location: Option<&str>,
    ) -> WireResponse {
        let nonce = {
            let mut state = self.state();
            self.fresh_nonce(&mut state)
        };
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static(JSON));
        headers.insert("replay-nonce", header(&nonce));
        headers.insert(
            "link",
            header(&format!("<{}>;rel=\"index\"", self.directory_url())),
        );
        if let Some(location) = location {
            headers.insert("location", header(location));
        }
        WireResponse {
            status,
            headers,
            body: Bytes::from(serde_json::to_vec(body).expect("resource serializes")),
        }
    }

    fn with_retry_after(&self, mut response: WireResponse, pending: bool) -> WireResponse {
        if pending && let Some(secs) = self.config().poll_retry_after {
            response
                .headers
                .insert("retry-after", header(&secs.to_string()));
        }
        response
    }

    async fn route(self: &Arc<Self>, route: Route, req: &WireRequest) -> WireResponse {
        let answer = match (route, &req.method) {
            (Route::Directory, &Method::GET) => Ok(self.directory()),
            (Route::Terms, &Method::GET) => Ok(WireResponse {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                body: Bytes::from_static(b"sturdy-acme test CA: no terms, no guarantees.\n"),
            }),
            (Route::NewNonce, m) if m == Method::HEAD || m == Method::GET => {
                let nonce = {
                    let mut state = self.state();
                    self.fresh_nonce(&mut state)
                };
                let mut headers = HeaderMap::new();
                headers.insert("replay-nonce", header(&nonce));
                headers.insert("cache-control", HeaderValue::from_static("no-store"));
                headers.insert(
                    "link",
                    header(&format!("<{}>;rel=\"index\"", self.directory_url())),
                );
                Ok(WireResponse {
                    status: if m == Method::HEAD {
                        StatusCode::OK
                    } else {
                        StatusCode::NO_CONTENT
                    },
                    headers,
                    body: Bytes::new(),
                })
            }
            (Route::NotFound, _) => Err(Rejection::new(
                ProblemType::Malformed,
                404,
                "Resource not found",
            )),
            (Route::Directory | Route::Terms | Route::NewNonce, _) => Err(Rejection::new(
                ProblemType::Malformed,
                405,
                "Method not allowed",
            )),
            (_, &Method::POST) => self.post(route, req).await,
            (_, _) => Err(Rejection::new(
                ProblemType::Malformed,
                405,
                "Method not allowed (POST-as-GET is required)",
            )),
        };
        answer.unwrap_or_else(|r| self.problem_response(&r))
    }

    fn directory(&self) -> WireResponse {
        let config = self.config();
        let directory = Directory {
            new_nonce: self.url("/acme/new-nonce"),
            new_account: self.url("/acme/new-account"),
            new_order: self.url("/acme/new-order"),
            new_authz: None,
            revoke_cert: self.url("/acme/revoke-cert"),
            key_change: self.url("/acme/key-change"),
            renewal_info: None,
            meta: DirectoryMeta {
                terms_of_service: Some(self.url("/terms")),
                website: Some("https://github.com/sturdy-acme".into()),
                caa_identities: vec!["sturdy-acme.test".into()],
                external_account_required: config.eab_required,
                ..Default::default()
            },
            extra: Default::default(),
        };
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static(JSON));
        WireResponse {
            status: StatusCode::OK,
            headers,
            body: Bytes::from(serde_json::to_vec(&directory).expect("directory serializes")),
        }
    }

    /// Everything a signed POST needs checked before its route runs.
    async fn post(self: &Arc<Self>, route: Route, req: &WireRequest) -> Answer {
        let content_type = req
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("application/jose+json") {
            return Err(Rejection::new(
                ProblemType::Malformed,
                415,
                "Content-Type must be \"application/jose+json\"",
            ));
        }
        let config = self.config();
        let parsed = jws::parse(&req.body, config.accept_eddsa)?;
        let expected_url = self.url(&req.path);
        {
            let mut state = self.state();
            match &parsed.nonce {
                Some(n) if state.nonces.remove(n) => {}
                Some(_) => {
                    return Err(Rejection::new(
                        ProblemType::BadNonce,
                        400,
                        "JWS has an invalid anti-replay nonce",
                    ));
                }
                None => {
                    return Err(Rejection::new(
                        ProblemType::BadNonce,
                        400,
                        "JWS has no anti-replay nonce",
                    ));
                }
            }
        }
        if parsed.url != expected_url {
            return Err(Rejection::malformed(format!(
                "JWS header parameter 'url' incorrect. Expected {expected_url:?}, got {:?}",
                parsed.url
            )));
        }
        // Who signed it.
        let account = match (&parsed.signer, route) {
            (Signer::Jwk(key), Route::NewAccount | Route::Revoke) => {
                parsed.verify_with(key)?;
                None
            }
            (Signer::Jwk(_), _) => return Err(Rejection::malformed("No Key ID in JWS header")),
            (Signer::Kid(_), Route::NewAccount) => {
                return Err(Rejection::malformed(
                    "newAccount requests must be signed with a jwk, not a kid",
                ));
            }
            (Signer::Kid(kid), _) => {
                let id = kid
                    .strip_prefix(&self.url("/acme/acct/"))
                    .and_then(|s| s.parse::<usize>().ok());
                let state = self.state();
                let rec = id.and_then(|id| state.accounts.get(id)).ok_or_else(|| {
                    Rejection::new(
                        ProblemType::AccountDoesNotExist,
                        400,
                        format!("Account {kid:?} not found"),
                    )
                })?;
                parsed.verify_with(&rec.key)?;
                if rec.status != AccountStatus::Valid {
                    return Err(Rejection::unauthorized(format!(
                        "Account is not valid, has status {:?}",
                        format!("{:?}", rec.status).to_lowercase()
                    )));
                }
                id
            }
        };
        match (route, account) {
            (Route::NewAccount, _) => self.new_account(&parsed, &config),
            (Route::Revoke, acct) => self.revoke(&parsed, acct),
            (_, None) => Err(Rejection::malformed("No Key ID in JWS header")),
            (Route::Account(id), Some(acct)) => self.account(id, acct, &parsed),
            (Route::Orders(id), Some(acct)) => self.orders_list(id, acct, req),
            (Route::KeyChange, Some(acct)) => self.key_change(acct, &parsed, &config),
            (Route::NewOrder, Some(acct)) => self.new_order(acct, &parsed, &config),
            (Route::Order(id), Some(acct)) => self.order(id, acct),
            (Route::Finalize(id), Some(acct)) => self.finalize(id, acct, &parsed, &config),
            (Route::Authz(id), Some(acct)) => self.authz(id, acct, &parsed),
            (Route::Challenge(a, c), Some(acct)) => {
                self.challenge(a, c, acct, &parsed, &config).await
            }
            (Route::Certificate(id, alt), Some(acct)) => self.certificate(id, alt, acct, &parsed),
            _ => Err(Rejection::new(
                ProblemType::Malformed,
                404,
                "Resource not found",
            )),
        }
    }

    fn account_resource(&self, id: usize, rec: &AccountRec) -> AccountResource {
        let mut extra = serde_json::Map::new();
        extra.insert("key".into(), rec.key.jwk.clone());
        if let Some(kid) = &rec.eab_kid {
            extra.insert("externalAccountBinding".into(), json!({"kid": kid}));
        }
        AccountResource {
            status: rec.status,
            contact: rec.contact.clone(),
            terms_of_service_agreed: Some(true),
            orders: Some(format!("{}/orders", self.account_url(id))),
            extra,
        }
    }

    fn check_contacts(contact: &Value) -> Result<Vec<String>, Rejection> {
        let list = contact
            .as_array()
            .ok_or_else(|| Rejection::malformed("contact must be an array"))?;
        let mut out = Vec::new();
        for c in list {
            let c = c
                .as_str()
                .ok_or_else(|| Rejection::malformed("contact entries must be strings"))?;
            let Some(addr) = c.strip_prefix("mailto:") else {
                return Err(Rejection::new(
                    ProblemType::UnsupportedContact,
                    400,
                    format!("contact method {c:?} is not supported (mailto: only)"),
                ));
            };
            let valid = addr
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !addr.contains(','));
            if !valid {
                return Err(Rejection::new(
                    ProblemType::InvalidContact,
                    400,
                    format!("invalid contact {c:?}"),
                ));
            }
            out.push(c.to_owned());
        }
        Ok(out)
    }

    fn new_account(&self, parsed: &jws::Parsed, config: &Config) -> Answer {
        let Signer::Jwk(key) = &parsed.signer else {
            return Err(Rejection::malformed("newAccount requires a jwk"));
        };
        let payload = parsed.payload.clone().unwrap_or(Value::Null);
        let existing = self.state().by_thumbprint.get(&key.thumbprint).copied();
        if let Some(id) = existing {
            let state = self.state();
            let body = self.account_resource(id, &state.accounts[id]);
            drop(state);
            return Ok(self.json_response(StatusCode::OK, &body, Some(&self.account_url(id))));
        }
        if payload.get("onlyReturnExisting").and_then(Value::as_bool) == Some(true) {
            return Err(Rejection::new(
                ProblemType::AccountDoesNotExist,
                400,
                "unable to find existing account for only-return-existing request",
            ));
        }
        if payload.get("termsOfServiceAgreed").and_then(Value::as_bool) != Some(true) {
            return Err(Rejection::malformed(
                "Provided account did not agree to the terms of service",
            ));
        }
        let contact = match payload.get("contact") {
            Some(c) => Self::check_contacts(c)?,
            None => Vec::new(),
        };
        let eab_kid = match payload.get("externalAccountBinding") {
            Some(eab) => Some(jws::verify_eab(
                eab,
                &key.jwk,
                &self.url("/acme/new-account"),
                &config.eab_keys,
            )?),
            None if config.eab_required => {
                return Err(Rejection::new(
                    ProblemType::ExternalAccountRequired,
                    403,
                    "no externalAccountBinding was present",
                ));
            }
            None => None,
        };
        let mut state = self.state();
        let id = state.accounts.len();
        state.by_thumbprint.insert(key.thumbprint.clone(), id);
        state.accounts.push(AccountRec {
            key: key.clone(),
            status: AccountStatus::Valid,
            contact,
            eab_kid,
        });
        let body = self.account_resource(id, &state.accounts[id]);
        drop(state);
        Ok(self.json_response(StatusCode::CREATED, &body, Some(&self.account_url(id))))
    }

    fn account(&self, id: usize, acct: usize, parsed: &jws::Parsed) -> Answer {
        if id != acct {
            return Err(Rejection::unauthorized(
                "Request signing key did not match update key",
            ));
        }
        let mut state = self.state();
        if let Some(payload) = &parsed.payload {
            if let Some(contact) = payload.get("contact") {
                state.accounts[id].contact = Self::check_contacts(contact)?;
            }
            match payload.get("status").and_then(Value::as_str) {
                None => {}
                Some("deactivated") => Self::deactivate_account(&mut state, id),
                Some(other) => {
                    return Err(Rejection::malformed(format!(
                        "invalid account status {other:?}"
                    )));
                }
            }
        }
        let body = self.account_resource(id, &state.accounts[id]);
        drop(state);
        Ok(self.json_response(StatusCode::OK, &body, Some(&self.account_url(id))))
    }

    /// Deactivates account `id` and its pending and valid authorizations.
    fn deactivate_account(state: &mut State, id: usize) {
        state.accounts[id].status = AccountStatus::Deactivated;
        for authz in state.authzs.iter_mut().filter(|a| a.account == id) {
            if authz.status == AuthorizationStatus::Pending
                || authz.status == AuthorizationStatus::Valid
            {
                authz.status = AuthorizationStatus::Deactivated;
            }
        }
    }

    fn orders_list(&self, id: usize, acct: usize, req: &WireRequest) -> Answer {
        if id != acct {
            return Err(Rejection::unauthorized("not your orders list"));
        }
        let page: usize = req
            .path
            .split_once("?cursor=")
            .and_then(|(_, c)| c.parse().ok())
            .unwrap_or(0);
        let per_page = self.config().orders_per_page.max(1);
        let state = self.state();
        let ids: Vec<usize> = (0..state.orders.len())
            .filter(|o| state.orders[*o].account == id)
            .collect();
        drop(state);
        // The cursor is the client's: saturate instead of overflowing.
        let start = page.saturating_mul(per_page);
        let urls: Vec<String> = ids
            .iter()
            .skip(start)
            .take(per_page)
            .map(|o| self.order_url(*o))
            .collect();
        let mut response = self.json_response(StatusCode::OK, &json!({"orders": urls}), None);
        if ids.len() > start.saturating_add(per_page) {
            let next = format!(
                "<{}/orders?cursor={}>;rel=\"next\"",
                self.account_url(id),
                page.saturating_add(1)
            );
            response.headers.append("link", header(&next));
        }
        Ok(response)
    }

    fn key_change(&self, acct: usize, parsed: &jws::Parsed, config: &Config) -> Answer {
        let inner_body = parsed
            .payload
            .as_ref()
            .ok_or_else(|| Rejection::malformed("keyChange needs an inner JWS"))?;
        let inner = jws::parse(
            &serde_json::to_vec(inner_body).unwrap_or_default(),
            config.accept_eddsa,
        )?;
        let Signer::Jwk(new_key) = &inner.signer else {
            return Err(Rejection::malformed(
                "inner JWS must carry the new key as jwk",
            ));
        };
        inner.verify_with(new_key)?;
        if inner.url != parsed.url {
            return Err(Rejection::malformed(
                "inner JWS url must equal the outer url",
            ));
        }
        let payload = inner
            .payload
            .ok_or_else(|| Rejection::malformed("inner JWS has no payload"))?;
        let mut state = self.state();
        if payload.get("account").and_then(Value::as_str) != Some(&self.account_url(acct)) {
            return Err(Rejection::malformed(
                "inner payload account does not match the kid",
            ));
        }
        let old = payload
            .get("oldKey")
            .map(crate::crypto::thumbprint_of_jwk)
            .and_then(Result::ok);
        if old.as_deref() != Some(state.accounts[acct].key.thumbprint.as_str()) {
            return Err(Rejection::malformed(
                "inner payload oldKey is not the account key",
            ));
        }
        if let Some(other) = state.by_thumbprint.get(&new_key.thumbprint).copied() {
            let mut response = self.problem_response(&Rejection::new(
                ProblemType::Conflict,
                409,
                "New key is already in use for a different account",
            ));
            response
                .headers
                .insert("location", header(&self.account_url(other)));
            drop(state);
            return Ok(response);
        }
        let old_thumb = state.accounts[acct].key.thumbprint.clone();
        state.by_thumbprint.remove(&old_thumb);
        state.by_thumbprint.insert(new_key.thumbprint.clone(), acct);
        state.accounts[acct].key = new_key.clone();
        let body = self.account_resource(acct, &state.accounts[acct]);
        drop(state);
        Ok(self.json_response(StatusCode::OK, &body, Some(&self.account_url(acct))))
    }

    fn check_identifiers(
        &self,
        payload: &Value,
        config: &Config,
    ) -> Result<Vec<Identifier>, Rejection> {
        let list = payload
            .get("identifiers")
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| {
                Rejection::malformed("NewOrder request did not specify any identifiers")
            })?;
        if list.len() > MAX_IDENTIFIERS {
            return Err(Rejection::new(
                ProblemType::RejectedIdentifier,
                400,
                format!("Order cannot contain more than {MAX_IDENTIFIERS} identifiers"),
            ));
        }
        let mut out = Vec::new();
        let mut subproblems = Vec::new();
        for entry in list {
            let id: Identifier = serde_json::from_value(entry.clone())
                .map_err(|_| Rejection::malformed("invalid identifier"))?;
            let checked = match id.kind.as_str() {
                "dns" => {
                    Identifier::dns(&id.value).map_err(|e| (ProblemType::Malformed, e.to_string()))
                }
                "ip" => id.value.parse::<IpAddr>().map(Identifier::ip).map_err(|_| {
                    (
                        ProblemType::Malformed,
                        format!("invalid IP address {:?}", id.value),
                    )
                }),
                other => Err((
                    ProblemType::UnsupportedIdentifier,
                    format!("identifier type {other:?} is not supported"),
                )),
            };
            match checked {
                Ok(c)
                    if config.blocked_domains.iter().any(|b| {
                        c.base_name() == b || c.base_name().ends_with(&format!(".{b}"))
                    }) =>
                {
                    subproblems.push((
                        id,
                        ProblemType::RejectedIdentifier,
                        "The ACME server refuses to issue a certificate for this domain name, because it is forbidden by policy".to_owned(),
                    ));
                }
                Ok(c) => out.push(c),
                Err((kind, detail)) => subproblems.push((id, kind, detail)),
            }
        }
        if !subproblems.is_empty() {
            return Err(Rejection {
                kind: if subproblems.len() == 1 {
                    subproblems[0].1.clone()
                } else {
                    ProblemType::RejectedIdentifier
                },
                status: 400,
                detail: subproblems
                    .iter()
                    .map(|(id, _, d)| format!("{}: {d}", id.value))
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn rate_limited(&self, detail: String, wait: Duration) -> Rejection {
        let when = time::Duration::try_from(wait)
            .ok()
            .and_then(|wait| OffsetDateTime::now_utc().checked_add(wait))
            .and_then(|retry_at| {
                retry_at
                    .format(time::macros::format_description!(
                        "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
                    ))
                    .ok()
            })
            .unwrap_or_default();
        Rejection::new(
            ProblemType::RateLimited,
            429,
            format!("{detail}, retry after {when}: see https://letsencrypt.org/docs/rate-limits/"),
        )
    }

    fn set_key(ids: &[Identifier]) -> String {
        ids.iter()
            .map(|i| i.value.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Checks the new-order limits (spending the per-account one).
    fn check_order_limits(
        &self,
        state: &mut State,
        acct: usize,
        ids: &[Identifier],
        limits: &RateLimits,
        now: Instant,
    ) -> Result<(), (Rejection, Duration)> {
        let mut worst: Option<(String, Duration)> = None;
        let mut consider = |result: Result<(), Duration>, detail: String| {
            if let Err(wait) = result
                && worst.as_ref().is_none_or(|(_, w)| wait > *w)
            {
                worst = Some((detail, wait));
            }
        };
        if let Some(l) = &limits.new_orders_per_account {
            consider(
                state.buckets.check(&format!("orders:{acct}"), l, now),
                format!(
                    "too many new orders ({}) from this account in the last {:?}",
                    l.burst, l.period
                ),
            );
        }
        if let Some(l) = &limits.duplicate_certificates {
            consider(
                state
                    .buckets
                    .check(&format!("fqdnset:{}", Self::set_key(ids)), l, now),
                format!(
                    "too many certificates ({}) already issued for this exact set of identifiers in the last {:?}",
                    l.burst, l.period
                ),
            );
        }
        if let Some(l) = &limits.certificates_per_domain {
            let domains: HashSet<String> =
                ids.iter().map(|i| registered_domain(&i.value)).collect();
            for d in domains {
                consider(
                    state.buckets.check(&format!("domain:{d}"), l, now),
                    format!(
                        "too many certificates ({}) already issued for {d:?} in the last {:?}",
                        l.burst, l.period
                    ),
                );
            }
        }
        if let Some(l) = &limits.failed_authorizations {
            for id in ids {
                consider(
                    state
                        .buckets
                        .check(&format!("authzfail:{acct}:{}", id.value), l, now),
                    format!(
                        "too many failed authorizations ({}) for {:?} in the last {:?}",
                        l.burst, id.value, l.period
                    ),
                );
            }
        }
        if let Some((detail, wait)) = worst {
            return Err((self.rate_limited(detail, wait), wait));
        }
        if let Some(l) = &limits.new_orders_per_account {
            state.buckets.spend(&format!("orders:{acct}"), l, now);
        }
        Ok(())
    }

    fn new_order(&self, acct: usize, parsed: &jws::Parsed, config: &Config) -> Answer {
        let payload = parsed
            .payload
            .as_ref()
            .ok_or_else(|| Rejection::malformed("newOrder needs a payload"))?;
        let ids = self.check_identifiers(payload, config)?;
        let parse_time = |name: &str| -> Result<Option<OffsetDateTime>, Rejection> {
            match payload.get(name).and_then(Value::as_str) {
                None => Ok(None),
                // In UTC, as it goes into the certificate (a time near the
                // ends of the representable range may not have a UTC form).
                Some(s) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .and_then(|t| t.checked_to_offset(time::UtcOffset::UTC))
                    .map(|t| Some(rfc3339(t)))
                    .ok_or_else(|| Rejection::malformed(format!("invalid {name}"))),
            }
        };
        let not_before = parse_time("notBefore")?;
        let not_after = parse_time("notAfter")?;
        if let (Some(nb), Some(na)) = (not_before, not_after)
            && na <= nb
        {
            return Err(Rejection::malformed("notAfter must be after notBefore"));
        }
        // The certificate must end somewhere: notBefore plus the lifetime
        // must still be a date (year 9999 at most).
        if let (Some(nb), None) = (not_before, not_after)
            && Self::default_not_after(nb, config).is_none()
        {
            return Err(Rejection::malformed(
                "notBefore is too far in the future: the certificate would end after 9999",
            ));
        }
        let now = Instant::now();
        let mut state = self.state();
        if let Err((rejection, wait)) =
            self.check_order_limits(&mut state, acct, &ids, &config.rate_limits, now)
        {
            drop(state);
            let mut response = self.problem_response(&rejection);
            response.headers.insert(
                "retry-after",
                header(&(wait.as_secs_f64().ceil() as u64).max(1).to_string()),
            );
            response.headers.append(
                "link",
                HeaderValue::from_static("<https://letsencrypt.org/docs/rate-limits>;rel=\"help\""),
            );
            return Ok(response);
        }
        // Boulder hands back an existing pending order for the same names.
        if config.reuse_pending_orders {
            let utc = now_utc();
            for o in 0..state.orders.len() {
                Self::refresh_order(&mut state, o);
                let order = &state.orders[o];
                if order.account == acct
                    && order.identifiers == ids
                    && matches!(order.status, OrderStatus::Pending | OrderStatus::Ready)
                    && order.expires > utc
                {
                    let body = self.order_resource(&state, o);
                    drop(state);
                    return Ok(self.json_response(
                        StatusCode::CREATED,
                        &body,
                        Some(&self.order_url(o)),
                    ));
                }
            }
        }
        let expires = now_utc() + time::Duration::days(7);
        let mut authzs = Vec::new();
        for id in &ids {
            let wildcard = id.is_wildcard();
            let base = Identifier {
                kind: id.kind.clone(),
                value: id.base_name().to_owned(),
            };
            let reusable = if config.reuse_valid_authorizations {
                state.authzs.iter().position(|a| {
                    a.account == acct
                        && a.identifier == base
                        && a.wildcard == wildcard
                        && a.status == AuthorizationStatus::Valid
                        && a.expires > now_utc()
                })
            } else {
                None
            };
            if let Some(a) = reusable {
                authzs.push(a);
                continue;
            }
            let kinds: &[ChallengeType] = if wildcard {
                &[ChallengeType::Dns01]
            } else if id.kind == "ip" {
                &[ChallengeType::Http01, ChallengeType::TlsAlpn01]
            } else {
                &[
                    ChallengeType::Http01,
                    ChallengeType::Dns01,
                    ChallengeType::TlsAlpn01,
                ]
            };
            let challenges = self.fresh_challenges(kinds);
            state.authzs.push(AuthzRec {
                account: acct,
                identifier: base,
                wildcard,
                status: AuthorizationStatus::Pending,
                expires,
                challenges,
            });
            authzs.push(state.authzs.len() - 1);
        }
        let id = state.orders.len();
        state.orders.push(OrderRec {
            account: acct,
            status: OrderStatus::Pending,
            identifiers: ids,
            authzs,
            not_before,
            not_after,
            expires,
            error: None,
            cert: None,
            ready_at: None,
        });
        Self::refresh_order(&mut state, id);
        let body = self.order_resource(&state, id);
        drop(state);
        Ok(self.json_response(StatusCode::CREATED, &body, Some(&self.order_url(id))))
    }

    /// Pending challenges of these kinds, each with a fresh 32-byte token.
    fn fresh_challenges(&self, kinds: &[ChallengeType]) -> Vec<ChallRec> {
        kinds
            .iter()
            .map(|k| {
                let mut token = [0u8; 32];
                self.rng.fill(&mut token).expect("system RNG");
                ChallRec {
                    kind: k.clone(),
                    token: b64(token),
                    status: ChallengeStatus::Pending,
                    validated: None,
                    error: None,
                }
            })
            .collect()
    }

    /// Moves an order along as its authorizations and issuance progress.
    fn refresh_order(state: &mut State, id: usize) {
        let order = &state.orders[id];
        let status = match order.status {
            OrderStatus::Pending => {
                let statuses: Vec<AuthorizationStatus> = order
                    .authzs
                    .iter()
                    .map(|a| state.authzs[*a].status)
                    .collect();
                if statuses.iter().any(|s| {
                    !matches!(s, AuthorizationStatus::Pending | AuthorizationStatus::Valid)
                }) {
                    OrderStatus::Invalid
                } else if statuses.iter().all(|s| *s == AuthorizationStatus::Valid) {
                    OrderStatus::Ready
                } else {
                    OrderStatus::Pending
                }
            }
            OrderStatus::Processing if order.ready_at.is_none_or(|t| Instant::now() >= t) => {
                OrderStatus::Valid
            }
            other => other,
        };
        let order = &mut state.orders[id];
        if status == OrderStatus::Invalid && order.error.is_none() {
            let mut p = Problem::new(
                ProblemType::Unauthorized,
                "an authorization of this order failed",
            );
            p.status = Some(403);
            order.error = Some(p);
        }
        order.status = status;
    }

    fn order_resource(&self, state: &State, id: usize) -> OrderResource {
        let o = &state.orders[id];
        OrderResource {
            status: o.status,
            expires: Some(o.expires),
            identifiers: o.identifiers.clone(),
            not_before: o.not_before,
            not_after: o.not_after,
            error: o.error.clone(),
            authorizations: o.authzs.iter().map(|a| self.authz_url(*a)).collect(),
            finalize: format!("{}/finalize", self.order_url(id)),
            certificate: match (o.status, o.cert) {
                (OrderStatus::Valid, Some(c)) => Some(self.cert_url(c)),
                _ => None,
            },
            extra: Default::default(),
        }
    }

    fn owned_order(&self, state: &State, id: usize, acct: usize) -> Result<(), Rejection> {
        match state.orders.get(id) {
            None => Err(Rejection::new(
                ProblemType::Malformed,
                404,
                "No order for ID",
            )),
            Some(o) if o.account != acct => {
                Err(Rejection::unauthorized("Account does not own this order"))
            }
            Some(_) => Ok(()),
        }
    }

    fn order(&self, id: usize, acct: usize) -> Answer {
        let mut state = self.state();
        self.owned_order(&state, id, acct)?;
        Self::refresh_order(&mut state, id);
        let body = self.order_resource(&state, id);
        let pending = matches!(body.status, OrderStatus::Pending | OrderStatus::Processing);
        drop(state);
        Ok(self.with_retry_after(
            self.json_response(StatusCode::OK, &body, Some(&self.order_url(id))),
            pending,
        ))
    }

    /// CAA as configured for `name` (the closest configured ancestor wins).
    fn caa_policy(config: &Config, name: &str) -> CaaPolicy {
        let mut candidate = name.trim_start_matches("*.");
        loop {
            if let Some(p) = config.caa.get(candidate) {
                return *p;
            }
            match candidate.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => candidate = parent,
                _ => return CaaPolicy::Allow,
            }
        }
    }

    /// The finalize-time CAA recheck, worded as Boulder words it.
    fn recheck_caa(
        &self,
        state: &mut State,
        ids: &[Identifier],
        config: &Config,
    ) -> Result<(), Box<Problem>> {
        let mut failures = Vec::new();
        for id in ids.iter().filter(|i| i.kind == "dns") {
            let name = id.base_name();
            let detail = match Self::caa_policy(config, name) {
                CaaPolicy::Allow => continue,
                CaaPolicy::Forbid => format!(
                    "While processing CAA for {name}: CAA record for {name} prevents issuance"
                ),
                CaaPolicy::Timeout => format!(
                    "While processing CAA for {name}: DNS problem: query timed out looking up CAA for {name}"
                ),
                CaaPolicy::TimeoutTimes(n) => {
                    let seen = state.caa_timeouts_seen.entry(name.to_owned()).or_default();
                    if *seen >= n {
                        continue;
                    }
                    *seen += 1;
                    format!(
                        "While processing CAA for {name}: DNS problem: query timed out looking up CAA for {name}"
                    )
                }
            };
            let mut sub = Problem::new(ProblemType::Caa, detail);
            sub.identifier = Some(id.clone());
            sub.status = Some(403);
            failures.push(sub);
        }
        match failures.len() {
            0 => Ok(()),
            1 => {
                let sub = failures.remove(0);
                let mut p = Problem::new(
                    ProblemType::Caa,
                    format!(
                        "Error finalizing order :: rechecking caa: {}",
                        sub.detail.clone().unwrap_or_default()
                    ),
                );
                p.status = Some(403);
                p.subproblems = vec![sub];
                Err(Box::new(p))
            }
            n => {
                let first = failures[0]
                    .identifier
                    .as_ref()
                    .map(|i| i.value.clone())
                    .unwrap_or_default();
                let mut p = Problem::new(
                    ProblemType::Caa,
                    format!(
                        "Error finalizing order :: Rechecking CAA for {first:?} and {} more identifiers failed. Refer to sub-problems for more information",
                        n - 1
                    ),
                );
                p.status = Some(403);
                p.subproblems = failures;
                Err(Box::new(p))
            }
        }
    }

    fn finalize(&self, id: usize, acct: usize, parsed: &jws::Parsed, config: &Config) -> Answer {
        let csr_b64 = parsed
            .payload
            .as_ref()
            .and_then(|p| p.get("csr"))
            .and_then(Value::as_str)
            .ok_or_else(|| Rejection::malformed("finalize needs a csr"))?;
        let mut state = self.state();
        self.owned_order(&state, id, acct)?;
        Self::refresh_order(&mut state, id);
        let status = state.orders[id].status;
        if status != OrderStatus::Ready {
            return Err(Rejection::new(
                ProblemType::OrderNotReady,
                403,
                format!(
                    "Order's status ({:?}) is not acceptable for finalization",
                    status.as_str()
                ),
            ));
        }
        let bad_csr = |d: String| Rejection::new(ProblemType::BadCsr, 400, d);
        let der = b64_decode(csr_b64).ok_or_else(|| bad_csr("CSR is not base64url".into()))?;
        let csr = pki::parse_csr(&der)
            .map_err(|e| bad_csr(format!("Error parsing certificate request: {e}")))?;
        let ids = state.orders[id].identifiers.clone();
        if csr.identifiers != ids {
            return Err(bad_csr(
                "CSR does not specify same identifiers as Order".into(),
            ));
        }
        Self::check_csr_key(&csr.key).map_err(bad_csr)?;
        if state
            .accounts
            .iter()
            .any(|a| a.key.matches_spki(&csr.public_key_der))
        {
            return Err(bad_csr(
                "CSR contains a public key for a known account".into(),
            ));
        }
        if let Err(problem) = self.recheck_caa(&mut state, &ids, config) {
            drop(state);
            return Ok(self.problem_doc_response(403, &problem));
        }
        let now = Instant::now();
        let nb = state.orders[id].not_before.unwrap_or_else(now_utc);
        let na = state.orders[id].not_after;
        let cert_id = self.issue_certificate(&mut state, acct, Some(id), &csr, nb, na, config)?;
        let order = &mut state.orders[id];
        order.cert = Some(cert_id);
        if config.finalize_processing.is_zero() {
            order.status = OrderStatus::Valid;
        } else {
            order.status = OrderStatus::Processing;
            order.ready_at = Some(now + config.finalize_processing);
        }
        let body = self.order_resource(&state, id);
        let processing = body.status == OrderStatus::Processing;
        drop(state);
        Ok(self.with_retry_after(
            self.json_response(StatusCode::OK, &body, Some(&self.order_url(id))),
            processing,
        ))
    }

    /// The CSR key policy: ECDSA P-256/P-384 or RSA 2048..=8192 bits.
    fn check_csr_key(key: &KeyKind) -> Result<(), String> {
        match key {
            KeyKind::EcdsaP256 | KeyKind::EcdsaP384 => Ok(()),
            KeyKind::Rsa { bits } if (2048..=8192).contains(bits) => Ok(()),
            KeyKind::Rsa { bits } => Err(format!("key too small or too large: {bits} bits")),
            KeyKind::Ed25519 | KeyKind::Other(_) => {
                Err("key type not supported (ECDSA P-256/P-384 or RSA)".into())
            }
        }
    }

    /// `not_before` plus the configured certificate lifetime, if that is a
    /// date `time` can represent.
    fn default_not_after(not_before: OffsetDateTime, config: &Config) -> Option<OffsetDateTime> {
        let lifetime = time::Duration::try_from(config.certificate_lifetime)
            .unwrap_or(time::Duration::days(90));
        not_before.checked_add(lifetime)
    }

    /// Issues a certificate for the CSR's identifiers (valid from
    /// `not_before` to `not_after`, default: the configured lifetime),
    /// spends the certificate rate limits and records it; returns its index.
    #[allow(
        clippy::too_many_arguments,
        reason = "one issuance path for v2 finalize and v1 new-cert"
    )]
    fn issue_certificate(
        &self,
        state: &mut State,
        acct: usize,
        order: Option<usize>,
        csr: &pki::CsrInfo,
        not_before: OffsetDateTime,
        not_after: Option<OffsetDateTime>,
        config: &Config,
    ) -> Result<usize, Rejection> {
        let now = Instant::now();
        let ids = csr.identifiers.clone();
        let na = match not_after {
            Some(na) => na,
            None => Self::default_not_after(not_before, config)
                .ok_or_else(|| Rejection::malformed("notBefore is too far in the future"))?,
        };
        let issued = self.pki.issue(csr, not_before, na).map_err(|e| {
            Rejection::new(
                ProblemType::ServerInternal,
                500,
                format!("issuance failed: {e}"),
            )
        })?;
        if let Some(l) = &config.rate_limits.duplicate_certificates {
            state
                .buckets
                .spend(&format!("fqdnset:{}", Self::set_key(&ids)), l, now);
        }
        if let Some(l) = &config.rate_limits.certificates_per_domain {
            let domains: HashSet<String> =
                ids.iter().map(|i| registered_domain(&i.value)).collect();
            for d in domains {
                state.buckets.spend(&format!("domain:{d}"), l, now);
            }
        }
        let cert_id = state.certs.len();
        state.certs.push(CertRec {
            account: acct,
            order,
            identifiers: ids,
            serial: issued.serial_hex.clone(),
            spki: csr.public_key_der.clone(),
            leaf_der: issued.leaf_der,
            chain_pem: issued.chain_pem,
            alternate_chain_pem: issued.alternate_chain_pem,
            issued_at: SystemTime::now(),
            revoked: None,
        });
        tracing::info!(?order, serial = %issued.serial_hex, "test CA issued a certificate");
        Ok(cert_id)
    }

    fn authz_resource(&self, state: &State, id: usize) -> AuthorizationResource {
        let a = &state.authzs[id];
        AuthorizationResource {
            identifier: a.identifier.clone(),
            status: a.status,
            expires: Some(a.expires),
            challenges: (0..a.challenges.len())
                .map(|c| self.challenge_resource(state, id, c))
                .collect(),
            wildcard: a.wildcard,
            extra: Default::default(),
        }
    }

    fn challenge_resource(&self, state: &State, authz: usize, c: usize) -> ChallengeResource {
        let ch = &state.authzs[authz].challenges[c];
        ChallengeResource {
            kind: ch.kind.clone(),
            url: self.url(&format!("/acme/chall/{authz}/{c}")),
            status: ch.status,
            token: Some(ch.token.clone()),
            validated: ch.validated,
            error: ch.error.clone(),
            extra: Default::default(),
        }
    }

    fn owned_authz(&self, state: &State, id: usize, acct: usize) -> Result<(), Rejection> {
        match state.authzs.get(id) {
            None => Err(Rejection::new(
                ProblemType::Malformed,
                404,
                "No such authorization",
            )),
            Some(a) if a.account != acct => Err(Rejection::unauthorized(
                "Account does not own this authorization",
            )),
            Some(_) => Ok(()),
        }
    }

    fn authz(&self, id: usize, acct: usize, parsed: &jws::Parsed) -> Answer {
        let mut state = self.state();
        self.owned_authz(&state, id, acct)?;
        if let Some(payload) = &parsed.payload {
            if payload.get("status").and_then(Value::as_str) != Some("deactivated") {
                return Err(Rejection::malformed("only deactivation is allowed"));
            }
            let authz = &mut state.authzs[id];
            if !matches!(
                authz.status,
                AuthorizationStatus::Pending | AuthorizationStatus::Valid
            ) {
                return Err(Rejection::malformed(
                    "authorization is not pending or valid",
                ));
            }
            authz.status = AuthorizationStatus::Deactivated;
        }
        let body = self.authz_resource(&state, id);
        let pending = body.status == AuthorizationStatus::Pending;
        drop(state);
        Ok(self.with_retry_after(
            self.json_response(StatusCode::OK, &body, Some(&self.authz_url(id))),
            pending,
        ))
    }

    async fn challenge(
        self: &Arc<Self>,
        authz: usize,
        c: usize,
        acct: usize,
        parsed: &jws::Parsed,
        config: &Config,
    ) -> Answer {
        {
            let state = self.state();
            self.owned_authz(&state, authz, acct)?;
            if c >= state.authzs[authz].challenges.len() {
                return Err(Rejection::new(
                    ProblemType::Malformed,
                    404,
                    "No such challenge",
                ));
            }
        }
        if parsed.payload.is_some() {
            self.answer_challenge(authz, c, config)?;
        }
        let state = self.state();
        let body = self.challenge_resource(&state, authz, c);
        let url = self.authz_url(authz);
        drop(state);
        let mut response = self.json_response(StatusCode::OK, &body, None);
        response
            .headers
            .append("link", header(&format!("<{url}>;rel=\"up\"")));
        Ok(response)
    }

    /// The client answered challenge `c` of (existing) authorization
    /// `authz`: the first challenge answered of a pending authorization
    /// starts its validation (at once, or in a task).
    fn answer_challenge(
        self: &Arc<Self>,
        authz: usize,
        c: usize,
        config: &Config,
    ) -> Result<(), Rejection> {
        let job = {
            let mut state = self.state();
            let acct = state.authzs[authz].account;
            let thumbprint = state.accounts[acct].key.thumbprint.clone();
            let a = &mut state.authzs[authz];
            if a.status != AuthorizationStatus::Pending
                && a.challenges[c].status == ChallengeStatus::Pending
            {
                return Err(Rejection::malformed(format!(
                    "Unable to update challenge :: authorization must be pending, is {}",
                    a.status.as_str()
                )));
            }
            let mut job = None;
            if a.challenges[c].status == ChallengeStatus::Pending
                && a.challenges
                    .iter()
                    .all(|ch| ch.status == ChallengeStatus::Pending)
            {
                a.challenges[c].status = ChallengeStatus::Processing;
                let key_authorization = format!("{}.{thumbprint}", a.challenges[c].token);
                let identifier = if a.wildcard {
                    Identifier {
                        kind: a.identifier.kind.clone(),
                        value: format!("*.{}", a.identifier.value),
                    }
                } else {
                    a.identifier.clone()
                };
                job = Some((
                    a.challenges[c].kind.clone(),
                    identifier,
                    a.challenges[c].token.clone(),
                    key_authorization,
                ));
            }
            job
        };
        if let Some((kind, identifier, token, key_authorization)) = job {
            match &config.validation {
                ValidationMode::AlwaysValid if config.validation_delay.is_zero() => {
                    self.record_validation(authz, c, Ok(()), config);
                }
                mode => {
                    let ca = Arc::clone(self);
                    let mode = mode.clone();
                    let delay = config.validation_delay;
                    let config = config.clone();
                    tokio::spawn(async move {
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let result =
                            validate(&mode, &kind, &identifier, &token, &key_authorization).await;
                        ca.record_validation(authz, c, result, &config);
                    });
                }
            }
        }
        Ok(())
    }

    fn record_validation(
        &self,
        authz: usize,
        c: usize,
        result: Result<(), Problem>,
        config: &Config,
    ) {
        let mut state = self.state();
        let now = now_utc();
        let acct = state.authzs[authz].account;
        let value = state.authzs[authz].identifier.value.clone();
        let a = &mut state.authzs[authz];
        if a.status != AuthorizationStatus::Pending {
            return;
        }
        match result {
            Ok(()) => {
                a.challenges[c].status = ChallengeStatus::Valid;
                a.challenges[c].validated = Some(now);
                a.status = AuthorizationStatus::Valid;
                a.expires = now + time::Duration::days(30);
            }
            Err(mut problem) => {
                problem.status = Some(400);
                tracing::info!(identifier = %value, %problem, "test CA: validation failed");
                a.challenges[c].status = ChallengeStatus::Invalid;
                a.challenges[c].error = Some(problem);
                a.status = AuthorizationStatus::Invalid;
                if let Some(l) = &config.rate_limits.failed_authorizations {
                    state
                        .buckets
                        .spend(&format!("authzfail:{acct}:{value}"), l, Instant::now());
                }
            }
        }
    }

    fn certificate(&self, id: usize, alt: bool, acct: usize, parsed: &jws::Parsed) -> Answer {
        if parsed.payload.is_some() {
            return Err(Rejection::malformed("certificate download is POST-as-GET"));
        }
        let state = self.state();
        let cert = state
            .certs
            .get(id)
            .ok_or_else(|| Rejection::new(ProblemType::Malformed, 404, "Certificate not found"))?;
        if cert.account != acct {
            return Err(Rejection::unauthorized(
                "Account does not own this certificate",
            ));
        }
        let body = match (alt, &cert.alternate_chain_pem) {
            (false, _) => cert.chain_pem.clone(),
            (true, Some(alt)) => alt.clone(),
            (true, None) => {
                return Err(Rejection::new(
                    ProblemType::Malformed,
                    404,
                    "No alternate chain",
                ));
            }
        };
        let has_alt = cert.alternate_chain_pem.is_some();
        drop(state);
        let mut response = self.json_response(StatusCode::OK, &Value::Null, None);
        response.headers.insert(
            "content-type",
            HeaderValue::from_static("application/pem-certificate-chain"),
        );
        response.body = Bytes::from(body);
        if has_alt {
            let other = if alt {
                self.cert_url(id)
            } else {
                format!("{}/alt", self.cert_url(id))
            };
            response
                .headers
                .append("link", header(&format!("<{other}>;rel=\"alternate\"")));
        }
        Ok(response)
    }

    fn revoke(&self, parsed: &jws::Parsed, acct: Option<usize>) -> Answer {
        let payload = parsed
            .payload
            .as_ref()
            .ok_or_else(|| Rejection::malformed("revokeCert needs a payload"))?;
        let der = payload
            .get("certificate")
            .and_then(Value::as_str)
            .and_then(b64_decode)
            .ok_or_else(|| Rejection::malformed("revokeCert needs a base64url certificate"))?;
        let reason = match payload.get("reason") {
            None => 0,
            Some(r) => r
                .as_u64()
                .filter(|r| [0, 1, 3, 4, 5].contains(r))
                .ok_or_else(|| {
                    Rejection::new(
                        ProblemType::BadRevocationReason,
                        400,
                        "unsupported revocation reason code provided (0, 1, 3, 4, 5 are allowed)",
                    )
                })? as u8,
        };
        let mut state = self.state();
        let index = state
            .certs
            .iter()
            .position(|c| c.leaf_der == der)
            .ok_or_else(|| {
                Rejection::new(
                    ProblemType::Malformed,
                    404,
                    "Unable to find specified certificate",
                )
            })?;
        let allowed = match (&parsed.signer, acct) {
            (_, Some(a)) => state.certs[index].account == a,
            (Signer::Jwk(key), None) => key.matches_spki(&state.certs[index].spki),
            _ => false,
        };
        if !allowed {
            return Err(Rejection::unauthorized(
                "The key used to sign the request is not authorized to revoke this certificate",
            ));
        }
        if state.certs[index].revoked.is_some() {
            return Err(Rejection::new(
                ProblemType::AlreadyRevoked,
                400,
                "Certificate already revoked",
            ));
        }
        state.certs[index].revoked = Some(reason);
        drop(state);
        let mut response = self.json_response(StatusCode::OK, &Value::Null, None);
        response.body = Bytes::new();
        response.headers.remove("content-type");
        Ok(response)
    }
}

async fn validate(
    mode: &ValidationMode,
    kind: &ChallengeType,
    identifier: &Identifier,
    token: &str,
    key_authorization: &str,
) -> Result<(), Problem> {
    let ValidationMode::Real {
        http_port,
        tls_port,
        dns,
    } = mode
    else {
        return Ok(());
    };
    let connect_ip = match identifier.ip_addr() {
        Some(ip) if ip.is_loopback() => ip,
        Some(ip) => {
            return Err(Problem::new(
                ProblemType::Connection,
                format!("the test CA only validates loopback addresses, not {ip}"),
            ));
        }
        None => IpAddr::from([127, 0, 0, 1]),
    };
    let timeout = Duration::from_secs(10);
    match kind {
        ChallengeType::Http01 => {
            validation::validate_http01(
                connect_ip,
                *http_port,
                identifier,
                token,
                key_authorization,
                timeout,
            )
            .await
        }
        ChallengeType::TlsAlpn01 => {
            validation::validate_tls_alpn01(
                connect_ip,
                *tls_port,
                identifier,
                key_authorization,
                timeout,
            )
            .await
        }
        ChallengeType::Dns01 => {
            validation::validate_dns01(dns.as_ref(), identifier, key_authorization)
        }
        other => Err(Problem::new(
            ProblemType::Malformed,
            format!("challenge type {other} is not supported"),
        )),
    }
}
