//! What a failure at one CA means for the set: pass to the next CA (and
//! whether the CA counts as down), or stop with the error, because the
//! next CA would fail the same way, the failure is ours, or a rate limit
//! ends before the certificate is needed.

use std::time::{Duration, SystemTime};

use crate::error::{CaaCause, Error, ErrorClass};
use crate::protocol::{ProblemType, timestamp};
use crate::store::SkipReason;

/// The set's answer to one CA's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Judged {
    /// Pass to the next CA; `outage` marks this one down.
    Next {
        /// Why, for the journal of the next CA's issuance.
        reason: SkipReason,
        /// An outage: the CA is skipped for a while.
        outage: bool,
    },
    /// Stop with the error.
    Stop,
}

/// How long a 429 without `Retry-After` is taken to last.
const UNSTATED_LIMIT: Duration = Duration::from_secs(3600);

/// Judges `error`, the failure of an issuance at one CA, for a
/// certificate needed by `needed_by` (`now` for a new set).
pub(super) fn judge(error: &Error, needed_by: SystemTime, now: SystemTime) -> Judged {
    let root = root(error);
    let refuses = |kind: &ProblemType| {
        matches!(
            kind,
            ProblemType::RejectedIdentifier | ProblemType::UnsupportedIdentifier | ProblemType::Caa
        )
    };
    // RFC 8555 §6.7.1: a `malformed` whose subproblems name the refused
    // identifiers refuses them too.
    if let Some(problem) = problem_of(root)
        && (refuses(&problem.kind) || problem.subproblems.iter().any(|p| refuses(&p.kind)))
    {
        return Judged::Next {
            reason: SkipReason::Refused {
                problem: problem.to_string(),
            },
            outage: false,
        };
    }
    match root {
        // What this CA does not offer (a profile, a key type, an
        // identifier type): another CA may.
        Error::Unsupported(what) => {
            return Judged::Next {
                reason: SkipReason::Refused {
                    problem: what.clone(),
                },
                outage: false,
            };
        }
        // The CA asked for a pause longer than the set waits.
        Error::Paused { left, .. } => {
            return Judged::Next {
                reason: SkipReason::Paused {
                    seconds: left.as_secs(),
                },
                outage: false,
            };
        }
        // Authorizations or an order the CA does not move (its validation
        // is down): the journal was checked before finalize first.
        Error::PollTimeout { .. } => {
            return Judged::Next {
                reason: SkipReason::Failed {
                    error: error.to_string(),
                },
                outage: true,
            };
        }
        _ => {}
    }
    match error.class() {
        ErrorClass::Caa {
            cause: CaaCause::Forbidden,
            ..
        } => Judged::Next {
            reason: SkipReason::CaaForbidden {
                summary: root.to_string(),
            },
            outage: false,
        },
        ErrorClass::RateLimited {
            retry_at, scope, ..
        } => {
            let until = retry_at.unwrap_or(now + UNSTATED_LIMIT);
            if until <= needed_by {
                // Waiting keeps the renewal at its CA (its `replaces`, its
                // exemptions) and still renews in time.
                return Judged::Stop;
            }
            let limit = match root {
                Error::RateLimitedLocally { limit, .. } => limit.clone(),
                _ => scope.to_string(),
            };
            Judged::Next {
                reason: SkipReason::RateLimited {
                    limit,
                    until: timestamp::to_unix(until),
                },
                outage: false,
            }
        }
        ErrorClass::Transient if is_outage(root) => Judged::Next {
            reason: SkipReason::Failed {
                error: error.to_string(),
            },
            outage: true,
        },
        // A CA whose answers cannot be read is broken, not slow: the same
        // request there gets the same answer, another CA may serve.
        ErrorClass::Protocol => Judged::Next {
            reason: SkipReason::Failed {
                error: error.to_string(),
            },
            outage: true,
        },
        _ => Judged::Stop,
    }
}

/// The last failure under the retry loop's `GaveUp`.
fn root(error: &Error) -> &Error {
    match error {
        Error::GaveUp { source, .. } => root(source),
        other => other,
    }
}

