//! Errors: one [`Error`] type for everything the crate can fail at, with the
//! CA's RFC 7807 [`Problem`] kept whole.
//!
//! Every failure that came from an HTTP exchange carries a [`RequestInfo`]:
//! the method, the URL, the HTTP status (when a response arrived) and the
//! parsed `Retry-After` header. That is what a retry policy needs to treat a
//! `badNonce`, a 429, a 403 CAA recheck, a 5xx and a timeout differently.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::dns::DnsError;
use crate::protocol::Identifier;
pub(crate) use crate::protocol::problem::{Problem, ProblemType};
use crate::protocol::timestamp::{self, DisplayTime};

mod class;
mod exchange;
mod retry_after;
mod store;

pub use class::{CaaCause, ErrorClass, RateLimitScope};
use class::{caa_class, classify_problem};
pub use exchange::{RequestInfo, TransportFailure};
pub use retry_after::{MAX_RETRY_AFTER, RetryAfter};
pub use store::{DatabaseErrorKind, StoreError};

/// Everything that can go wrong in this crate.
///
/// # Example
///
/// A CA's refusal as the caller sees it: the problem document, the
/// HTTP status and the class that decides what to do next.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use sturdy_acme_testca::TestCa;
/// use sturdy_acme::{AccountKey, AccountOptions, Error, ErrorClass, KeyAlgorithm, NewOrder, ProblemType};
///
/// let ca = TestCa::builder().blocked_domains(&["blocked.example"]).start().await?;
/// let account = ca
///     .client()
///     .await?
///     .create_account(AccountKey::generate(KeyAlgorithm::Es256)?, &AccountOptions::agreeing_to_terms())
///     .await?;
/// let err = account.new_order(&NewOrder::for_names(&["www.blocked.example"])?).await.unwrap_err();
/// assert_eq!(err.problem_type(), Some(&ProblemType::RejectedIdentifier));
/// assert_eq!(err.status(), Some(400));
/// assert_eq!(err.class(), ErrorClass::Permanent); // repeating will not help
/// assert!(!err.is_rate_limited() && err.retry_after().is_none());
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The CA answered with an RFC 7807 problem document. A `caa` problem's
    /// message says the domain's DNS decides it, not the client.
    #[error("{request}: {problem}{hint}", hint = problem_hint(problem))]
    Problem {
        /// The exchange.
        request: Box<RequestInfo>,
        /// The problem, whole.
        problem: Box<Problem>,
    },

    /// The CA answered with an error status but no problem document
    /// (for example a 500 with an empty body).
    #[error("{request}: HTTP error without a problem document ({body})")]
    Status {
        /// The exchange.
        request: Box<RequestInfo>,
        /// A short, printable excerpt of the body (`"empty body"` if there was none).
        body: String,
    },

    /// The exchange failed below HTTP: timeout, refused or reset connection.
    #[error("{request}: {failure}: {source}")]
    Transport {
        /// The exchange.
        request: Box<RequestInfo>,
        /// What kind of failure it was.
        failure: TransportFailure,
        /// The underlying HTTP client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The CA answered, but the answer was unusable: invalid JSON, a missing
    /// header, a URL that is not HTTPS. A success (2xx) answer read in full
    /// that is unusable is a [`ErrorClass::Protocol`] error, not retried
    /// ([`Error::is_unusable_answer`]); a body cut short is a
    /// [`Error::Transport`] reset.
    #[error("{request}: invalid response: {reason}")]
    InvalidResponse {
        /// The exchange.
        request: Box<RequestInfo>,
        /// What was wrong with it.
        reason: String,
    },

    /// An authorization became `invalid`: the CA could not validate an identifier.
    #[error("validation of {identifier} failed: {}", problem.as_ref().map(|p| p.to_string()).unwrap_or_else(|| "no problem reported".into()))]
    ValidationFailed {
        /// The identifier whose authorization failed.
        identifier: Identifier,
        /// The challenge's (or authorization's) problem, if the CA gave one.
        problem: Option<Box<Problem>>,
    },

    /// An order became `invalid`.
    #[error("order {url} is invalid: {}", problem.as_ref().map(|p| p.to_string()).unwrap_or_else(|| "no problem reported".into()))]
    OrderInvalid {
        /// The order URL.
        url: String,
        /// The order's problem, if the CA gave one.
        problem: Option<Box<Problem>>,
    },

    /// The CA's answer was larger than the client accepts
    /// ([`ClientBuilder::max_response_body`](crate::ClientBuilder::max_response_body)):
    /// a broken or hostile server. Nothing beyond the limit was read.
    #[error("{request}: response body larger than the {limit}-byte limit")]
    ResponseTooLarge {
        /// The exchange.
        request: Box<RequestInfo>,
        /// The limit in bytes.
        limit: usize,
    },

    /// Retrying stopped: the attempts or the time budget of the error's class
    /// ran out. `source` is the last failure.
    #[error("gave up after {attempts} attempts over {elapsed:.1?}: {source}")]
    GaveUp {
        /// Requests sent, the first included.
        attempts: u32,
        /// Time from the first attempt to giving up.
        elapsed: Duration,
        /// The last error.
        #[source]
        source: Box<Error>,
    },

    /// Refused locally, without a request, because a rate limit is known to
    /// be exhausted until `retry_at` (from an earlier 429, or the client-side
    /// ledger's accounting of the CA's published limits).
    #[error("rate limited ({limit}) until {} without asking the CA: {reason}", DisplayTime(*retry_at))]
    RateLimitedLocally {
        /// When the request may be made again.
        retry_at: SystemTime,
        /// Which limit: the CA's wording or the ledger's limit name.
        limit: String,
        /// What it applies to.
        scope: RateLimitScope,
        /// Why (e.g. the CA's earlier problem detail).
        reason: String,
    },

    /// The CA answered in a way the protocol does not allow and that
    /// retrying will not fix (finalize answered with `ready`, more
    /// authorizations than identifiers, an authorization for an identifier
    /// that was not ordered). Nothing is repeated blindly.
    #[error("the CA broke the protocol at {url}: {reason}")]
    ProtocolViolation {
        /// The resource or request URL.
        url: String,
        /// What was wrong.
        reason: String,
    },

    /// A journalled order whose finalize may already have been sent could
    /// not be read back. The journal and the certificate key are kept: the
    /// next `ensure` resumes this order; nothing new was ordered.
    #[error(
        "the order {url}, finalized or being finalized, could not be read (kept for the next attempt): {source}"
    )]
    OrderUnresolved {
        /// The order URL.
        url: String,
        /// Why the read failed.
        #[source]
        source: Box<Error>,
    },

    /// A non-idempotent request (ACME v1 `new-cert`) was sent and its
    /// answer was lost, so the CA may have acted; repeating it blind could
    /// issue a duplicate, so it was not repeated. Nothing is guessed: a
    /// certificate finder, or an explicit allowance to repeat, decides.
    #[error("outcome of {url} unknown, not repeated: {reason}")]
    OutcomeUnknown {
        /// The request URL.
        url: String,
        /// What is known and what would resolve it.
        reason: String,
    },

    /// The lease that guards an issuance was lost to another holder (or its
    /// renewal failed past its expiry): this process stopped before the
    /// next journal write or non-idempotent request.
    #[error("lease {name} lost (fencing token {token}): {reason}")]
    LeaseLost {
        /// The lease name.
        name: String,
        /// The token this process held.
        token: u64,
        /// What happened.
        reason: String,
    },

    /// The durable store failed.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// A resource did not reach the awaited state within the polling budget.
    #[error("{what} at {url} still {status} after {waited:?}")]
    PollTimeout {
        /// What was being polled ("order", "authorization").
        what: &'static str,
        /// Its URL.
        url: String,
        /// Its last status.
        status: String,
        /// How long polling went on.
        waited: Duration,
    },

    /// The caller passed something unusable (bad domain name, bad key, bad option).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A cryptographic operation failed (key parsing, signing, CSR building).
    #[error("crypto: {0}")]
    Crypto(String),

    /// The CA does not offer what was asked for (missing directory entry,
    /// algorithm or feature it lacks).
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// Local I/O failed (e.g. the standalone http-01 responder could not bind).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),

    /// A DNS operation of a solver or of the CAA pre-flight failed (a
    /// nameserver timed out, an UPDATE was refused, a value did not reach
    /// every nameserver): transient or not as [`DnsError::is_transient`]
    /// says.
    #[error("DNS: {0}")]
    Dns(#[from] DnsError),

    /// The CAA pre-flight ([`crate::caa`]) found, before any order, that the
    /// CA's CAA check would fail: a record forbids this CA
    /// ([`CaaCause::Forbidden`]), or a nameserver of the domain does not
    /// answer ([`CaaCause::LookupFailed`]). Classed [`ErrorClass::Caa`].
    #[error("CAA pre-flight: {summary}")]
    CaaPreflight {
        /// The names whose check failed.
        names: Vec<String>,
        /// Forbidden or unreachable.
        cause: CaaCause,
        /// Each failed name's verdict with its evidence (record, or
        /// nameserver, zone and wait).
        summary: String,
    },

    /// A [`CaSet`](crate::ca_set::CaSet) could not fail over: the CA named
    /// holds an order for the set that may have been finalized (its
    /// journal is at finalize or later), and it could not be resolved
    /// there (`source`). Nothing is ordered at another CA until it is: the
    /// journal and key are kept and the next `ensure` resumes it. Classed
    /// as `source` is (usually transient: call again later).
    #[error(
        "{set}: the order at CA {ca} may have been finalized and is resolved there before any other CA is asked: {source}"
    )]
    FailoverBlocked {
        /// The identifier set.
        set: String,
        /// The CA holding the order.
        ca: String,
        /// Why it could not be resolved now.
        #[source]
        source: Box<Error>,
    },

    /// The CA asked for a pause of `endpoint` (a 503 or a request-rate 429
    /// with `Retry-After`) that runs longer than this client holds a
    /// request for (a [`CaSet`](crate::ca_set::CaSet) member's
    /// [`max_pause`](crate::ca_set::CaSetBuilder::max_pause)): nothing was
    /// sent. Classed transient; the retry loop does not wait it out.
    #[error("the CA asked to pause {endpoint} for {left:?} more: not waited here, nothing sent")]
    Paused {
        /// The endpoint.
        endpoint: &'static str,
        /// How long the pause still runs.
        left: Duration,
    },

    /// What a CA of a [`CaSet`](crate::ca_set::CaSet) holds for the set
    /// kept changing while the set decided (another process issuing for
    /// the names at that CA without going through the set): nothing was
    /// ordered. Classed transient: call again.
    #[error(
        "{set}: what CA {ca} holds for the set kept changing while the CA set decided (another process issues for it outside the set?); nothing was ordered"
    )]
    SetChanged {
        /// The identifier set.
        set: String,
        /// The CA.
        ca: String,
    },

    /// No CA of a [`CaSet`](crate::ca_set::CaSet) may or can issue for the
    /// set now: each was passed over, with its reason. Classed by the
    /// reasons: all forbidden by CAA is [`ErrorClass::Caa`]; any rate limit
    /// (and no CA down) is [`ErrorClass::RateLimited`] until the earliest;
    /// a refusal by every CA is permanent; else transient.
    #[error("{set}: no CA may issue now ({})", skipped.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NoEligibleCa {
        /// The identifier set.
        set: String,
        /// Every CA of the set, in order of preference, with why it was
        /// passed over.
        skipped: Vec<crate::protocol::choice::SkippedCa>,
    },

    /// A downloaded chain is not the certificate its journal is for: the
    /// leaf certifies another key, names other identifiers than the order,
    /// or does not chain to the issuer it names. Nothing is stored and the
    /// journal (with its key) is kept: the next attempt downloads again.
    /// Classed [`ErrorClass::Protocol`] (a broken CA, not a network blip).
    #[error("the certificate at {url} does not match its order: {reason}")]
    CertificateMismatch {
        /// The certificate URL.
        url: String,
        /// What does not match.
        reason: String,
    },

    /// A revocation list that cannot be trusted: it does not parse, is not
    /// signed by the certificate's issuer, or is another shard's (see
    /// [`crate::crl`]). Classed [`ErrorClass::Protocol`]: fetching it again
    /// gets the same list.
    #[error("the revocation list at {url} is refused: {reason}")]
    InvalidCrl {
        /// Where it was fetched from.
        url: String,
        /// Why it is refused.
        reason: String,
    },
}

