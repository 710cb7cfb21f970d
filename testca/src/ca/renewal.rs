//! The test CA's ACME Renewal Information (RFC 9773) and certificate
//! profiles, as Boulder serves them: `renewalInfo` with Boulder's window
//! (or a fixed delay after issuance, or a scripted answer per
//! certificate), `replaces` validated as Boulder validates it and its
//! rate-limit exemptions, and the profiles `classic`, `tlsserver` and
//! `shortlived`.
//!
//! # `renewalInfo`
//! An unauthenticated `GET` (or `HEAD`: the same answer without its body,
//! as Boulder allows) of `/acme/renewal-info/<CertID>`. The CertID is read
//! as Boulder's `parseARICertID` reads it: two unpadded base64url parts
//! (else 400 `malformed`), the first the issuing intermediate's key
//! identifier (else 404 `malformed` "... did not match a known issuer"),
//! the second the serial (leading zeros do not matter); an unknown serial
//! is 404 `malformed` "Requested certificate was not found". The window:
//! - by default Boulder's `RenewalInfoSimple`: a third of the lifetime
//!   before expiry (half for 10 days or less), ± a hundredth of it;
//! - with [`AriPolicy::renew_after`] `Some(d)`, `d > 0`: it opens `d` after
//!   the certificate's issuance and lasts exactly an hour (a client that
//!   picks a random moment in it, as RFC 9773 §4.2 and certbot do, renews
//!   within that hour);
//! - with `Some(0)`: Boulder's "renew now" window (`RenewalInfoImmediate`,
//!   what it serves for a revoked certificate): from an hour ago to half an
//!   hour ago, so any moment a client picks in it is past and it renews at
//!   once. A `replaces` naming such a certificate still earns the ARI
//!   exemption until the certificate expires (Boulder has no such setting;
//!   its revoked certificates' replacements are not exempt);
//! - a revoked certificate: Boulder's "renew now" window (no exemption);
//! - a scripted [`RenewalInfoAnswer`] wins over all of these.
//!
//! `Retry-After` is [`AriPolicy::retry_after_secs`] (Pebble's 21600 by
//! default; Boulder jitters 6 h by ±20%).
//!
//! # `replaces` (newOrder)
//! Checked in Boulder's order (`validateReplacementOrder`), every refusal
//! with the detail prefix `Could not validate ARI 'replaces' field :: `:
//! 1. the CertID as above: not two unpadded base64url parts → 400
//!    `malformed` `Invalid path` (or `Authority Key Identifier was not
//!    base64url-encoded or contained padding: ...`); another issuer's key
//!    identifier (a certificate from another CA) → **404 `malformed`**
//!    `path contained an Authority Key Identifier that did not match a
//!    known issuer`;
//! 2. the certificate already has a replacement order that is `pending`,
//!    `ready`, `processing` or `valid` (a `valid` one for good; a pending,
//!    ready or processing one until it expires) → **409 `alreadyReplaced`**
//!    `cannot indicate an order replaces certificate with serial
//!    "<36 hex digits>", which already has a replacement order` (the serial
//!    zero-padded as Boulder's `SerialToString`; the existing order is not
//!    named). An `invalid` or expired replacement order frees `replaces`;
//! 3. no certificate with that serial → 404 `malformed` `request included
//!    `replaces` field, but no current certificate with serial "<36 hex>"
//!    exists`;
//! 4. another account's certificate → **403 `unauthorized`** `requester
//!    account did not request the certificate being replaced by this order`;
//! 5. no identifier of the order is covered by the certificate (its names,
//!    a wildcard covering one label) → **400 `malformed`** `identifiers in
//!    this order do not match any identifiers in the certificate being
//!    replaced`.
//!
//! An accepted `replaces` is echoed in the order and exempts it from every
//! rate limit while the certificate's window is open (start ≤ now < end).
//! A CA configured without renewal information answers any `replaces` with
//! 400 `malformed` (as CAs without ARI do).
//!
//! # Profiles
//! `classic` (default, 90 days, 100 names, a common name), `tlsserver` (45
//! days, 25 names) and `shortlived` (160 hours, 25 names, IP addresses).
//! An unknown name is 400 `invalidProfile`; as Boulder's RA words them, an
//! IP address under a profile without them is 400 `rejectedIdentifier`
//! `Error creating new order :: Profile "classic" does not permit IP
//! address identifiers. See available profiles at
//! https://letsencrypt.org/docs/profiles/.` ("Default profile" when none
//! was asked for), and too many names is 400 `malformed` `Error creating
//! new order :: Order cannot contain more than 25 identifiers`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;

