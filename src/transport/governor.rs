//! The request governor: one per CA (per [`Client`](crate::Client), shared
//! by its clones and every order), between the orders and the wire.
//!
//! - **In flight**: at most `max_in_flight` requests are on the wire at
//!   once; the rest wait in one FIFO queue (tokio's fair semaphore), so no
//!   order starves. A waiting request holds nothing but its place: no
//!   connection, no nonce, no body.
//! - **Rates**: per endpoint group, a token bucket (GCRA, one reservation
//!   per request in arrival order) at the CA's published requests per
//!   second ([`RequestRates::lets_encrypt`] for Let's Encrypt's
//!   directories, none for other CAs unless configured).
//! - **Pauses**: while the CA's pause covers an endpoint (a 503 with
//!   `Retry-After`, a request-rate 429; see [`crate::wait`], which owns
//!   them), every request to it waits.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::error::Error;
use crate::protocol::Endpoint;
use crate::wait::Waits;

/// The endpoint groups a CA publishes request rates for (Let's Encrypt:
/// per IP, per second; exceeding one is answered with 503 + Retry-After).
///
/// Example: [`RequestRates`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateGroup {
    /// GET directory.
    Directory,
    /// newNonce.
    NewNonce,
    /// newAccount.
    NewAccount,
    /// newOrder.
    NewOrder,
    /// revokeCert.
    Revoke,
    /// Everything else under the CA's ACME path (authorizations,
    /// challenges, finalize, orders, certificates, key change).
    Other,
}

impl RateGroup {
    const ALL: [RateGroup; 6] = [
        Self::Directory,
        Self::NewNonce,
        Self::NewAccount,
        Self::NewOrder,
        Self::Revoke,
        Self::Other,
    ];

    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|g| *g == self)
            .expect("every group is listed")
    }

    /// The group an endpoint's requests count against.
    pub fn of(endpoint: Endpoint) -> Self {
        match endpoint {
            Endpoint::Directory => Self::Directory,
            Endpoint::NewNonce => Self::NewNonce,
            Endpoint::NewAccount => Self::NewAccount,
            Endpoint::NewOrder => Self::NewOrder,
            Endpoint::Revoke => Self::Revoke,
            _ => Self::Other,
        }
    }
}

/// Requests per second allowed per [`RateGroup`] (none: unlimited).
///
/// ```
/// use sturdy_acme::{RateGroup, RequestRates};
///
/// let le = RequestRates::lets_encrypt();
/// assert_eq!(le.per_second(RateGroup::NewNonce), Some(20.0));
/// let mine = RequestRates::none().with(RateGroup::NewOrder, 10.0);
/// assert_eq!(mine.per_second(RateGroup::NewOrder), Some(10.0));
/// assert_eq!(mine.per_second(RateGroup::Other), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestRates {
    per_second: [Option<f64>; 6],
}

impl RequestRates {
    /// No rate limits.
    pub const fn none() -> Self {
        Self {
            per_second: [None; 6],
        }
    }

    /// Let's Encrypt's published per-IP request rates (requests per
    /// second): directory 40, new-nonce 20, new-account 5, new-order 300,
    /// revoke-cert 10, other ACME requests 250.
    pub const fn lets_encrypt() -> Self {
        Self {
            per_second: [
                Some(40.0),
                Some(20.0),
                Some(5.0),
                Some(300.0),
                Some(10.0),
                Some(250.0),
            ],
        }
    }

    /// The rates a directory URL names: Let's Encrypt's for its production
    /// and staging directories, none for other CAs.
    pub fn for_directory(url: &str) -> Self {
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        match host.as_deref() {
            Some(h) if h == "api.letsencrypt.org" || h.ends_with(".api.letsencrypt.org") => {
                Self::lets_encrypt()
            }
            _ => Self::none(),
        }
    }

    /// With `group` limited to `per_second` (0 or less: unlimited).
    pub fn with(mut self, group: RateGroup, per_second: f64) -> Self {
        self.per_second[group.index()] = (per_second > 0.0).then_some(per_second);
        self
    }

    /// The rate for `group`, if limited.
    pub fn per_second(&self, group: RateGroup) -> Option<f64> {
        self.per_second[group.index()]
    }
}

