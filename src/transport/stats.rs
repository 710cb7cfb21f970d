//! Request counters per ACME endpoint, for measurement and tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::protocol::Endpoint;

#[derive(Debug, Default)]
pub(crate) struct Counters([AtomicU64; 14]);

impl Counters {
    pub(crate) fn count(&self, endpoint: Endpoint) {
        let i = Endpoint::ALL
            .iter()
            .position(|e| *e == endpoint)
            .unwrap_or(13);
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

/// How many HTTP requests a [`Client`](crate::Client) has sent, per endpoint
/// (every attempt counts, including `badNonce` retries).
///
/// # Example
///
/// ```
/// # #[cfg(feature = "testing")]
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use sturdy_acme::testing::TestCa;
/// use sturdy_acme::Endpoint;
///
/// let ca = TestCa::start().await?;
/// let client = ca.client().await?;
/// assert_eq!(client.request_stats().get(Endpoint::Directory), 1);
/// # Ok(()) }
/// # #[cfg(not(feature = "testing"))]
/// # fn main() {}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
