//! The records the CA's state keeps for renewal information and profiles
//! (what `renewal.rs` decides with, and `state.rs` stores), below both so
//! neither imports the other's types.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use sturdy_acme::Identifier;

/// A scripted `renewalInfo` answer for one certificate.
///
/// Example: [`TestCa::set_renewal_info`](crate::TestCa::set_renewal_info).
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
pub(in crate::ca) struct Scripted {
    pub(in crate::ca) answer: RenewalInfoAnswer,
    pub(in crate::ca) retry_after_secs: Option<u64>,
}

/// A certificate profile the test CA offers (Let's Encrypt's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::ca) struct Profile {
    pub(in crate::ca) name: &'static str,
    pub(in crate::ca) description: &'static str,
    pub(in crate::ca) lifetime: Duration,
    pub(in crate::ca) max_names: usize,
    pub(in crate::ca) ip: bool,
    pub(in crate::ca) common_name: bool,
}

/// `classic`, `tlsserver`, `shortlived`.
pub(in crate::ca) const PROFILES: [Profile; 3] = [
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
pub(in crate::ca) struct AriState {
    /// Certificate index by serial (lowercase hex, no leading zeros).
    pub(in crate::ca) by_serial: HashMap<String, usize>,
    /// The order that replaced a certificate, by certificate index.
    pub(in crate::ca) replaced_by: HashMap<usize, usize>,
    /// Scripted answers by certificate serial (hex).
    pub(in crate::ca) scripts: HashMap<String, Scripted>,
    /// When each exact identifier set was last issued.
    pub(in crate::ca) last_issued: HashMap<Vec<Identifier>, SystemTime>,
}

/// Which of Boulder's exemptions an order has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(in crate::ca) enum Exemption {
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
pub(in crate::ca) struct OrderTerms {
    pub(in crate::ca) replaces: Option<usize>,
    pub(in crate::ca) replaces_text: Option<String>,
    pub(in crate::ca) exemption: Exemption,
    pub(in crate::ca) profile: Option<Profile>,
}

/// What the test CA's `renewalInfo` answers by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AriPolicy {
    /// `Some(d)`, `d > 0`: every certificate's window opens `d` after
    /// issuance and lasts an hour; `Some(0)`: Boulder's "renew now" window
    /// (from an hour ago to half an hour ago, whenever asked); `None`:
    /// Boulder's window (a third of the lifetime before expiry, half for 10
    /// days or less, ± a hundredth). See `renewal.rs`.
    pub(crate) renew_after: Option<Duration>,
    /// The `Retry-After` sent with each answer, seconds (Pebble: 21600).
    pub(crate) retry_after_secs: u64,
}