/// How the governor of a [`Client`](crate::Client) paces requests; set with
/// [`ClientBuilder::governor`](crate::ClientBuilder::governor).
///
/// ```
/// use sturdy_acme::{GovernorPolicy, RateGroup, RequestRates};
///
/// let policy = GovernorPolicy::default()
///     .with_max_in_flight(16)
///     .with_rates(RequestRates::none().with(RateGroup::NewOrder, 50.0));
/// assert_eq!(policy.max_in_flight(), 16);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GovernorPolicy {
    max_in_flight: usize,
    rates: Option<RequestRates>,
}

impl Default for GovernorPolicy {
    /// 64 requests in flight; the rates the directory URL names
    /// ([`RequestRates::for_directory`]).
    fn default() -> Self {
        Self {
            max_in_flight: 64,
            rates: None,
        }
    }
}

impl GovernorPolicy {
    /// The cap on requests on the wire at once (and so on connections).
    pub const fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// With at most `n` requests in flight (at least 1).
    pub const fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = if n == 0 { 1 } else { n };
        self
    }

    /// The rates, if set (otherwise the directory's).
    pub const fn rates(&self) -> Option<RequestRates> {
        self.rates
    }

    /// With these rates instead of the directory's.
    pub const fn with_rates(mut self, rates: RequestRates) -> Self {
        self.rates = Some(rates);
        self
    }
}

/// One group's bucket: the theoretical arrival time of the next request
/// (GCRA). A request reserves its slot at once and waits for it, so
/// requests leave in the order they arrived.
#[derive(Debug)]
struct Bucket {
    interval: Duration,
    tolerance: Duration,
    next: Option<Instant>,
}

impl Bucket {
    fn new(per_second: f64) -> Self {
        let interval = Duration::from_secs_f64(1.0 / per_second);
        // A burst of one second's worth, as the CA's buckets allow.
        let burst = per_second.ceil().max(1.0);
        Self {
            interval,
            tolerance: interval.mul_f64(burst - 1.0),
            next: None,
        }
    }

    /// Reserves the next slot; returns when it may be used.
    fn reserve(&mut self, now: Instant) -> Instant {
        let tat = self.next.map_or(now, |t| t.max(now));
        let allowed = (tat.checked_sub(self.tolerance).unwrap_or(now)).max(now);
        self.next = Some(tat + self.interval);
        allowed
    }
}

/// A request's admission: its place on the wire until dropped.
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    _permit: SemaphorePermit<'a>,
    governor: &'a Governor,
    /// How long it waited for pauses, rates and the in-flight cap.
    pub(crate) queued: Duration,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.governor.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The governor of one CA; see the module docs.
#[derive(Debug)]
pub(crate) struct Governor {
    slots: Semaphore,
    max_in_flight: usize,
    buckets: Mutex<[Option<Bucket>; 6]>,
    /// The CA's pauses (and limits) this governor holds requests for.
    pub(crate) waits: Waits,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    queued_ns: AtomicU64,
    admitted: AtomicU64,
    /// The longest a pause may hold a request, in milliseconds (`u64::MAX`:
    /// as long as the CA asks); past it the request fails with
    /// [`Error::Paused`] (a CA set's member: another CA serves instead).
    hold_limit_ms: AtomicU64,
}

impl Governor {
    pub(crate) fn new(policy: GovernorPolicy, rates: RequestRates) -> Self {
        Self {
            slots: Semaphore::new(policy.max_in_flight()),
            max_in_flight: policy.max_in_flight(),
            buckets: Mutex::new(RateGroup::ALL.map(|g| rates.per_second(g).map(Bucket::new))),
            waits: Waits::default(),
            in_flight: AtomicU64::new(0),
            peak_in_flight: AtomicU64::new(0),
            queued_ns: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
            hold_limit_ms: AtomicU64::new(u64::MAX),
        }
    }

    /// Sets how long a pause may hold a request (`None`: as long as the CA
    /// asks).
    pub(crate) fn set_hold_limit(&self, limit: Option<Duration>) {
        let ms = limit.map_or(u64::MAX, |d| d.as_millis().min(u64::MAX as u128 - 1) as u64);
        self.hold_limit_ms.store(ms, Ordering::Relaxed);
    }

    /// Waits out a pause of `endpoint` ending at `until`, or refuses when
    /// it runs longer than the hold limit.
    async fn hold(&self, endpoint: Endpoint, until: Instant) -> Result<(), Error> {
        let left = until.saturating_duration_since(Instant::now());
        let limit = self.hold_limit_ms.load(Ordering::Relaxed);
        if limit != u64::MAX && left > Duration::from_millis(limit) {
            return Err(Error::Paused {
                endpoint: endpoint.as_str(),
                left,
            });
        }
        tokio::time::sleep_until(until).await;
        Ok(())
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Waits for `endpoint`'s rate slot (no place in flight taken): for a
    /// request made inside another's admission (a nonce fetched for it).
    pub(crate) async fn pace(&self, endpoint: Endpoint) {
        let at = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            buckets[RateGroup::of(endpoint).index()]
                .as_mut()
                .map(|b| b.reserve(Instant::now()))
        };
        if let Some(at) = at {
            tokio::time::sleep_until(at).await;
        }
    }

