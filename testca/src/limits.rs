//! Rate limits modelled on Let's Encrypt's: token buckets per key.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

pub(crate) use sturdy_acme::{Limit, RateLimits};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key.
#[derive(Debug, Default)]
pub(crate) struct Buckets {
    buckets: HashMap<String, Bucket>,
    /// The most of a bucket ever spent at once, by kind (the key up to
    /// its `:`), as a share of its capacity.
    peaks: HashMap<String, f64>,
}

impl Buckets {
    fn level(&mut self, key: &str, limit: &Limit, now: Instant) -> Bucket {
        let b = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: f64::from(limit.burst),
            at: now,
        });
        b.tokens = limit.refilled(b.tokens, now.saturating_duration_since(b.at));
        b.at = now;
        *b
    }

    /// `Err(wait)` if a request for `key` would exceed `limit` now.
    pub(crate) fn check(&mut self, key: &str, limit: &Limit, now: Instant) -> Result<(), Duration> {
        let b = self.level(key, limit, now);
        match limit.wait_for_token(b.tokens) {
            None => Ok(()),
            Some(wait) => Err(wait.max(Duration::from_secs(1))),
        }
    }

    /// Takes one token (after a successful check).
    pub(crate) fn spend(&mut self, key: &str, limit: &Limit, now: Instant) {
        self.level(key, limit, now);
        if let Some(b) = self.buckets.get_mut(key) {
            b.tokens = (b.tokens - 1.0).max(0.0);
            let used = 1.0 - b.tokens / f64::from(limit.burst.max(1));
            let kind = key.split(':').next().unwrap_or(key);
            let peak = self.peaks.entry(kind.to_owned()).or_default();
            *peak = peak.max(used);
        }
    }

    /// The most of any bucket of each kind spent at once, as a share of
    /// its capacity (1.0: a bucket was emptied).
    pub(crate) fn peaks(&self) -> std::collections::BTreeMap<String, f64> {
        self.peaks.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

pub(crate) use sturdy_acme::registered_domain;

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
        assert_eq!(b.peaks().get("k"), Some(&1.0), "emptied once");
    }
}