use super::Config;
use super::records::{Exemption, OrderTerms, PROFILES, Profile, RenewalInfoAnswer, Scripted};
use super::state::State;
use crate::jws::Rejection;
use crate::wire::WireResponse;
use sturdy_acme::{Identifier, OrderStatus, ProblemType};

impl State {
    /// Records an issued certificate for ARI (its CertID, its set).
    pub(super) fn remember_for_ari(&mut self, cert: usize) {
        let rec = &self.certs[cert];
        self.ari
            .by_serial
            .insert(rec.serial.trim_start_matches('0').to_owned(), cert);
        let mut set = rec.identifiers.clone();
        set.sort();
        self.ari.last_issued.insert(set, rec.issued_at);
    }

    /// Validates a newOrder's `replaces` and `profile` as Boulder does
    /// (in its order: `replaces` first), see the [module docs](self).
    /// `issuer_key_id` is the issuing intermediate's key identifier.
    pub(super) fn order_terms(
        &mut self,
        acct: usize,
        ids: &[Identifier],
        payload: &Value,
        config: &Config,
        issuer_key_id: &[u8],
        now: SystemTime,
    ) -> Result<OrderTerms, Rejection> {
        let mut terms = OrderTerms::default();
        let mut set = ids.to_vec();
        set.sort();
        if self
            .ari
            .last_issued
            .get(&set)
            .is_some_and(|t| sturdy_acme::RateLimits::renews_exact_set(*t, now))
        {
            terms.exemption = Exemption::ExactSetRenewal;
        }
        if let Some(replaces) = payload.get("replaces") {
            let (cert, text, exempt) =
                self.check_replaces(acct, ids, replaces, config, issuer_key_id, now)?;
            terms.replaces = Some(cert);
            terms.replaces_text = Some(text);
            if exempt {
                terms.exemption = Exemption::Ari;
            }
        }
        terms.profile = self.profile_for(ids, payload, config)?;
        Ok(terms)
    }

    /// A newOrder's `replaces`, checked as Boulder's
    /// `validateReplacementOrder`: the certificate it names, the CertID as
    /// sent, and whether the order is exempt (inside the window).
    fn check_replaces(
        &mut self,
        acct: usize,
        ids: &[Identifier],
        replaces: &Value,
        config: &Config,
        issuer_key_id: &[u8],
        now: SystemTime,
    ) -> Result<(usize, String, bool), Rejection> {
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
        let serial = parse_cert_id(text, issuer_key_id)
            .map_err(|e| invalid(e.status(), ProblemType::Malformed, e.to_string()))?;
        let found = self.ari.by_serial.get(&serial).copied();
        if let Some(cert) = found
            && self.replacement_exists(cert)
        {
            return Err(invalid(
                409,
                ProblemType::AlreadyReplaced,
                format!(
                    "cannot indicate an order replaces certificate with serial {:?}, which already has a replacement order",
                    super::boulder_serial(&serial)
                ),
            ));
        }
        let cert = found.ok_or_else(|| {
            invalid(
                404,
                ProblemType::Malformed,
                format!(
                    "request included `replaces` field, but no current certificate with serial {:?} exists",
                    super::boulder_serial(&serial)
                ),
            )
        })?;
        let rec = &self.certs[cert];
        if rec.account != acct {
            return Err(invalid(
                403,
                ProblemType::Unauthorized,
                "requester account did not request the certificate being replaced by this order"
                    .into(),
            ));
        }
        if !ids.iter().any(|i| covers(&rec.identifiers, i)) {
            return Err(invalid(
                400,
                ProblemType::Malformed,
                "identifiers in this order do not match any identifiers in the certificate being replaced"
                    .into(),
            ));
        }
        let (start, end) = self.exemption_window(cert, config, now);
        Ok((cert, text.to_owned(), start <= now && now < end))
    }

