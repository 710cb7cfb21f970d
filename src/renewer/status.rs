//! What a renewer tells: the state of each certificate (the status
//! snapshot a service serves on its own endpoint), the events of its
//! decisions, and the metrics it records through the `metrics` facade.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::queue::Urgency;

/// Where one certificate stands.
///
/// Example: [the module](crate::renewer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ManagedState {
    /// Never issued; waiting for its turn.
    Pending,
    /// Valid, not due: next looked at when its renewal time (or renewal
    /// information check) comes.
    Valid,
    /// Its time has come; waiting for a free slot.
    Due,
    /// An issuance (or a renewal information check) is running.
    Running,
    /// Held back by a rate limit until its next attempt (counted locally,
    /// so the CA never refuses it).
    WaitingForLimit,
    /// Failed; retried at its next attempt.
    BackingOff,
    /// Another node holds its lease (and is doing the work).
    Elsewhere,
}

impl ManagedState {
    /// Every state, for metrics.
    pub const ALL: [ManagedState; 7] = [
        Self::Pending,
        Self::Valid,
        Self::Due,
        Self::Running,
        Self::WaitingForLimit,
        Self::BackingOff,
        Self::Elsewhere,
    ];

    /// Its name in metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Valid => "valid",
            Self::Due => "due",
            Self::Running => "running",
            Self::WaitingForLimit => "waiting_for_limit",
            Self::BackingOff => "backing_off",
            Self::Elsewhere => "elsewhere",
        }
    }
}

/// The last error of a certificate.
///
/// Example: [the module](crate::renewer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LastError {
    /// Its class ([`ErrorClass::name`](crate::ErrorClass::name)).
    pub class: String,
    /// The error.
    pub message: String,
}

/// One certificate in a [`RenewerStatus`].
///
/// Example: [the module](crate::renewer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ManagedCertificate {
    /// Its names.
    pub names: Vec<String>,
    /// Where it stands.
    pub state: ManagedState,
    /// The current certificate's serial, if there is one.
    pub serial: Option<String>,
    /// The CA of a [`CaSet`](crate::ca_set::CaSet) that issued it (`None`
    /// for a renewer over one issuer, or no certificate yet).
    pub ca: Option<String>,
    /// Its expiry.
    pub not_after: Option<SystemTime>,
    /// When the renewer looks at it next (`None`: running now).
    pub next_attempt: Option<SystemTime>,
    /// Failed attempts in a row.
    pub consecutive_failures: u32,
    /// The last error, until an attempt succeeds.
    pub last_error: Option<LastError>,
}

/// A snapshot of everything a renewer keeps ([`Renewer::status`](super::Renewer::status)).
///
/// Example: [the module](crate::renewer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RenewerStatus {
    /// Every certificate, by names.
    pub certificates: Vec<ManagedCertificate>,
    /// Certificates whose time has come, not yet started.
    pub backlog: usize,
    /// While the CA asked for a pause: until when.
    pub paused_until: Option<SystemTime>,
    /// Certificates whose replacement the CA asked for early (a window
    /// moved into the past) and that are not replaced yet.
    pub replacements_requested: usize,
}

impl RenewerStatus {
    /// How many certificates are in `state`.
    pub fn count(&self, state: ManagedState) -> usize {
        self.certificates
            .iter()
            .filter(|c| c.state == state)
            .count()
    }
}

