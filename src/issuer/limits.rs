//! The CA's published rate limits, as a table of token buckets.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// One limit: `burst` requests, refilled evenly over `period` (a token
/// bucket, as Let's Encrypt computes its limits).
///
/// Example: [`RateLimits`].
///
/// ```
/// use std::time::Duration;
/// use sturdy_acme::{Limit, RateLimits};
///
/// let limits = RateLimits {
///     certificates_per_domain: Some(Limit::new(100, Duration::from_secs(7 * 24 * 3600))),
///     ..RateLimits::none()
/// };
/// assert_eq!(limits.certificates_per_domain.unwrap().refill_interval(), Duration::from_secs(6048));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    /// Bucket capacity.
    pub burst: u32,
    /// Time to refill the whole bucket.
    #[serde(with = "secs")]
    pub period: Duration,
}

impl Limit {
    /// `burst` per `period`.
    pub fn new(burst: u32, period: Duration) -> Self {
        Self { burst, period }
    }

    /// The time one token takes to come back.
    pub fn refill_interval(&self) -> Duration {
        self.period / self.burst.max(1)
    }

    /// The token bucket's level after `elapsed` since it was `tokens`
    /// (refilled evenly, capped at `burst`). A full bucket starts at
    /// [`Limit::burst`]. The one token-bucket rule, for the issuer's
    /// ledger (wall clock, persisted) and the embedded CA (tokio's clock).
    pub fn refilled(&self, tokens: f64, elapsed: Duration) -> f64 {
        let cap = f64::from(self.burst);
        let rate = cap / self.period.as_secs_f64().max(1e-9);
        (tokens + elapsed.as_secs_f64() * rate).min(cap)
    }

    /// How long until a bucket at `tokens` holds a whole token again
    /// (`None`: it holds one now).
    pub fn wait_for_token(&self, tokens: f64) -> Option<Duration> {
        (tokens < 1.0 - 1e-9).then(|| self.refill_interval().mul_f64(1.0 - tokens))
    }
}

/// How much of one rate limit is left, as the issuer's ledger counts it
/// ([`Issuer::rate_limit_headroom`](crate::Issuer::rate_limit_headroom)).
///
/// Example: [`Issuer::rate_limit_headroom`](crate::Issuer::rate_limit_headroom).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Headroom {
    /// The bucket: `orders:<account URL>`, `domain:<registered domain>`,
    /// `set:<names>` or `authzfail:<account URL>:<name>`.
    pub bucket: String,
    /// The limit it counts against.
    pub limit: Limit,
    /// Tokens left now (whole requests that may still be made: its floor).
    pub tokens: f64,
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

/// A CA's rate limits (each off when `None`), counted locally by the
/// issuer so a request the CA would refuse is not sent.
///
/// The issuer picks the table from the directory URL
/// ([`RateLimits::for_directory`]): Let's Encrypt's production and staging
/// tables for their directories; for any other CA the table it announces
/// ([`RateLimits::announced`]: the embedded test CA does when it enforces
/// one), else none (a private CA, Pebble), unless one is set with
/// [`IssuerBuilder::rate_limits`](crate::IssuerBuilder::rate_limits).
/// The CA's own 429s are remembered for every CA whatever the table.
///
/// ```
/// use sturdy_acme::{LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING, RateLimits};
///
/// assert_eq!(RateLimits::for_directory(LETS_ENCRYPT_PRODUCTION), RateLimits::lets_encrypt());
/// assert_eq!(
///     RateLimits::for_directory(LETS_ENCRYPT_STAGING),
///     RateLimits::lets_encrypt_staging()
/// );
/// assert_eq!(RateLimits::for_directory("https://ca.internal/acme/directory"), RateLimits::none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    /// New Certificates per Exact Set of Identifiers (LE: 5 per 7 days).
    #[serde(default)]
    pub duplicate_certificates: Option<Limit>,
    /// New Certificates per Registered Domain (LE: 50 per 7 days), the
    /// registered domain taken from the public suffix list.
    #[serde(default)]
    pub certificates_per_domain: Option<Limit>,
    /// New Orders per Account (LE: 300 per 3 hours).
    #[serde(default)]
    pub new_orders_per_account: Option<Limit>,
    /// Authorization Failures per Identifier per Account (LE: 5 per hour).
    #[serde(default)]
    pub failed_authorizations: Option<Limit>,
    /// The longest a 429 the CA answered is remembered and refused locally
    /// (`None`: [`DEFAULT_HORIZON`](crate::protocol::timestamp::DEFAULT_HORIZON),
    /// 7 days), however far away the CA's Retry-After or "retry after" date.
    #[serde(default, with = "opt_secs")]
    pub server_block_horizon: Option<Duration>,
}

