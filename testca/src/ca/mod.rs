//! The ACME server side of the test CA: a dialect-neutral core (state,
//! nonces, accounts, identifiers, orders, authorizations and validation,
//! issuance, revocation, rate limits) and two wire front ends, [`v2`]
//! (RFC 8555) and [`v1`] (Boulder's pre-RFC ACME), that parse requests,
//! call the core and shape its answers as [`Reply`]s. [`Ca::handle`] counts
//! each request, applies the fault script and hands it to the front end of
//! the configured dialect.

mod accounts;
mod authorizations;
mod config;
mod crl;
mod faults;
mod identifiers;
mod issuance;
mod nonces;
mod orders;
mod rate_limits;
mod records;
mod renewal;
pub(crate) use records::AriPolicy;
pub use records::RenewalInfoAnswer;
mod revocation;
mod state;
#[cfg(test)]
mod tests;
mod v1;
mod v2;

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use http::{HeaderValue, Method};
use ring::rand::SystemRandom;
use time::OffsetDateTime;

use super::faults::{Fault, FaultScript};
use super::jws::{self, Rejection};
use super::limits::RateLimits;
use super::pki::Pki;
use super::recorded;
use super::wire::{Reply, WireRequest, WireResponse};
use super::{CaaPolicy, Dialect, FinalizeRecord, IssuedCertificate, Ledger, RecordedJws};
use state::State;

pub use config::ValidationMode;
pub(crate) use config::{Config, LifetimeChange};

const JSON: &str = "application/json";
const PROBLEM_JSON: &str = "application/problem+json";

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
    /// Requests being handled now, and the most at once.
    in_flight: std::sync::atomic::AtomicU64,
    peak_in_flight: std::sync::atomic::AtomicU64,
}

/// Counts a request as being handled until dropped.
struct Handling<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
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

