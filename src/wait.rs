//! "The CA says wait": read once, remembered in one place.
//!
//! A CA asks a client to wait in a failed answer: a 503 or 429 with
//! `Retry-After` (parsed once, on the client's [`Clock`](crate::Clock), when
//! the answer arrives), or a `rateLimited` problem whose detail names a date.
//! [`Wait::of`] reads that once and says what it covers:
//! - a **pause** ([`Pause`]): every request to the whole CA (a 503 on the
//!   directory, or one that says "maintenance") or to one endpoint (any
//!   other 503, or a 429 this crate cannot tie to an issuance limit, i.e. a
//!   request rate);
//! - a **limit**: a 429 on an issuance limit ([`RateLimitScope`]): newOrders
//!   of the same account it covers.
//!
//! [`Waits`] remembers both for one [`Client`](crate::Client) (shared by its
//! clones and every order) and answers "when may I send this, for this
//! scope": the governor holds a request while a pause covers its endpoint;
//! newOrder is refused locally while a limit covers its account and names;
//! the renewer starts no issuance while any pause is in force. The issuer's
//! ledger persists limits for a fleet from the same [`Wait`]; the retry loop
//! decides from it whether to wait in place.
//!
//! Deadlines in memory are on the monotonic clock (tokio's `Instant`, so a
//! paused runtime moves them too); a wall-clock time is computed only to be
//! shown or stored, from the client's clock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::error::{Error, ErrorClass, RateLimitScope};
use crate::protocol::{Endpoint, Identifier, IdentifierSet};

/// The longest a pause may last in memory, whatever the CA says: after it
/// one request goes out and finds out again.
pub(crate) const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// The requests a pause holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Pause {
    /// Every request to one endpoint.
    Endpoint(Endpoint),
    /// Every request to the CA.
    Ca,
}

impl Pause {
    /// The endpoint held, `None` for the whole CA (as events name it).
    pub(crate) fn endpoint(self) -> Option<Endpoint> {
        match self {
            Self::Endpoint(e) => Some(e),
            Self::Ca => None,
        }
    }
}

/// A wait the CA asked for, read once from its failed answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Wait {
    /// How long is left to wait, from the `now` it was read at.
    pub(crate) delay: Duration,
    /// When it ends, on the clock `now` was read from.
    pub(crate) at: SystemTime,
    /// The delay as the CA gave it, from its answer's arrival (a
    /// `Retry-After` in seconds as sent; a date as it was then away).
    pub(crate) asked: Duration,
    /// The HTTP status that asked for it.
    pub(crate) status: Option<u16>,
    /// The issuance limit it is, for a 429 on one (never for a local
    /// refusal: that is this client's own count, not the CA's word).
    pub(crate) limit: Option<RateLimitScope>,
    /// The CA's words (its problem's detail, else the error).
    pub(crate) reason: String,
    maintenance: bool,
}

impl Wait {
    /// The wait `error` asks for at `now` (the client's clock), if any. A
    /// [`Error::GaveUp`] is read through to the answer that ended it.
    pub(crate) fn of(error: &Error, now: SystemTime) -> Option<Self> {
        let mut last = error;
        while let Error::GaveUp { source, .. } = last {
            last = source;
        }
        let header = last.retry_after();
        let (limit, at) = match last.class() {
            ErrorClass::RateLimited {
                retry_at,
                scope,
                local: false,
            } => (Some(scope), retry_at),
            ErrorClass::RateLimited { local: true, .. } => return None,
            _ => (None, header.map(|r| r.at())),
        };
        let at = at?;
        let delay = at.duration_since(now).unwrap_or_default();
        let detail = last.problem().and_then(|p| p.detail.clone());
        Some(Self {
            delay,
            at,
            asked: header.filter(|r| r.at() == at).map_or(delay, |r| r.delay()),
            status: last.status(),
            limit,
            maintenance: detail
                .as_deref()
                .is_some_and(|d| d.to_ascii_lowercase().contains("maintenance")),
            reason: detail.unwrap_or_else(|| last.to_string()),
        })
    }

    /// A 429's wait on an issuance limit, `delay` from `now`: for tests.
    #[cfg(test)]
    pub(crate) fn limited(
        delay: Duration,
        now: SystemTime,
        limit: RateLimitScope,
        reason: &str,
    ) -> Self {
        Self {
            delay,
            at: now + delay,
            asked: delay,
            status: Some(429),
            limit: Some(limit),
            reason: reason.to_owned(),
            maintenance: false,
        }
    }

    /// True when the CA is unavailable (a 503): nothing should start.
    pub(crate) fn is_outage(&self) -> bool {
        self.status == Some(503)
    }

    /// The requests this wait holds when its answer came from `endpoint`;
    /// `None` when it holds no request (an issuance limit holds newOrders
    /// of its scope only, through [`Waits::check_new_order`]).
    pub(crate) fn pause(&self, endpoint: Endpoint) -> Option<Pause> {
        match self.status {
            Some(503) if endpoint == Endpoint::Directory || self.maintenance => Some(Pause::Ca),
            Some(503) => Some(Pause::Endpoint(endpoint)),
            Some(429) if self.limit == Some(RateLimitScope::Unknown) => {
                Some(Pause::Endpoint(endpoint))
            }
            _ => None,
        }
    }
}

