//! Times the CA hands us, made safe to store, compare and print.
//!
//! A `Retry-After` header, a "retry after ..." in a problem detail, an HTTP
//! date, an RFC 3339 time in a resource or a certificate's validity are
//! untrusted input: a broken or hostile CA can send year 9999 (or 10000
//! once an offset is applied) and naive code then panics when it formats
//! the time, or parks a client for centuries. Every such time goes through
//! [`clamp`] before it is stored or compared: a time in the past means
//! "now", a time beyond the horizon means "at the horizon". Printing goes
//! through [`DisplayTime`], which never panics, whatever the value.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The farthest into the future a time from the CA is believed by default
/// (7 days): a remembered 429 or a `Retry-After` never blocks longer.
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(7 * 24 * 3600);

/// `at` clamped to `[now, now + horizon]`: the past means now, beyond the
/// horizon means the horizon.
pub fn clamp(at: SystemTime, now: SystemTime, horizon: Duration) -> SystemTime {
    match at.duration_since(now) {
        Err(_) => now,
        Ok(ahead) if ahead > horizon => now.checked_add(horizon).unwrap_or(now),
        Ok(_) => at,
    }
}

/// The latest time this crate represents: 9999-12-31T23:59:59Z, the X.509
/// "no well-defined expiration" value. Later times are saturated to it.
pub const MAX_UNIX_SECONDS: i64 = 253_402_300_799;

/// Seconds since the Unix epoch as a `SystemTime`, saturating: before the
/// epoch is the epoch, after [`MAX_UNIX_SECONDS`] is that.
pub fn from_unix(secs: i64) -> SystemTime {
    let secs = secs.clamp(0, MAX_UNIX_SECONDS) as u64;
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Seconds since the Unix epoch of `t`, saturating like [`from_unix`].
pub fn to_unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs())
            .unwrap_or(i64::MAX)
            .min(MAX_UNIX_SECONDS),
        Err(_) => 0,
    }
}

/// Formats a `SystemTime` as RFC 3339 in UTC (`2026-12-01T19:42:10Z`); a
/// time outside what RFC 3339 can spell prints as seconds since the epoch.
/// Never panics.
///
/// # Example
///
/// ```
/// use sturdy_acme::timestamp::{DisplayTime, from_unix};
///
/// assert_eq!(DisplayTime(from_unix(0)).to_string(), "1970-01-01T00:00:00Z");
/// assert_eq!(DisplayTime(from_unix(i64::MAX)).to_string(), "9999-12-31T23:59:59Z"); // clamped, no panic
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplayTime(pub SystemTime);

impl fmt::Display for DisplayTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = match self.0.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        };
        let formatted = time::OffsetDateTime::from_unix_timestamp(secs)
            .ok()
            .filter(|t| (0..=9999).contains(&t.year()))
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
        match formatted {
            Some(s) => f.write_str(&s),
            None => write!(f, "@{secs}s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_past_means_now_and_far_future_means_horizon() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let h = Duration::from_secs(3600);
        assert_eq!(clamp(now - Duration::from_secs(5), now, h), now);
        assert_eq!(
            clamp(now + Duration::from_secs(5), now, h),
            now + Duration::from_secs(5)
        );
        assert_eq!(clamp(from_unix(i64::MAX), now, h), now + h);
        assert_eq!(clamp(UNIX_EPOCH, now, h), now);
    }

    #[test]
    fn display_never_panics() {
        for secs in [0, 1, MAX_UNIX_SECONDS, MAX_UNIX_SECONDS + 1, i64::MAX / 2] {
            let t = UNIX_EPOCH + Duration::from_secs(secs as u64);
            let s = DisplayTime(t).to_string();
            assert!(!s.is_empty());
        }
        assert_eq!(
            DisplayTime(UNIX_EPOCH + Duration::from_secs(1_445_412_480)).to_string(),
            "2015-10-21T07:28:00Z"
        );
        assert_eq!(
            DisplayTime(UNIX_EPOCH + Duration::from_secs(MAX_UNIX_SECONDS as u64 + 1)).to_string(),
            "@253402300800s"
        );
        // The far end of SystemTime itself.
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert!(DisplayTime(far).to_string().starts_with('@'));
    }

    #[test]
    fn unix_conversions_saturate() {
        assert_eq!(from_unix(-5), UNIX_EPOCH);
        assert_eq!(to_unix(from_unix(i64::MAX)), MAX_UNIX_SECONDS);
        assert_eq!(to_unix(from_unix(1234)), 1234);
    }
}