/// `t` to the second, as resources carry times.
fn to_second(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Now on the CA's calendar ([`Clock::tokio`](sturdy_acme::Clock::tokio), so a
/// test on a paused clock sees certificates age), to the second.
fn now_utc() -> OffsetDateTime {
    to_second(OffsetDateTime::from(now()))
}

/// Now on the CA's calendar.
fn now() -> std::time::SystemTime {
    sturdy_acme::Clock::tokio().now()
}

/// A serial as Boulder spells it in its messages (`core.SerialToString`:
/// 36 lowercase hex digits, zero-padded), from the CA's hex form.
fn boulder_serial(hex: &str) -> String {
    format!("{:0>36}", hex.trim_start_matches('0'))
}

/// A header value (an invalid one becomes `invalid`).
fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The segments of a request path, without its query: `/acme/order/3`
/// is `["acme", "order", "3"]`.
fn path_segments(path: &str) -> Vec<&str> {
    let path = path.split('?').next().unwrap_or("");
    path.trim_start_matches('/').split('/').collect()
}

/// `<url>;rel="<rel>"`, a `Link` header value.
fn link(url: &str, rel: &str) -> HeaderValue {
    header(&format!("<{url}>;rel=\"{rel}\""))
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
            in_flight: Default::default(),
            peak_in_flight: Default::default(),
        }
    }

    /// Sets `https://127.0.0.1:PORT` once the listener is bound.
    pub(crate) fn set_base(&self, base: String) {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .crl_base
            .get_or_insert_with(|| format!("{base}/crl"));
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

    /// How challenges are validated now.
    pub(crate) fn validation_mode(&self) -> ValidationMode {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .validation
            .clone()
    }

    /// A revocation behind the subscriber's back (a third party's
    /// key-compromise report, a CA's own finding): certificate `serial`
    /// is revoked for `reason` and listed in its revocation list, while
    /// its renewal information stays as it was. False if no unrevoked
    /// certificate has that serial.
    pub(crate) fn revoke_quietly(&self, serial: &str, reason: u8) -> bool {
        let serial = serial.to_ascii_lowercase();
        let mut state = self.state();
        let Some(cert) = state
            .certs
            .iter_mut()
            .find(|c| c.serial == serial && c.revoked.is_none())
        else {
            return false;
        };
        cert.revoked = Some(reason);
        cert.revoked_at = Some(now());
        cert.crl_only = true;
        true
    }

    /// [`Ca::revoke_quietly`] for a seeded `share` of the live
    /// certificates (as [`Ca::drill_renewal_windows`] chooses them).
    /// Returns their serials.
    pub(crate) fn revoke_share_quietly(&self, share: f64, seed: u64, reason: u8) -> Vec<String> {
        let now = now();
        let mut state = self.state();
        let chosen = state.live_share(share, seed, now);
        chosen
            .into_iter()
            .map(|i| {
                let cert = &mut state.certs[i];
                cert.revoked = Some(reason);
                cert.revoked_at = Some(now);
                cert.crl_only = true;
                cert.serial.clone()
            })
            .collect()
    }

    /// The most of each kind of rate-limit bucket spent at once.
    pub(crate) fn limit_peaks(&self) -> std::collections::BTreeMap<String, f64> {
        self.state().buckets.peaks()
    }

    /// Revocation lists served: in full, and `304 Not Modified`.
    pub(crate) fn crl_served(&self) -> (u64, u64) {
        let state = self.state();
        (state.crl_downloads, state.crl_not_modified)
    }

    fn config(&self) -> Config {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A mass-revocation drill (Let's Encrypt's of 2026-03-19): the renewal
    /// windows of a share of the live certificates move into the past. Each
    /// chosen certificate's window becomes `(now - 1 h, now + end_after)`:
    /// its replacement is due at once and, made before the window ends, is
    /// an exempt ARI renewal. Live: the newest certificate of its exact
    /// identifier set, neither revoked nor expired. The choice is a seeded
    /// draw (`share` of them, at least one when `share > 0`), so one seed
    /// moves the same certificates every run. Returns their serials.
    pub(crate) fn drill_renewal_windows(
        &self,
        share: f64,
        seed: u64,
        end_after: std::time::Duration,
        explanation_url: Option<String>,
    ) -> Vec<String> {
        let now = now();
        let mut state = self.state();
        let order = state.live_share(share, seed, now);
        let start = now - std::time::Duration::from_secs(3600);
        let end = now + end_after;
        let mut serials = Vec::with_capacity(order.len());
        for i in order {
            let serial = state.certs[i].serial.to_ascii_lowercase();
            state.ari.scripts.insert(
                serial.clone(),
                records::Scripted {
                    answer: RenewalInfoAnswer::Window {
                        start,
                        end,
                        explanation_url: explanation_url.clone(),
                    },
                    retry_after_secs: None,
                },
            );
            serials.push(serial);
        }
        tracing::info!(
            moved = serials.len(),
            "test CA: renewal windows moved into the past (a mass-revocation drill)"
        );
        serials
    }

    pub(crate) fn set_renewal_info(
        &self,
        serial: &str,
        answer: RenewalInfoAnswer,
        retry_after_secs: Option<u64>,
    ) {
        self.state().ari.scripts.insert(
            serial.to_ascii_lowercase(),
            records::Scripted {
                answer,
                retry_after_secs,
            },
        );
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// A fresh nonce for a response.
    fn fresh_nonce(&self) -> String {
        self.state().nonces.issue(&self.rng)
    }

    /// A snapshot of what happened, for assertions.
    /// Sets the CAA answer for `domain` from now on.
    pub(crate) fn set_caa(&self, domain: &str, policy: CaaPolicy) {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .caa
            .insert(domain.to_ascii_lowercase(), policy);
    }

    /// The limits table it enforces.
    pub(crate) fn rate_limits(&self) -> RateLimits {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rate_limits
            .clone()
    }

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
                    ari_exempt: c
                        .order
                        .is_some_and(|o| state.orders[o].exemption == records::Exemption::Ari),
                    leaf_der: c.leaf_der.clone(),
                })
                .collect(),
            requests: state.requests.clone(),
            arrivals: state.arrivals.iter().copied().collect(),
            peak_in_flight: self
                .peak_in_flight
                .load(std::sync::atomic::Ordering::Relaxed),
            finalizations: state
                .finalizations
                .iter()
                .map(|(id, status)| FinalizeRecord {
                    order: self.order_url(*id),
                    status_before: *status,
                })
                .collect(),
        }
    }

    pub(crate) fn recorded_jws(&self) -> Vec<RecordedJws> {
        self.state().jws_log.iter().cloned().collect()
    }

    /// Handles one request: counts it, applies the fault script, hands it
    /// to the dialect's front end.
    pub(crate) async fn handle(self: &Arc<Self>, req: WireRequest) -> Reply {
        use std::sync::atomic::Ordering;
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        let _handling = Handling(&self.in_flight);
        let latency = self
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let v1 = self.dialect() == Dialect::V1;
        let endpoint = if v1 {
            v1::endpoint(&req)
        } else {
            v2::endpoint(&req)
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
            state.count_request(endpoint, recorded);
            if !v1 && let Some(id) = v2::finalize_target(&req) {
                state.record_finalization(id);
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
                faults::before_commit(fault, v1::BAD_NONCE, |r| self.v1_problem(r))
            } else {
                faults::before_commit(fault, v2::BAD_NONCE, |r| self.problem_response(r))
            };
        }
        let response = if v1 {
            self.v1_route(&req).await
        } else {
            self.v2_route(&req).await
        };
        match fault {
            None => Reply::Normal(response),
            Some(fault) => {
                tracing::debug!(?endpoint, ?fault, "test CA: fault after committing");
                faults::after_commit(fault, response)
            }
        }
    }
}
