//! Retry policies per [`ErrorClass`], and the one place that decides, logs
//! and waits between attempts.
//!
//! | class | default |
//! |---|---|
//! | `BadNonce` | re-sent at once with the rejection's nonce, up to 10 times |
//! | `Transient` | exponential backoff from 1 s (×2, max 30 s), full jitter, 5 attempts within 2 minutes |
//! | `Caa` (lookup failed) | 30 s, 2 min, 8 min, jittered (±25 %), within 15 minutes |
//! | `Caa` (forbidden) | not retried |
//! | `RateLimited` | not retried unless `Retry-After` ≤ `rate_limit_max_wait` (default 0) |
//! | everything else | not retried |
//!
//! Requests that are idempotent (POST-as-GET, account updates, newAccount,
//! the directory, newNonce) are re-sent by the transport. Requests that are
//! not (newOrder, challenge answers, finalize, revocation, key change) are
//! never repeated blindly: after a failure whose outcome is unknown the
//! client reads the state first (e.g. the order after a lost finalize
//! response) and continues from what the CA says.
//!
//! Time is tokio's (`tokio::time`), so tests run on a paused clock; jitter
//! comes from a generator that can be seeded ([`RetryPolicy::seed`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{CaaCause, Error, ErrorClass};
use crate::protocol::Endpoint;
use crate::wait::Wait;

/// How delays are randomized.
///
/// Example: [`RetryPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Jitter {
    /// Exactly the computed delay.
    None,
    /// Uniform in `[0, delay]` ("full jitter"): spreads a fleet's retries.
    Full,
    /// Uniform in `[delay × 3/4, delay × 5/4]`: about the schedule, never much earlier.
    Quarter,
}

