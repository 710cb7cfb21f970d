//! The fault script: which request to an endpoint misbehaves, and how.
//!
//! A script is a list of [`FaultRule`]s, checked in order for every request;
//! the first rule whose endpoint and trigger match decides the fault. Rules
//! count the requests to their endpoint themselves (1-based), so "the 2nd
//! finalize" means the second finalize request the CA received.
//!
//! Faults either replace the answer without doing anything (a 500, a 503, a
//! `badNonce`, a 429 before the action), or let the CA do the work first and
//! then spoil the answer ("commit" faults: the lost response, the slow
//! response, a truncated or invalid body). A dropped finalize response still
//! leaves the certificate issued, exactly as in the field.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use sturdy_acme::Endpoint;

/// How a `Retry-After` header is written.
///
/// Example: [`TestCa`](super::TestCa).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryAfterForm {
    /// `Retry-After: <seconds>`.
    Seconds(u64),
    /// `Retry-After: <HTTP date>` that many seconds from now.
    DateIn(u64),
}

impl RetryAfterForm {
    /// The header value, as of now.
    pub fn header_value(&self) -> String {
        match self {
            Self::Seconds(s) => s.to_string(),
            // Clamped to a year: a hostile script's `u64::MAX` must not
            // overflow the clock or httpdate's four-digit year.
            Self::DateIn(s) => httpdate::fmt_http_date(
                SystemTime::now() + Duration::from_secs((*s).min(366 * 24 * 3600)),
            ),
        }
    }
}

/// A misbehaviour.
///
/// Example: [`TestCa`](super::TestCa).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Fault {
    /// HTTP 500 with an empty body and no headers (not even a nonce),
    /// without doing the work.
    Empty500,
    /// Do the work, then answer HTTP 500 with an empty body and no headers
    /// (the outcome is unknown to the client, but it happened).
    Empty500AfterCommit,
    /// HTTP 503 with `Retry-After`, without doing the work.
    Unavailable {
        /// The Retry-After to send.
        retry_after: RetryAfterForm,
    },
    /// `badNonce` (400) with a fresh nonce, without doing the work.
    BadNonce,
    /// `rateLimited` (429) with `Retry-After`, without doing the work.
    RateLimited {
        /// Seconds to put in Retry-After.
        retry_after_secs: u64,
    },
    /// Do the work, then close the connection without answering.
    DropAfterCommit,
    /// Do the work, then answer only after this delay (longer than the
    /// client's timeout, typically).
    SlowAfterCommit {
        /// Milliseconds to wait before answering.
        delay_ms: u64,
    },
    /// Do the work, then send half the body and close the connection.
    TruncatedAfterCommit,
    /// Do the work, then answer 200 with a body that is not JSON.
    InvalidJsonAfterCommit,
    /// Answer 200 with a body that never ends (chunked), without doing the work.
    EndlessBody,
    /// Answer 200 with a body of this many bytes, without doing the work.
    OversizedBody {
        /// Content-Length.
        bytes: u64,
    },
    /// Answer exactly this, without doing the work: a 404 or 403 page, a
    /// proxy's HTML error, garbage, or a well-formed but wrong ACME body.
    /// The answer carries no nonce.
    Canned(CannedAnswer),
    /// Do the work, then answer this instead of the real response.
    CannedAfterCommit(CannedAnswer),
    /// Do the work, then answer with the real status and headers
    /// (`Location`, the nonce) but this body: acme2certifier answers a
    /// known key's newAccount `200` with its `Location` and a body of `{}`.
    BodyAfterCommit {
        /// The body sent instead of the real one.
        body: String,
    },
    /// Do the work, then answer an order that is `invalid` as `pending`,
    /// without its `error` (its authorizations tell the truth):
    /// acme2certifier leaves the order of a failed validation pending.
    /// For order reads and finalize; other answers pass unchanged.
    InvalidOrderStaysPending,
}

