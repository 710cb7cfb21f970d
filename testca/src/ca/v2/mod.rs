//! RFC 8555 on the wire: routes, the JWS checks of every signed POST,
//! problem documents and resources as JSON, shaped from the core's state.

mod accounts;
mod authz;
mod orders;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::revocation::RevocationPolicy;
use super::{Answer, Ca, JSON, PROBLEM_JSON, header, link, path_segments};
use crate::jws::{self, Rejection, Signer};
use crate::wire::{WireRequest, WireResponse};
use sturdy_acme::Endpoint;
use sturdy_acme::{AccountStatus, Directory, DirectoryMeta};
use sturdy_acme::{Problem, ProblemType};

/// RFC 8555 §7.6 as Boulder's v2 applies it: the certificate's key, the
/// account that got it, or an account holding valid authorizations for all
/// its names may revoke it (the last for cessationOfOperation, whatever it
/// asked); "already revoked" only to those allowed.
pub(in crate::ca) const REVOCATION: RevocationPolicy = RevocationPolicy {
    authorization_holders: true,
    holder_reason: Some(5),
    revoked_first: false,
};

/// A bad nonce, as v2 words it.
pub(super) const BAD_NONCE: &str = "JWS has an invalid anti-replay nonce";

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
        let id = |s: &str| s.parse::<usize>().ok();
        match path_segments(path).as_slice() {
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

/// The endpoint a v2 request counts as.
pub(super) fn endpoint(req: &WireRequest) -> Endpoint {
    if renewal_info_target(&req.path).is_some() {
        return Endpoint::RenewalInfo;
    }
    if super::crl::crl_target(&req.path).is_some() {
        return Endpoint::Crl;
    }
    Route::parse(&req.path).endpoint()
}

/// The CertID of a `renewalInfo` request's path.
fn renewal_info_target(path: &str) -> Option<&str> {
    path.strip_prefix("/acme/renewal-info/")
        .map(|rest| rest.split('?').next().unwrap_or_default())
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// The order a finalize request is for.
pub(super) fn finalize_target(req: &WireRequest) -> Option<usize> {
    match Route::parse(&req.path) {
        Route::Finalize(id) => Some(id),
        _ => None,
    }
}

impl Ca {
    pub(super) fn account_url(&self, id: usize) -> String {
        self.url(&format!("/acme/acct/{id}"))
    }

    pub(super) fn order_url(&self, id: usize) -> String {
        self.url(&format!("/acme/order/{id}"))
    }

    pub(super) fn authz_url(&self, id: usize) -> String {
        self.url(&format!("/acme/authz/{id}"))
    }

    pub(super) fn cert_url(&self, id: usize) -> String {
        self.url(&format!("/acme/cert/{id}"))
    }

    pub(super) fn problem_response(&self, r: &Rejection) -> WireResponse {
        let mut problem = Problem::new(r.kind.clone(), r.detail.clone());
        problem.status = Some(r.status);
        self.problem_doc_response(r.status, &problem)
    }

    pub(super) fn problem_doc_response(&self, status: u16, problem: &Problem) -> WireResponse {
        let nonce = self.fresh_nonce();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static(PROBLEM_JSON));
        headers.insert("replay-nonce", header(&nonce));
        headers.insert("link", link(&self.directory_url(), "index"));
        WireResponse {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            headers,
            body: Bytes::from(serde_json::to_vec(problem).expect("problem serializes")),
        }
    }

    /// A JSON response to a POST, with a fresh nonce and the index link.
    pub(super) fn json_response(
        &self,
        status: StatusCode,
        body: &impl serde::Serialize,
        location: Option<&str>,
    ) -> WireResponse {
        let nonce = self.fresh_nonce();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static(JSON));
        headers.insert("replay-nonce", header(&nonce));
        headers.insert("link", link(&self.directory_url(), "index"));
        if let Some(location) = location {
            headers.insert("location", header(location));
        }
        WireResponse {
            status,
            headers,
            body: Bytes::from(serde_json::to_vec(body).expect("resource serializes")),
        }
    }

    pub(super) fn with_retry_after(
        &self,
        mut response: WireResponse,
        pending: bool,
    ) -> WireResponse {
        if pending && let Some(secs) = self.config().poll_retry_after {
            response
                .headers
                .insert("retry-after", header(&secs.to_string()));
        }
        response
    }

    pub(super) async fn v2_route(self: &Arc<Self>, req: &WireRequest) -> WireResponse {
        if let Some(shard) = super::crl::crl_target(&req.path) {
            return self.crl_response(shard, req);
        }
        if let Some(cert_id) = renewal_info_target(&req.path) {
            // Boulder serves it to GET and HEAD (Go's HEAD: the same
            // status and headers, no body).
            let head = req.method == Method::HEAD;
            if req.method != Method::GET && !head {
                return self.problem_response(&Rejection::new(
                    ProblemType::Malformed,
                    405,
                    "renewalInfo is fetched with an unauthenticated GET",
                ));
            }
            let config = self.config();
            let state = self.state();
            let answer =
                state.renewal_info(cert_id, &config, self.pki.issuer_key_id(), crate::ca::now());
            drop(state);
            let mut response = answer.unwrap_or_else(|r| self.problem_response(&r));
            if head {
                response
                    .headers
                    .insert("content-length", header(&response.body.len().to_string()));
                response.body = Bytes::new();
            }
            return response;
        }
        let route = Route::parse(&req.path);
        let answer = match (route, &req.method) {
            (Route::Directory, &Method::GET) => Ok(self.directory()),
            (Route::Terms, &Method::GET) => Ok(WireResponse {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                body: Bytes::from_static(b"sturdy-acme test CA: no terms, no guarantees.\n"),
            }),
            (Route::NewNonce, m) if m == Method::HEAD || m == Method::GET => {
                let nonce = self.fresh_nonce();
                let mut headers = HeaderMap::new();
                headers.insert("replay-nonce", header(&nonce));
                headers.insert("cache-control", HeaderValue::from_static("no-store"));
                headers.insert("link", link(&self.directory_url(), "index"));
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

    pub(super) fn directory(&self) -> WireResponse {
        let config = self.config();
        let directory = Directory {
            new_nonce: self.url("/acme/new-nonce"),
            new_account: self.url("/acme/new-account"),
            new_order: self.url("/acme/new-order"),
            new_authz: None,
            revoke_cert: self.url("/acme/revoke-cert"),
            key_change: self.url("/acme/key-change"),
            renewal_info: config.renewal_info.map(|_| self.url("/acme/renewal-info")),
            meta: DirectoryMeta {
                terms_of_service: Some(self.url("/terms")),
                website: Some("https://github.com/sturdy-acme".into()),
                caa_identities: vec![config.caa_identity.clone()],
                external_account_required: config.eab_required,
                profiles: if config.profiles {
                    super::records::PROFILES
                        .iter()
                        .filter(|p| !config.withdrawn_profiles.iter().any(|w| w == p.name))
                        .map(|p| {
                            (
                                p.name.to_owned(),
                                serde_json::Value::String(p.description.into()),
                            )
                        })
                        .collect()
                } else {
                    Default::default()
                },
                extra: announced_limits(&config.rate_limits),
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
                Some(n) if state.nonces.consume(n) => {}
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
            (Route::Finalize(id), Some(acct)) => {
                let dns_caa = self.dns_caa(id, acct, &config).await;
                self.finalize(id, acct, &parsed, &config, dns_caa)
            }
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
}

/// The directory `meta` member announcing the limits this CA enforces
/// (`RateLimits::ANNOUNCEMENT`), so an issuer pointed at it counts the same
/// ones; nothing when it enforces none.
pub(super) fn announced_limits(
    limits: &sturdy_acme::RateLimits,
) -> serde_json::Map<String, serde_json::Value> {
    let mut extra = serde_json::Map::new();
    if *limits != sturdy_acme::RateLimits::none()
        && let Ok(value) = serde_json::to_value(limits)
    {
        extra.insert(sturdy_acme::RateLimits::ANNOUNCEMENT.into(), value);
    }
    extra
}
