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

/// The longest `Retry-After` the crate will believe; anything longer is capped.
///
/// A broken or hostile server must not be able to park a client for years.
pub const MAX_RETRY_AFTER: Duration = crate::protocol::timestamp::DEFAULT_HORIZON;

/// A `Retry-After` header (RFC 9110 §10.2.3), in either of its forms.
///
/// Both forms are resolved to an absolute time when the response arrives, so
/// the value stays meaningful however long the caller keeps the error.
///
/// Example: [`Error`] and [`ErrorClass`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    at: SystemTime,
    delay: Duration,
}

impl RetryAfter {
    /// Parses a header value (`"120"` or `"Wed, 21 Oct 2015 07:28:00 GMT"`)
    /// received at `now`. Delays longer than [`MAX_RETRY_AFTER`] are capped;
    /// dates in the past mean "now". Returns `None` for anything else.
    pub fn parse(value: &str, now: SystemTime) -> Option<Self> {
        let value = value.trim();
        let delay = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            // Saturate on absurdly long digit strings instead of failing.
            Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
        } else {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        };
        let delay = delay.min(MAX_RETRY_AFTER);
        Some(Self {
            at: now + delay,
            delay,
        })
    }

    /// A `Retry-After` of `delay` from `now` (capped like a parsed one).
    pub fn after(delay: Duration, now: SystemTime) -> Self {
        let delay = delay.min(MAX_RETRY_AFTER);
        Self {
            at: now + delay,
            delay,
        }
    }

    /// The absolute time after which the request may be retried.
    pub fn at(&self) -> SystemTime {
        self.at
    }

    /// The delay the server asked for, measured from when its answer arrived.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// How long is left to wait from `now` (zero once the time has passed).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.at.duration_since(now).unwrap_or(Duration::ZERO)
    }
}

/// What is known about the HTTP exchange an error came from.
///
/// Example: [`Error`] and [`ErrorClass`].
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// HTTP method (`POST`, `HEAD`, `GET`).
    pub method: &'static str,
    /// The request URL.
    pub url: String,
    /// The HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// The response's `Retry-After`, parsed, if it sent one.
    pub retry_after: Option<RetryAfter>,
}

impl fmt::Display for RequestInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.url)?;
        if let Some(status) = self.status {
            write!(f, " -> {status}")?;
        }
        Ok(())
    }
}

/// Why an exchange failed before a complete, well-formed answer arrived.
///
/// Example: [`Error`] and [`ErrorClass`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportFailure {
    /// The request or the connection timed out.
    Timeout,
    /// The connection could not be established.
    Connect,
    /// The connection broke while sending or receiving (reset, closed early).
    Reset,
    /// Anything else the HTTP stack reported.
    Other,
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "timed out",
            Self::Connect => "connection failed",
            Self::Reset => "connection broken",
            Self::Other => "HTTP failure",
        })
    }
}

/// Everything that can go wrong in this crate.
///
/// # Example
///
/// A CA's refusal as the caller sees it: the problem document, the
/// HTTP status and the class that decides what to do next.
///
/// ```
/// # #[cfg(feature = "testing")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use sturdy_acme::testing::TestCa;
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
/// # #[cfg(not(feature = "testing"))]
/// # fn main() {}
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
            Self::ProtocolViolation { .. } | Self::CertificateMismatch { .. } => {
                ErrorClass::Protocol
            }
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

/// Which rate limit a 429 (or a local refusal) is about, read from the CA's
/// problem detail (Boulder's wording).
///
/// Example: [`Error`] and [`ErrorClass`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateLimitScope {
    /// New orders per account.
    Account,
    /// Certificates per exact set of identifiers (duplicates).
    ExactSet,
    /// Certificates per registered domain (the domain named).
    RegisteredDomain(String),
    /// Failed authorizations for one identifier.
    Identifier(String),
    /// New registrations per IP address or range.
    NewRegistrations,
    /// A 503 from the CA's load balancers or a wording this crate does not know.
    Unknown,
}

