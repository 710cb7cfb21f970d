//! Polling: the first poll when the CA is usually done (learned per CA and
//! per step), then quick rechecks backing off exponentially; Retry-After
//! honoured.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, sleep};

use crate::error::{Error, Result, RetryAfter};

/// How a pending order, authorization or finalization is polled.
///
/// Polls start fast (a CA like Pebble or Boulder often finishes a validation
/// within tens of milliseconds), then back off exponentially up to
/// `max_delay`. A `Retry-After` from the CA replaces the computed delay
/// (capped by `max_retry_after`, and never shorter than `first_delay`, so a
/// CA answering `Retry-After: 0` or a date in the past cannot make the
/// client spin). Polling gives up with
/// [`Error::PollTimeout`](crate::Error::PollTimeout) after `timeout` or
/// `max_polls` polls, whichever comes first.
/// A poll is also cancelled by dropping its future.
///
/// **Adaptive** (the default): the client learns, per CA and per step
/// (authorization pending → valid, order pending → ready, order
/// processing → valid), how long the CA usually takes, and places the
/// first poll there; a poll that finds the resource not yet done is
/// followed by quick rechecks (an eighth of the estimate, doubling). A
/// fast CA is polled once, right when it is done; a slow one is not polled
/// early. The estimate is a high percentile (p90) of the step's last 32
/// times, never longer than `max_learned`, so one slow step (a 60 s
/// validation) moves nothing. Before a step has been seen, the first poll
/// is placed from the CA's round trip (the quickest exchange with it so
/// far), so a fresh client is as quick as a trained one; `first_delay`
/// is the first poll's delay only when nothing at all is known. A
/// `Retry-After` always wins.
///
/// [`PollPolicy::default`] changed with the `with_` setters.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use sturdy_acme::PollPolicy;
///
/// let poll = PollPolicy::default().with_max_polls(50).with_timeout(Duration::from_secs(120));
/// assert_eq!(poll.delay(0, None), poll.first_delay());
/// assert!(poll.delay(30, None) <= poll.max_delay());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollPolicy {
    first_delay: Duration,
    factor: u32,
    max_delay: Duration,
    max_retry_after: Duration,
    timeout: Duration,
    max_polls: u32,
    adaptive: bool,
    max_learned: Duration,
}

crate::retry::knobs!(PollPolicy {
    /// Whether the first poll's delay is learned per CA and step.
    adaptive, with_adaptive: bool;
    /// Delay before the first poll.
    first_delay, with_first_delay: Duration;
    /// Growth factor between polls.
    factor, with_factor: u32;
    /// The longest delay between two polls without Retry-After.
    max_delay, with_max_delay: Duration;
    /// The longest Retry-After obeyed; longer ones are cut to this.
    max_retry_after, with_max_retry_after: Duration;
    /// Give up after this long.
    timeout, with_timeout: Duration;
    /// Give up after this many polls of one resource.
    max_polls, with_max_polls: u32;
    /// The longest learned first-poll delay (adaptive polling): a CA that
    /// is slow for a while is still polled at least this often at first.
    max_learned, with_max_learned: Duration;
});

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_millis(10),
            factor: 2,
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
            timeout: Duration::from_secs(300),
            max_polls: 500,
            adaptive: true,
            max_learned: Duration::from_secs(10),
        }
    }
}