impl Error {
    /// The HTTP exchange this error came from, if any.
    pub fn request(&self) -> Option<&RequestInfo> {
        match self {
            Self::Problem { request, .. }
            | Self::Status { request, .. }
            | Self::Transport { request, .. }
            | Self::InvalidResponse { request, .. }
            | Self::ResponseTooLarge { request, .. } => Some(request),
            Self::GaveUp { source, .. } | Self::OrderUnresolved { source, .. } => source.request(),
            _ => None,
        }
    }

    /// The CA's problem document, if there was one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Problem { problem, .. } => Some(problem),
            Self::ValidationFailed { problem, .. } | Self::OrderInvalid { problem, .. } => {
                problem.as_deref()
            }
            Self::GaveUp { source, .. } => source.problem(),
            _ => None,
        }
    }

    /// The problem type, if there was a problem document.
    pub fn problem_type(&self) -> Option<&ProblemType> {
        self.problem().map(|p| &p.kind)
    }

    /// The HTTP status of the failed response, if one arrived.
    pub fn status(&self) -> Option<u16> {
        self.request().and_then(|r| r.status)
    }

    /// The request URL, if the error came from an HTTP exchange.
    pub fn url(&self) -> Option<&str> {
        match self {
            Self::OrderInvalid { url, .. } | Self::PollTimeout { url, .. } => Some(url),
            Self::GaveUp { source, .. } => source.url(),
            _ => self.request().map(|r| r.url.as_str()),
        }
    }

    /// True when the request was never sent (the connection could not be
    /// made): repeating it is safe even when it is not idempotent.
    pub fn is_not_sent(&self) -> bool {
        match self {
            Self::Transport {
                failure: TransportFailure::Connect,
                request,
                ..
            } => request.status.is_none(),
            Self::GaveUp { source, .. } => source.is_not_sent(),
            // Refused by this client's hold limit before the wire.
            Self::Paused { .. } => true,
            _ => false,
        }
    }

    /// The `Retry-After` the server sent with the failure, if any.
    pub fn retry_after(&self) -> Option<RetryAfter> {
        self.request().and_then(|r| r.retry_after)
    }

    /// True for a timeout of the exchange (the request's outcome is unknown).
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::GaveUp { source, .. } => source.is_timeout(),
            other => matches!(
                other,
                Self::Transport {
                    failure: TransportFailure::Timeout,
                    ..
                }
            ),
        }
    }

    /// True when the CA answered with a success status, the body was read
    /// in full, and the answer is unusable (not the expected JSON, a
    /// required header missing): a [`ErrorClass::Protocol`] error. The
    /// request reached the CA and it acted, so for a request that is not
    /// idempotent the outcome is known to be "done" and is read back, never
    /// repeated.
    pub fn is_unusable_answer(&self) -> bool {
        match self {
            Self::InvalidResponse { request, .. } => {
                request.status.is_some_and(|s| (200..300).contains(&s))
            }
            Self::GaveUp { source, .. } => source.is_unusable_answer(),
            _ => false,
        }
    }

    /// True for a `badNonce` problem.
    pub fn is_bad_nonce(&self) -> bool {
        self.problem_type() == Some(&ProblemType::BadNonce)
    }

    /// True for a rate-limit answer (`rateLimited` problem or HTTP 429), or
    /// a local refusal because of one.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self.class(), ErrorClass::RateLimited { .. })
    }

    /// When a rate-limited request may be retried (server `Retry-After`, the
    /// date in the CA's detail, or the local ledger's refill time).
    pub fn retry_at(&self) -> Option<SystemTime> {
        match self.class() {
            ErrorClass::RateLimited { retry_at, .. } => retry_at,
            _ => self.retry_after().map(|r| r.at()),
        }
    }

    /// What kind of failure this is, which decides how it is retried
    /// (see `RetryPolicy`).
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::GaveUp { source, .. } => source.class(),
            Self::RateLimitedLocally {
                retry_at, scope, ..
            } => ErrorClass::RateLimited {
                retry_at: Some(*retry_at),
                scope: scope.clone(),
                local: true,
            },
            Self::Problem { request, problem } => classify_problem(request, problem),
            Self::Status { request, .. } => match request.status {
                Some(429) => ErrorClass::RateLimited {
                    retry_at: request.retry_after.map(|r| r.at()),
                    scope: RateLimitScope::Unknown,
                    local: false,
                },
                Some(s) if s >= 500 => ErrorClass::Transient,
                // A 408 or a proxy's 4xx without a problem document.
                Some(408) => ErrorClass::Transient,
                _ => ErrorClass::Permanent,
            },
            // A 2xx answer read in full that is unusable (not the expected
            // JSON, no Location): the CA acted and said something this
            // client cannot read; asking again gets the same. Anything else
            // (a body cut short is a `Transport` reset) may be a blip.
            Self::InvalidResponse { .. } if self.is_unusable_answer() => ErrorClass::Protocol,
            Self::Transport { .. } | Self::InvalidResponse { .. } => ErrorClass::Transient,
            Self::ResponseTooLarge { .. } => ErrorClass::Protocol,
            Self::ValidationFailed {
                identifier,
                problem,
            } => ErrorClass::Validation {
                problems: vec![(identifier.clone(), problem.as_deref().cloned())],
            },
            Self::OrderInvalid { problem, .. } => match problem.as_deref() {
                Some(p) if p.kind == ProblemType::Caa => caa_class(p),
                _ => ErrorClass::Permanent,
            },
            Self::PollTimeout { .. } => ErrorClass::Transient,
            Self::ProtocolViolation { .. }
            | Self::CertificateMismatch { .. }
            | Self::InvalidCrl { .. } => ErrorClass::Protocol,
            Self::OutcomeUnknown { .. } => ErrorClass::Permanent,
            // Both mean "call again later": the state is kept.
            Self::OrderUnresolved { .. } | Self::LeaseLost { .. } => ErrorClass::Transient,
            Self::InvalidInput(_) => ErrorClass::InvalidInput,
            Self::Crypto(_) => ErrorClass::Crypto,
            Self::Unsupported(_) => ErrorClass::Permanent,
            Self::Store(StoreError::Database {
                kind: DatabaseErrorKind::Transient | DatabaseErrorKind::OutcomeUnknown,
                ..
            }) => ErrorClass::Transient,
            Self::Io(_) | Self::Store(_) => ErrorClass::Store,
            Self::CaaPreflight { names, cause, .. } => ErrorClass::Caa {
                names: names.clone(),
                cause: *cause,
            },
            Self::Dns(e) if e.is_transient() => ErrorClass::Transient,
            Self::Dns(_) => ErrorClass::Permanent,
            Self::FailoverBlocked { source, .. } => source.class(),
            Self::SetChanged { .. } | Self::Paused { .. } => ErrorClass::Transient,
            Self::NoEligibleCa { set, skipped } => no_eligible_ca_class(set, skipped),
        }
    }

    /// The identifiers the CA's problem names (its own and its subproblems').
    pub fn identifiers(&self) -> Vec<&Identifier> {
        let mut ids = self.problem().map(Problem::identifiers).unwrap_or_default();
        if let Self::ValidationFailed { identifier, .. } = self {
            ids.insert(0, identifier);
        }
        ids
    }
}