impl RateLimitScope {
    /// The limit's name as Let's Encrypt publishes it (e.g. "New
    /// Certificates per Exact Set of Identifiers"), for messages a person
    /// reads next to the CA's documentation.
    ///
    /// ```
    /// use sturdy_acme::RateLimitScope;
    /// let scope = RateLimitScope::from_detail(
    ///     "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s",
    /// );
    /// assert_eq!(scope.limit_name(), "New Certificates per Exact Set of Identifiers");
    /// ```
    pub fn limit_name(&self) -> &'static str {
        match self {
            Self::Account => "New Orders per Account",
            Self::ExactSet => "New Certificates per Exact Set of Identifiers",
            Self::RegisteredDomain(_) => "New Certificates per Registered Domain",
            Self::Identifier(_) => "Authorization Failures per Identifier per Account",
            Self::NewRegistrations => "New Registrations per IP Address",
            Self::Unknown => "an unnamed limit (or the CA's overall request rate)",
        }
    }

    /// Reads the scope from a Boulder-style `rateLimited` detail.
    pub fn from_detail(detail: &str) -> Self {
        let d = detail.to_ascii_lowercase();
        let quoted = || {
            detail
                .split('"')
                .nth(1)
                .map(|s| s.trim_end_matches('.').to_ascii_lowercase())
        };
        if d.contains("new orders") {
            Self::Account
        } else if d.contains("exact set") {
            Self::ExactSet
        } else if d.contains("failed authorizations") {
            quoted().map_or(Self::Unknown, Self::Identifier)
        } else if d.contains("certificates") && d.contains("already issued for") {
            quoted()
                .or_else(|| {
                    d.split("already issued for")
                        .nth(1)
                        .and_then(|r| r.trim_start_matches(':').split_whitespace().next())
                        .map(|s| s.trim_matches(|c| c == ',' || c == ':').to_owned())
                })
                .map_or(Self::Unknown, Self::RegisteredDomain)
        } else if d.contains("registrations") {
            Self::NewRegistrations
        } else {
            Self::Unknown
        }
    }
}

impl fmt::Display for RateLimitScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Account => f.write_str("new orders per account"),
            Self::ExactSet => f.write_str("certificates per exact set of identifiers"),
            Self::RegisteredDomain(d) => write!(f, "certificates per registered domain {d}"),
            Self::Identifier(i) => write!(f, "failed authorizations for {i}"),
            Self::NewRegistrations => f.write_str("new registrations"),
            Self::Unknown => f.write_str("unknown limit"),
        }
    }
}

/// Why a CAA check failed.
///
/// Example: [`Error`] and [`ErrorClass`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaaCause {
    /// A CAA record forbids this CA: retrying will not help until the
    /// domain's owner changes the record.
    Forbidden,
    /// The CA could not look the CAA records up (timeout, SERVFAIL): the
    /// domain's DNS is slow or broken; a later attempt may succeed.
    LookupFailed,
}