    /// Waits while a pause covers `endpoint` (for a request that already
    /// holds its place in flight: the nonce fetch of a POST).
    pub(crate) async fn wait_unpaused(&self, endpoint: Endpoint) -> Result<(), Error> {
        while let Some(until) = self.waits.paused_until(endpoint) {
            self.hold(endpoint, until).await?;
        }
        Ok(())
    }

    /// Waits until a request to `endpoint` may go on the wire: no pause in
    /// force, its rate slot reached, a place in flight free (FIFO).
    /// A pause longer than the hold limit fails it with [`Error::Paused`].
    pub(crate) async fn admit(&self, endpoint: Endpoint) -> Result<Admission<'_>, Error> {
        let started = Instant::now();
        loop {
            if let Some(until) = self.waits.paused_until(endpoint) {
                self.hold(endpoint, until).await?;
                continue;
            }
            self.pace(endpoint).await;
            let permit = self
                .slots
                .acquire()
                .await
                .expect("the governor's semaphore is never closed");
            // A pause may have begun while this request waited its turn.
            if self.waits.paused_until(endpoint).is_some() {
                drop(permit);
                continue;
            }
            let queued = started.elapsed();
            let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
            self.queued_ns
                .fetch_add(queued.as_nanos() as u64, Ordering::Relaxed);
            self.admitted.fetch_add(1, Ordering::Relaxed);
            return Ok(Admission {
                _permit: permit,
                governor: self,
                queued,
            });
        }
    }

    /// Figures for a load report.
    pub(crate) fn stats(&self) -> GovernorStats {
        GovernorStats {
            peak_in_flight: self.peak_in_flight.load(Ordering::Relaxed),
            admitted: self.admitted.load(Ordering::Relaxed),
            queued: Duration::from_nanos(self.queued_ns.load(Ordering::Relaxed)),
        }
    }
}