/// The CA's problem document, where the failure carries one.
fn problem_of(error: &Error) -> Option<&crate::protocol::Problem> {
    match error {
        Error::Problem { problem, .. } => Some(problem),
        Error::OrderInvalid {
            problem: Some(p), ..
        }
        | Error::ValidationFailed {
            problem: Some(p), ..
        } => Some(p),
        _ => None,
    }
}

/// A failure of the CA's service itself (network, 5xx, a body cut
/// short), as opposed to ours (store, lease, DNS, solver).
fn is_outage(error: &Error) -> bool {
    match error {
        Error::Transport { .. } | Error::InvalidResponse { .. } => true,
        Error::Status { request, .. } | Error::Problem { request, .. } => request
            .status
            .is_none_or(|s| s >= 500 || s == 429 || s == 408),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RateLimitScope;

    fn now() -> SystemTime {
        timestamp::from_unix(1_800_000_000)
    }

    fn local_limit(retry_in: u64) -> Error {
        Error::RateLimitedLocally {
            retry_at: now() + Duration::from_secs(retry_in),
            limit: "new orders per account".into(),
            scope: RateLimitScope::Account,
            reason: "spent".into(),
        }
    }

    #[test]
    fn a_limit_ending_before_the_certificate_is_needed_is_waited_for() {
        let needed_by = now() + Duration::from_secs(7200);
        assert_eq!(judge(&local_limit(3600), needed_by, now()), Judged::Stop);
        match judge(&local_limit(3 * 3600), needed_by, now()) {
            Judged::Next {
                reason: SkipReason::RateLimited { limit, until },
                outage: false,
            } => {
                assert_eq!(limit, "new orders per account");
                assert_eq!(until, 1_800_000_000 + 3 * 3600);
            }
            other => panic!("{other:?}"),
        }
        // A new set is needed now: any limit passes it on.
        assert!(matches!(
            judge(&local_limit(1), now(), now()),
            Judged::Next { .. }
        ));
    }

    #[test]
    fn what_this_ca_will_not_do_another_may() {
        let mut malformed =
            crate::protocol::Problem::new(ProblemType::Malformed, "some identifiers are refused");
        malformed.subproblems = vec![crate::protocol::Problem::new(
            ProblemType::RejectedIdentifier,
            "not this one",
        )];
        let refused = Error::OrderInvalid {
            url: "https://ca/order/1".into(),
            problem: Some(Box::new(malformed)),
        };
        for error in [refused, Error::Unsupported("the profile shortlived".into())] {
            assert!(
                matches!(
                    judge(&error, now(), now()),
                    Judged::Next {
                        reason: SkipReason::Refused { .. },
                        outage: false
                    }
                ),
                "{error}"
            );
        }
        let stuck = Error::PollTimeout {
            what: "authorization",
            url: "https://ca/authz/1".into(),
            status: "pending".into(),
            waited: Duration::from_secs(600),
        };
        assert!(matches!(
            judge(&stuck, now(), now()),
            Judged::Next { outage: true, .. }
        ));
    }

    #[test]
    fn ours_is_not_the_cas_fault() {
        for error in [
            Error::InvalidInput("bad name".into()),
            Error::LeaseLost {
                name: "cert-x".into(),
                token: 1,
                reason: "taken over".into(),
            },
            Error::CaaPreflight {
                names: vec!["a.example".into()],
                cause: CaaCause::LookupFailed,
                summary: "ns1 timed out".into(),
            },
        ] {
            assert_eq!(judge(&error, now(), now()), Judged::Stop, "{error}");
        }
        assert!(matches!(
            judge(
                &Error::CaaPreflight {
                    names: vec!["a.example".into()],
                    cause: CaaCause::Forbidden,
                    summary: "issue names other.example".into(),
                },
                now(),
                now()
            ),
            Judged::Next {
                reason: SkipReason::CaaForbidden { .. },
                outage: false
            }
        ));
    }
}