/// What a problem's message adds to the CA's words: for `caa`, that the
/// domain's DNS decides it (the founding story's operators could not tell
/// it from a client fault).
fn problem_hint(problem: &Problem) -> &'static str {
    match problem.kind {
        ProblemType::Caa => {
            " (decided by the domain's DNS, not by this client: a CAA record forbids the CA, \
             or the domain's nameservers did not answer the CA's CAA query)"
        }
        _ => "",
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::protocol::identifier::InvalidIdentifier> for Error {
    fn from(e: crate::protocol::identifier::InvalidIdentifier) -> Self {
        Error::InvalidInput(e.0)
    }
}

/// The class of [`Error::NoEligibleCa`], from why each CA was passed over.
fn no_eligible_ca_class(set: &str, skipped: &[crate::protocol::choice::SkippedCa]) -> ErrorClass {
    use crate::protocol::choice::SkipReason;
    let all =
        |f: fn(&SkipReason) -> bool| !skipped.is_empty() && skipped.iter().all(|s| f(&s.reason));
    let names = || {
        set.trim_matches(|c| c == '[' || c == ']')
            .split(", ")
            .map(str::to_owned)
            .collect()
    };
    if all(|r| matches!(r, SkipReason::CaaForbidden { .. } | SkipReason::NotAllowed)) {
        return ErrorClass::Caa {
            names: names(),
            cause: CaaCause::Forbidden,
        };
    }
    if all(|r| {
        matches!(
            r,
            SkipReason::Refused { .. } | SkipReason::CaaForbidden { .. } | SkipReason::NotAllowed
        )
    }) {
        return ErrorClass::Permanent;
    }
    let down = skipped.iter().any(|s| {
        matches!(
            s.reason,
            SkipReason::Down { .. }
                | SkipReason::Failed { .. }
                | SkipReason::Paused { .. }
                | SkipReason::NoAccount { .. }
        )
    });
    let earliest = skipped
        .iter()
        .filter_map(|s| match s.reason {
            SkipReason::RateLimited { until, .. } => Some(until),
            _ => None,
        })
        .min();
    match earliest {
        Some(until) if !down => ErrorClass::RateLimited {
            retry_at: Some(timestamp::from_unix(until)),
            scope: RateLimitScope::Unknown,
            local: true,
        },
        _ => ErrorClass::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_000);
        let ra = RetryAfter::parse("120", now).unwrap();
        assert_eq!(ra.delay(), Duration::from_secs(120));
        assert_eq!(ra.at(), now + Duration::from_secs(120));

        // Wed, 21 Oct 2015 07:28:00 GMT = 1445412480
        let ra = RetryAfter::parse("Wed, 21 Oct 2015 07:28:00 GMT", now).unwrap();
        assert_eq!(ra.delay(), Duration::from_secs(480));
        assert_eq!(
            ra.at(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
        );

        // A date in the past means "now".
        let ra = RetryAfter::parse("Wed, 21 Oct 2015 07:00:00 GMT", now).unwrap();
        assert_eq!(ra.delay(), Duration::ZERO);

        // Garbage and negative numbers are not Retry-After values.
        assert!(RetryAfter::parse("soon", now).is_none());
        assert!(RetryAfter::parse("-5", now).is_none());
        assert!(RetryAfter::parse("", now).is_none());

        // Absurd values are capped.
        let ra = RetryAfter::parse("99999999999999999999999", now).unwrap();
        assert_eq!(ra.delay(), MAX_RETRY_AFTER);
        assert_eq!(ra.remaining(now + MAX_RETRY_AFTER * 2), Duration::ZERO);
    }

    /// Issue 16, defect 1: a 429 without Retry-After whose detail names a
    /// date past year 9999 (once its offset is applied) is clamped to the
    /// horizon, and neither the class nor the error panics when printed.
    #[test]
    fn far_future_retry_after_in_a_detail_is_clamped_and_prints() {
        for detail in [
            "too many certificates already issued: retry after 9999-12-31T23:59:59-01:00",
            "too many certificates: retry after 9999-12-31 23:59:59 UTC",
            "too many certificates: retry after 1970-01-01T00:00:01Z",
        ] {
            let error = Error::Problem {
                request: Box::new(RequestInfo {
                    method: "POST",
                    url: "https://ca.example/new-order".into(),
                    status: Some(429),
                    retry_after: None,
                }),
                problem: Box::new(Problem::new(ProblemType::RateLimited, detail)),
            };
            let before = SystemTime::now();
            let ErrorClass::RateLimited {
                retry_at: Some(at), ..
            } = error.class()
            else {
                panic!("not rate limited: {:?}", error.class());
            };
            assert!(at >= before, "{detail}: the past means now");
            assert!(
                at <= SystemTime::now() + MAX_RETRY_AFTER,
                "{detail}: clamped to the horizon"
            );
            // Printing never panics.
            let _ = error.to_string();
            let _ = error.class().to_string();
            let local = Error::RateLimitedLocally {
                retry_at: SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4),
                limit: "x".into(),
                scope: RateLimitScope::Unknown,
                reason: detail.into(),
            };
            assert!(local.to_string().contains('@'));
        }
    }

    #[test]
    fn problem_with_subproblems_and_unknown_type() {
        let json = r#"{
            "type": "urn:ietf:params:acme:error:rejectedIdentifier",
            "detail": "Some of the identifiers requested were rejected",
            "status": 400,
            "subproblems": [
                {"type": "urn:ietf:params:acme:error:malformed",
                 "detail": "Invalid underscore in DNS name \"_example.org\"",
                 "identifier": {"type": "dns", "value": "_example.org"}},
                {"type": "urn:example:error:custom",
                 "detail": "This CA will not issue for \"example.net\"",
                 "identifier": {"type": "dns", "value": "example.net"},
                 "x-extra": 7}
            ]
        }"#;
        let p: Problem = serde_json::from_str(json).unwrap();
        assert_eq!(p.kind, ProblemType::RejectedIdentifier);
        assert_eq!(p.status, Some(400));
        assert_eq!(p.subproblems.len(), 2);
        assert_eq!(p.subproblems[0].kind, ProblemType::Malformed);
        assert_eq!(
            p.subproblems[1].kind,
            ProblemType::Other("urn:example:error:custom".into())
        );
        assert_eq!(p.subproblems[1].extra["x-extra"], 7);
        let ids: Vec<String> = p.identifiers().iter().map(|i| i.value.clone()).collect();
        assert_eq!(ids, ["_example.org", "example.net"]);
        // Round trip keeps everything, unknown type verbatim.
        let back: Problem = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        assert!(p.to_string().contains("_example.org"));
    }

    #[test]
    fn problem_type_names() {
        for (urn, kind) in [
            ("urn:ietf:params:acme:error:badNonce", ProblemType::BadNonce),
            ("urn:acme:error:badNonce", ProblemType::BadNonce),
            ("urn:ietf:params:acme:error:badCSR", ProblemType::BadCsr),
            ("urn:acme:error:connectionError", ProblemType::Connection),
            ("urn:acme:error:unknownHost", ProblemType::Dns),
            ("urn:ietf:params:acme:error:caa", ProblemType::Caa),
            (
                "urn:ietf:params:acme:error:alreadyReplaced",
                ProblemType::AlreadyReplaced,
            ),
        ] {
            assert_eq!(ProblemType::from_urn(urn), kind, "{urn}");
        }
        assert_eq!(
            ProblemType::RateLimited.urn(),
            "urn:ietf:params:acme:error:rateLimited"
        );
        // Missing type is about:blank, not a parse failure.
        let p: Problem = serde_json::from_str(r#"{"detail":"x"}"#).unwrap();
        assert_eq!(p.kind, ProblemType::Other("about:blank".into()));
    }
}
