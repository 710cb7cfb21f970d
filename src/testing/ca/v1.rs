//! ACME v1 for the embedded test CA ([`Dialect::V1`]): Boulder's `acme-v01`
//! API as its WFE v1 served it (2020-03 state; where the old ACME drafts
//! disagree with Boulder, Boulder wins), including what certbot 1.x needs.
//!
//! This is a child of `ca`: it works on the
//! same state (registrations are the v2 accounts, plus what they agreed to;
//! authorizations; certificates; nonces; rate-limit buckets; the request
//! ledger) and reuses the same JWS verification, challenge validation, CAA
//! recheck, issuance and fault script. Only the wire format is its own.
//!
//! Routes (opaque to clients) and the [`Endpoint`] each one counts as, for the
//! fault script and [`Ledger::requests`](crate::testing::Ledger::requests):
//!
//! | route | methods | `resource` | `Endpoint` |
//! |---|---|---|---|
//! | `/directory` | GET | – | `Directory` |
//! | `/acme/new-reg` | POST | `new-reg` | `NewAccount` |
//! | `/acme/reg/N` | POST | `reg` | `Account` |
//! | `/acme/new-authz` | POST | `new-authz` | `NewOrder` |
//! | `/acme/authz/N` | GET, POST (deactivate) | `authz` | `Authorization` |
//! | `/acme/challenge/N/C` | GET, POST | `challenge` | `Challenge` |
//! | `/acme/new-cert` | POST | `new-cert` | `Finalize` |
//! | `/acme/cert/SERIAL` | GET | – | `Certificate` |
//! | `/acme/issuer-cert` | GET | – | `Certificate` |
//! | `/acme/revoke-cert` | POST | `revoke-cert` | `Revoke` |
//! | `/acme/key-change` | POST | `key-change` | `KeyChange` |
//! | `/terms` | GET | – | `Other` |
//! | anything else | any | – | `Other` |
//! | any URL | HEAD | – | `NewNonce` |
//!
//! new-authz counts as `NewOrder` and new-cert as `Finalize` because they
//! play those parts: a fault rule "drop the 1st finalize after committing"
//! drops the 1st new-cert response with the certificate issued.
//!
//! Where this server knowingly differs from Boulder:
//!
//! * A `kid` in the protected header is refused (`malformed`), even next to
//!   a `jwk`: Boulder "does not support the kid field"; whether it ignored
//!   one next to a `jwk` is not documented, and a v1 client has no reason to
//!   send one. The algorithm is checked while parsing, before the
//!   registration lookup (Boulder: after). ES512 / P-521 keys are not
//!   supported (`badPublicKey`).
//! * `Retry-After` on a pending authorization when the builder's
//!   `poll_retry_after` is set (Boulder v1 never sent it; unset by default).
//!   The fault script's `RateLimited` 429 carries its `Retry-After`; the
//!   CA's own 429s do not, as in v1.
//! * CAA is rechecked at every new-cert (Boulder: only for authorizations
//!   validated more than 8 hours before), so [`CaaPolicy`] applies as in v2.
//! * Rate limits: duplicate certificates and certificates per domain at
//!   new-cert, failed authorizations at new-authz; new orders per account
//!   has no v1 counterpart and is not applied. No external account binding.
//! * An existing pending authorization is handed back only when
//!   `reuse_pending_orders` is on, a valid one (expiring more than 24 h
//!   out) only when `reuse_valid_authorizations` is on (both default on).
//! * Unknown paths get a v1 problem (404, with a nonce); Boulder's mux
//!   answered a plain-text 404. Challenges carry no `validationRecord`.
//!
//! [`Dialect::V1`]: crate::testing::Dialect::V1
//! [`CaaPolicy`]: crate::testing::CaaPolicy

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use ring::rand::SecureRandom;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

use super::{
    AccountRec, Answer, AuthzRec, Ca, Config, JSON, MAX_IDENTIFIERS, PROBLEM_JSON, State, header,
    now_utc,
};
use crate::crypto::{b64, b64_decode, thumbprint_of_jwk};
use crate::error::{Problem, ProblemType};
use crate::protocol::{
    AccountStatus, AuthorizationStatus, ChallengeStatus, ChallengeType, Identifier,
};
use crate::testing::faults::Fault;
use crate::testing::jws::{self, PublicJwk, Rejection, Signer};
use crate::testing::limits::{RateLimits, registered_domain};
use crate::testing::pki;
use crate::testing::wire::{Reply, WireRequest, WireResponse};
use crate::transport::Endpoint;

const PKIX_CERT: &str = "application/pkix-cert";
const V1_ERROR_NS: &str = "urn:acme:error:";
const RANDOM_ENTRY_EXPLANATION: &str =
    "https://community.letsencrypt.org/t/adding-random-entries-to-the-directory/33417";
const MUST_AGREE: &str = "Must agree to subscriber agreement before any further actions";

/// What only v1 keeps about a registration.
#[derive(Debug, Default)]
pub(super) struct V1State {
    /// The agreement URL each registration agreed to.
    agreements: HashMap<usize, String>,
    /// When each registration was created.
    created: HashMap<usize, OffsetDateTime>,
}

/// A v1 request's route.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Directory,
    Terms,
    NewReg,
    Reg(usize),
    NewAuthz,
    Authz(usize),
    Challenge(usize, usize),
    NewCert,
    Cert(String),
    IssuerCert,
    Revoke,
    KeyChange,
    NotFound,
}

