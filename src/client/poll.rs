//! Polling: the first poll when the CA is usually done (learned per CA and
//! per step), then quick rechecks backing off exponentially; Retry-After
//! honoured.

use std::collections::HashMap;
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
/// early. `first_delay` is the first poll's delay until something is
/// learned. A `Retry-After` always wins.
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

/// What a client learned about how long its CA takes, per step (the
/// resource polled and the status it is polled in): a running estimate of
/// the time from the request that started the step to the CA being done.
///
/// The estimate follows an upper edge: a first poll that finds the step
/// done lowers it a little (the CA may be faster still), one that does not
/// raises it to just above the time the step really took. So most first
/// polls find the step done, and an extra poll is the exception.
#[derive(Debug, Default)]
pub(crate) struct PollLearner {
    estimates: Mutex<HashMap<(&'static str, &'static str), Duration>>,
}

impl PollLearner {
    fn estimate(&self, step: (&'static str, &'static str)) -> Option<Duration> {
        self.estimates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&step)
            .copied()
    }

    /// Learns from one step found done by poll number `polls` (1: the
    /// first) after `elapsed`, whose first poll was placed at `first` (a
    /// learned estimate) or on the fixed schedule (`None`).
    fn learn(
        &self,
        step: (&'static str, &'static str),
        first: Option<Duration>,
        polls: u32,
        elapsed: Duration,
    ) {
        let mut estimates = self.estimates.lock().unwrap_or_else(|p| p.into_inner());
        let next = match (first, polls) {
            // Done by then: perhaps the CA is faster still.
            (Some(est), 1) => est.mul_f64(0.99),
            // Not done at the estimate, done soon after: a little later.
            (Some(est), _) => est.mul_f64(1.2),
            // Nothing learned yet: about when it was found done.
            (None, _) => elapsed.mul_f64(1.05),
        };
        estimates.insert(step, next.max(MIN_LEARNED));
    }
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
            told: false,
        }
    }

    /// Polling `what` in `status`, with the first poll placed where
    /// `learner` says the CA is usually done (when the policy is adaptive).
    pub(crate) fn learning(
        policy: &'a PollPolicy,
        learner: &'a PollLearner,
        what: &'static str,
        status: &'static str,
        url: &'a str,
    ) -> Self {
        let mut poller = Self::new(policy, what, url);
        if policy.adaptive {
            poller.learned = learner.estimate((what, status));
            poller.learning = Some((learner, status));
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

    /// The resource left the polled status: learn how long it took (unless
    /// the CA said when to come back, or nothing was polled).
    pub(crate) fn done(&self) {
        if let Some((learner, status)) = self.learning
            && self.polls > 0
            && !self.told
        {
            learner.learn(
                (self.what, status),
                self.learned,
                self.polls,
                self.started.elapsed(),
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

    #[tokio::test(start_paused = true)]
    async fn the_first_poll_moves_to_when_the_ca_is_done() {
        let policy = PollPolicy::default();
        let learner = PollLearner::default();
        // A CA that takes 300 ms: the first step is polled on the default
        // backoff (10, 20, 40, 80, 160 ms: found done at 310 ms, poll 5).
        let run = |done_after: Duration| {
            let learner = &learner;
            async move {
                let mut poller =
                    Poller::learning(&policy, learner, "order", "processing", "https://ca/o/1");
                let started = Instant::now();
                let mut polls = 0;
                while started.elapsed() < done_after {
                    poller.wait("processing", None).await.unwrap();
                    polls += 1;
                }
                poller.done();
                (polls, started.elapsed())
            }
        };
        let slow = Duration::from_millis(300);
        assert_eq!(run(slow).await, (5, Duration::from_millis(310)));
        // Learned: next time one poll, at 1.05 × 310 ms.
        let (polls, took) = run(slow).await;
        assert_eq!(polls, 1);
        // (tokio's timer rounds up to the millisecond)
        assert!(
            took >= Duration::from_micros(325_500) && took <= Duration::from_millis(327),
            "{took:?}"
        );
        // The estimate creeps down while first polls find it done, and a
        // miss costs one quick recheck, never a long backoff.
        let mut extra = 0;
        for _ in 0..40 {
            let (polls, took) = run(slow).await;
            extra += polls - 1;
            assert!(took < Duration::from_millis(360), "{took:?}");
        }
        assert!(extra <= 4, "{extra} extra polls in 40 steps");
        // Another step of the same CA learns on its own.
        let (polls, _) = {
            let mut poller =
                Poller::learning(&policy, &learner, "order", "pending", "https://ca/o/1");
            poller.wait("pending", None).await.unwrap();
            (poller.polls, poller.done())
        };
        assert_eq!(polls, 1);
        assert_eq!(
            learner.estimate(("order", "pending")),
            Some(Duration::from_micros(10_500))
        );
        // A Retry-After wins, and teaches nothing.
        let ra = RetryAfter::after(Duration::from_secs(2), SystemTime::now());
        let mut poller = Poller::learning(&policy, &learner, "authorization", "pending", "u");
        let started = Instant::now();
        poller.wait("pending", Some(ra)).await.unwrap();
        assert!(started.elapsed() > Duration::from_secs(1));
        poller.done();
        assert_eq!(learner.estimate(("authorization", "pending")), None);
        // Not adaptive: the fixed schedule.
        let fixed = PollPolicy::default().with_adaptive(false);
        let poller = Poller::learning(&fixed, &learner, "order", "processing", "u");
        assert_eq!(poller.next_delay(None), Duration::from_millis(10));
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