/// A scripted answer for [`Fault::Canned`] and [`Fault::CannedAfterCommit`].
///
/// Example: [`TestCa`](super::TestCa).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CannedAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type` (none when `None`).
    #[serde(default)]
    pub content_type: Option<String>,
    /// The body.
    #[serde(default)]
    pub body: String,
}

impl CannedAnswer {
    /// `status` with `body` of type `content_type`.
    pub fn new(status: u16, content_type: &str, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: Some(content_type.to_owned()),
            body: body.into(),
        }
    }

    /// A proxy's HTML error page with this status.
    pub fn html(status: u16) -> Self {
        Self::new(
            status,
            "text/html",
            format!("<html><body><h1>{status}</h1>upstream error</body></html>"),
        )
    }

    /// An RFC 7807 problem of `kind` (e.g. `"malformed"`) with `status`.
    pub fn problem(status: u16, kind: &str, detail: &str) -> Self {
        Self::new(
            status,
            "application/problem+json",
            serde_json::json!({
                "type": format!("urn:ietf:params:acme:error:{kind}"),
                "detail": detail,
                "status": status,
            })
            .to_string(),
        )
    }
}

impl Fault {
    /// True when the CA performs the request's action before the fault.
    pub fn commits(&self) -> bool {
        matches!(
            self,
            Self::Empty500AfterCommit
                | Self::DropAfterCommit
                | Self::SlowAfterCommit { .. }
                | Self::TruncatedAfterCommit
                | Self::InvalidJsonAfterCommit
                | Self::CannedAfterCommit(_)
                | Self::BodyAfterCommit { .. }
                | Self::InvalidOrderStaysPending
        )
    }
}

/// When a rule fires.
///
/// Example: [`TestCa`](super::TestCa).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Trigger {
    /// Every request.
    Always,
    /// Only the n-th request to the endpoint (1-based).
    Nth(u64),
    /// The first n requests to the endpoint.
    FirstN(u64),
    /// Each request with this probability (0.0–1.0), from a seeded generator
    /// so that a run is reproducible.
    Probability {
        /// Chance per request.
        p: f64,
        /// Seed of the generator.
        seed: u64,
    },
}

/// One rule of a fault script.
///
/// Example: [`TestCa`](super::TestCa).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// The endpoint it applies to (`None`: every endpoint).
    #[serde(default, with = "endpoint_name")]
    pub endpoint: Option<Endpoint>,
    /// When it fires.
    pub trigger: Trigger,
    /// What happens.
    pub fault: Fault,
}

impl FaultRule {
    /// A rule for `endpoint`.
    pub fn new(endpoint: Endpoint, trigger: Trigger, fault: Fault) -> Self {
        Self {
            endpoint: Some(endpoint),
            trigger,
            fault,
        }
    }

    /// A rule for every endpoint.
    pub fn everywhere(trigger: Trigger, fault: Fault) -> Self {
        Self {
            endpoint: None,
            trigger,
            fault,
        }
    }
}