impl RateLimits {
    /// Let's Encrypt's renewal of the exact same set of identifiers: an
    /// order for a set whose previous certificate is younger than this is
    /// exempt from the new-orders and per-domain limits (still counted
    /// against the exact-set and failed-authorization limits). The one
    /// place the rule's length is written (issuer, renewer and test CA
    /// read it).
    pub const EXACT_SET_RENEWAL_WINDOW: Duration = Duration::from_secs(120 * 24 * 3600);

    /// Whether an order at `at` for the exact identifiers of a certificate
    /// valid from `not_before` is such a renewal: the one place the rule is
    /// applied (the issuer's exemption and the renewer's budget ask it).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use sturdy_acme::RateLimits;
    ///
    /// let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    /// let day = Duration::from_secs(24 * 3600);
    /// assert!(RateLimits::renews_exact_set(issued, issued + 60 * day));
    /// assert!(!RateLimits::renews_exact_set(issued, issued + 120 * day));
    /// ```
    pub fn renews_exact_set(not_before: SystemTime, at: SystemTime) -> bool {
        at.duration_since(not_before).unwrap_or_default() < Self::EXACT_SET_RENEWAL_WINDOW
    }

    /// Let's Encrypt's production limits.
    pub fn lets_encrypt() -> Self {
        const DAY: u64 = 24 * 3600;
        Self {
            duplicate_certificates: Some(Limit::new(5, Duration::from_secs(7 * DAY))),
            certificates_per_domain: Some(Limit::new(50, Duration::from_secs(7 * DAY))),
            new_orders_per_account: Some(Limit::new(300, Duration::from_secs(3 * 3600))),
            failed_authorizations: Some(Limit::new(5, Duration::from_secs(3600))),
            server_block_horizon: None,
        }
    }

    /// Let's Encrypt's staging limits (2026): 30,000 certificates per
    /// exact set per week, 1,500 new orders per account per 3 hours, 200
    /// authorization failures per identifier per hour; the per-domain
    /// limit is published as "30000 per second", so it is not counted.
    pub fn lets_encrypt_staging() -> Self {
        const DAY: u64 = 24 * 3600;
        Self {
            duplicate_certificates: Some(Limit::new(30_000, Duration::from_secs(7 * DAY))),
            certificates_per_domain: None,
            new_orders_per_account: Some(Limit::new(1_500, Duration::from_secs(3 * 3600))),
            failed_authorizations: Some(Limit::new(200, Duration::from_secs(3600))),
            server_block_horizon: None,
        }
    }

    /// No limits.
    pub fn none() -> Self {
        Self::default()
    }