/// Getters and `with_` setters (`const fn`) for a policy's private fields,
/// so a policy can grow without breaking its users.
macro_rules! knobs {
    ($ty:ident { $($(#[$doc:meta])* $field:ident, $setter:ident: $t:ty;)* }) => {
        impl $ty {
            $(
                $(#[$doc])*
                pub const fn $field(&self) -> $t {
                    self.$field
                }

                #[doc = concat!("Sets [`", stringify!($ty), "::", stringify!($field), "`].")]
                pub const fn $setter(mut self, value: $t) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}
pub(crate) use knobs;

/// Backoff for one class: attempts, delays and an overall time budget.
///
/// Built from [`Backoff::new`] or a [`RetryPolicy`]'s defaults with the
/// `with_` setters.
///
/// Example: [`RetryPolicy`].
///
/// ```
/// use std::time::Duration;
/// use sturdy_acme::Backoff;
///
/// let b = Backoff::new(5, Duration::from_secs(1));
/// assert_eq!(b.nominal_delay(0), Duration::from_secs(1));
/// assert_eq!(b.nominal_delay(3), Duration::from_secs(8));
/// assert_eq!(b.nominal_delay(10), b.max_delay());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    max_attempts: u32,
    base: Duration,
    factor: u32,
    max_delay: Duration,
    budget: Duration,
    jitter: Jitter,
}

knobs!(Backoff {
    /// Attempts in all, the first included (1 = no retry).
    max_attempts, with_max_attempts: u32;
    /// Delay before the first retry.
    base, with_base: Duration;
    /// Growth factor per retry.
    factor, with_factor: u32;
    /// The longest delay.
    max_delay, with_max_delay: Duration;
    /// No retry starts later than this after the first attempt.
    budget, with_budget: Duration;
    /// Randomization.
    jitter, with_jitter: Jitter;
});

impl Backoff {
    /// `max_attempts` attempts, the first retry after `base`, doubling up
    /// to 30 s, within 2 minutes, with full jitter (the transient default's
    /// shape).
    pub const fn new(max_attempts: u32, base: Duration) -> Self {
        Self {
            max_attempts,
            base,
            factor: 2,
            max_delay: Duration::from_secs(30),
            budget: Duration::from_secs(120),
            jitter: Jitter::Full,
        }
    }

    /// The un-jittered delay before retry number `retry` (0-based).
    pub fn nominal_delay(&self, retry: u32) -> Duration {
        let factor = self.factor.max(1).saturating_pow(retry.min(32));
        self.base.saturating_mul(factor).min(self.max_delay)
    }

    fn delay(&self, retry: u32, rng: &Rng) -> Duration {
        let nominal = self.nominal_delay(retry);
        match self.jitter {
            Jitter::None => nominal,
            Jitter::Full => nominal.mul_f64(rng.next_f64()),
            Jitter::Quarter => nominal.mul_f64(0.75 + 0.5 * rng.next_f64()),
        }
    }
}

/// What each class of failure gets: [`RetryPolicy::default`] (the table
/// in the module docs) changed with the `with_` setters.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use sturdy_acme::{Backoff, Jitter, RetryPolicy};
///
/// let policy = RetryPolicy::default()
///     .with_transient(Backoff::new(8, Duration::from_millis(500)).with_jitter(Jitter::Full))
///     .with_rate_limit_max_wait(Duration::from_secs(30));
/// assert_eq!(policy.transient().max_attempts(), 8);
/// assert_eq!(policy.caa(), RetryPolicy::default().caa());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    bad_nonce_attempts: u32,
    transient: Backoff,
    caa: Backoff,
    rate_limit_max_wait: Duration,
    seed: Option<u64>,
}

knobs!(RetryPolicy {
    /// Attempts for one request when the CA keeps answering `badNonce`.
    bad_nonce_attempts, with_bad_nonce_attempts: u32;
    /// Transient failures (5xx, timeouts, resets, broken bodies).
    transient, with_transient: Backoff;
    /// CAA lookup failures at finalize ("Rechecking CAA ... timed out").
    caa, with_caa: Backoff;
    /// Wait for a rate limit's Retry-After when it is at most this long
    /// (default zero: rate limits are surfaced, never waited on).
    rate_limit_max_wait, with_rate_limit_max_wait: Duration;
    /// Seed for jitter (None: from the system's random source).
    seed, with_seed: Option<u64>;
});

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            bad_nonce_attempts: 10,
            transient: Backoff {
                max_attempts: 5,
                base: Duration::from_secs(1),
                factor: 2,
                max_delay: Duration::from_secs(30),
                budget: Duration::from_secs(120),
                jitter: Jitter::Full,
            },
            caa: Backoff {
                max_attempts: 4,
                base: Duration::from_secs(30),
                factor: 4,
                max_delay: Duration::from_secs(8 * 60),
                budget: Duration::from_secs(15 * 60),
                jitter: Jitter::Quarter,
            },
            rate_limit_max_wait: Duration::ZERO,
            seed: None,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries anything but `badNonce`.
    pub fn no_retries() -> Self {
        let p = Self::default();
        p.with_transient(p.transient.with_max_attempts(1))
            .with_caa(p.caa.with_max_attempts(1))
    }
}

/// Something that happened, for metrics: every exchange and every retry
/// decision. Subscribe with
/// [`ClientBuilder::on_event`](crate::ClientBuilder::on_event).
///
/// # Example
///
/// Metrics from events: requests per endpoint and re-sends per class.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::Error> {
/// use std::collections::BTreeMap;
/// use std::sync::{Arc, Mutex};
/// use sturdy_acme_testca::TestCa;
/// use sturdy_acme::{Event, Endpoint};
///
/// let ca = TestCa::start().await?;
/// let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
/// let sink = counts.clone();
/// let _client = ca
///     .client_builder()
///     .on_event(move |e| {
///         let key = match e {
///             Event::Exchange { endpoint, status, .. } => format!("{endpoint} {status:?}"),
///             Event::Retry { class, .. } => format!("retry {}", class.name()),
///             Event::GaveUp { class, .. } => format!("gave up {}", class.name()),
///             _ => return,
///         };
///         *sink.lock().unwrap().entry(key).or_default() += 1;
///     })
///     .build()
///     .await?;
/// assert_eq!(counts.lock().unwrap()[&format!("{} Some(200)", Endpoint::Directory)], 1);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// One HTTP exchange finished.
    Exchange {
        /// Method.
        method: &'static str,
        /// URL.
        url: String,
        /// Endpoint.
        endpoint: Endpoint,
        /// HTTP status, if a response arrived.
        status: Option<u16>,
        /// Problem type, if the CA sent one.
        problem: Option<String>,
        /// Retry-After, if sent.
        retry_after: Option<Duration>,
        /// Which attempt of one logical request this was, 0 for the first,
        /// counted across every kind of re-send (badNonce, transient
        /// backoff, CAA recheck, rate-limit wait).
        attempt: u32,
        /// How long it took on the wire.
        elapsed: Duration,
        /// How long it waited before that for the request governor (a
        /// pause, the endpoint's rate, a place in flight).
        queued: Duration,
    },
    /// The CA asked for a pause (503 with Retry-After, or a 429 on a
    /// request rate): the governor holds every request to `endpoint` (to
    /// the whole CA when `None`) until `until`, for all orders of the
    /// client. Emitted once per pause, not per waiting request.
    Paused {
        /// The endpoint paused; `None`: the whole CA.
        endpoint: Option<Endpoint>,
        /// The status that asked for it.
        status: u16,
        /// When requests resume.
        until: std::time::SystemTime,
        /// How long the CA asked for (from its answer; capped at an hour).
        delay: Duration,
        /// The failure that asked for it.
        error: String,
    },
    /// A failure will be retried after `delay`: every re-send of a
    /// request, whatever the class, is announced by one `Retry` (a
    /// `badNonce` re-send too, with [`ErrorClass::BadNonce`] and no delay).
    Retry {
        /// Endpoint.
        endpoint: Endpoint,
        /// URL.
        url: String,
        /// The failure's class ([`ErrorClass::name`] for a metric label).
        class: ErrorClass,
        /// Requests sent so far for this logical request (1 after the
        /// first): the next one is number `attempt` in
        /// [`Event::Exchange::attempt`]'s count.
        attempt: u32,
        /// The wait before it.
        delay: Duration,
        /// The failure.
        error: String,
    },
    /// The CA's renewal information for a certificate (RFC 9773) arrived.
    RenewalInfo {
        /// The certificate's CertID.
        cert_id: String,
        /// The suggested window's start.
        window_start: std::time::SystemTime,
        /// Its end.
        window_end: std::time::SystemTime,
        /// The CA's `explanationURL` (an incident, typically), if any.
        explanation_url: Option<String>,
        /// When to ask again (its `Retry-After`, clamped).
        check_again_at: std::time::SystemTime,
    },
    /// The profile asked for is no longer offered (the CA's directory does
    /// not list it, or the CA refused it as `invalidProfile`): the order
    /// asks for the configured fallback instead
    /// ([`CertificateOptions::with_profile_fallback`](crate::CertificateOptions::with_profile_fallback)).
    ProfileFallback {
        /// The profile the certificate's options ask for.
        wanted: String,
        /// The profile asked instead (`None`: the CA's default).
        used: Option<String>,
    },
    /// The CA refused an order's `replaces` (the certificate was already
    /// replaced, or it did not accept the CertID): the order was sent once
    /// more without it, so it is a plain order, not an ARI renewal.
    ReplacesDropped {
        /// The CertID that was refused.
        cert_id: String,
        /// The CA's problem (type and detail).
        problem: String,
        /// Why, typed (its [`remedy`](crate::ReplacesRefusal::remedy) says
        /// what was done).
        cause: crate::ReplacesRefusal,
    },
    /// The CA answered `alreadyReplaced`, and the replacement order it
    /// meant was this account's own earlier one (its answer lost, or left
    /// pending): that order is resumed instead of a new one, so the
    /// renewal keeps its ARI exemption.
    ReplacementResumed {
        /// The CertID of the certificate being replaced.
        cert_id: String,
        /// The earlier order, resumed.
        order_url: String,
    },
    /// Retrying stopped: the failure is returned to the caller.
    GaveUp {
        /// Endpoint.
        endpoint: Endpoint,
        /// URL.
        url: String,
        /// The last failure's class.
        class: ErrorClass,
        /// Requests sent for this logical request, the first included.
        attempts: u32,
        /// Time since the first attempt.
        elapsed: Duration,
    },
}

/// A subscriber to [`Event`]s.
pub(crate) type Subscriber = Arc<dyn Fn(&Event) + Send + Sync>;

/// The subscriber list (cheap to clone).
#[derive(Clone, Default)]
pub(crate) struct Events {
    subscribers: Vec<Subscriber>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Events({} subscribers)", self.subscribers.len())
    }
}

impl Events {
    pub(crate) fn subscribe(&mut self, f: Subscriber) {
        self.subscribers.push(f);
    }

    pub(crate) fn emit(&self, event: Event) {
        for s in &self.subscribers {
            s(&event);
        }
    }
}

/// One step of splitmix64: advances `state` and returns the next value.
/// The crate's one seedable generator (jitter here, fault triggers in the
/// embedded CA).
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seedable generator for jitter (splitmix64).
#[derive(Debug)]
pub(crate) struct Rng(Mutex<u64>);

impl Rng {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(|| {
            use ring::rand::SecureRandom;
            let mut b = [0u8; 8];
            let _ = ring::rand::SystemRandom::new().fill(&mut b);
            u64::from_le_bytes(b)
        });
        Self(Mutex::new(seed))
    }

    fn next_u64(&self) -> u64 {
        splitmix64(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The retry state of one logical request: counts attempts per class and
/// decides, logs, reports and waits. Every retry loop in the crate goes
/// through [`Retrying::pause_or_fail`].
pub(crate) struct Retrying<'a> {
    policy: &'a RetryPolicy,
    events: &'a Events,
    rng: &'a Rng,
    clock: crate::Clock,
    endpoint: Endpoint,
    url: String,
    started: Instant,
    /// Requests sent so far (exchanges, every kind).
    sent: u32,
    transient: u32,
    caa: u32,
    rate: u32,
}

impl<'a> Retrying<'a> {
    pub(crate) fn new(
        policy: &'a RetryPolicy,
        events: &'a Events,
        rng: &'a Rng,
        clock: crate::Clock,
        endpoint: Endpoint,
        url: &str,
    ) -> Self {
        Self {
            policy,
            events,
            rng,
            clock,
            endpoint,
            url: url.to_owned(),
            started: Instant::now(),
            sent: 0,
            transient: 0,
            caa: 0,
            rate: 0,
        }
    }

    /// The endpoint of this logical request.
    pub(crate) fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// The URL of this logical request.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Counts a request about to be sent; returns its 0-based attempt
    /// number within this logical request.
    pub(crate) fn next_attempt(&mut self) -> u32 {
        let n = self.sent;
        self.sent = self.sent.saturating_add(1);
        n
    }

    /// Reports a `badNonce` re-send (immediate, with the rejection's nonce).
    pub(crate) fn bad_nonce(&self, error: &Error) {
        tracing::debug!(
            target: "sturdy_acme::retry",
            endpoint = self.endpoint.as_str(),
            url = %self.url,
            class = "bad_nonce",
            attempt = self.sent,
            "re-sending after badNonce"
        );
        self.events.emit(Event::Retry {
            endpoint: self.endpoint,
            url: self.url.clone(),
            class: ErrorClass::BadNonce,
            attempt: self.sent,
            delay: Duration::ZERO,
            error: error.to_string(),
        });
    }

    /// After a failed attempt: waits and returns `Ok(())` if the error's
    /// class should be retried now, else returns the error to give the
    /// caller (wrapped in [`Error::GaveUp`] when retries ran out).
    pub(crate) async fn pause_or_fail(&mut self, error: Error) -> Result<(), Error> {
        let class = error.class();
        let elapsed = self.started.elapsed();
        let wait = Wait::of(&error, self.clock.now());
        let decision = match &class {
            // A pause longer than this client holds a request for is not
            // waited out here either (a CA set asks another CA).
            ErrorClass::Transient if !matches!(error, Error::Paused { .. }) => {
                let backoff = &self.policy.transient;
                // A 503's Retry-After wins over the computed delay, and
                // counts against the budget as the delay it is.
                // (The governor holds the next request until the CA's
                // pause ends, whatever this loop sleeps: the whole wait is
                // what the budget is checked against.)
                let asked = wait.as_ref().map(|w| w.delay);
                let d = self
                    .next_with(backoff, self.transient, asked)
                    .map(|d| d.min(backoff.max_delay));
                if d.is_some() {
                    self.transient += 1;
                }
                d
            }
            ErrorClass::Caa {
                cause: CaaCause::LookupFailed,
                ..
            } => {
                let d = self.next(&self.policy.caa, self.caa);
                if d.is_some() {
                    self.caa += 1;
                }
                d
            }
            ErrorClass::RateLimited { local: false, .. } if self.rate == 0 && wait.is_some() => {
                let wait = wait.as_ref().map_or(Duration::ZERO, |w| w.delay);
                if wait <= self.policy.rate_limit_max_wait
                    && !self.policy.rate_limit_max_wait.is_zero()
                {
                    self.rate += 1;
                    Some(wait)
                } else {
                    None
                }
            }
            _ => None,
        };
        match decision {
            Some(delay) => {
                tracing::info!(
                    target: "sturdy_acme::retry",
                    endpoint = self.endpoint.as_str(),
                    url = %self.url,
                    class = class.name(),
                    attempt = self.sent,
                    delay_ms = delay.as_millis() as u64,
                    error = %error,
                    "retrying"
                );
                self.events.emit(Event::Retry {
                    endpoint: self.endpoint,
                    url: self.url.clone(),
                    class,
                    attempt: self.sent,
                    delay,
                    error: error.to_string(),
                });
                tokio::time::sleep(delay).await;
                Ok(())
            }
            None => {
                let attempts = self.sent.max(1);
                let retried = attempts > 1;
                let retryable = matches!(class, ErrorClass::Transient)
                    || matches!(
                        class,
                        ErrorClass::Caa {
                            cause: CaaCause::LookupFailed,
                            ..
                        }
                    );
                if retried || retryable {
                    tracing::warn!(
                        target: "sturdy_acme::retry",
                        endpoint = self.endpoint.as_str(),
                        url = %self.url,
                        class = class.name(),
                        attempts,
                        elapsed_ms = elapsed.as_millis() as u64,
                        error = %error,
                        "giving up"
                    );
                    self.events.emit(Event::GaveUp {
                        endpoint: self.endpoint,
                        url: self.url.clone(),
                        class: class.clone(),
                        attempts,
                        elapsed,
                    });
                }
                if retryable && attempts > 1 {
                    Err(Error::GaveUp {
                        attempts,
                        elapsed,
                        source: Box::new(error),
                    })
                } else {
                    Err(error)
                }
            }
        }
    }

    /// The delay of the next retry for `backoff`, if attempts and budget allow.
    fn next(&self, backoff: &Backoff, used: u32) -> Option<Duration> {
        self.next_with(backoff, used, None)
    }

    /// The delay before the next attempt (`asked`, the CA's, instead of
    /// the schedule's when given), or `None` when the attempts or the
    /// budget would be exceeded by waiting it.
    fn next_with(&self, backoff: &Backoff, used: u32, asked: Option<Duration>) -> Option<Duration> {
        if used + 1 >= backoff.max_attempts {
            return None;
        }
        let delay = asked.unwrap_or_else(|| backoff.delay(used, self.rng));
        if self.started.elapsed() + delay > backoff.budget {
            return None;
        }
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        let p = RetryPolicy::default();
        let t: Vec<u64> = (0..7)
            .map(|i| p.transient.nominal_delay(i).as_secs())
            .collect();
        assert_eq!(t, [1, 2, 4, 8, 16, 30, 30]);
        let c: Vec<u64> = (0..3).map(|i| p.caa.nominal_delay(i).as_secs()).collect();
        assert_eq!(c, [30, 120, 480]);
    }

    #[test]
    fn jitter_stays_in_bounds_and_is_seeded() {
        let b = RetryPolicy::default().caa;
        let rng = Rng::new(Some(1));
        for i in 0..3 {
            let d = b.delay(i, &rng);
            let n = b.nominal_delay(i);
            assert!(
                d >= n.mul_f64(0.75) && d <= n.mul_f64(1.25),
                "{d:?} vs {n:?}"
            );
        }
        let full = RetryPolicy::default().transient;
        let (a, b2) = (Rng::new(Some(9)), Rng::new(Some(9)));
        let xs: Vec<Duration> = (0..5).map(|i| full.delay(i, &a)).collect();
        let ys: Vec<Duration> = (0..5).map(|i| full.delay(i, &b2)).collect();
        assert_eq!(xs, ys);
        assert!(
            xs.iter()
                .enumerate()
                .all(|(i, d)| *d <= full.nominal_delay(i as u32))
        );
    }
}
