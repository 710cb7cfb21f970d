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
//! fault script and [`Ledger::requests`](crate::Ledger::requests):
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
//! [`Dialect::V1`]: sturdy_acme::Dialect::V1
//! [`CaaPolicy`]: crate::CaaPolicy

mod authz;
mod certs;
mod registrations;
pub(super) mod state;

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use ring::rand::SecureRandom;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::revocation::RevocationPolicy;
use super::state::AuthzRec;
use super::{Answer, Ca, JSON, PROBLEM_JSON, header, link, now_utc, path_segments};
use crate::codec::b64;
use crate::jws::{self, Rejection, Signer};
use crate::wire::{WireRequest, WireResponse};
use sturdy_acme::AccountStatus;
use sturdy_acme::Endpoint;
use sturdy_acme::timestamp::DisplayTime;
use sturdy_acme::{Problem, ProblemType};

/// A bad nonce, as v1 words it.
pub(super) const BAD_NONCE: &str = "JWS has invalid anti-replay nonce";

/// Boulder's v1 rules: the certificate's key, the account that got it, or
/// an account with valid authorizations for all its names may revoke it;
/// "already revoked" is answered first.
pub(in crate::ca) const REVOCATION: RevocationPolicy = RevocationPolicy {
    authorization_holders: true,
    holder_reason: None,
    revoked_first: true,
};

const PKIX_CERT: &str = "application/pkix-cert";
const V1_ERROR_NS: &str = "urn:acme:error:";
const RANDOM_ENTRY_EXPLANATION: &str =
    "https://community.letsencrypt.org/t/adding-random-entries-to-the-directory/33417";
const MUST_AGREE: &str = "Must agree to subscriber agreement before any further actions";

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
        let id = |s: &str| s.parse::<usize>().ok();
        match path_segments(path).as_slice() {
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

/// A time as v1 resources carry it (RFC 3339, UTC).
fn rfc3339(t: OffsetDateTime) -> String {
    DisplayTime(SystemTime::from(t)).to_string()
}

fn account_status(status: AccountStatus) -> &'static str {
    match status {
        AccountStatus::Valid => "valid",
        AccountStatus::Deactivated => "deactivated",
        AccountStatus::Revoked => "revoked",
        // A status this CA never sets.
        _ => "valid",
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
        let nonce = self.fresh_nonce();
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

    pub(super) fn v1_problem(&self, r: &Rejection) -> WireResponse {
        let mut problem = Problem::new(r.kind.clone(), r.detail.clone());
        problem.status = Some(r.status);
        self.v1_problem_doc(r.status, &problem)
    }

    fn v1_with_link(mut response: WireResponse, url: &str, rel: &str) -> WireResponse {
        response.headers.append("link", link(url, rel));
        response
    }

    /// A fault that replaces the answer, worded in v1 where it is a problem.
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
            let nonce = self.fresh_nonce();
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
                    "caaIdentities": [self.config().caa_identity.clone()],
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
                .account_by_key(&key.thumbprint)
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
            Some(nonce) if !self.state().nonces.consume(nonce) => {
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
            (Route::NewCert, Some(acct)) => {
                let dns_caa = self.v1_dns_caa(acct, payload, &config).await;
                self.v1_new_cert(acct, payload, &config, dns_caa)
            }
            (Route::KeyChange, Some(acct)) => self.v1_key_change(acct, payload),
            _ => Err(Rejection::unauthorized(
                "No registration exists matching provided key",
            )),
        }
    }
}