/// What a client's governor has done so far
/// ([`Client::governor_stats`](crate::Client::governor_stats)).
///
/// Example: [`GovernorPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GovernorStats {
    /// The most requests on the wire at once.
    pub peak_in_flight: u64,
    /// Requests let through.
    pub admitted: u64,
    /// Time spent waiting for admission, summed over requests.
    pub queued: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::Pause;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn rates_hold_under_a_burst_in_arrival_order() {
        let governor = Arc::new(Governor::new(
            GovernorPolicy::default().with_max_in_flight(1000),
            RequestRates::none().with(RateGroup::NewOrder, 100.0),
        ));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..1000u32 {
            let g = Arc::clone(&governor);
            tasks.push(tokio::spawn(async move {
                let a = g.admit(Endpoint::NewOrder).await.unwrap();
                let at = Instant::now() - start;
                drop(a);
                (i, at)
            }));
            tokio::task::yield_now().await;
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap());
        }
        // A burst of 1,000 newOrders at 100/s: 100 at once, then one every
        // 10 ms, so the last leaves at 9 s and no one-second window holds
        // more than the burst plus a second's rate.
        let last = times.iter().map(|(_, t)| *t).max().unwrap();
        assert_eq!(last, Duration::from_millis(9000), "{last:?}");
        for w in 0..10u64 {
            let from = Duration::from_millis(w * 500);
            let n = times
                .iter()
                .filter(|(_, t)| *t >= from && *t < from + Duration::from_secs(1))
                .count();
            let limit = if w == 0 { 200 } else { 101 };
            assert!(n <= limit, "window from {from:?}: {n}");
        }
        // FIFO: admitted in the order they asked.
        let mut by_time = times.clone();
        by_time.sort_by_key(|(i, t)| (*t, *i));
        assert!(by_time.windows(2).all(|w| w[0].0 < w[1].0), "{by_time:?}");
        // Other groups are not held back.
        let before = Instant::now();
        let a = governor.admit(Endpoint::Finalize).await.unwrap();
        assert_eq!(Instant::now(), before);
        drop(a);
    }

    #[tokio::test(start_paused = true)]
    async fn the_in_flight_cap_holds_and_waiters_are_served_fairly() {
        let governor = Arc::new(Governor::new(
            GovernorPolicy::default().with_max_in_flight(4),
            RequestRates::none(),
        ));
        let mut tasks = Vec::new();
        for i in 0..40u32 {
            let g = Arc::clone(&governor);
            tasks.push(tokio::spawn(async move {
                let asked = Instant::now();
                let a = g.admit(Endpoint::Order).await.unwrap();
                let waited = asked.elapsed();
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(a);
                (i, waited)
            }));
        }
        let mut waits = Vec::new();
        for t in tasks {
            waits.push(t.await.unwrap());
        }
        assert_eq!(governor.stats().peak_in_flight, 4);
        // 40 requests of 10 ms through 4 places: ten rounds; the i-th asker
        // waits its round, never more (no starvation).
        for (i, waited) in &waits {
            assert_eq!(*waited, Duration::from_millis(10 * u64::from(i / 4)), "{i}");
        }
        let mean = waits.iter().map(|(_, w)| w.as_millis()).sum::<u128>() / 40;
        let max = waits.iter().map(|(_, w)| w.as_millis()).max().unwrap();
        assert!(max <= 2 * mean + 10, "max {max} ms, mean {mean} ms");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_request_to_that_endpoint_until_it_ends() {
        let governor = Arc::new(Governor::new(
            GovernorPolicy::default(),
            RequestRates::none(),
        ));
        let start = Instant::now();
        assert!(
            governor
                .waits
                .pause(Pause::Endpoint(Endpoint::NewOrder), Duration::from_secs(30))
        );
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let g = Arc::clone(&governor);
            tasks.push(tokio::spawn(async move {
                let a = g.admit(Endpoint::NewOrder).await.unwrap();
                let at = start.elapsed();
                drop(a);
                at
            }));
        }
        // Another endpoint goes through meanwhile.
        let a = governor.admit(Endpoint::Authorization).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        drop(a);
        for t in tasks {
            assert_eq!(t.await.unwrap(), Duration::from_secs(30));
        }
        // A whole-CA pause holds everything.
        governor.waits.pause(Pause::Ca, Duration::from_secs(5));
        let before = Instant::now();
        let a = governor.admit(Endpoint::Authorization).await.unwrap();
        assert_eq!(before.elapsed(), Duration::from_secs(5));
        drop(a);
    }

    /// A CA set's member: a pause longer than the hold limit fails the
    /// request at once (another CA serves), a shorter one is waited out.
    #[tokio::test(start_paused = true)]
    async fn a_pause_past_the_hold_limit_fails_at_once() {
        let governor = Governor::new(GovernorPolicy::default(), RequestRates::none());
        governor.set_hold_limit(Some(Duration::from_secs(10)));
        governor.waits.pause(
            Pause::Endpoint(Endpoint::NewOrder),
            Duration::from_secs(600),
        );
        let before = Instant::now();
        match governor.admit(Endpoint::NewOrder).await {
            Err(Error::Paused { endpoint, left }) => {
                assert_eq!(endpoint, "newOrder");
                assert_eq!(left, Duration::from_secs(600));
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("held and admitted"),
        }
        assert_eq!(before.elapsed(), Duration::ZERO);
        assert!(matches!(
            governor.wait_unpaused(Endpoint::NewOrder).await,
            Err(Error::Paused { .. })
        ));
        governor.waits.pause(Pause::Ca, Duration::from_secs(5));
        let a = governor.admit(Endpoint::Authorization).await.unwrap();
        assert_eq!(before.elapsed(), Duration::from_secs(5));
        drop(a);
        governor.set_hold_limit(None);
        governor
            .waits
            .pause(Pause::Endpoint(Endpoint::Order), Duration::from_secs(600));
        let a = governor.admit(Endpoint::Order).await.unwrap();
        assert_eq!(before.elapsed(), Duration::from_secs(605));
        drop(a);
    }

    #[test]
    fn rates_follow_the_directory() {
        assert_eq!(
            RequestRates::for_directory("https://acme-v02.api.letsencrypt.org/directory"),
            RequestRates::lets_encrypt()
        );
        assert_eq!(
            RequestRates::for_directory("https://acme-staging-v02.api.letsencrypt.org/directory"),
            RequestRates::lets_encrypt()
        );
        assert_eq!(
            RequestRates::for_directory("https://letsencrypt.org.evil.example/directory"),
            RequestRates::none()
        );
    }
}