impl PollPolicy {
    /// The delay before poll number `attempt` (0-based), given the last
    /// response's Retry-After.
    pub fn delay(&self, attempt: u32, retry_after: Option<RetryAfter>) -> Duration {
        if let Some(ra) = retry_after {
            return ra
                .remaining(SystemTime::now())
                .min(self.max_retry_after)
                .max(self.first_delay)
                .max(Duration::from_millis(1));
        }
        let factor = self.factor.max(1).saturating_pow(attempt.min(30));
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// The shortest learned first delay.
const MIN_LEARNED: Duration = Duration::from_millis(1);

/// How many of a step's latest times the estimate is taken from.
const WINDOW: usize = 32;

/// The percentile of those times the first poll is placed at: most first
/// polls find the step done, about one in ten needs a quick recheck.
const PERCENTILE: f64 = 0.9;

/// What a first poll that found the step done records: the step took at
/// most that long, perhaps less (so the estimate can come down).
const HIT_SHRINK: f64 = 0.85;

/// A step is seeded at this many round trips (a validation or an issuance
/// is a request to the CA plus its own work).
const SEED_ROUND_TRIPS: u32 = 2;

/// What a client learned about how long its CA takes, per step (the
/// resource polled and the status it is polled in): the step's latest
/// times, from the request that started it to the CA being done.
///
/// The first poll goes at a high percentile of those times (never the
/// single longest of a short history, never beyond the policy's
/// `max_learned`): one slow step is one sample among 32, not the new
/// estimate. A first poll that finds the step done records a little less
/// than it waited (the CA may be faster still), one that does not records
/// when the step was found done.
#[derive(Debug, Default)]
pub(crate) struct PollLearner {
    steps: Mutex<HashMap<(&'static str, &'static str), VecDeque<Duration>>>,
}

impl PollLearner {
    /// Where the first poll of `step` goes: the estimate from its times,
    /// else (a step not seen yet) from the CA's `round_trip`, else
    /// nothing (the policy's fixed schedule).
    fn estimate(
        &self,
        step: (&'static str, &'static str),
        round_trip: Option<Duration>,
        cap: Duration,
    ) -> Option<Duration> {
        let steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        let estimate = match steps.get(&step) {
            Some(times) if !times.is_empty() => percentile(times),
            _ => seed(round_trip?),
        };
        Some(estimate.min(cap).max(MIN_LEARNED))
    }

    /// Learns from one step found done by poll number `polls` (1: the
    /// first), sent `elapsed` after the step started, whose first poll was placed at `first` (an
    /// estimate) or on the fixed schedule (`None`). A fresh step's history
    /// starts with `seed` (what was known before it: the first poll's
    /// place from the round trip, or the policy's first delay), so its
    /// first real time, which may be an outlier, is never the estimate
    /// alone: a second one must agree.
    fn learn(
        &self,
        step: (&'static str, &'static str),
        first: Option<Duration>,
        polls: u32,
        elapsed: Duration,
        seed: Duration,
    ) {
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        let times = steps.entry(step).or_insert_with(|| VecDeque::from([seed]));
        let time = match (first, polls) {
            // Done by then: perhaps the CA is faster still. (The estimate,
            // not when the poll went: a timer wakes late, by a millisecond
            // or so, which would push a small estimate up at every hit.)
            (Some(first), 1) => first.mul_f64(HIT_SHRINK),
            // Found done after rechecks (or on the fixed schedule): about
            // when it was done.
            _ => elapsed,
        };
        if times.len() == WINDOW {
            times.pop_front();
        }
        times.push_back(time.max(MIN_LEARNED));
    }
}

/// The first-poll delay of a step not seen yet, from the CA's round trip.
fn seed(round_trip: Duration) -> Duration {
    round_trip.saturating_mul(SEED_ROUND_TRIPS).max(MIN_LEARNED)
}

/// The [`PERCENTILE`] of `times` (nearest rank), but never the longest of
/// two or more: a single outlier is ignored however short the history.
fn percentile(times: &VecDeque<Duration>) -> Duration {
    let mut sorted: Vec<Duration> = times.iter().copied().collect();
    sorted.sort_unstable();
    let n = sorted.len();
    let rank = ((n as f64 * PERCENTILE).ceil() as usize).max(1);
    let index = if n >= 2 { rank.min(n - 1) } else { rank } - 1;
    sorted[index]
}

/// One resource being polled: counts polls and time against the policy.
pub(crate) struct Poller<'a> {
    policy: &'a PollPolicy,
    what: &'static str,
    url: &'a str,
    started: Instant,
    polls: u32,
    learning: Option<(&'a PollLearner, &'static str)>,
    learned: Option<Duration>,
    round_trip: Option<Duration>,
    /// When the latest poll was sent, from the start (its own round trip
    /// is no part of the step).
    last_poll: Option<Duration>,
    told: bool,
}

impl<'a> Poller<'a> {
    /// Starts polling `what` at `url`.
    pub(crate) fn new(policy: &'a PollPolicy, what: &'static str, url: &'a str) -> Self {
        Self {
            policy,
            what,
            url,
            started: Instant::now(),
            polls: 0,
            learning: None,
            learned: None,
            round_trip: None,
            last_poll: None,
            told: false,
        }
    }

