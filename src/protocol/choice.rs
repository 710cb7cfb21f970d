//! The CA choice a journal records: which CA of a CA set an issuance went
//! to, and why each CA before it in the order of preference was passed
//! over (vocabulary shared by the store's journal, the set's events and
//! its errors).

use serde::{Deserialize, Serialize};

/// Which CA of a set an issuance went to, and why (kept in the journal's
/// `chosen` and reported by the set's events).
///
/// ```
/// use sturdy_acme::store::{CaChoice, SkipReason, SkippedCa};
///
/// let choice = CaChoice {
///     ca: "backup".into(),
///     resumed: false,
///     skipped: vec![SkippedCa {
///         ca: "primary".into(),
///         reason: SkipReason::CaaForbidden { summary: "issue names backup.example".into() },
///     }],
/// };
/// assert_eq!(choice.to_string(), "backup (passed over: primary: CAA forbids it: issue names backup.example)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaChoice {
    /// The chosen CA's name in the set.
    pub ca: String,
    /// Chosen because an order was already in flight there (a journal
    /// resumed), not by the policy.
    #[serde(default)]
    pub resumed: bool,
    /// The CAs preferred to it that were passed over, in order, each with
    /// its reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedCa>,
}

impl CaChoice {
    /// The set's first choice, nothing passed over.
    pub fn preferred(ca: impl Into<String>) -> Self {
        Self {
            ca: ca.into(),
            resumed: false,
            skipped: Vec::new(),
        }
    }
}

impl std::fmt::Display for CaChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.ca)?;
        if self.resumed {
            f.write_str(" (an order in flight there)")?;
        }
        if !self.skipped.is_empty() {
            let skipped: Vec<String> = self.skipped.iter().map(ToString::to_string).collect();
            write!(f, " (passed over: {})", skipped.join("; "))?;
        }
        Ok(())
    }
}

/// A CA passed over for one issuance, and why.
///
/// Example: [`CaChoice`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedCa {
    /// The CA's name in the set.
    pub ca: String,
    /// Why.
    pub reason: SkipReason,
}

impl std::fmt::Display for SkippedCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.ca, self.reason)
    }
}

/// Why a CA of a set was passed over.
///
/// Example: [`CaChoice`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// The certificate's allow-list of CAs leaves it out.
    NotAllowed,
    /// The customer's CAA records forbid it (the pre-flight's verdict).
    CaaForbidden {
        /// The verdicts that forbid it, with their records.
        summary: String,
    },
    /// It failed with an outage (connect failures, 5xx, a pause past the
    /// set's bound) within the last `down_for`: skipped without a request
    /// until then.
    Down {
        /// The failure that marked it down.
        error: String,
    },
    /// It asked for a pause (a 503 or a request-rate 429 with
    /// `Retry-After`) longer than the set's bound.
    Paused {
        /// Seconds left of the pause when it was passed over.
        seconds: u64,
    },
    /// A rate limit refuses the order there until after the certificate is
    /// needed (for a new set: now).
    RateLimited {
        /// Which limit.
        limit: String,
        /// When it would allow the order (seconds since the Unix epoch).
        until: i64,
    },
    /// The CA refused the identifiers (`rejectedIdentifier`, or `caa` at
    /// newOrder or finalize).
    Refused {
        /// The CA's problem.
        problem: String,
    },
    /// It was tried for this issuance and failed with an outage; nothing
    /// that may have been finalized was left there.
    Failed {
        /// The failure.
        error: String,
    },
    /// Its account could not be loaded or registered.
    NoAccount {
        /// Why.
        error: String,
    },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAllowed => f.write_str("not in the certificate's allowed CAs"),
            Self::CaaForbidden { summary } => write!(f, "CAA forbids it: {summary}"),
            Self::Down { error } => write!(f, "down ({error})"),
            Self::Paused { seconds } => write!(f, "paused by the CA for {seconds} s more"),
            Self::RateLimited { limit, until } => write!(
                f,
                "rate limited ({limit}) until {}",
                crate::protocol::timestamp::DisplayTime(crate::protocol::timestamp::from_unix(
                    *until
                ))
            ),
            Self::Refused { problem } => write!(f, "refused the identifiers: {problem}"),
            Self::Failed { error } => write!(f, "failed: {error}"),
            Self::NoAccount { error } => write!(f, "no account: {error}"),
        }
    }
}
