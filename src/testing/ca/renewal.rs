//! The test CA's ACME Renewal Information (RFC 9773) and certificate
//! profiles, as Boulder serves them: `renewalInfo` with Boulder's window
//! (or a fixed delay after issuance, or a scripted answer per
//! certificate), `replaces` validated as Boulder validates it and its
//! rate-limit exemptions, and the profiles `classic`, `tlsserver` and
//! `shortlived`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;

use super::Config;
use super::state::State;
use crate::protocol::{CertId, Identifier, ProblemType};
use crate::testing::jws::Rejection;
use crate::testing::wire::WireResponse;

/// How long Boulder treats an order for an exact set issued before as a
/// renewal (`FQDNSetTimestampsForWindow`).
pub(super) const EXACT_SET_RENEWAL_WINDOW: Duration = Duration::from_secs(120 * 24 * 3600);

/// What the test CA's `renewalInfo` answers by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AriPolicy {
    /// `Some(d)`: every certificate's window opens `d` after issuance (and
    /// lasts an hour); `None`: Boulder's window (a third of the lifetime
    /// before expiry, half for 10 days or less, ± a hundredth).
    pub(crate) renew_after: Option<Duration>,
    /// The `Retry-After` sent with each answer, seconds (Pebble: 21600).
    pub(crate) retry_after_secs: u64,
}

/// A scripted `renewalInfo` answer for one certificate.
///
/// Example: [`TestCa::set_renewal_info`](crate::testing::TestCa::set_renewal_info).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenewalInfoAnswer {
    /// This window.
    Window {
        /// Start.
        start: SystemTime,
        /// End.
        end: SystemTime,
        /// An `explanationURL`, if any.
        explanation_url: Option<String>,
    },
    /// This body (status 200), e.g. something that is not renewal info.
    Body(String),
    /// A problem document with this HTTP status.
    Error(u16),
}

/// A scripted answer and its `Retry-After` (`None`: the policy's).
#[derive(Debug, Clone)]
pub(super) struct Scripted {
    pub(super) answer: RenewalInfoAnswer,
    pub(super) retry_after_secs: Option<u64>,
}

/// A certificate profile the test CA offers (Let's Encrypt's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Profile {
    pub(super) name: &'static str,
    pub(super) description: &'static str,
    pub(super) lifetime: Duration,
    pub(super) max_names: usize,
    pub(super) ip: bool,
    pub(super) common_name: bool,
}

/// `classic`, `tlsserver`, `shortlived`.
pub(super) const PROFILES: [Profile; 3] = [
    Profile {
        name: "classic",
        description: "90 days, up to 100 names, a common name",
        lifetime: Duration::from_secs(90 * 24 * 3600),
        max_names: 100,
        ip: false,
        common_name: true,
    },
    Profile {
        name: "tlsserver",
        description: "45 days, up to 25 names, no common name",
        lifetime: Duration::from_secs(45 * 24 * 3600),
        max_names: 25,
        ip: false,
        common_name: false,
    },
    Profile {
        name: "shortlived",
        description: "160 hours, up to 25 names, IP addresses allowed",
        lifetime: Duration::from_secs(160 * 3600),
        max_names: 25,
        ip: true,
        common_name: false,
    },
];

/// What the CA remembers for ARI.
#[derive(Debug, Default)]
pub(super) struct AriState {
    /// Certificate index by CertID.
    pub(super) by_cert_id: HashMap<String, usize>,
    /// The order that replaced a certificate, by certificate index.
    pub(super) replaced_by: HashMap<usize, usize>,
    /// Scripted answers by certificate serial (hex).
    pub(super) scripts: HashMap<String, Scripted>,
    /// When each exact identifier set was last issued.
    pub(super) last_issued: HashMap<Vec<Identifier>, SystemTime>,
}

/// Which of Boulder's exemptions an order has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Exemption {
    /// None: every limit applies.
    #[default]
    None,
    /// The exact set was issued within 120 days: exempt from new orders
    /// per account and certificates per registered domain.
    ExactSetRenewal,
    /// An ARI renewal within its window: exempt from every limit.
    Ari,
}

/// What a newOrder's `replaces` and `profile` come to.
#[derive(Debug, Clone, Default)]
pub(super) struct OrderTerms {
    pub(super) replaces: Option<usize>,
    pub(super) replaces_text: Option<String>,
    pub(super) exemption: Exemption,
    pub(super) profile: Option<Profile>,
}