/// A decision of the renewer, reported to
/// [`RenewerBuilder::on_event`](super::RenewerBuilder::on_event).
///
/// Example: [the module](crate::renewer).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RenewerEvent {
    /// A certificate was added (or its spec changed).
    Added {
        /// Its id.
        id: String,
    },
    /// An edge's on-demand request for a name was taken up (an
    /// [`Added`](Self::Added) follows).
    Requested {
        /// The id of the certificate added.
        id: String,
        /// The edge that asked first.
        edge: String,
    },
    /// A certificate was removed.
    Removed {
        /// Its id.
        id: String,
    },
    /// An attempt started.
    Started {
        /// Its id.
        id: String,
        /// Why it went when it did.
        urgency: Urgency,
    },
    /// A certificate was issued (new or renewed) or resumed.
    Issued {
        /// Its id.
        id: String,
        /// The serial.
        serial: String,
        /// Whether it renews an earlier certificate.
        renewal: bool,
        /// The CA of the renewer's [`CaSet`](crate::ca_set::CaSet) that
        /// issued it (`None` for a renewer over one issuer).
        ca: Option<String>,
        /// Whether the CA had asked for that renewal early
        /// ([`RenewerEvent::ReplacementRequested`]).
        requested_by_ca: bool,
        /// Its expiry.
        not_after: SystemTime,
        /// How long the attempt took (tokio's clock).
        took: Duration,
    },
    /// The stored certificate is still good; looked at again at `next`.
    Checked {
        /// Its id.
        id: String,
        /// The next look.
        next: SystemTime,
    },
    /// A rate limit holds it (counted locally: nothing was sent).
    Deferred {
        /// Its id.
        id: String,
        /// Which limit.
        limit: String,
        /// Until when.
        until: SystemTime,
    },
    /// The CA refused with 429 anyway (its count and ours disagreed).
    RateLimitedByCa {
        /// Its id.
        id: String,
        /// Until when it is held.
        until: SystemTime,
    },
    /// An attempt failed; retried at `retry_at`.
    Failed {
        /// Its id.
        id: String,
        /// The error's class.
        class: &'static str,
        /// The error.
        error: String,
        /// Failures in a row.
        consecutive: u32,
        /// The next attempt.
        retry_at: SystemTime,
    },
    /// Another node holds its lease.
    Elsewhere {
        /// Its id.
        id: String,
    },
    /// The CA asked for this certificate's replacement early: its renewal
    /// window moved into the past (a mass revocation, an incident). It is
    /// renewed at once, ahead of the queue, as an exempt ARI renewal.
    ReplacementRequested {
        /// Its id.
        id: String,
        /// The certificate to replace.
        serial: String,
        /// The CA's new window.
        window_start: SystemTime,
        /// Its end.
        window_end: SystemTime,
        /// The CA's explanation, if it gave one.
        explanation_url: Option<String>,
    },
    /// The CA's revocation list says a certificate is revoked (behind this
    /// client's back: a third party's report, the CA's own finding): it is
    /// recorded as revoked and replaced at once.
    RevokedFound {
        /// Its id.
        id: String,
        /// The revoked certificate.
        serial: String,
        /// The reason code the list gives, if any (1: keyCompromise).
        reason: Option<u8>,
        /// The list that says so.
        crl: String,
    },
    /// A revocation list could not be fetched or trusted; its
    /// certificates are checked again at the next check.
    RevocationListFailed {
        /// The list.
        url: String,
        /// Why.
        error: String,
        /// How many certificates name it.
        certificates: usize,
    },
    /// A renewal came under another chain than the certificate it renews
    /// (a new intermediate, another root: a CA's hierarchy change): the
    /// servers that serve it may need the new chain or trust.
    ChainChanged {
        /// Its id.
        id: String,
        /// The intermediate that issued the certificate renewed (its
        /// issuer common name).
        from_issuer: Option<String>,
        /// The root its chain led to.
        from_root: Option<String>,
        /// The intermediate of the new certificate.
        to_issuer: Option<String>,
        /// The root the new chain leads to.
        to_root: Option<String>,
    },
    /// The CA is down (503 with Retry-After): nothing starts until `until`.
    Paused {
        /// Until when.
        until: SystemTime,
        /// The answer that paused it.
        error: String,
    },
}

/// Metric names (the `metrics` facade: install any recorder).
pub mod metric {
    /// Gauge, label `state`: certificates by [`ManagedState`](super::ManagedState).
    pub const CERTIFICATES: &str = "sturdy_acme_renewer_certificates";
    /// Gauge: certificates whose time has come, not yet started.
    pub const BACKLOG: &str = "sturdy_acme_renewer_backlog";
    /// Gauge: seconds until the next scheduled look at any certificate.
    pub const NEXT_RENEWAL_SECONDS: &str = "sturdy_acme_renewer_next_renewal_seconds";
    /// Gauge, labels `kind` and `bucket`: tokens left in a rate-limit bucket
    /// that paces new certificates (`orders`, the account's new orders;
    /// `domain`, a registered domain spent from), never one per certificate.
    pub const LIMIT_HEADROOM: &str = "sturdy_acme_rate_limit_headroom";
    /// Counter, label `class`: failed attempts by error class.
    pub const ERRORS: &str = "sturdy_acme_renewer_errors_total";
    /// Counter, labels `kind` (`new`, `renewal`) and `ca` (the CA of a
    /// [`CaSet`](crate::ca_set::CaSet) that issued it; empty for a renewer
    /// over one issuer): certificates issued.
    pub const ISSUED: &str = "sturdy_acme_renewer_issued_total";
    /// Counter: attempts a rate limit held back locally.
    pub const DEFERRED: &str = "sturdy_acme_renewer_deferred_total";
    /// Counter: 429s the CA answered (goal 0).
    pub const CA_RATE_LIMITED: &str = "sturdy_acme_renewer_ca_rate_limited_total";
    /// Counter: certificates whose replacement the CA asked for early (a
    /// renewal window moved into the past).
    pub const REPLACEMENTS_REQUESTED: &str = "sturdy_acme_renewer_replacements_requested_total";
    /// Counter: those replaced.
    pub const REPLACEMENTS_DONE: &str = "sturdy_acme_renewer_replacements_done_total";
    /// Counter: renewals that came under another chain than the
    /// certificate they renew.
    pub const CHAIN_CHANGED: &str = "sturdy_acme_renewer_chain_changed_total";
    /// Counter: certificates found revoked in the CA's revocation lists.
    pub const REVOKED_FOUND: &str = "sturdy_acme_renewer_revoked_found_total";
    /// Counter, label `result` (`ok`, `failed`): revocation lists checked.
    pub const CRL_CHECKS: &str = "sturdy_acme_renewer_crl_checks_total";
    /// Histogram, label `kind`: seconds from an attempt's start to its
    /// certificate.
    pub const ORDER_SECONDS: &str = "sturdy_acme_renewer_order_seconds";
}