impl Route {
    fn parse(path: &str) -> Self {
        let path = path.split('?').next().unwrap_or("");
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let id = |s: &str| s.parse::<usize>().ok();
        match parts.as_slice() {
            ["directory"] => Self::Directory,
            ["terms"] => Self::Terms,
            ["acme", "new-reg"] => Self::NewReg,
            ["acme", "reg", r] => id(r).map_or(Self::NotFound, Self::Reg),
            ["acme", "new-authz"] => Self::NewAuthz,
            ["acme", "authz", a] => id(a).map_or(Self::NotFound, Self::Authz),
            ["acme", "challenge", a, c] => match (id(a), id(c)) {
                (Some(a), Some(c)) => Self::Challenge(a, c),
                _ => Self::NotFound,
            },
            ["acme", "new-cert"] => Self::NewCert,
            ["acme", "cert", serial] => Self::Cert((*serial).to_owned()),
            ["acme", "issuer-cert"] => Self::IssuerCert,
            ["acme", "revoke-cert"] => Self::Revoke,
            ["acme", "key-change"] => Self::KeyChange,
            _ => Self::NotFound,
        }
    }

    fn endpoint(&self) -> Endpoint {
        match self {
            Self::Directory => Endpoint::Directory,
            Self::NewReg => Endpoint::NewAccount,
            Self::Reg(_) => Endpoint::Account,
            Self::NewAuthz => Endpoint::NewOrder,
            Self::Authz(_) => Endpoint::Authorization,
            Self::Challenge(..) => Endpoint::Challenge,
            Self::NewCert => Endpoint::Finalize,
            Self::Cert(_) | Self::IssuerCert => Endpoint::Certificate,
            Self::Revoke => Endpoint::Revoke,
            Self::KeyChange => Endpoint::KeyChange,
            Self::Terms | Self::NotFound => Endpoint::Other,
        }
    }

    /// The `resource` a POST here must carry (`None`: no POST here).
    fn resource(&self) -> Option<&'static str> {
        match self {
            Self::NewReg => Some("new-reg"),
            Self::Reg(_) => Some("reg"),
            Self::NewAuthz => Some("new-authz"),
            Self::Authz(_) => Some("authz"),
            Self::Challenge(..) => Some("challenge"),
            Self::NewCert => Some("new-cert"),
            Self::Revoke => Some("revoke-cert"),
            Self::KeyChange => Some("key-change"),
            _ => None,
        }
    }

    fn gettable(&self) -> bool {
        matches!(
            self,
            Self::Directory
                | Self::Terms
                | Self::Authz(_)
                | Self::Challenge(..)
                | Self::Cert(_)
                | Self::IssuerCert
        )
    }

    /// The `Allow` header of a 405 here.
    fn allow(&self) -> &'static str {
        match (self.gettable(), self.resource().is_some()) {
            (true, true) => "GET, HEAD, POST",
            (true, false) => "GET, HEAD",
            _ => "POST",
        }
    }
}

/// The endpoint a v1 request counts as (every `HEAD` is a nonce request).
pub(super) fn endpoint(req: &WireRequest) -> Endpoint {
    if req.method == Method::HEAD {
        Endpoint::NewNonce
    } else {
        Route::parse(&req.path).endpoint()
    }
}

/// A problem type as Boulder's v1 API spelled it.
fn v1_type(kind: &ProblemType) -> String {
    let name = match kind {
        ProblemType::Other(verbatim) => return verbatim.clone(),
        ProblemType::InvalidContact | ProblemType::UnsupportedContact => "invalidEmail",
        ProblemType::IncorrectResponse | ProblemType::AccountDoesNotExist => "unauthorized",
        ProblemType::Malformed
        | ProblemType::Unauthorized
        | ProblemType::ServerInternal
        | ProblemType::BadNonce
        | ProblemType::RateLimited
        | ProblemType::Connection
        | ProblemType::Tls
        | ProblemType::Dns
        | ProblemType::Caa
        | ProblemType::RejectedIdentifier
        | ProblemType::BadCsr
        | ProblemType::BadPublicKey
        | ProblemType::BadSignatureAlgorithm
        | ProblemType::BadRevocationReason
        | ProblemType::AlreadyRevoked => kind.short_name().unwrap_or("malformed"),
        // v2-only types (compound, conflict, orderNotReady, ...).
        _ => "malformed",
    };
    format!("{V1_ERROR_NS}{name}")
}

/// A problem document (or a challenge's `error`) in v1's namespace.
fn problem_json(p: &Problem) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!(v1_type(&p.kind)));
    if let Some(detail) = &p.detail {
        m.insert("detail".into(), json!(detail));
    }
    if let Some(status) = p.status {
        m.insert("status".into(), json!(status));
    }
    if let Some(identifier) = &p.identifier {
        m.insert("identifier".into(), json!(identifier));
    }
    if !p.subproblems.is_empty() {
        let subs: Vec<Value> = p.subproblems.iter().map(problem_json).collect();
        m.insert("subproblems".into(), Value::Array(subs));
    }
    Value::Object(m)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn account_status(status: AccountStatus) -> &'static str {
    match status {
        AccountStatus::Valid => "valid",
        AccountStatus::Deactivated => "deactivated",
        AccountStatus::Revoked => "revoked",
    }
}

fn expired(a: &AuthzRec) -> bool {
    a.expires < now_utc()
}

/// Prefixes a rejection's detail, as Boulder's RA errors were
/// ("Error creating new authz :: ...").
fn prefixed(prefix: &str, mut r: Rejection) -> Rejection {
    r.detail = format!("{prefix}{}", r.detail);
    r
}

