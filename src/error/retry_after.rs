//! `Retry-After` (RFC 9110 §10.2.3): parsed once when the answer arrives,
//! capped at [`MAX_RETRY_AFTER`].

use super::*;

/// The longest `Retry-After` the crate will believe; anything longer is capped.
///
/// A broken or hostile server must not be able to park a client for years.
pub const MAX_RETRY_AFTER: Duration = crate::protocol::timestamp::DEFAULT_HORIZON;

/// A `Retry-After` header (RFC 9110 §10.2.3), in either of its forms.
///
/// Both forms are resolved to an absolute time when the response arrives, so
/// the value stays meaningful however long the caller keeps the error.
///
/// Example: [`Error`] and [`ErrorClass`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    at: SystemTime,
    delay: Duration,
}

impl RetryAfter {
    /// Parses a header value (`"120"` or `"Wed, 21 Oct 2015 07:28:00 GMT"`)
    /// received at `now`. Delays longer than [`MAX_RETRY_AFTER`] are capped;
    /// dates in the past mean "now". Returns `None` for anything else.
    pub fn parse(value: &str, now: SystemTime) -> Option<Self> {
        let value = value.trim();
        let delay = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            // Saturate on absurdly long digit strings instead of failing.
            Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
        } else {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        };
        let delay = delay.min(MAX_RETRY_AFTER);
        Some(Self {
            at: now + delay,
            delay,
        })
    }

    /// A `Retry-After` of `delay` from `now` (capped like a parsed one).
    pub fn after(delay: Duration, now: SystemTime) -> Self {
        let delay = delay.min(MAX_RETRY_AFTER);
        Self {
            at: now + delay,
            delay,
        }
    }

    /// The absolute time after which the request may be retried.
    pub fn at(&self) -> SystemTime {
        self.at
    }

    /// The delay the server asked for, measured from when its answer arrived.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// How long is left to wait from `now` (zero once the time has passed).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.at.duration_since(now).unwrap_or(Duration::ZERO)
    }
}