impl State {
    /// Records an issued certificate for ARI (its CertID, its set).
    pub(super) fn remember_for_ari(&mut self, cert: usize) {
        let rec = &self.certs[cert];
        if let Ok(id) = CertId::from_der(&rec.leaf_der) {
            self.ari.by_cert_id.insert(id.as_str().to_owned(), cert);
        }
        let mut set = rec.identifiers.clone();
        set.sort();
        self.ari.last_issued.insert(set, rec.issued_at);
    }

    /// Validates a newOrder's `replaces` and `profile` as Boulder does.
    pub(super) fn order_terms(
        &self,
        acct: usize,
        ids: &[Identifier],
        payload: &Value,
        config: &Config,
        now: SystemTime,
    ) -> Result<OrderTerms, Rejection> {
        let mut terms = OrderTerms {
            profile: self.profile_for(ids, payload, config)?,
            ..OrderTerms::default()
        };
        let mut set = ids.to_vec();
        set.sort();
        if self
            .ari
            .last_issued
            .get(&set)
            .is_some_and(|t| now.duration_since(*t).unwrap_or_default() < EXACT_SET_RENEWAL_WINDOW)
        {
            terms.exemption = Exemption::ExactSetRenewal;
        }
        let Some(replaces) = payload.get("replaces") else {
            return Ok(terms);
        };
        let invalid = |status: u16, kind: ProblemType, why: String| {
            Rejection::new(
                kind,
                status,
                format!("Could not validate ARI 'replaces' field :: {why}"),
            )
        };
        if config.renewal_info.is_none() {
            return Err(invalid(
                400,
                ProblemType::Malformed,
                "this CA offers no renewal information".into(),
            ));
        }
        let text = replaces
            .as_str()
            .ok_or_else(|| invalid(400, ProblemType::Malformed, "not a string".into()))?;
        if CertId::parse(text).is_none() {
            return Err(invalid(
                400,
                ProblemType::Malformed,
                format!("{text:?} is not a CertID"),
            ));
        }
        let cert = *self.ari.by_cert_id.get(text).ok_or_else(|| {
            invalid(
                404,
                ProblemType::Malformed,
                format!("no certificate with CertID {text}"),
            )
        })?;
        if let Some(&order) = self.ari.replaced_by.get(&cert)
            && self.orders[order].status != crate::protocol::OrderStatus::Invalid
        {
            return Err(Rejection::new(
                ProblemType::AlreadyReplaced,
                409,
                format!(
                    "cannot indicate an order replaces certificate with serial {:?}, which already has a replacement order",
                    self.certs[cert].serial
                ),
            ));
        }
        let rec = &self.certs[cert];
        if rec.account != acct {
            return Err(invalid(
                403,
                ProblemType::Unauthorized,
                "requester account did not request the certificate being replaced by this order"
                    .into(),
            ));
        }
        if !rec.identifiers.iter().any(|i| ids.contains(i)) {
            return Err(invalid(
                400,
                ProblemType::Malformed,
                "the order shares no identifier with the certificate it replaces".into(),
            ));
        }
        terms.replaces = Some(cert);
        terms.replaces_text = Some(text.to_owned());
        let (start, end) = self.window(cert, config, now);
        if start <= now && now < end {
            terms.exemption = Exemption::Ari;
        }
        Ok(terms)
    }

    /// The profile an order asks for, checked against what it orders.
    fn profile_for(
        &self,
        ids: &[Identifier],
        payload: &Value,
        config: &Config,
    ) -> Result<Option<Profile>, Rejection> {
        let asked = payload.get("profile").and_then(Value::as_str);
        if !config.profiles {
            return match asked {
                None => Ok(None),
                Some(name) => Err(Rejection::new(
                    ProblemType::InvalidProfile,
                    400,
                    format!("profile name {name:?} not recognized (this CA offers no profiles)"),
                )),
            };
        }
        let name = asked.unwrap_or("classic");
        let profile = PROFILES.iter().find(|p| p.name == name).ok_or_else(|| {
            Rejection::new(
                ProblemType::InvalidProfile,
                400,
                format!("profile name {name:?} not recognized"),
            )
        })?;
        if ids.len() > profile.max_names {
            return Err(Rejection::new(
                ProblemType::RejectedIdentifier,
                400,
                format!(
                    "profile {name:?} allows at most {} identifiers",
                    profile.max_names
                ),
            ));
        }
        if !profile.ip && ids.iter().any(|i| i.kind == "ip") {
            return Err(Rejection::new(
                ProblemType::InvalidProfile,
                400,
                format!("profile {name:?} does not allow IP address identifiers (use shortlived)"),
            ));
        }
        Ok(Some(*profile))
    }