impl Ca {
    pub(super) fn v1_reg_url(&self, id: usize) -> String {
        self.url(&format!("/acme/reg/{id}"))
    }

    /// A certificate's URL: its serial, zero-padded to 32 hex digits.
    pub(super) fn v1_cert_url(&self, serial: &str) -> String {
        self.url(&format!("/acme/cert/{serial:0>32}"))
    }

    fn v1_authz_url(&self, id: usize) -> String {
        self.url(&format!("/acme/authz/{id}"))
    }

    fn v1_challenge_url(&self, authz: usize, c: usize) -> String {
        self.url(&format!("/acme/challenge/{authz}/{c}"))
    }

    fn v1_terms_url(&self) -> String {
        self.url("/terms")
    }

    /// A response with a fresh `Replay-Nonce`, as every v1 response has.
    fn v1_response(
        &self,
        status: StatusCode,
        content_type: Option<&'static str>,
        body: Vec<u8>,
    ) -> WireResponse {
        let nonce = {
            let mut state = self.state();
            self.fresh_nonce(&mut state)
        };
        let mut headers = HeaderMap::new();
        if let Some(content_type) = content_type {
            headers.insert("content-type", HeaderValue::from_static(content_type));
        }
        headers.insert("replay-nonce", header(&nonce));
        WireResponse {
            status,
            headers,
            body: Bytes::from(body),
        }
    }

    fn v1_json(&self, status: StatusCode, body: &Value) -> WireResponse {
        let bytes = serde_json::to_vec(body).expect("JSON serializes");
        self.v1_response(status, Some(JSON), bytes)
    }

    fn v1_problem_doc(&self, status: u16, problem: &Problem) -> WireResponse {
        let bytes = serde_json::to_vec(&problem_json(problem)).expect("problem serializes");
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        self.v1_response(status, Some(PROBLEM_JSON), bytes)
    }

    fn v1_problem(&self, r: &Rejection) -> WireResponse {
        let mut problem = Problem::new(r.kind.clone(), r.detail.clone());
        problem.status = Some(r.status);
        self.v1_problem_doc(r.status, &problem)
    }

    fn v1_with_link(mut response: WireResponse, url: &str, rel: &str) -> WireResponse {
        response
            .headers
            .append("link", header(&format!("<{url}>;rel=\"{rel}\"")));
        response
    }

    /// A fault that replaces the answer, worded in v1 where it is a problem.
    pub(super) fn v1_pre_commit_fault(&self, fault: &Fault) -> Reply {
        match fault {
            Fault::BadNonce => Reply::Normal(self.v1_problem(&Rejection::new(
                ProblemType::BadNonce,
                400,
                "JWS has invalid anti-replay nonce",
            ))),
            Fault::RateLimited { retry_after_secs } => {
                let mut response = self.v1_problem(&Rejection::new(
                    ProblemType::RateLimited,
                    429,
                    "too many requests (fault script)",
                ));
                response
                    .headers
                    .insert("retry-after", header(&retry_after_secs.to_string()));
                Reply::Normal(response)
            }
            other => self.pre_commit_fault(other),
        }
    }

    /// Answers a v1 request. Every response carries a `Replay-Nonce`; `HEAD`
    /// is answered like `GET` where `GET` is allowed (without the body), and
    /// with a 405 (and a nonce) elsewhere, as Boulder did.
    pub(super) async fn v1_route(self: &Arc<Self>, req: &WireRequest) -> WireResponse {
        let route = Route::parse(&req.path);
        let method = if req.method == Method::HEAD {
            Method::GET
        } else {
            req.method.clone()
        };
        let answer = match (&route, &method) {
            (Route::NotFound, _) => Err(Rejection::new(
                ProblemType::Malformed,
                404,
                "Resource not found",
            )),
            (Route::Directory, &Method::GET) => Ok(self.v1_directory(req)),
            (Route::Terms, &Method::GET) => Ok(self.v1_response(
                StatusCode::OK,
                Some("text/plain"),
                b"sturdy-acme test CA: no terms, no guarantees.\n".to_vec(),
            )),
            (Route::Authz(id), &Method::GET) => self.v1_authz_get(*id),
            (Route::Challenge(a, c), &Method::GET) => self.v1_challenge_get(*a, *c),
            (Route::Cert(serial), &Method::GET) => self.v1_certificate(serial),
            (Route::IssuerCert, &Method::GET) => {
                Ok(self.v1_response(StatusCode::OK, Some(PKIX_CERT), self.pki.intermediate_der()))
            }
            (route, &Method::POST) if route.resource().is_some() => self.v1_post(route, req).await,
            (route, _) => {
                let mut response = self.v1_problem(&Rejection::new(
                    ProblemType::Malformed,
                    405,
                    "Method not allowed",
                ));
                response
                    .headers
                    .insert("allow", HeaderValue::from_static(route.allow()));
                Ok(response)
            }
        };
        let mut response = answer.unwrap_or_else(|r| self.v1_problem(&r));
        if !response.headers.contains_key("replay-nonce") {
            let nonce = {
                let mut state = self.state();
                self.fresh_nonce(&mut state)
            };
            response.headers.insert("replay-nonce", header(&nonce));
        }
        if req.method == Method::HEAD {
            response.body = Bytes::new();
        }
        response
    }