/// What kind of failure an [`Error`] is: each class has its own retry policy.
///
/// # Example
///
/// ```
/// use sturdy_acme::{Error, ErrorClass};
///
/// fn what_to_do(e: &Error) -> &'static str {
///     match e.class() {
///         ErrorClass::RateLimited { .. } => "wait until e.retry_at()",
///         ErrorClass::Caa { .. } => "tell the customer: their DNS",
///         ErrorClass::Validation { .. } => "check the solver for e.identifiers()",
///         ErrorClass::Transient => "the client already retried; try later",
///         _ => "a bug or bad input: do not retry",
///     }
/// }
/// let e = Error::InvalidInput("no names".into());
/// assert_eq!(e.class(), ErrorClass::InvalidInput);
/// assert_eq!(what_to_do(&e), "a bug or bad input: do not retry");
/// assert_eq!(e.class().name(), "invalid_input"); // a metric label
/// ```
///
/// Each class against a CA: [`Error`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// `badNonce`: re-sent at once with the nonce the rejection carried.
    BadNonce,
    /// A rate limit: never hammered; `retry_at` says when the same request may
    /// succeed.
    RateLimited {
        /// When to retry (Retry-After, or the date in the detail).
        retry_at: Option<SystemTime>,
        /// Which limit.
        scope: RateLimitScope,
        /// True when refused by the client itself, without a request.
        local: bool,
    },
    /// CAA: the domain's DNS, not the client.
    Caa {
        /// The identifiers whose CAA check failed.
        names: Vec<String>,
        /// Forbidden by a record, or the lookup failed.
        cause: CaaCause,
    },
    /// The CA could not validate identifiers (`unauthorized`, `dns`,
    /// `connection`, `incorrectResponse`, `tls` in a challenge): not retried
    /// blindly, each failure counts against the CA's failed-validation limit.
    Validation {
        /// The failing identifiers with their problems.
        problems: Vec<(Identifier, Option<Problem>)>,
    },
    /// Worth retrying after a backoff: 5xx, `serverInternal`, timeouts,
    /// connection failures and resets, truncated bodies. For a
    /// request that is not idempotent, the outcome is unknown: read the
    /// state before repeating it.
    Transient,
    /// The request is wrong for this CA and repeating it will not help
    /// (`malformed`, `rejectedIdentifier`, `badCSR`, `unauthorized`, ...).
    Permanent,
    /// The CA broke the protocol in a way retrying will not fix (an
    /// oversized body; a success answer, read in full, that is not what
    /// RFC 8555 says it is).
    Protocol,
    /// The caller's input was invalid (nothing was sent).
    InvalidInput,
    /// The local store failed.
    Store,
    /// A local cryptographic failure.
    Crypto,
}

impl ErrorClass {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::BadNonce => "bad_nonce",
            Self::RateLimited { .. } => "rate_limited",
            Self::Caa { .. } => "caa",
            Self::Validation { .. } => "validation",
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Protocol => "protocol",
            Self::InvalidInput => "invalid_input",
            Self::Store => "store",
            Self::Crypto => "crypto",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Caa {
                names,
                cause: CaaCause::LookupFailed,
            } => write!(
                f,
                "CAA lookup failed for {}: the domain's DNS did not answer the CA's CAA query \
                 (a problem of the domain's name servers, not of this client); it may succeed later",
                names.join(", ")
            ),
            Self::Caa {
                names,
                cause: CaaCause::Forbidden,
            } => write!(
                f,
                "CAA records of {} forbid this CA: the domain's owner must add the CA to its CAA records",
                names.join(", ")
            ),
            Self::RateLimited {
                retry_at, scope, ..
            } => match retry_at {
                Some(t) => write!(f, "rate limited ({scope}) until {}", DisplayTime(*t)),
                None => write!(f, "rate limited ({scope})"),
            },
            other => f.write_str(other.name()),
        }
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