    /// Whether certificate `cert` already has a replacement order that
    /// counts (Boulder's `ReplacementOrderExists`): a `valid` one for good,
    /// a `pending`, `ready` or `processing` one until it expires; an
    /// `invalid` one never.
    fn replacement_exists(&mut self, cert: usize) -> bool {
        let Some(&order) = self.ari.replaced_by.get(&cert) else {
            return false;
        };
        self.refresh_order(order);
        let o = &self.orders[order];
        match o.status {
            OrderStatus::Valid => true,
            OrderStatus::Invalid => false,
            _ => o.expires > super::now_utc(),
        }
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
        let profile = PROFILES
            .iter()
            .filter(|p| !config.withdrawn_profiles.iter().any(|w| w == p.name))
            .find(|p| p.name == name)
            .ok_or_else(|| {
                Rejection::new(
                    ProblemType::InvalidProfile,
                    400,
                    format!("profile name {name:?} not recognized"),
                )
            })?;
        // Boulder's RA (`NewOrder`), wrapped by the WFE.
        if ids.len() > profile.max_names {
            return Err(Rejection::malformed(format!(
                "Error creating new order :: Order cannot contain more than {} identifiers",
                profile.max_names
            )));
        }
        if !profile.ip && ids.iter().any(|i| i.kind == "ip") {
            let who = match asked {
                Some(name) => format!("Profile {name:?}"),
                None => "Default profile".to_owned(),
            };
            return Err(Rejection::new(
                ProblemType::RejectedIdentifier,
                400,
                format!(
                    "Error creating new order :: {who} does not permit IP address identifiers. See available profiles at https://letsencrypt.org/docs/profiles/."
                ),
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
        if rec.revoked.is_some() && !rec.crl_only {
            return immediate(now);
        }
        let validity = rec
            .not_after
            .duration_since(rec.not_before)
            .unwrap_or_default();
        match config.renewal_info.and_then(|p| p.renew_after) {
            Some(Duration::ZERO) => return immediate(now),
            Some(after) => {
                let start = rec.issued_at.checked_add(after).unwrap_or(rec.not_after);
                let end = start.checked_add(RENEW_AFTER_WINDOW).unwrap_or(start);
                return (start, end);
            }
            None => {}
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

    /// The window a `replaces` naming certificate `cert` must be made in to
    /// be exempt: its window, except with `renew_after` 0, whose "renew
    /// now" window is always past: then from issuance to expiry.
    fn exemption_window(
        &self,
        cert: usize,
        config: &Config,
        now: SystemTime,
    ) -> (SystemTime, SystemTime) {
        let rec = &self.certs[cert];
        let scripted = self.ari.scripts.contains_key(&rec.serial);
        let zero = config.renewal_info.and_then(|p| p.renew_after) == Some(Duration::ZERO);
        if zero && !scripted && rec.revoked.is_none() {
            return (rec.issued_at, rec.not_after);
        }
        self.window(cert, config, now)
    }

    /// The `renewalInfo` answer for a CertID.
    pub(super) fn renewal_info(
        &self,
        text: &str,
        config: &Config,
        issuer_key_id: &[u8],
        now: SystemTime,
    ) -> Result<WireResponse, Rejection> {
        let policy = config.renewal_info.ok_or_else(|| {
            Rejection::new(
                ProblemType::Malformed,
                404,
                "this CA offers no renewal information",
            )
        })?;
        let serial = parse_cert_id(text, issuer_key_id).map_err(|e| {
            Rejection::new(
                ProblemType::Malformed,
                e.status(),
                format!("While parsing ARI CertID an error occurred :: {e}"),
            )
        })?;
        let cert = *self.ari.by_serial.get(&serial).ok_or_else(|| {
            Rejection::new(
                ProblemType::Malformed,
                404,
                "Requested certificate was not found",
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

/// How long a `renew_after` window lasts.
const RENEW_AFTER_WINDOW: Duration = Duration::from_secs(3600);

/// Boulder's `RenewalInfoImmediate`: from an hour before `now` to half an
/// hour before it (in the past: renew now).
fn immediate(now: SystemTime) -> (SystemTime, SystemTime) {
    (
        now - Duration::from_secs(3600),
        now - Duration::from_secs(1800),
    )
}

/// Why a CertID names no certificate of this CA (Boulder's
/// `parseARICertID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CertIdError {
    /// Not two non-empty parts.
    Shape,
    /// The key identifier is not unpadded base64url.
    KeyIdEncoding,
    /// Another issuer's key identifier.
    UnknownIssuer,
    /// The serial is not unpadded base64url.
    SerialEncoding,
}

impl CertIdError {
    /// The HTTP status Boulder answers it with.
    pub(super) fn status(&self) -> u16 {
        match self {
            Self::Shape | Self::KeyIdEncoding => 400,
            Self::UnknownIssuer | Self::SerialEncoding => 404,
        }
    }
}

impl std::fmt::Display for CertIdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Shape => "Invalid path",
            Self::KeyIdEncoding => {
                "Authority Key Identifier was not base64url-encoded or contained padding: illegal base64 data"
            }
            Self::UnknownIssuer => {
                "path contained an Authority Key Identifier that did not match a known issuer"
            }
            Self::SerialEncoding => {
                "serial number was not base64url-encoded or contained padding: illegal base64 data"
            }
        })
    }
}

/// Unpadded base64url, strictly.
fn raw_b64url(part: &str) -> Option<Vec<u8>> {
    part.bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        .then(|| crate::codec::b64_decode(part))
        .flatten()
}

/// The serial (lowercase hex, no leading zeros) a CertID names, if its
/// key identifier is `issuer_key_id` (Boulder's `parseARICertID`).
pub(super) fn parse_cert_id(text: &str, issuer_key_id: &[u8]) -> Result<String, CertIdError> {
    let parts: Vec<&str> = text.split('.').collect();
    let [aki, serial] = parts[..] else {
        return Err(CertIdError::Shape);
    };
    if aki.is_empty() || serial.is_empty() {
        return Err(CertIdError::Shape);
    }
    if raw_b64url(aki).ok_or(CertIdError::KeyIdEncoding)? != issuer_key_id {
        return Err(CertIdError::UnknownIssuer);
    }
    let serial = raw_b64url(serial).ok_or(CertIdError::SerialEncoding)?;
    let hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
    Ok(hex.trim_start_matches('0').to_owned())
}

/// Whether a certificate for `names` covers `id` as Go's `VerifyHostname`
/// judges it (Boulder's shared-identifier check): the same identifier, or
/// a wildcard `*.base` for a name one label below `base`.
fn covers(names: &[Identifier], id: &Identifier) -> bool {
    names.iter().any(|n| {
        if n.kind != id.kind {
            return false;
        }
        if n.value.eq_ignore_ascii_case(&id.value) {
            return true;
        }
        match (n.value.strip_prefix("*."), id.value.split_once('.')) {
            (Some(base), Some((label, rest))) => {
                n.kind == "dns"
                    && !label.is_empty()
                    && !label.contains('*')
                    && rest.eq_ignore_ascii_case(base)
            }
            _ => false,
        }
    })
}

fn rfc3339(t: SystemTime) -> String {
    sturdy_acme::timestamp::DisplayTime(t).to_string()
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