    fn v1_directory(&self, req: &WireRequest) -> WireResponse {
        // Pre-0.6 certbot choked on unknown keys; Boulder left them out for it.
        let legacy = req
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ua| ua.starts_with("LetsEncryptPythonClient"));
        let mut dir = Map::new();
        for (key, path) in [
            ("new-reg", "/acme/new-reg"),
            ("new-authz", "/acme/new-authz"),
            ("new-cert", "/acme/new-cert"),
            ("revoke-cert", "/acme/revoke-cert"),
        ] {
            dir.insert(key.into(), json!(self.url(path)));
        }
        if !legacy {
            dir.insert("key-change".into(), json!(self.url("/acme/key-change")));
            let mut random = [0u8; 6];
            self.rng.fill(&mut random).expect("system RNG");
            dir.insert(b64(random), json!(RANDOM_ENTRY_EXPLANATION));
            dir.insert(
                "meta".into(),
                json!({
                    "terms-of-service": self.v1_terms_url(),
                    "caaIdentities": ["sturdy-acme.test"],
                    "website": "https://github.com/sturdy-acme",
                }),
            );
        }
        let mut response = self.v1_json(StatusCode::OK, &Value::Object(dir));
        response.headers.insert(
            "cache-control",
            HeaderValue::from_static("public, max-age=0, no-cache"),
        );
        response
    }

    /// Boulder's `verifyPOST`, in its order: Content-Length, body, JWS,
    /// `jwk`, registration (where one is needed) and its status, signature,
    /// nonce, JSON payload, `resource`; then the route.
    async fn v1_post(self: &Arc<Self>, route: &Route, req: &WireRequest) -> Answer {
        if !req.headers.contains_key("content-length") {
            return Err(Rejection::new(
                ProblemType::Malformed,
                411,
                "missing Content-Length header on POST",
            ));
        }
        if req.body.is_empty() {
            return Err(Rejection::malformed("No body on POST"));
        }
        let parsed = jws::parse_v1(&req.body)?;
        let Signer::Jwk(key) = &parsed.signer else {
            return Err(Rejection::malformed("No JWK in JWS header"));
        };
        let acct = {
            let state = self.state();
            state
                .by_thumbprint
                .get(&key.thumbprint)
                .copied()
                .map(|id| (id, state.accounts[id].status))
        };
        if !matches!(route, Route::NewReg | Route::Revoke) {
            match acct {
                None => {
                    return Err(Rejection::unauthorized(
                        "No registration exists matching provided key",
                    ));
                }
                Some((_, status)) if status != AccountStatus::Valid => {
                    return Err(Rejection::unauthorized(format!(
                        "Registration is not valid, has status '{}'",
                        account_status(status)
                    )));
                }
                Some(_) => {}
            }
        }
        parsed.verify_with(key)?;
        match &parsed.nonce {
            None => {
                return Err(Rejection::new(
                    ProblemType::BadNonce,
                    400,
                    "JWS has no anti-replay nonce",
                ));
            }
            Some(nonce) if !self.state().nonces.remove(nonce) => {
                return Err(Rejection::new(
                    ProblemType::BadNonce,
                    400,
                    format!("JWS has invalid anti-replay nonce {nonce}"),
                ));
            }
            Some(_) => {}
        }
        let payload = parsed
            .payload
            .as_ref()
            .ok_or_else(|| Rejection::malformed("Request payload did not parse as JSON"))?;
        let want = route.resource().unwrap_or_default();
        match payload.get("resource").and_then(Value::as_str) {
            None => {
                return Err(Rejection::malformed(
                    "Request payload does not specify a resource",
                ));
            }
            Some(got) if got != want => {
                return Err(Rejection::malformed(format!(
                    "JWS resource payload does not match the HTTP resource: {got} != {want}"
                )));
            }
            Some(_) => {}
        }
        let config = self.config();
        let acct = acct.map(|(id, _)| id);
        match (route, acct) {
            (Route::NewReg, _) => self.v1_new_reg(key, payload),
            (Route::Revoke, acct) => self.v1_revoke(key, acct, payload),
            (Route::Reg(id), Some(acct)) => self.v1_reg(*id, acct, payload),
            (Route::NewAuthz, Some(acct)) => self.v1_new_authz(acct, payload, &config),
            (Route::Authz(id), Some(acct)) => self.v1_authz_post(*id, acct, payload),
            (Route::Challenge(a, c), Some(acct)) => self.v1_challenge_post(*a, *c, acct, &config),
            (Route::NewCert, Some(acct)) => self.v1_new_cert(acct, payload, &config),
            (Route::KeyChange, Some(acct)) => self.v1_key_change(acct, payload),
            _ => Err(Rejection::unauthorized(
                "No registration exists matching provided key",
            )),
        }
    }

    fn v1_registration(&self, state: &State, id: usize) -> Value {
        let rec = &state.accounts[id];
        let mut m = Map::new();
        m.insert("id".into(), json!(id));
        m.insert("key".into(), rec.key.jwk.clone());
        if !rec.contact.is_empty() {
            m.insert("contact".into(), json!(rec.contact));
        }
        if let Some(agreement) = state.v1.agreements.get(&id) {
            m.insert("agreement".into(), json!(agreement));
        }
        m.insert("initialIp".into(), json!("127.0.0.1"));
        if let Some(created) = state.v1.created.get(&id) {
            m.insert("createdAt".into(), json!(rfc3339(*created)));
        }
        m.insert("status".into(), json!(account_status(rec.status)));
        Value::Object(m)
    }

    /// The links a registration response carries: next (new-authz) and the terms.
    fn v1_registration_links(&self, response: WireResponse) -> WireResponse {
        let response = Self::v1_with_link(response, &self.url("/acme/new-authz"), "next");
        Self::v1_with_link(response, &self.v1_terms_url(), "terms-of-service")
    }

    /// `agreement`, if the payload has one: it must be the current terms.
    fn v1_agreement(&self, payload: &Value) -> Result<Option<String>, Rejection> {
        let terms = self.v1_terms_url();
        match payload.get("agreement") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(a)) if *a == terms => Ok(Some(terms)),
            Some(other) => Err(Rejection::malformed(format!(
                "Provided agreement URL [{}] does not match current agreement URL [{terms}]",
                other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_owned)
            ))),
        }
    }

    fn v1_contacts(payload: &Value) -> Result<Option<Vec<String>>, Rejection> {
        match payload.get("contact") {
            None | Some(Value::Null) => Ok(None),
            Some(contact) => Self::check_contacts(contact).map(Some),
        }
    }

    fn v1_require_agreement(&self, acct: usize, detail: &str) -> Result<(), Rejection> {
        if self.state().v1.agreements.contains_key(&acct) {
            Ok(())
        } else {
            Err(Rejection::unauthorized(detail))
        }
    }

    fn v1_new_reg(&self, key: &PublicJwk, payload: &Value) -> Answer {
        let agreement = self.v1_agreement(payload)?;
        let contact = Self::v1_contacts(payload)?.unwrap_or_default();
        let mut state = self.state();
        if let Some(id) = state.by_thumbprint.get(&key.thumbprint).copied() {
            drop(state);
            let mut response = self.v1_problem(&Rejection::new(
                ProblemType::Malformed,
                409,
                "Registration key is already in use",
            ));
            response
                .headers
                .insert("location", header(&self.v1_reg_url(id)));
            return Ok(response);
        }
        let id = state.accounts.len();
        state.by_thumbprint.insert(key.thumbprint.clone(), id);
        state.accounts.push(AccountRec {
            key: key.clone(),
            status: AccountStatus::Valid,
            contact,
            eab_kid: None,
        });
        state.v1.created.insert(id, now_utc());
        if let Some(agreement) = agreement {
            state.v1.agreements.insert(id, agreement);
        }
        let body = self.v1_registration(&state, id);
        drop(state);
        let mut response = self.v1_json(StatusCode::CREATED, &body);
        response
            .headers
            .insert("location", header(&self.v1_reg_url(id)));
        Ok(self.v1_registration_links(response))
    }

    /// Query, update (contact, agreement) or deactivate a registration.
    fn v1_reg(&self, id: usize, acct: usize, payload: &Value) -> Answer {
        if id != acct {
            return Err(Rejection::unauthorized(
                "Request signing key did not match registration key",
            ));
        }
        let agreement = self
            .v1_agreement(payload)
            .map_err(|r| prefixed("Unable to update registration :: ", r))?;
        let contact = Self::v1_contacts(payload)?;
        let mut state = self.state();
        let current = account_status(state.accounts[id].status);
        match payload.get("status").and_then(Value::as_str) {
            None => {}
            Some(same) if same == current => {}
            Some("deactivated") => {
                Self::deactivate_account(&mut state, id);
                let body = self.v1_registration(&state, id);
                drop(state);
                return Ok(self.v1_json(StatusCode::OK, &body));
            }
            Some(_) => {
                return Err(Rejection::malformed(
                    "Invalid value provided for status field",
                ));
            }
        }
        if let Some(contact) = contact {
            state.accounts[id].contact = contact;
        }
        if let Some(agreement) = agreement {
            state.v1.agreements.insert(id, agreement);
        }
        let body = self.v1_registration(&state, id);
        drop(state);
        Ok(self.v1_registration_links(self.v1_json(StatusCode::ACCEPTED, &body)))
    }

    fn v1_authz_json(&self, state: &State, id: usize) -> Value {
        let a = &state.authzs[id];
        let challenges: Vec<Value> = (0..a.challenges.len())
            .map(|c| self.v1_challenge_json(state, id, c))
            .collect();
        let combinations: Vec<[usize; 1]> = (0..a.challenges.len()).map(|c| [c]).collect();
        json!({
            "identifier": a.identifier,
            "status": a.status.as_str(),
            "expires": rfc3339(a.expires),
            "challenges": challenges,
            "combinations": combinations,
        })
    }

    fn v1_challenge_json(&self, state: &State, authz: usize, c: usize) -> Value {
        let a = &state.authzs[authz];
        let ch = &a.challenges[c];
        let status = match (a.status, ch.status) {
            (AuthorizationStatus::Invalid, _) | (_, ChallengeStatus::Invalid) => "invalid",
            (_, ChallengeStatus::Valid) => "valid",
            // Boulder v1 never showed `processing`.
            (_, ChallengeStatus::Pending | ChallengeStatus::Processing) => "pending",
        };
        let mut m = Map::new();
        m.insert("type".into(), json!(ch.kind.as_str()));
        m.insert("status".into(), json!(status));
        m.insert("uri".into(), json!(self.v1_challenge_url(authz, c)));
        m.insert("token".into(), json!(ch.token));
        if ch.status != ChallengeStatus::Pending {
            let thumbprint = &state.accounts[a.account].key.thumbprint;
            m.insert(
                "keyAuthorization".into(),
                json!(format!("{}.{thumbprint}", ch.token)),
            );
        }
        if let Some(error) = &ch.error {
            m.insert("error".into(), problem_json(error));
        }
        Value::Object(m)
    }

    fn v1_new_authz(&self, acct: usize, payload: &Value, config: &Config) -> Answer {
        self.v1_require_agreement(acct, MUST_AGREE)?;
        const PREFIX: &str = "Error creating new authz :: ";
        let identifier: Identifier = payload
            .get("identifier")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| Rejection::malformed("Error unmarshaling JSON"))?;
        if identifier.kind != "dns" {
            return Err(Rejection::malformed(format!(
                "{PREFIX}Invalid identifier type"
            )));
        }
        if identifier.value.contains('*') {
            return Err(Rejection::malformed(format!(
                "{PREFIX}Wildcard names not supported"
            )));
        }
        let identifier = self
            .check_identifiers(&json!({ "identifiers": [identifier] }), config)
            .map_err(|r| prefixed(PREFIX, r))?
            .remove(0);
        let mut state = self.state();
        if let Some(l) = &config.rate_limits.failed_authorizations
            && state
                .buckets
                .check(
                    &format!("authzfail:{acct}:{}", identifier.value),
                    l,
                    Instant::now(),
                )
                .is_err()
        {
            return Err(Rejection::new(
                ProblemType::RateLimited,
                429,
                format!("{PREFIX}too many failed authorizations recently"),
            ));
        }
        // Boulder's RA: a valid authorization expiring more than a day out,
        // else a pending one, else a new one.
        let utc = now_utc();
        let find = |status: AuthorizationStatus, until: OffsetDateTime| {
            state.authzs.iter().position(|a| {
                a.account == acct
                    && !a.wildcard
                    && a.identifier == identifier
                    && a.status == status
                    && a.expires > until
            })
        };
        let reused = config
            .reuse_valid_authorizations
            .then(|| find(AuthorizationStatus::Valid, utc + time::Duration::days(1)))
            .flatten()
            .or_else(|| {
                config
                    .reuse_pending_orders
                    .then(|| find(AuthorizationStatus::Pending, utc))
                    .flatten()
            });
        let id = match reused {
            Some(id) => id,
            None => {
                let challenges = self.fresh_challenges(&[
                    ChallengeType::Http01,
                    ChallengeType::Dns01,
                    ChallengeType::TlsAlpn01,
                ]);
                state.authzs.push(AuthzRec {
                    account: acct,
                    identifier,
                    wildcard: false,
                    status: AuthorizationStatus::Pending,
                    expires: utc + time::Duration::days(7),
                    challenges,
                });
                state.authzs.len() - 1
            }
        };
        let body = self.v1_authz_json(&state, id);
        drop(state);
        let mut response = self.v1_json(StatusCode::CREATED, &body);
        response
            .headers
            .insert("location", header(&self.v1_authz_url(id)));
        Ok(Self::v1_with_link(
            response,
            &self.url("/acme/new-cert"),
            "next",
        ))
    }

    /// The authorization, checked to exist and not to have expired.
    fn v1_live_authz<'s>(&self, state: &'s State, id: usize) -> Result<&'s AuthzRec, Rejection> {
        let a = state
            .authzs
            .get(id)
            .ok_or_else(|| Rejection::new(ProblemType::Malformed, 404, "No such authorization"))?;
        if expired(a) {
            return Err(Rejection::new(
                ProblemType::Malformed,
                404,
                "Expired authorization",
            ));
        }
        Ok(a)
    }

    fn v1_authz_get(&self, id: usize) -> Answer {
        let state = self.state();
        self.v1_live_authz(&state, id)?;
        let body = self.v1_authz_json(&state, id);
        let pending = state.authzs[id].status == AuthorizationStatus::Pending;
        drop(state);
        let mut response = Self::v1_with_link(
            self.v1_json(StatusCode::OK, &body),
            &self.url("/acme/new-cert"),
            "next",
        );
        if pending && let Some(secs) = self.config().poll_retry_after {
            response
                .headers
                .insert("retry-after", header(&secs.to_string()));
        }
        Ok(response)
    }

    /// Deactivation: `{"resource":"authz","status":"deactivated"}`.
    fn v1_authz_post(&self, id: usize, acct: usize, payload: &Value) -> Answer {
        let mut state = self.state();
        let a = self.v1_live_authz(&state, id)?;
        if a.account != acct {
            return Err(Rejection::unauthorized(
                "User registration ID doesn't match registration ID in authorization",
            ));
        }
        if payload.get("status").and_then(Value::as_str) != Some("deactivated") {
            return Err(Rejection::malformed("Invalid status value"));
        }
        if !matches!(
            a.status,
            AuthorizationStatus::Pending | AuthorizationStatus::Valid
        ) {
            return Err(Rejection::malformed(format!(
                "Unable to deactivate authorization :: authorization is {}",
                a.status.as_str()
            )));
        }
        state.authzs[id].status = AuthorizationStatus::Deactivated;
        let body = self.v1_authz_json(&state, id);
        drop(state);
        Ok(Self::v1_with_link(
            self.v1_json(StatusCode::OK, &body),
            &self.url("/acme/new-cert"),
            "next",
        ))
    }

    /// Challenge `c` of authorization `authz`, checked to exist.
    fn v1_live_challenge<'s>(
        &self,
        state: &'s State,
        authz: usize,
        c: usize,
    ) -> Result<&'s AuthzRec, Rejection> {
        let no_such = || Rejection::new(ProblemType::Malformed, 404, "No such challenge");
        let a = state.authzs.get(authz).ok_or_else(no_such)?;
        if c >= a.challenges.len() {
            return Err(no_such());
        }
        self.v1_live_authz(state, authz)
    }

    /// A challenge as v1 answers it: 202 (even to a GET), `Location` and `Link` up.
    fn v1_challenge_response(&self, authz: usize, c: usize) -> WireResponse {
        let body = {
            let state = self.state();
            self.v1_challenge_json(&state, authz, c)
        };
        let mut response = self.v1_json(StatusCode::ACCEPTED, &body);
        response
            .headers
            .insert("location", header(&self.v1_challenge_url(authz, c)));
        Self::v1_with_link(response, &self.v1_authz_url(authz), "up")
    }

    fn v1_challenge_get(&self, authz: usize, c: usize) -> Answer {
        self.v1_live_challenge(&self.state(), authz, c)?;
        Ok(self.v1_challenge_response(authz, c))
    }

    /// `{"resource":"challenge","type":...[,"keyAuthorization":...]}`: the
    /// body beyond `resource` is ignored, the CA computes the key
    /// authorization itself (certbot >= 0.32 sends none).
    fn v1_challenge_post(
        self: &Arc<Self>,
        authz: usize,
        c: usize,
        acct: usize,
        config: &Config,
    ) -> Answer {
        self.v1_require_agreement(
            acct,
            "Registration didn't agree to subscriber agreement before any further actions",
        )?;
        let pending = {
            let state = self.state();
            let a = self.v1_live_challenge(&state, authz, c)?;
            if a.account != acct {
                return Err(Rejection::unauthorized(
                    "User registration ID doesn't match registration ID in authorization",
                ));
            }
            a.status == AuthorizationStatus::Pending
        };
        // An authorization that is no longer pending is just shown.
        if pending {
            self.answer_challenge(authz, c, config)?;
        }
        Ok(self.v1_challenge_response(authz, c))
    }

    /// Boulder's certificate limits, checked (not spent) at new-cert.
    fn v1_check_certificate_limits(
        state: &mut State,
        ids: &[Identifier],
        limits: &RateLimits,
    ) -> Result<(), Rejection> {
        let now = Instant::now();
        let limited = |detail: String| {
            Rejection::new(
                ProblemType::RateLimited,
                429,
                format!("Error creating new cert :: {detail}"),
            )
        };
        if let Some(l) = &limits.certificates_per_domain {
            let mut domains: Vec<String> =
                ids.iter().map(|i| registered_domain(&i.value)).collect();
            domains.sort();
            domains.dedup();
            let over: Vec<String> = domains
                .into_iter()
                .filter(|d| state.buckets.check(&format!("domain:{d}"), l, now).is_err())
                .collect();
            if !over.is_empty() {
                return Err(limited(format!(
                    "too many certificates already issued for: {}",
                    over.join(", ")
                )));
            }
        }
        if let Some(l) = &limits.duplicate_certificates {
            let set = Self::set_key(ids);
            if state
                .buckets
                .check(&format!("fqdnset:{set}"), l, now)
                .is_err()
            {
                return Err(limited(format!(
                    "too many certificates already issued for exact set of domains: {set}"
                )));
            }
        }
        Ok(())
    }

    /// `{"resource":"new-cert","csr":...}`: synchronous issuance, 201 with
    /// the DER leaf.
    fn v1_new_cert(&self, acct: usize, payload: &Value, config: &Config) -> Answer {
        self.v1_require_agreement(acct, MUST_AGREE)?;
        const PREFIX: &str = "Error creating new cert :: ";
        let der = payload
            .get("csr")
            .and_then(Value::as_str)
            .and_then(b64_decode)
            .ok_or_else(|| Rejection::malformed("Error unmarshaling certificate request"))?;
        let csr = pki::parse_csr(&der)
            .map_err(|e| Rejection::malformed(format!("Error parsing certificate request: {e}")))?;
        Self::check_csr_key(&csr.key).map_err(|e| {
            Rejection::malformed(format!("Invalid key in certificate request :: {e}"))
        })?;
        if csr.identifiers.iter().any(|i| i.kind != "dns") {
            return Err(Rejection::new(
                ProblemType::BadCsr,
                400,
                format!("{PREFIX}CSR contains one or more IP address fields"),
            ));
        }
        if csr.identifiers.len() > MAX_IDENTIFIERS {
            return Err(Rejection::malformed(format!(
                "{PREFIX}CSR contains more than {MAX_IDENTIFIERS} DNS names"
            )));
        }
        let mut state = self.state();
        if state.accounts[acct].key.matches_spki(&csr.public_key_der) {
            return Err(Rejection::malformed(format!(
                "{PREFIX}certificate public key must be different than account key"
            )));
        }
        let utc = now_utc();
        let missing: Vec<&str> = csr
            .identifiers
            .iter()
            .filter(|id| {
                !state.authzs.iter().any(|a| {
                    a.account == acct
                        && !a.wildcard
                        && a.identifier == **id
                        && a.status == AuthorizationStatus::Valid
                        && a.expires > utc
                })
            })
            .map(|id| id.value.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(Rejection::unauthorized(format!(
                "{PREFIX}authorizations for these names not found or expired: {}",
                missing.join(", ")
            )));
        }
        Self::v1_check_certificate_limits(&mut state, &csr.identifiers, &config.rate_limits)?;
        if let Err(mut problem) = self.recheck_caa(&mut state, &csr.identifiers, config) {
            drop(state);
            problem.detail = problem
                .detail
                .map(|d| d.replacen("Error finalizing order :: ", PREFIX, 1));
            return Ok(self.v1_problem_doc(403, &problem));
        }
        let cert = self.issue_certificate(&mut state, acct, None, &csr, utc, None, config)?;
        let leaf = state.certs[cert].leaf_der.clone();
        let url = self.v1_cert_url(&state.certs[cert].serial);
        drop(state);
        let mut response = self.v1_response(StatusCode::CREATED, Some(PKIX_CERT), leaf);
        response.headers.insert("location", header(&url));
        Ok(Self::v1_with_link(
            response,
            &self.url("/acme/issuer-cert"),
            "up",
        ))
    }

    /// `GET /acme/cert/<serial>`: the DER leaf, `Link` up to the issuer.
    fn v1_certificate(&self, serial: &str) -> Answer {
        let not_found = || Rejection::new(ProblemType::Malformed, 404, "Certificate not found");
        if !matches!(serial.len(), 32 | 36) || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let wanted = serial.to_ascii_lowercase();
        let wanted = wanted.trim_start_matches('0');
        let leaf = {
            let state = self.state();
            state
                .certs
                .iter()
                .find(|c| c.serial.trim_start_matches('0') == wanted)
                .map(|c| c.leaf_der.clone())
                .ok_or_else(not_found)?
        };
        Ok(Self::v1_with_link(
            self.v1_response(StatusCode::OK, Some(PKIX_CERT), leaf),
            &self.url("/acme/issuer-cert"),
            "up",
        ))
    }

    /// `{"resource":"revoke-cert","certificate":...,"reason":n}`, signed by
    /// the certificate's key, the account that got it, or an account with
    /// valid authorizations for all its names. 200 with an empty body.
    fn v1_revoke(&self, key: &PublicJwk, acct: Option<usize>, payload: &Value) -> Answer {
        let der = payload
            .get("certificate")
            .and_then(Value::as_str)
            .and_then(b64_decode)
            .ok_or_else(|| Rejection::malformed("Unable to decode certificate"))?;
        let reason = match payload.get("reason") {
            None | Some(Value::Null) => 0,
            Some(r) => r
                .as_u64()
                .filter(|r| [0, 1, 3, 4, 5].contains(r))
                .ok_or_else(|| {
                    Rejection::new(
                        ProblemType::BadRevocationReason,
                        400,
                        "unsupported revocation reason code provided",
                    )
                })? as u8,
        };
        let mut state = self.state();
        let index = state
            .certs
            .iter()
            .position(|c| c.leaf_der == der)
            .ok_or_else(|| Rejection::new(ProblemType::Malformed, 404, "No such certificate"))?;
        if state.certs[index].revoked.is_some() {
            return Err(Rejection::new(
                ProblemType::Malformed,
                409,
                "Certificate already revoked",
            ));
        }
        let cert = &state.certs[index];
        let utc = now_utc();
        let acct = acct.filter(|a| state.accounts[*a].status == AccountStatus::Valid);
        let holds_authorizations = |a: usize| {
            cert.identifiers.iter().all(|id| {
                state.authzs.iter().any(|z| {
                    z.account == a
                        && !z.wildcard
                        && z.identifier == *id
                        && z.status == AuthorizationStatus::Valid
                        && z.expires > utc
                })
            })
        };
        let allowed = key.matches_spki(&cert.spki)
            || acct.is_some_and(|a| a == cert.account || holds_authorizations(a));
        if !allowed {
            return Err(Rejection::unauthorized(
                "Revocation request must be signed by private key of cert to be revoked, by the account key of the account that issued it, or by the account key of an account that holds valid authorizations for all names in the certificate.",
            ));
        }
        state.certs[index].revoked = Some(reason);
        drop(state);
        Ok(self.v1_response(StatusCode::OK, None, Vec::new()))
    }

    /// Key rollover: the outer payload is the inner JWS (signed by the new
    /// key, `{"account": <reg URL>, "newKey": <new JWK>}`) with
    /// `"resource":"key-change"` spliced in. 200 with the registration.
    fn v1_key_change(&self, acct: usize, payload: &Value) -> Answer {
        let mut inner = payload.as_object().cloned().unwrap_or_default();
        inner.remove("resource");
        let inner = jws::parse_v1(&serde_json::to_vec(&Value::Object(inner)).unwrap_or_default())
            .map_err(|r| prefixed("Unable to change key :: inner JWS: ", r))?;
        let Signer::Jwk(new_key) = &inner.signer else {
            return Err(Rejection::malformed("No JWK in inner JWS header"));
        };
        inner.verify_with(new_key)?;
        let inner_payload = inner
            .payload
            .as_ref()
            .ok_or_else(|| Rejection::malformed("Inner JWS payload did not parse as JSON"))?;
        if inner_payload.get("account").and_then(Value::as_str) != Some(&self.v1_reg_url(acct)) {
            return Err(Rejection::malformed(
                "Incorrect account URL provided in payload",
            ));
        }
        let new_thumbprint = inner_payload
            .get("newKey")
            .map(thumbprint_of_jwk)
            .and_then(Result::ok);
        if new_thumbprint.as_deref() != Some(new_key.thumbprint.as_str()) {
            return Err(Rejection::malformed(
                "New JWK in inner payload doesn't match key used to sign inner JWS",
            ));
        }
        let mut state = self.state();
        if let Some(other) = state.by_thumbprint.get(&new_key.thumbprint).copied() {
            drop(state);
            let mut response = self.v1_problem(&Rejection::new(
                ProblemType::Malformed,
                409,
                "New key is already in use for a different account",
            ));
            response
                .headers
                .insert("location", header(&self.v1_reg_url(other)));
            return Ok(response);
        }
        let old = state.accounts[acct].key.thumbprint.clone();
        state.by_thumbprint.remove(&old);
        state.by_thumbprint.insert(new_key.thumbprint.clone(), acct);
        state.accounts[acct].key = new_key.clone();
        let body = self.v1_registration(&state, acct);
        drop(state);
        Ok(self.v1_json(StatusCode::OK, &body))
    }
}