mod endpoint_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use sturdy_acme::Endpoint;

    pub(super) fn serialize<S: Serializer>(e: &Option<Endpoint>, s: S) -> Result<S::Ok, S::Error> {
        match e {
            Some(e) => s.serialize_str(e.as_str()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Endpoint>, D::Error> {
        let name: Option<String> = Option::deserialize(d)?;
        match name.as_deref() {
            None | Some("any") | Some("*") => Ok(None),
            Some(n) => Endpoint::from_name(n)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown endpoint {n:?}"))),
        }
    }
}

#[derive(Debug)]
struct RuleState {
    rule: FaultRule,
    seen: u64,
    rng: u64,
}

/// A fault script in use: rules with their counters.
#[derive(Debug, Default)]
pub(crate) struct FaultScript {
    rules: Mutex<Vec<RuleState>>,
}

impl FaultScript {
    pub(crate) fn new(rules: Vec<FaultRule>) -> Self {
        let script = Self::default();
        script.replace(rules);
        script
    }

    /// Replaces the rules (counters restart).
    pub(crate) fn replace(&self, rules: Vec<FaultRule>) {
        let states = rules
            .into_iter()
            .map(|rule| {
                let seed = match rule.trigger {
                    Trigger::Probability { seed, .. } => seed,
                    _ => 0,
                };
                RuleState {
                    rule,
                    seen: 0,
                    rng: seed ^ 0x9E37_79B9_7F4A_7C15,
                }
            })
            .collect();
        *self.rules.lock().unwrap_or_else(|p| p.into_inner()) = states;
    }

    /// The fault for this request to `endpoint`, if a rule fires.
    pub(crate) fn decide(&self, endpoint: Endpoint) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        let mut chosen = None;
        for state in rules.iter_mut() {
            if state.rule.endpoint.is_some_and(|e| e != endpoint) {
                continue;
            }
            state.seen += 1;
            let fires = match state.rule.trigger {
                Trigger::Always => true,
                Trigger::Nth(n) => state.seen == n,
                Trigger::FirstN(n) => state.seen <= n,
                Trigger::Probability { p, .. } => {
                    let x = crate::codec::splitmix64(&mut state.rng);
                    (x >> 11) as f64 / (1u64 << 53) as f64 <= p
                }
            };
            if fires && chosen.is_none() {
                chosen = Some(state.rule.fault.clone());
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_count_per_endpoint() {
        let script = FaultScript::new(vec![
            FaultRule::new(Endpoint::Finalize, Trigger::Nth(2), Fault::DropAfterCommit),
            FaultRule::new(Endpoint::NewOrder, Trigger::FirstN(2), Fault::Empty500),
        ]);
        assert_eq!(script.decide(Endpoint::Finalize), None);
        assert_eq!(script.decide(Endpoint::NewOrder), Some(Fault::Empty500));
        assert_eq!(
            script.decide(Endpoint::Finalize),
            Some(Fault::DropAfterCommit)
        );
        assert_eq!(script.decide(Endpoint::NewOrder), Some(Fault::Empty500));
        assert_eq!(script.decide(Endpoint::NewOrder), None);
        assert_eq!(script.decide(Endpoint::Finalize), None);
    }

    #[test]
    fn probability_is_seeded_and_roughly_right() {
        let run = || {
            let script = FaultScript::new(vec![FaultRule::everywhere(
                Trigger::Probability { p: 0.3, seed: 7 },
                Fault::BadNonce,
            )]);
            (0..1000)
                .map(|_| script.decide(Endpoint::Order).is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run(), "same seed, same faults");
        let hits = a.iter().filter(|x| **x).count();
        assert!((250..350).contains(&hits), "{hits}");
    }

    #[test]
    fn scripts_parse_from_json() {
        let json = r#"[
            {"endpoint": "finalize", "trigger": {"nth": 1}, "fault": "drop_after_commit"},
            {"endpoint": "newOrder", "trigger": "always",
             "fault": {"rate_limited": {"retry_after_secs": 3600}}},
            {"trigger": {"probability": {"p": 0.3, "seed": 1}}, "fault": "bad_nonce"},
            {"endpoint": "order", "trigger": {"first_n": 2},
             "fault": {"unavailable": {"retry_after": {"date_in": 5}}}}
        ]"#;
        let rules: Vec<FaultRule> = serde_json::from_str(json).unwrap();
        assert_eq!(rules.len(), 4);
        assert_eq!(rules[0].endpoint, Some(Endpoint::Finalize));
        assert_eq!(rules[2].endpoint, None);
        assert!(
            serde_json::from_str::<Vec<FaultRule>>(
                r#"[{"endpoint":"nope","trigger":"always","fault":"bad_nonce"}]"#
            )
            .is_err()
        );
    }
}