fn caa_class(problem: &Problem) -> ErrorClass {
    let mut names: Vec<String> = problem
        .identifiers()
        .iter()
        .map(|i| i.value.clone())
        .collect();
    let mut details: Vec<&str> = problem
        .subproblems
        .iter()
        .filter_map(|s| s.detail.as_deref())
        .collect();
    details.extend(problem.detail.as_deref());
    if names.is_empty() {
        // "While processing CAA for example.com: ..." without subproblems.
        for d in &details {
            if let Some(rest) = d.split("CAA for ").nth(1) {
                let name: String = rest
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != ':' && *c != '"')
                    .collect();
                if !name.is_empty() && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    let lookup = details.iter().any(|d| {
        let d = d.to_ascii_lowercase();
        d.contains("timed out")
            || d.contains("servfail")
            || d.contains("dns problem")
            || d.contains("timeout")
    });
    let forbidden = details
        .iter()
        .any(|d| d.to_ascii_lowercase().contains("prevents issuance"));
    ErrorClass::Caa {
        names,
        cause: if lookup && !forbidden {
            CaaCause::LookupFailed
        } else {
            CaaCause::Forbidden
        },
    }
}

/// Parses "retry after 2026-01-02 15:04:05 UTC" (Boulder) or an RFC 3339 time.
fn retry_at_from_detail(detail: &str) -> Option<SystemTime> {
    let rest = detail.split("retry after ").nth(1)?;
    let boulder = rest.get(..23).filter(|s| s.ends_with(" UTC"));
    let parsed = match boulder {
        Some(s) => {
            let fmt = time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            );
            time::PrimitiveDateTime::parse(s, &fmt)
                .ok()
                .map(|t| t.assume_utc())
        }
        None => {
            let token: String = rest
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ',')
                .collect();
            let token = token.trim_end_matches(':');
            time::OffsetDateTime::parse(token, &time::format_description::well_known::Rfc3339).ok()
        }
    }?;
    // Untrusted: the past means now, years ahead means the horizon.
    let now = SystemTime::now();
    Some(timestamp::clamp(
        timestamp::from_unix(parsed.unix_timestamp()),
        now,
        MAX_RETRY_AFTER,
    ))
}

