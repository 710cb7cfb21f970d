//! Rate limits modelled on Let's Encrypt's: token buckets per key.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// One limit: `burst` requests, refilled evenly over `period`.
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

    fn refill_interval(&self) -> Duration {
        self.period / self.burst.max(1)
    }
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

/// The limits the test CA enforces (each off when `None`). Let's Encrypt's
/// values are in [`RateLimits::lets_encrypt`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    /// New Certificates per Exact Set of Identifiers (LE: 5 per 7 days).
    #[serde(default)]
    pub duplicate_certificates: Option<Limit>,
    /// New Certificates per Registered Domain (LE: 50 per 7 days). The test
    /// CA takes the last two labels as the registered domain.
    #[serde(default)]
    pub certificates_per_domain: Option<Limit>,
    /// New Orders per Account (LE: 300 per 3 hours).
    #[serde(default)]
    pub new_orders_per_account: Option<Limit>,
    /// Authorization Failures per Identifier per Account (LE: 5 per hour).
    #[serde(default)]
    pub failed_authorizations: Option<Limit>,
}

impl RateLimits {
    /// Let's Encrypt's production limits (2026).
    pub fn lets_encrypt() -> Self {
        const DAY: u64 = 24 * 3600;
        Self {
            duplicate_certificates: Some(Limit::new(5, Duration::from_secs(7 * DAY))),
            certificates_per_domain: Some(Limit::new(50, Duration::from_secs(7 * DAY))),
            new_orders_per_account: Some(Limit::new(300, Duration::from_secs(3 * 3600))),
            failed_authorizations: Some(Limit::new(5, Duration::from_secs(3600))),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key.
#[derive(Debug, Default)]
pub(crate) struct Buckets {
    buckets: HashMap<String, Bucket>,
}

impl Buckets {
    fn level(&mut self, key: &str, limit: &Limit, now: Instant) -> Bucket {
        let cap = f64::from(limit.burst);
        let b = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let rate = cap / limit.period.as_secs_f64().max(1e-9);
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(cap);
        b.at = now;
        *b
    }

    /// `Err(wait)` if a request for `key` would exceed `limit` now.
    pub(crate) fn check(&mut self, key: &str, limit: &Limit, now: Instant) -> Result<(), Duration> {
        let b = self.level(key, limit, now);
        if b.tokens >= 1.0 - 1e-9 {
            Ok(())
        } else {
            let missing = 1.0 - b.tokens;
            Err(limit
                .refill_interval()
                .mul_f64(missing)
                .max(Duration::from_secs(1)))
        }
    }

    /// Takes one token (after a successful check).
    pub(crate) fn spend(&mut self, key: &str, limit: &Limit, now: Instant) {
        self.level(key, limit, now);
        if let Some(b) = self.buckets.get_mut(key) {
            b.tokens = (b.tokens - 1.0).max(0.0);
        }
    }
}

/// The registered domain of a name as the test CA counts it: the last two
/// labels (an IP address is its own).
pub(crate) fn registered_domain(name: &str) -> String {
    let name = name.trim_start_matches("*.");
    if name.parse::<std::net::IpAddr>().is_ok() {
        return name.to_owned();
    }
    let labels: Vec<&str> = name.rsplitn(3, '.').collect();
    match labels.as_slice() {
        [tld, sld, ..] => format!("{sld}.{tld}"),
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_refills_evenly() {
        let limit = Limit::new(5, Duration::from_secs(7 * 24 * 3600));
        let mut b = Buckets::default();
        let now = Instant::now();
        for _ in 0..5 {
            b.check("k", &limit, now).unwrap();
            b.spend("k", &limit, now);
        }
        let wait = b.check("k", &limit, now).unwrap_err();
        // 7 days / 5 = 33.6 h for one token.
        assert_eq!(wait.as_secs(), 7 * 24 * 3600 / 5);
        assert!(b.check("other", &limit, now).is_ok());
        let later = now + wait;
        assert!(b.check("k", &limit, later).is_ok());
    }

    #[test]
    fn registered_domains() {
        assert_eq!(registered_domain("a.b.example.com"), "example.com");
        assert_eq!(registered_domain("*.example.com"), "example.com");
        assert_eq!(registered_domain("localhost"), "localhost");
        assert_eq!(registered_domain("192.0.2.1"), "192.0.2.1");
    }
}