    /// A certificate's suggested window.
    pub(super) fn window(
        &self,
        cert: usize,
        config: &Config,
        now: SystemTime,
    ) -> (SystemTime, SystemTime) {
        let rec = &self.certs[cert];
        // A scripted window is the window, for renewalInfo and for the
        // exemption alike (as Boulder uses one window for both).
        if let Some(Scripted {
            answer: RenewalInfoAnswer::Window { start, end, .. },
            ..
        }) = self.ari.scripts.get(&rec.serial)
        {
            return (*start, *end);
        }
        if rec.revoked.is_some() {
            return (
                now - Duration::from_secs(3600),
                now - Duration::from_secs(1800),
            );
        }
        let validity = rec
            .not_after
            .duration_since(rec.not_before)
            .unwrap_or_default();
        if let Some(Some(after)) = config.renewal_info.map(|p| p.renew_after) {
            let start = rec.issued_at.checked_add(after).unwrap_or(rec.not_after);
            let end = start
                .checked_add(Duration::from_secs(3600).max(validity / 50))
                .unwrap_or(start);
            return (start, end);
        }
        let before_expiry = if validity <= Duration::from_secs(10 * 24 * 3600) {
            validity / 2
        } else {
            validity / 3
        };
        let ideal = rec.not_after - before_expiry;
        let spread = (validity / 100).max(Duration::from_secs(60));
        (ideal - spread, ideal + spread)
    }

    /// The `renewalInfo` answer for a CertID.
    pub(super) fn renewal_info(
        &self,
        text: &str,
        config: &Config,
        now: SystemTime,
    ) -> Result<WireResponse, Rejection> {
        let policy = config.renewal_info.ok_or_else(|| {
            Rejection::new(
                ProblemType::Malformed,
                404,
                "this CA offers no renewal information",
            )
        })?;
        if CertId::parse(text).is_none() {
            return Err(Rejection::malformed(format!("{text:?} is not a CertID")));
        }
        let cert = *self.ari.by_cert_id.get(text).ok_or_else(|| {
            Rejection::new(
                ProblemType::Malformed,
                404,
                format!("no certificate with CertID {text}"),
            )
        })?;
        let script = self.ari.scripts.get(&self.certs[cert].serial);
        let retry_after = script
            .and_then(|s| s.retry_after_secs)
            .unwrap_or(policy.retry_after_secs);
        let (start, end, explanation) = match script.map(|s| &s.answer) {
            Some(RenewalInfoAnswer::Body(body)) => {
                return Ok(response(
                    StatusCode::OK,
                    retry_after,
                    body.clone().into_bytes(),
                ));
            }
            Some(RenewalInfoAnswer::Error(status)) => {
                return Err(Rejection::new(
                    ProblemType::ServerInternal,
                    *status,
                    "scripted renewalInfo error",
                ));
            }
            Some(RenewalInfoAnswer::Window {
                start,
                end,
                explanation_url,
            }) => (*start, *end, explanation_url.clone()),
            None => {
                let (s, e) = self.window(cert, config, now);
                (s, e, None)
            }
        };
        let mut body = serde_json::json!({
            "suggestedWindow": {
                "start": rfc3339(start),
                "end": rfc3339(end),
            }
        });
        if let Some(url) = explanation {
            body["explanationURL"] = Value::String(url);
        }
        Ok(response(
            StatusCode::OK,
            retry_after,
            serde_json::to_vec(&body).expect("JSON encodes"),
        ))
    }
}

fn rfc3339(t: SystemTime) -> String {
    crate::protocol::timestamp::DisplayTime(t).to_string()
}

fn response(status: StatusCode, retry_after: u64, body: Vec<u8>) -> WireResponse {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(
        "retry-after",
        HeaderValue::from_str(&retry_after.to_string()).expect("digits"),
    );
    WireResponse {
        status,
        headers,
        body: Bytes::from(body),
    }
}
