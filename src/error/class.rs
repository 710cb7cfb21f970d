//! What kind of failure an [`Error`] is ([`ErrorClass`]), which decides how
//! it is retried, and how a CA's problem document is classified (rate-limit
//! scopes, CAA causes).

use super::*;

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

pub(super) fn caa_class(problem: &Problem) -> ErrorClass {
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
pub(super) fn retry_at_from_detail(detail: &str) -> Option<SystemTime> {
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

pub(super) fn classify_problem(request: &RequestInfo, problem: &Problem) -> ErrorClass {
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
