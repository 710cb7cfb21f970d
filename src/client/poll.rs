//! Polling: fast first polls, then exponential backoff, Retry-After honoured.

use std::time::{Duration, SystemTime};

use crate::error::RetryAfter;

/// How a pending order, authorization or finalization is polled.
///
/// Polls start fast (a CA like Pebble or Boulder often finishes a validation
/// within tens of milliseconds), then back off exponentially up to
/// `max_delay`. A `Retry-After` from the CA replaces the computed delay
/// (capped by `max_retry_after`). Polling gives up with
/// [`Error::PollTimeout`](crate::Error::PollTimeout) after `timeout`.
/// A poll is also cancelled by dropping its future.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollPolicy {
    /// Delay before the first poll.
    pub first_delay: Duration,
    /// Growth factor between polls.
    pub factor: u32,
    /// The longest delay between two polls without Retry-After.
    pub max_delay: Duration,
    /// The longest Retry-After obeyed; longer ones are cut to this.
    pub max_retry_after: Duration,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_millis(10),
            factor: 2,
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
            timeout: Duration::from_secs(300),
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
                .max(Duration::from_millis(1));
        }
        let factor = self.factor.max(1).saturating_pow(attempt.min(30));
        self.first_delay.saturating_mul(factor).min(self.max_delay)
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
}
