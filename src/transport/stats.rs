//! Request counters per ACME endpoint, for measurement and tests, and the
//! CA's round trip (the quickest exchange with it so far).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::protocol::Endpoint;

#[derive(Debug, Default)]
pub(crate) struct Counters([AtomicU64; Endpoint::ALL.len()]);

impl Counters {
    pub(crate) fn count(&self, endpoint: Endpoint) {
        let i = Endpoint::ALL
            .iter()
            .position(|e| *e == endpoint)
            .unwrap_or(Endpoint::ALL.len() - 1);
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RequestStats {
        let by_endpoint = Endpoint::ALL
            .iter()
            .zip(&self.0)
            .map(|(e, c)| (*e, c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        RequestStats { by_endpoint }
    }
}

/// The quickest answered exchange with the CA so far: its round trip plus
/// the least work it does for a request, what a poll of a step that is
/// already done costs. Kept in microseconds (0: none yet).
#[derive(Debug, Default)]
pub(crate) struct RoundTrip(AtomicU64);

impl RoundTrip {
    /// Records one answered exchange that took `took` (sending to the end
    /// of the body).
    pub(crate) fn record(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                (now == 0 || micros < now).then_some(micros)
            });
    }

    /// The quickest exchange so far, if any was answered.
    pub(crate) fn get(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }
}

/// How many HTTP requests a [`Client`](crate::Client) has sent, per endpoint
/// (every attempt counts, including `badNonce` retries).
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use sturdy_acme_testca::TestCa;
/// use sturdy_acme::Endpoint;
///
/// let ca = TestCa::start().await?;
/// let client = ca.client().await?;
/// assert_eq!(client.request_stats().get(Endpoint::Directory), 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestStats {
    /// Requests per endpoint (endpoints never used are absent).
    pub by_endpoint: BTreeMap<Endpoint, u64>,
}

impl RequestStats {
    /// Requests to `endpoint`.
    pub fn get(&self, endpoint: Endpoint) -> u64 {
        self.by_endpoint.get(&endpoint).copied().unwrap_or(0)
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.by_endpoint.values().sum()
    }

    /// The requests made since `earlier` (a previous snapshot).
    pub fn since(&self, earlier: &RequestStats) -> RequestStats {
        let by_endpoint = self
            .by_endpoint
            .iter()
            .map(|(e, n)| (*e, n - earlier.get(*e).min(*n)))
            .filter(|(_, n)| *n > 0)
            .collect();
        RequestStats { by_endpoint }
    }
}

impl std::fmt::Display for RequestStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .by_endpoint
            .iter()
            .map(|(e, n)| format!("{e}={n}"))
            .collect();
        write!(f, "{} ({})", self.total(), parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_round_trip_is_the_quickest_exchange() {
        let rtt = RoundTrip::default();
        assert_eq!(rtt.get(), None);
        rtt.record(Duration::from_millis(40));
        rtt.record(Duration::from_millis(3));
        rtt.record(Duration::from_millis(9));
        assert_eq!(rtt.get(), Some(Duration::from_millis(3)));
        rtt.record(Duration::ZERO);
        assert_eq!(rtt.get(), Some(Duration::from_micros(1)));
    }

    #[test]
    fn every_endpoint_is_counted_on_its_own() {
        let counters = Counters::default();
        for (i, e) in Endpoint::ALL.iter().enumerate() {
            for _ in 0..=i {
                counters.count(*e);
            }
        }
        let stats = counters.snapshot();
        for (i, e) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(stats.by_endpoint.get(e), Some(&(i as u64 + 1)), "{e}");
        }
    }
}
