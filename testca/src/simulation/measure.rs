//! Measuring a run: the least time a token bucket needs to serve the
//! arrivals (the makespan's lower bound), an issued certificate's
//! validity, and the answers counted by status.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use sturdy_acme::{Error, Limit, Result};

/// When the last of `arrivals` (sorted) is served by a token bucket that
/// starts full, each served as soon as it has arrived and a token is there.
pub(super) fn greedy_finish(limit: &Limit, arrivals: &[Duration]) -> Duration {
    let interval = limit.refill_interval().as_secs_f64();
    let cap = f64::from(limit.burst);
    let (mut t, mut tokens) = (0.0f64, cap);
    for a in arrivals {
        let a = a.as_secs_f64();
        if a > t {
            tokens = (tokens + (a - t) / interval).min(cap);
            t = a;
        }
        if tokens < 1.0 {
            t += (1.0 - tokens) * interval;
            tokens = 1.0;
        }
        tokens -= 1.0;
    }
    Duration::from_secs_f64(t)
}

/// An issued certificate's validity.
pub(super) fn validity(der: &[u8]) -> Result<(SystemTime, SystemTime)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::InvalidInput(format!("an issued certificate does not parse: {e}")))?;
    let at = |t: i64| sturdy_acme::timestamp::from_unix(t);
    Ok((
        at(cert.validity().not_before.timestamp()),
        at(cert.validity().not_after.timestamp()),
    ))
}

/// Answers counted by status.
#[derive(Default)]
pub(super) struct Mutex429(std::sync::Mutex<HashMap<u16, u64>>);

impl Mutex429 {
    pub(super) fn count(&self, status: u16) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(status)
            .or_default() += 1;
    }
    pub(super) fn all(&self) -> BTreeMap<u16, u64> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(s, _)| **s >= 400)
            .map(|(s, n)| (*s, *n))
            .collect()
    }
    pub(super) fn get(&self, status: u16) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&status)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const HOUR: u64 = 3600;

    #[test]
    fn a_bucket_serves_its_burst_at_once_then_one_per_refill() {
        let limit = Limit::new(300, Duration::from_secs(3 * HOUR));
        let at_once = vec![Duration::ZERO; 300];
        assert_eq!(greedy_finish(&limit, &at_once), Duration::ZERO);
        let more = vec![Duration::ZERO; 2000];
        // 1,700 beyond the burst, one per 36 s.
        assert_eq!(greedy_finish(&limit, &more).as_secs(), 1700 * 36);
        // A later burst finds the bucket refilled meanwhile.
        let mut two = vec![Duration::ZERO; 300];
        two.extend(vec![Duration::from_secs(3 * HOUR); 300]);
        assert_eq!(greedy_finish(&limit, &two), Duration::from_secs(3 * HOUR));
    }
}