fn classify_problem(request: &RequestInfo, problem: &Problem) -> ErrorClass {
    match &problem.kind {
        ProblemType::BadNonce => ErrorClass::BadNonce,
        ProblemType::RateLimited => ErrorClass::RateLimited {
            retry_at: request
                .retry_after
                .map(|r| r.at())
                .or_else(|| problem.detail.as_deref().and_then(retry_at_from_detail)),
            scope: problem
                .detail
                .as_deref()
                .map_or(RateLimitScope::Unknown, RateLimitScope::from_detail),
            local: false,
        },
        ProblemType::Caa => caa_class(problem),
        ProblemType::ServerInternal => ErrorClass::Transient,
        ProblemType::Connection
        | ProblemType::Dns
        | ProblemType::IncorrectResponse
        | ProblemType::Tls
            if problem.identifier.is_some() =>
        {
            ErrorClass::Validation {
                problems: vec![(
                    problem.identifier.clone().expect("checked"),
                    Some(problem.clone()),
                )],
            }
        }
        _ if request.status == Some(429) => ErrorClass::RateLimited {
            retry_at: request.retry_after.map(|r| r.at()),
            scope: RateLimitScope::Unknown,
            local: false,
        },
        _ if request.status.is_some_and(|s| s >= 500) => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store operation failed. Every variant names what it was about.
///
/// Example: [`Error`] and [`ErrorClass`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing a file failed (permissions, read-only directory,
    /// disk full).
    #[error("store I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A record exists but cannot be trusted: truncated, not the expected
    /// format, or its checksum does not match. It is left in place (and a
    /// copy is kept aside) for a human to look at; it is never silently
    /// discarded or overwritten.
    #[error("corrupted store record {path}: {reason}")]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another holder has the lease.
    #[error("lease {name} is held by {holder} until {until:?}")]
    LeaseHeld {
        /// The lease name.
        name: String,
        /// Who holds it.
        holder: String,
        /// When it expires, seconds since the Unix epoch by the store's
        /// clock (for display: a holder never compares it with its own).
        until: u64,
    },
    /// The lease is no longer this holder's: another holder took it (its
    /// fencing token is newer), or it expired.
    #[error("lease {name} lost: {reason}")]
    LeaseLost {
        /// The lease name.
        name: String,
        /// The token the caller held.
        token: u64,
        /// What happened.
        reason: String,
    },
    /// A database behind the store failed ([`PostgresStore`]: the
    /// server, the connection or a statement), classified so the caller
    /// knows what to do: [`DatabaseErrorKind::Transient`] failures (a lost
    /// connection, a serialization failure, a restarting server) were
    /// already retried by the store for a while and are worth retrying
    /// later; the others are not.
    ///
    /// [`PostgresStore`]: crate::store::PostgresStore
    #[error("database ({kind:?}{}): {message}", code.as_deref().map(|c| format!(", SQLSTATE {c}")).unwrap_or_default())]
    Database {
        /// What kind of failure it is.
        kind: DatabaseErrorKind,
        /// The SQLSTATE code, when the server sent one.
        code: Option<String>,
        /// What happened (never a record's contents).
        message: String,
    },
    /// A sealed (encrypted) record could not be opened: the key-encryption
    /// key it names is not configured, or the record fails authentication
    /// (altered, or sealed for another record). It is left as it is; the
    /// issuer stops rather than take it for absent.
    #[error("sealed store record {record}: {reason}")]
    KeyEncryption {
        /// Which record.
        record: String,
        /// What is wrong.
        reason: String,
    },
    /// Anything a backend reports that fits nowhere else.
    #[error("store: {0}")]
    Other(String),
    /// A key-encryption key could not be read or built
    /// ([`KeyEncryptionKey::parse`](crate::store::KeyEncryptionKey::parse)):
    /// says which part is wrong, never what it holds (given in the wrong
    /// order, the "id" is the secret).
    #[error("key-encryption key: {reason}")]
    InvalidKeyEncryptionKey {
        /// What is wrong, naming the part (`id`, `key`), never its text.
        reason: String,
    },
    /// A database connection that could be downgraded to plain text was
    /// refused: a host that is not loopback (nor a Unix socket) with a
    /// `sslmode` other than `require`. Without TLS an attacker on the path
    /// reads private keys (without a key-encryption key) and can rewrite
    /// journals and leases.
    #[error(
        "PostgreSQL host {host} with sslmode={sslmode}: refused, the connection could run in plain \
         text (add sslmode=require to the URL; only loopback and Unix sockets may go without \
         TLS, unless PostgresStoreBuilder::danger_accept_plaintext is set)"
    )]
    PlaintextConnection {
        /// The first host that is not loopback.
        host: String,
        /// The `sslmode` asked for (`disable` or `prefer`).
        sslmode: &'static str,
    },
    /// A transaction's `COMMIT` was sent but its answer did not come (a
    /// timeout, a broken connection): it may or may not have been applied.
    /// The store does not repeat it blindly; where it can (the rate-limit
    /// ledger) it reads the outcome back first, and reports this only when
    /// even that failed. Not [`ErrorClass::Transient`]: the caller must
    /// read the state before doing the same again.
    #[error(
        "{operation}: the COMMIT's outcome is unknown ({message}); read the state before repeating it"
    )]
    CommitUnknown {
        /// The operation whose commit is in doubt.
        operation: String,
        /// What happened to the answer.
        message: String,
    },
}

/// What kind of database failure a [`StoreError::Database`] is.
///
/// Example: [`StoreError::Database`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseErrorKind {
    /// Worth retrying: the connection was lost or refused, the server is
    /// starting or shutting down, a transaction hit a serialization
    /// failure or deadlock, or an operation timed out.
    Transient,
    /// The server said a statement's completion is unknown (SQLSTATE
    /// 40003). The store does not repeat it; the caller re-reads state.
    /// Classed [`ErrorClass::Transient`] for the issuer, whose next attempt
    /// does. (A `COMMIT` left unanswered is [`StoreError::CommitUnknown`].)
    OutcomeUnknown,
    /// The database refused a write as inconsistent (a constraint
    /// violation): a bug in the store or a database changed by hand, never
    /// retried.
    Integrity,
    /// The schema is not one this version can use (newer than it knows, or
    /// a migration failed).
    Schema,
    /// The connection cannot work as configured: a bad URL, refused
    /// credentials, a TLS failure, a missing database.
    Configuration,
    /// Anything else the server reported.
    Other,
}

impl From<crate::protocol::identifier::InvalidIdentifier> for Error {
    fn from(e: crate::protocol::identifier::InvalidIdentifier) -> Self {
        Error::InvalidInput(e.0)
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
