//! Polling: fast first polls, then exponential backoff, Retry-After honoured.

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
}

crate::retry::knobs!(PollPolicy {
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

/// One resource being polled: counts polls and time against the policy.
pub(crate) struct Poller<'a> {
    policy: &'a PollPolicy,
    what: &'static str,
    url: &'a str,
    started: Instant,
    polls: u32,
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
        sleep(self.policy.delay(self.polls, retry_after)).await;
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
