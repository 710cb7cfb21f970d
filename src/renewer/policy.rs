//! [`RenewerPolicy`]: how the renewer paces and retries; [`OnDemandIntake`]:
//! how it takes up on-demand requests.

use std::time::Duration;

use crate::issuer::CertificateOptions;

/// How the renewer paces and retries (defaults in [`RenewerPolicy::default`]).
///
/// ```
/// use std::time::Duration;
/// use sturdy_acme::renewer::RenewerPolicy;
///
/// let policy = RenewerPolicy::default()
///     .with_concurrency(64)
///     .with_caa_base(Duration::from_secs(300));
/// assert_eq!(policy.concurrency(), 64);
/// assert_eq!(policy.caa_max(), Duration::from_secs(6 * 3600));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RenewerPolicy {
    pub(super) concurrency: usize,
    pub(super) validation_base: Duration,
    pub(super) validation_max: Duration,
    pub(super) caa_base: Duration,
    pub(super) caa_max: Duration,
    pub(super) transient_base: Duration,
    pub(super) transient_max: Duration,
    pub(super) permanent_retry: Duration,
    pub(super) elsewhere_retry: Duration,
    pub(super) refresh: Duration,
    pub(super) headroom_interval: Duration,
    pub(super) crl_check_every: Option<Duration>,
    pub(super) seed: Option<u64>,
}

crate::retry::knobs!(RenewerPolicy {
    /// Attempts running at once (at least 1). Default 16.
    concurrency, with_concurrency: usize;
    /// First retry after a validation failure, doubling up to
    /// `validation_max`. Default 30 minutes, up to a day.
    validation_base, with_validation_base: Duration;
    /// See `validation_base`.
    validation_max, with_validation_max: Duration;
    /// First retry after a CAA failure (the CA's recheck timed out, or a
    /// record forbids it), doubling up to `caa_max`. Default 10 minutes, up
    /// to 6 hours.
    caa_base, with_caa_base: Duration;
    /// See `caa_base`.
    caa_max, with_caa_max: Duration;
    /// First retry after a transient failure (5xx, timeouts, the store),
    /// doubling up to `transient_max`. Default 1 minute, up to an hour.
    transient_base, with_transient_base: Duration;
    /// See `transient_base`.
    transient_max, with_transient_max: Duration;
    /// Retry after a permanent failure (the CA refuses the names). Default
    /// a day: the customer may fix it.
    permanent_retry, with_permanent_retry: Duration;
    /// Look again after another node was found holding the lease. Default
    /// 1 minute.
    elsewhere_retry, with_elsewhere_retry: Duration;
    /// How often the specs are read again from the store (added or removed
    /// by other nodes). Default 5 minutes.
    refresh, with_refresh: Duration;
    /// How often rate-limit headroom is read for the metrics. Default 1
    /// minute.
    headroom_interval, with_headroom_interval: Duration;
    /// How often every certificate is checked against its CA's revocation
    /// list ([`Renewer::check_crls`](super::Renewer::check_crls); `None`: never). Default 6 hours (Let's
    /// Encrypt publishes its lists several times a day).
    crl_check_every, with_crl_check_every: Option<Duration>;
    /// Seed of the jitter (`None`: from the OS).
    seed, with_seed: Option<u64>;
});

impl Default for RenewerPolicy {
    fn default() -> Self {
        const MIN: u64 = 60;
        Self {
            concurrency: 16,
            validation_base: Duration::from_secs(30 * MIN),
            validation_max: Duration::from_secs(24 * 60 * MIN),
            caa_base: Duration::from_secs(10 * MIN),
            caa_max: Duration::from_secs(6 * 60 * MIN),
            transient_base: Duration::from_secs(MIN),
            transient_max: Duration::from_secs(60 * MIN),
            permanent_retry: Duration::from_secs(24 * 60 * MIN),
            elsewhere_retry: Duration::from_secs(MIN),
            refresh: Duration::from_secs(5 * MIN),
            headroom_interval: Duration::from_secs(MIN),
            crl_check_every: Some(Duration::from_secs(6 * 60 * MIN)),
            seed: None,
        }
    }
}

/// How a renewer takes up on-demand requests.
///
/// ```
/// use sturdy_acme::CertificateOptions;
/// use sturdy_acme::renewer::OnDemandIntake;
///
/// let intake = OnDemandIntake::new(CertificateOptions::default().with_profile(Some("tlsserver".into())))
///     .with_max_pending(100);
/// assert_eq!(intake.max_pending(), 100);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OnDemandIntake {
    options: CertificateOptions,
    max_pending: usize,
    poll: Duration,
}

impl OnDemandIntake {
    /// Requests become specs for the one name asked, ordered with
    /// `options`; at most 1,000 waiting for their first certificate; the
    /// store looked at every minute besides the feed's wake-ups.
    pub fn new(options: CertificateOptions) -> Self {
        Self {
            options,
            max_pending: 1000,
            poll: Duration::from_secs(60),
        }
    }

    /// How the certificates are ordered.
    pub fn options(&self) -> &CertificateOptions {
        &self.options
    }

    /// Most certificates waiting for their first issuance at once (those
    /// of the operator's own specs counted too) before requests wait.
    pub fn max_pending(&self) -> usize {
        self.max_pending
    }

    /// Sets [`OnDemandIntake::max_pending`].
    pub fn with_max_pending(mut self, max: usize) -> Self {
        self.max_pending = max;
        self
    }

    /// How often the pending requests are read without a wake-up.
    pub fn poll(&self) -> Duration {
        self.poll
    }

    /// Sets [`OnDemandIntake::poll`] (at least 10 ms).
    pub fn with_poll(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(10));
        self
    }
}