    /// Polling `what` in `status`, with the first poll placed where
    /// `learner` says the CA is usually done (when the policy is adaptive),
    /// or for a step not seen yet, from the CA's `round_trip` (the
    /// quickest exchange with it so far).
    pub(crate) fn learning(
        policy: &'a PollPolicy,
        learner: &'a PollLearner,
        what: &'static str,
        status: &'static str,
        url: &'a str,
        round_trip: Option<Duration>,
    ) -> Self {
        let mut poller = Self::new(policy, what, url);
        if policy.adaptive {
            poller.learned = learner.estimate((what, status), round_trip, policy.max_learned);
            poller.learning = Some((learner, status));
            poller.round_trip = round_trip;
        }
        poller
    }

    /// The delay before the next poll.
    fn next_delay(&self, retry_after: Option<RetryAfter>) -> Duration {
        match (self.learned, retry_after) {
            (_, Some(_)) | (None, None) => self.policy.delay(self.polls, retry_after),
            (Some(est), None) if self.polls == 0 => est,
            (Some(est), None) => {
                let step = (est / 8).max(MIN_LEARNED);
                let factor = self
                    .policy
                    .factor
                    .max(1)
                    .saturating_pow((self.polls - 1).min(30));
                step.saturating_mul(factor).min(self.policy.max_delay)
            }
        }
    }

    /// The resource left the polled status: learn when the poll that found
    /// it so was sent (unless the CA said when to come back, or nothing
    /// was polled).
    pub(crate) fn done(&self) {
        if let Some((learner, status)) = self.learning
            && let Some(found) = self.last_poll
            && !self.told
        {
            learner.learn(
                (self.what, status),
                self.learned,
                self.polls,
                found,
                self.round_trip.map_or(self.policy.first_delay, seed),
            );
        }
    }

    /// Waits before the next poll of a resource still in `status`, or fails
    /// with [`Error::PollTimeout`] once the time or the poll count is spent.
    pub(crate) async fn wait(
        &mut self,
        status: &str,
        retry_after: Option<RetryAfter>,
    ) -> Result<()> {
        if self.started.elapsed() >= self.policy.timeout || self.polls >= self.policy.max_polls {
            return Err(Error::PollTimeout {
                what: self.what,
                url: self.url.to_owned(),
                status: status.to_owned(),
                waited: self.started.elapsed(),
            });
        }
        self.told |= retry_after.is_some();
        sleep(self.next_delay(retry_after)).await;
        self.polls += 1;
        self.last_poll = Some(self.started.elapsed());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        let p = PollPolicy::default();
        assert_eq!(p.delay(0, None), Duration::from_millis(10));
        assert_eq!(p.delay(1, None), Duration::from_millis(20));
        assert_eq!(p.delay(3, None), Duration::from_millis(80));
        assert_eq!(p.delay(20, None), Duration::from_secs(5));
        assert_eq!(p.delay(u32::MAX, None), Duration::from_secs(5));
        let ra = RetryAfter::after(Duration::from_secs(3), SystemTime::now());
        let d = p.delay(0, Some(ra));
        assert!(
            d <= Duration::from_secs(3) && d > Duration::from_secs(2),
            "{d:?}"
        );
        let ra = RetryAfter::after(Duration::from_secs(3600), SystemTime::now());
        assert_eq!(p.delay(0, Some(ra)), Duration::from_secs(60));
    }

