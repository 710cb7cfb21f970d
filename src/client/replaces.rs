//! How CAs refuse an order's `replaces` (RFC 9773), each as a typed cause
//! with its remedy.
//!
//! Seen from real CAs (sources in the project's reference notes): Boulder
//! answers `409 alreadyReplaced` when the certificate already has a
//! replacement order that is not invalid, `403 unauthorized` "requester
//! account did not request the certificate being replaced by this order"
//! for another account's certificate, `malformed` "AKI did not match a
//! known issuer" after a CA switch and `malformed` when the order shares
//! no identifier with the certificate (its details start "Could not
//! validate ARI 'replaces' field :: "); `404` for a serial it never
//! issued; a CA without renewal information may answer `malformed` about
//! `replaces`. None of them is worth repeating with the same `replaces`.

use crate::error::Error;
use crate::protocol::ProblemType;

/// Why a CA refused an order's `replaces`.
///
/// Example: [`ReplacesRefusal::of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplacesRefusal {
    /// The certificate already has a replacement order that is not invalid
    /// (`alreadyReplaced`, or `conflict`): resume that order if it is ours;
    /// otherwise order without `replaces`.
    AlreadyReplaced,
    /// The certificate was ordered by another account (an account move, a
    /// certificate imported from another tool): ARI renewal needs the same
    /// account, so order without `replaces`.
    NotOurCertificate,
    /// The CA does not know the certificate's issuer (the certificate came
    /// from another CA, or a CA hierarchy change): order without `replaces`.
    UnknownIssuer,
    /// The CA does not know the certificate's serial.
    UnknownCertificate,
    /// The order shares no identifier with the certificate it names.
    NoSharedIdentifier,
    /// Any other refusal that names `replaces` (a CA without renewal
    /// information answering `malformed`, a wording not recognised).
    Other,
}

impl ReplacesRefusal {
    /// The cause of `error` when it is a CA's refusal of `replaces`; `None`
    /// for any other failure (which is handled as it is, never by dropping
    /// `replaces`).
    ///
    /// ```
    /// use sturdy_acme::ReplacesRefusal;
    /// # let err = sturdy_acme::Error::InvalidInput("not from the CA".into());
    /// assert_eq!(ReplacesRefusal::of(&err), None);
    /// ```
    pub fn of(error: &Error) -> Option<Self> {
        let problem = error.problem()?;
        let detail = problem
            .detail
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let names_replaces = detail.contains("replace") || detail.contains("ari ");
        match &problem.kind {
            ProblemType::AlreadyReplaced => Some(Self::AlreadyReplaced),
            ProblemType::Conflict if names_replaces || detail.is_empty() => {
                Some(Self::AlreadyReplaced)
            }
            ProblemType::Unauthorized
                if detail.contains("did not request the certificate being replaced") =>
            {
                Some(Self::NotOurCertificate)
            }
            ProblemType::Malformed | ProblemType::Unauthorized | ProblemType::Other(_)
                if names_replaces =>
            {
                Some(
                    if detail.contains("aki") || detail.contains("known issuer") {
                        Self::UnknownIssuer
                    } else if error.status() == Some(404)
                        || detail.contains("no certificate")
                        || detail.contains("serial")
                        || detail.contains("not found")
                    {
                        Self::UnknownCertificate
                    } else if detail.contains("identifier") {
                        Self::NoSharedIdentifier
                    } else if detail.contains("did not request") || detail.contains("account") {
                        Self::NotOurCertificate
                    } else {
                        Self::Other
                    },
                )
            }
            _ if names_replaces && error.status() == Some(404) => Some(Self::UnknownCertificate),
            _ => None,
        }
    }