/// A limit the CA answered a newOrder with, held until `until`.
#[derive(Debug, Clone)]
struct Held {
    account: String,
    identifiers: IdentifierSet,
    scope: RateLimitScope,
    until: Instant,
    /// `until` as the CA's answer gave it, for the refusal.
    retry_at: SystemTime,
    reason: String,
}

impl Held {
    fn covers(&self, account: &str, ids: &IdentifierSet) -> bool {
        self.account == account
            && match &self.scope {
                RateLimitScope::Account => true,
                RateLimitScope::ExactSet | RateLimitScope::Unknown => self.identifiers == *ids,
                RateLimitScope::RegisteredDomain(d) => ids
                    .as_slice()
                    .iter()
                    .any(|i| registered_suffix(&i.value, d)),
                RateLimitScope::Identifier(n) => ids
                    .as_slice()
                    .iter()
                    .any(|i| i.value.trim_start_matches("*.") == n),
                _ => false,
            }
    }
}

fn registered_suffix(name: &str, domain: &str) -> bool {
    let name = name.trim_start_matches("*.");
    name == domain || name.ends_with(&format!(".{domain}"))
}

/// The pauses and limits one client is under; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Waits {
    pauses: Mutex<HashMap<Pause, Instant>>,
    limits: Mutex<Vec<Held>>,
}

impl Waits {
    /// Holds `pause` for `delay` (capped at [`MAX_PAUSE`]; a later end
    /// wins). True if this began or extended it.
    pub(crate) fn pause(&self, pause: Pause, delay: Duration) -> bool {
        let until = Instant::now() + delay.min(MAX_PAUSE);
        let mut pauses = self.pauses.lock().unwrap_or_else(|p| p.into_inner());
        match pauses.get(&pause) {
            Some(current) if *current >= until => false,
            _ => {
                pauses.insert(pause, until);
                true
            }
        }
    }

    /// Until when a request to `endpoint` is held, if it is.
    pub(crate) fn paused_until(&self, endpoint: Endpoint) -> Option<Instant> {
        self.latest(|p| *p == Pause::Endpoint(endpoint) || *p == Pause::Ca)
    }

    /// Until when any pause is in force: an issuance needs every endpoint,
    /// so none should start before.
    pub(crate) fn any_paused_until(&self) -> Option<Instant> {
        self.latest(|_| true)
    }

    fn latest(&self, covers: impl Fn(&Pause) -> bool) -> Option<Instant> {
        let now = Instant::now();
        let mut pauses = self.pauses.lock().unwrap_or_else(|p| p.into_inner());
        pauses.retain(|_, until| *until > now);
        pauses
            .iter()
            .filter(|(p, _)| covers(p))
            .map(|(_, until)| *until)
            .max()
    }