    /// The table a CA publishes, chosen by its directory URL's host: Let's
    /// Encrypt's production (`acme-v02.api.letsencrypt.org`, and the v1
    /// `acme-v01`) and staging (`acme-staging-v02`, `acme-staging`) hosts
    /// get their tables; every other CA gets [`RateLimits::none`].
    pub fn for_directory(directory_url: &str) -> Self {
        let host = url::Url::parse(directory_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        match host.as_deref() {
            Some("acme-v02.api.letsencrypt.org" | "acme-v01.api.letsencrypt.org") => {
                Self::lets_encrypt()
            }
            Some("acme-staging-v02.api.letsencrypt.org" | "acme-staging.api.letsencrypt.org") => {
                Self::lets_encrypt_staging()
            }
            _ => Self::none(),
        }
    }

    /// The directory `meta` member in which a CA announces the limits it
    /// enforces, as this type's JSON (the embedded test CA does, whenever
    /// it enforces any): `"sturdyRateLimits"`.
    pub const ANNOUNCEMENT: &'static str = "sturdyRateLimits";

    /// The table a CA announces in its directory's `meta`
    /// ([`RateLimits::ANNOUNCEMENT`]): `None` when it announces none, or
    /// announces something that is not such a table. The CA is untrusted
    /// input: a limit with no burst, no period or a period over a year
    /// refuses the whole announcement, and its `server_block_horizon` is
    /// never taken (how long a 429 is remembered is this client's choice).
    ///
    /// ```
    /// use sturdy_acme::{DirectoryMeta, RateLimits};
    ///
    /// let mut meta = DirectoryMeta::default();
    /// assert_eq!(RateLimits::announced(&meta), None);
    /// meta.extra.insert(
    ///     RateLimits::ANNOUNCEMENT.into(),
    ///     serde_json::to_value(RateLimits::lets_encrypt()).unwrap(),
    /// );
    /// assert_eq!(RateLimits::announced(&meta), Some(RateLimits::lets_encrypt()));
    /// // A hostile table is refused whole.
    /// meta.extra.insert(
    ///     RateLimits::ANNOUNCEMENT.into(),
    ///     serde_json::json!({"new_orders_per_account": {"burst": 1, "period": u64::MAX}}),
    /// );
    /// assert_eq!(RateLimits::announced(&meta), None);
    /// ```
    pub fn announced(meta: &crate::DirectoryMeta) -> Option<Self> {
        const YEAR: Duration = Duration::from_secs(366 * 24 * 3600);
        let value = meta.extra.get(Self::ANNOUNCEMENT)?;
        let mut table: Self = serde_json::from_value(value.clone()).ok()?;
        table.server_block_horizon = None;
        let sane = |limit: &Option<Limit>| {
            limit.is_none_or(|l| l.burst >= 1 && !l.period.is_zero() && l.period <= YEAR)
        };
        let all_sane = [
            &table.duplicate_certificates,
            &table.certificates_per_domain,
            &table.new_orders_per_account,
            &table.failed_authorizations,
        ]
        .into_iter()
        .all(sane);
        all_sane.then_some(table)
    }

    /// The effective horizon of a remembered 429.
    pub(crate) fn block_horizon(&self) -> Duration {
        self.server_block_horizon
            .unwrap_or(crate::protocol::timestamp::DEFAULT_HORIZON)
    }
}

/// The registered domain of a name, from the public suffix list (an IP
/// address, or a name under no known suffix, is its own).
pub fn registered_domain(name: &str) -> String {
    let name = name
        .trim_start_matches("*.")
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if name.parse::<std::net::IpAddr>().is_ok() {
        return name;
    }
    psl::domain_str(&name).map(str::to_owned).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: the table follows the directory's host.
    #[test]
    fn the_table_follows_the_directory() {
        for url in [
            crate::client::LETS_ENCRYPT_PRODUCTION,
            "https://ACME-V02.api.letsencrypt.org/directory",
            "https://acme-v01.api.letsencrypt.org/directory",
        ] {
            assert_eq!(
                RateLimits::for_directory(url),
                RateLimits::lets_encrypt(),
                "{url}"
            );
        }
        for url in [
            crate::client::LETS_ENCRYPT_STAGING,
            "https://acme-staging.api.letsencrypt.org/directory",
        ] {
            assert_eq!(
                RateLimits::for_directory(url),
                RateLimits::lets_encrypt_staging(),
                "{url}"
            );
        }
        for url in [
            "https://127.0.0.1:14000/dir",
            "https://acme.zerossl.com/v2/DV90",
            "https://letsencrypt.org.evil.example/directory",
            "https://ca.internal/acme/acme-v02.api.letsencrypt.org/directory",
            "not a url",
        ] {
            assert_eq!(RateLimits::for_directory(url), RateLimits::none(), "{url}");
        }
        assert!(
            RateLimits::lets_encrypt_staging()
                .certificates_per_domain
                .is_none()
        );
    }

    #[test]
    fn registered_domains_follow_the_public_suffix_list() {
        assert_eq!(registered_domain("a.b.example.com"), "example.com");
        assert_eq!(registered_domain("*.www.example.co.uk"), "example.co.uk");
        assert_eq!(registered_domain("x.y.github.io"), "y.github.io");
        assert_eq!(registered_domain("192.0.2.1"), "192.0.2.1");
    }
}