    /// A short name (for events, journals and metric labels).
    pub fn name(&self) -> &'static str {
        match self {
            Self::AlreadyReplaced => "already_replaced",
            Self::NotOurCertificate => "not_our_certificate",
            Self::UnknownIssuer => "unknown_issuer",
            Self::UnknownCertificate => "unknown_certificate",
            Self::NoSharedIdentifier => "no_shared_identifier",
            Self::Other => "refused",
        }
    }

    /// What to do about it, in words for a log line.
    pub fn remedy(&self) -> &'static str {
        match self {
            Self::AlreadyReplaced => {
                "resume this account's earlier replacement order if it can be found, else order \
                 without replaces"
            }
            Self::NotOurCertificate => {
                "the certificate belongs to another account: this renewal is ordered without \
                 replaces (the next one, of a certificate of this account, uses it again)"
            }
            Self::UnknownIssuer | Self::UnknownCertificate => {
                "the CA does not know the certificate (another CA's, or a hierarchy change): \
                 ordered without replaces"
            }
            Self::NoSharedIdentifier => "the names changed completely: ordered without replaces",
            Self::Other => "ordered without replaces",
        }
    }
}

impl std::fmt::Display for ReplacesRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RequestInfo;
    use crate::protocol::Problem;

    fn problem(status: u16, kind: &str, detail: &str) -> Error {
        let problem: Problem = serde_json::from_value(serde_json::json!({
            "type": format!("urn:ietf:params:acme:error:{kind}"),
            "detail": detail,
            "status": status,
        }))
        .unwrap();
        Error::Problem {
            request: Box::new(RequestInfo {
                method: "POST",
                url: "https://ca.test/new-order".into(),
                status: Some(status),
                retry_after: None,
            }),
            problem: Box::new(problem),
        }
    }

    #[test]
    fn each_real_refusal_has_its_cause() {
        let cases = [
            (
                409,
                "alreadyReplaced",
                "Could not validate ARI 'replaces' field :: cannot indicate an order replaces a certificate which already has a replacement order",
                ReplacesRefusal::AlreadyReplaced,
            ),
            (409, "conflict", "", ReplacesRefusal::AlreadyReplaced),
            (
                403,
                "unauthorized",
                "Could not validate ARI 'replaces' field :: requester account did not request the certificate being replaced by this order",
                ReplacesRefusal::NotOurCertificate,
            ),
            (
                403,
                "unauthorized",
                "requester account did not request the certificate being replaced by this order",
                ReplacesRefusal::NotOurCertificate,
            ),
            (
                400,
                "malformed",
                "Could not validate ARI 'replaces' field :: AKI did not match a known issuer",
                ReplacesRefusal::UnknownIssuer,
            ),
            (
                400,
                "malformed",
                "Could not validate ARI 'replaces' field :: identifiers in this order do not match any identifiers in the certificate being replaced",
                ReplacesRefusal::NoSharedIdentifier,
            ),
            (
                404,
                "malformed",
                "Could not validate ARI 'replaces' field :: path contained an Authority Key Identifier that did not match a known issuer",
                ReplacesRefusal::UnknownIssuer,
            ),
            (
                404,
                "notFound",
                "Could not validate ARI 'replaces' field :: serial not found",
                ReplacesRefusal::UnknownCertificate,
            ),
            (
                400,
                "malformed",
                "Unsupported field 'replaces'",
                ReplacesRefusal::Other,
            ),
        ];
        for (status, kind, detail, want) in cases {
            assert_eq!(
                ReplacesRefusal::of(&problem(status, kind, detail)),
                Some(want),
                "{kind}: {detail}"
            );
        }
    }

    #[test]
    fn other_failures_are_not_refusals_of_replaces() {
        for (status, kind, detail) in [
            (
                403,
                "unauthorized",
                "Account is not valid, has status \"deactivated\"",
            ),
            (400, "malformed", "Order has no identifiers"),
            (429, "rateLimited", "too many new orders recently"),
            (400, "rejectedIdentifier", "Cannot issue for \"x.test\""),
        ] {
            assert_eq!(
                ReplacesRefusal::of(&problem(status, kind, detail)),
                None,
                "{detail}"
            );
        }
    }
}