    /// Runs one step of a CA that is done `done_after` after the step
    /// starts; returns the polls and the time until it was found done.
    async fn step(
        policy: &PollPolicy,
        learner: &PollLearner,
        round_trip: Option<Duration>,
        done_after: Duration,
    ) -> (u32, Duration) {
        let mut poller = Poller::learning(
            policy,
            learner,
            "order",
            "processing",
            "https://ca/o/1",
            round_trip,
        );
        let started = Instant::now();
        let mut polls = 0;
        while started.elapsed() < done_after {
            poller.wait("processing", None).await.unwrap();
            polls += 1;
        }
        poller.done();
        (polls, started.elapsed())
    }

    /// The estimate the next step of `learner` starts from.
    fn next_first_poll(learner: &PollLearner, round_trip: Option<Duration>) -> Duration {
        let policy = PollPolicy::default();
        Poller::learning(&policy, learner, "order", "processing", "u", round_trip).next_delay(None)
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_poll_moves_to_when_the_ca_is_done() {
        let policy = PollPolicy::default();
        let learner = PollLearner::default();
        // A CA that takes 300 ms, nothing known of it (no round trip): the
        // first step is polled on the default backoff (10, 20, 40, 80,
        // 160 ms: found done at 310 ms, poll 5).
        let slow = Duration::from_millis(300);
        assert_eq!(
            step(&policy, &learner, None, slow).await,
            (5, Duration::from_millis(310))
        );
        // One time is not trusted alone (it may be an outlier): the next
        // step starts from the first delay again, with fine rechecks (an
        // eighth of it, doubling), found done at 330 ms.
        let (polls, took) = step(&policy, &learner, None, slow).await;
        assert!(
            polls > 1 && took <= Duration::from_millis(340),
            "{polls} {took:?}"
        );
        // Two agree: learned, one poll.
        let (polls, took) = step(&policy, &learner, None, slow).await;
        assert_eq!(polls, 1);
        assert!(took <= Duration::from_millis(331), "{took:?}");
        // The estimate creeps down while first polls find it done, and a
        // miss costs quick rechecks, never a long backoff.
        let mut extra = 0;
        for _ in 0..60 {
            let (polls, took) = step(&policy, &learner, None, slow).await;
            extra += polls - 1;
            assert!(took < Duration::from_millis(400), "{took:?}");
        }
        assert!(extra <= 15, "{extra} extra polls in 60 steps");
        // Another step of the same CA learns on its own.
        let mut poller = Poller::learning(
            &policy,
            &learner,
            "order",
            "pending",
            "https://ca/o/1",
            None,
        );
        poller.wait("pending", None).await.unwrap();
        assert_eq!(poller.polls, 1);
        poller.done();
        assert_eq!(
            learner.estimate(("order", "pending"), None, policy.max_learned),
            Some(Duration::from_millis(10))
        );
        // A Retry-After wins, and teaches nothing.
        let ra = RetryAfter::after(Duration::from_secs(2), SystemTime::now());
        let mut poller = Poller::learning(&policy, &learner, "authorization", "pending", "u", None);
        let started = Instant::now();
        poller.wait("pending", Some(ra)).await.unwrap();
        assert!(started.elapsed() > Duration::from_secs(1));
        poller.done();
        assert_eq!(
            learner.estimate(("authorization", "pending"), None, policy.max_learned),
            None
        );
        // Not adaptive: the fixed schedule, round trip or not.
        let fixed = PollPolicy::default().with_adaptive(false);
        let rtt = Some(Duration::from_millis(1));
        let poller = Poller::learning(&fixed, &learner, "order", "processing", "u", rtt);
        assert_eq!(poller.next_delay(None), Duration::from_millis(10));
    }

    /// Issue 27, defect 9: one 60 s step (a slow validation) does not make
    /// the next steps wait a minute. A trained client ignores it; a fresh
    /// one, whose first step it is, is bounded by `max_learned` at worst
    /// and back at the CA's usual time within a few steps.
    #[tokio::test(start_paused = true)]
    async fn one_slow_step_neither_stalls_nor_lingers() {
        let policy = PollPolicy::default();
        let fast = Duration::from_millis(15);
        let minute = Duration::from_secs(60);
        let rtt = Some(Duration::from_millis(2));

        // Trained on 40 fast steps, then one of 60 s.
        let learner = PollLearner::default();
        for _ in 0..40 {
            step(&policy, &learner, rtt, fast).await;
        }
        let trained = next_first_poll(&learner, rtt);
        assert!(trained <= fast * 2, "{trained:?}");
        step(&policy, &learner, rtt, minute).await;
        let after = next_first_poll(&learner, rtt);
        assert!(
            after <= trained,
            "{after:?} after the slow step, {trained:?} before"
        );
        let (polls, took) = step(&policy, &learner, rtt, fast).await;
        assert!(took < fast * 2 && polls <= 2, "{polls} polls, {took:?}");

        // A fresh client whose very first step takes 60 s.
        for round_trip in [rtt, None] {
            let learner = PollLearner::default();
            step(&policy, &learner, round_trip, minute).await;
            let next = next_first_poll(&learner, round_trip);
            assert!(next <= policy.max_learned, "{next:?} ({round_trip:?})");
            // Within a few fast steps, back near the fast figure.
            let mut took = Duration::ZERO;
            for _ in 0..4 {
                took = step(&policy, &learner, round_trip, fast).await.1;
            }
            assert!(took < fast * 2, "{took:?} ({round_trip:?})");
            assert!(
                next_first_poll(&learner, round_trip) < fast * 2,
                "{:?} ({round_trip:?})",
                next_first_poll(&learner, round_trip)
            );
        }
    }

    /// Issue 27, defect 9: a fresh client places its first poll from the
    /// CA's round trip, and its first step is found done within twice the
    /// CA's time (the fixed schedule's 10, 20, 40 ms would find a 12 ms
    /// step at 30 ms).
    #[tokio::test(start_paused = true)]
    async fn a_fresh_client_polls_from_the_round_trip() {
        let policy = PollPolicy::default();
        let learner = PollLearner::default();
        let rtt = Duration::from_micros(1500);
        assert_eq!(next_first_poll(&learner, Some(rtt)), rtt * SEED_ROUND_TRIPS);
        assert_eq!(next_first_poll(&learner, None), policy.first_delay);
        let ca = Duration::from_millis(12);
        let (_, took) = step(&policy, &learner, Some(rtt), ca).await;
        assert!(took <= ca * 2, "{took:?}");
        // And the steps after it stay there.
        for _ in 0..20 {
            let (_, took) = step(&policy, &learner, Some(rtt), ca).await;
            assert!(took <= ca * 2, "{took:?}");
        }
        // A CA far away (100 ms round trip) is not polled before it can
        // have answered.
        let far = PollLearner::default();
        let first = next_first_poll(&far, Some(Duration::from_millis(100)));
        assert_eq!(first, Duration::from_millis(200));
    }

    /// Issue 16, defect 7: `Retry-After: 0` or a date in the past never
    /// polls faster than the first delay, and the number of polls is capped.
    #[tokio::test(start_paused = true)]
    async fn retry_after_zero_is_floored_and_polls_are_capped() {
        let p = PollPolicy::default().with_max_polls(7);
        let zero = RetryAfter::parse("0", SystemTime::now()).unwrap();
        let past = RetryAfter::parse("Wed, 21 Oct 2015 07:28:00 GMT", SystemTime::now()).unwrap();
        assert_eq!(p.delay(5, Some(zero)), p.first_delay);
        assert_eq!(p.delay(0, Some(past)), p.first_delay);
        let mut poller = Poller::new(&p, "order", "https://ca.example/order/1");
        let started = Instant::now();
        let mut polls = 0;
        let err = loop {
            match poller.wait("processing", Some(zero)).await {
                Ok(()) => polls += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(polls, 7);
        assert!(
            matches!(err, Error::PollTimeout { what: "order", .. }),
            "{err}"
        );
        assert!(started.elapsed() >= p.first_delay * 7);
    }
}