    /// Remembers the limit a newOrder of `ids` was answered with.
    pub(crate) fn hold(&self, account: &str, ids: &[Identifier], wait: &Wait) {
        let Some(scope) = wait.limit.clone() else {
            return;
        };
        self.limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Held {
                account: account.to_owned(),
                identifiers: IdentifierSet::new(ids),
                scope,
                until: Instant::now() + wait.delay,
                retry_at: wait.at,
                reason: wait.reason.clone(),
            });
    }

    /// Refuses a newOrder for `ids` while a remembered limit covers it.
    pub(crate) fn check_new_order(&self, account: &str, ids: &[Identifier]) -> Result<(), Error> {
        let at = Instant::now();
        let ids = IdentifierSet::new(ids);
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        limits.retain(|h| h.until > at);
        match limits
            .iter()
            .filter(|h| h.covers(account, &ids))
            .max_by_key(|h| h.until)
        {
            Some(h) => Err(Error::RateLimitedLocally {
                retry_at: h.retry_at,
                limit: "the CA's earlier 429".into(),
                scope: h.scope.clone(),
                reason: h.reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// `until` (a monotonic deadline) on the wall clock whose time is `now`.
pub(crate) fn wall_clock(until: Instant, now: SystemTime) -> SystemTime {
    now + until.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Problem, ProblemType, RequestInfo, RetryAfter};

    fn answer(status: u16, kind: ProblemType, detail: &str, retry_after: u64) -> Error {
        answer_at(SystemTime::now(), status, kind, detail, retry_after)
    }

    fn answer_at(
        now: SystemTime,
        status: u16,
        kind: ProblemType,
        detail: &str,
        retry_after: u64,
    ) -> Error {
        Error::Problem {
            request: Box::new(RequestInfo {
                method: "POST",
                url: "https://ca.example/new-order".into(),
                status: Some(status),
                retry_after: Some(RetryAfter::after(Duration::from_secs(retry_after), now)),
            }),
            problem: Box::new(Problem::new(kind, detail)),
        }
    }

    #[test]
    fn a_wait_is_read_once_with_what_it_covers() {
        let now = SystemTime::now();
        let outage = answer_at(now, 503, ProblemType::ServerInternal, "down", 30);
        let w = Wait::of(&outage, now).unwrap();
        assert!(w.is_outage() && w.limit.is_none());
        assert_eq!(w.delay, Duration::from_secs(30));
        assert_eq!(w.at, now + Duration::from_secs(30));
        assert_eq!(
            w.pause(Endpoint::NewOrder),
            Some(Pause::Endpoint(Endpoint::NewOrder))
        );
        assert_eq!(w.pause(Endpoint::Directory), Some(Pause::Ca));
        let maintenance = answer(503, ProblemType::ServerInternal, "Scheduled Maintenance", 5);
        let w = Wait::of(&maintenance, now).unwrap();
        assert_eq!(w.pause(Endpoint::Finalize), Some(Pause::Ca));

        let limit = answer(
            429,
            ProblemType::RateLimited,
            "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s",
            3600,
        );
        let w = Wait::of(&limit, now).unwrap();
        assert_eq!(w.limit, Some(RateLimitScope::ExactSet));
        assert_eq!(
            w.pause(Endpoint::NewOrder),
            None,
            "a limit holds its scope only"
        );
        assert!(w.reason.contains("exact set"));
        let rate = answer(429, ProblemType::RateLimited, "slow down", 10);
        assert_eq!(
            Wait::of(&rate, now).unwrap().pause(Endpoint::NewNonce),
            Some(Pause::Endpoint(Endpoint::NewNonce))
        );
        // Read through retries that gave up, on the clock given.
        let gave_up = Error::GaveUp {
            attempts: 3,
            elapsed: Duration::from_secs(9),
            source: Box::new(outage),
        };
        let later = now + Duration::from_secs(20);
        let w = Wait::of(&gave_up, later).unwrap();
        assert_eq!(w.delay, Duration::from_secs(10));
        assert_eq!(w.asked, Duration::from_secs(30), "as the CA said it");
        // A local refusal is not the CA's word; no Retry-After, no wait.
        let local = Error::RateLimitedLocally {
            retry_at: now + Duration::from_secs(60),
            limit: "x".into(),
            scope: RateLimitScope::Account,
            reason: "x".into(),
        };
        assert_eq!(Wait::of(&local, now), None);
        let plain = answer(400, ProblemType::Malformed, "no", 0);
        let Error::Problem {
            mut request,
            problem,
        } = plain
        else {
            unreachable!()
        };
        request.retry_after = None;
        assert_eq!(Wait::of(&Error::Problem { request, problem }, now), None);
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_and_limits_are_answered_per_scope_until_they_end() {
        let waits = Waits::default();
        let start = Instant::now();
        assert!(waits.pause(Pause::Endpoint(Endpoint::NewOrder), Duration::from_secs(30)));
        assert!(!waits.pause(Pause::Endpoint(Endpoint::NewOrder), Duration::from_secs(10)));
        assert_eq!(
            waits.paused_until(Endpoint::NewOrder),
            Some(start + Duration::from_secs(30))
        );
        assert_eq!(waits.paused_until(Endpoint::Finalize), None);
        assert_eq!(
            waits.any_paused_until(),
            Some(start + Duration::from_secs(30))
        );
        // Capped, whatever the CA says.
        waits.pause(Pause::Ca, Duration::from_secs(86_400));
        assert_eq!(
            waits.paused_until(Endpoint::Finalize),
            Some(start + MAX_PAUSE)
        );

        let ids = |names: &[&str]| -> Vec<Identifier> {
            names.iter().map(|n| Identifier::dns(n).unwrap()).collect()
        };
        let now = SystemTime::now();
        let domain = answer_at(
            now,
            429,
            ProblemType::RateLimited,
            "too many certificates (50) already issued for \"example.com\" in the last 168h0m0s",
            600,
        );
        let wait = Wait::of(&domain, now).unwrap();
        waits.hold("acct", &ids(&["a.example.com"]), &wait);
        let refused = waits
            .check_new_order("acct", &ids(&["*.b.example.com"]))
            .unwrap_err();
        assert_eq!(
            refused.retry_at(),
            Some(now + Duration::from_secs(600)),
            "{refused}"
        );
        assert!(
            waits
                .check_new_order("other", &ids(&["a.example.com"]))
                .is_ok()
        );
        assert!(
            waits
                .check_new_order("acct", &ids(&["example.org"]))
                .is_ok()
        );
        tokio::time::advance(Duration::from_secs(601)).await;
        assert!(
            waits
                .check_new_order("acct", &ids(&["a.example.com"]))
                .is_ok()
        );
        assert_eq!(waits.any_paused_until(), Some(start + MAX_PAUSE));
        tokio::time::advance(MAX_PAUSE).await;
        assert_eq!(waits.any_paused_until(), None);
    }
}
