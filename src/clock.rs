//! The calendar the crate reads: what time of day it is for certificate
//! validity, renewal windows and rate-limit buckets.
//!
//! By default that is the system clock. A simulation (or a test) that runs
//! on tokio's paused clock gives the [`Client`](crate::Client) a
//! [`Clock::tokio`] instead: its time of day moves with tokio's clock, so
//! months of certificate lifetimes, renewal windows and refilling rate
//! limits pass in seconds. The embedded test CA (`sturdy-acme-testca`) always
//! reads [`Clock::tokio`], so the two agree.
//!
//! What is *not* on this calendar: store leases (a lease is a real-time
//! mutual exclusion between processes, so it follows the store's clock) and
//! the transport's waits (a `Retry-After` is a duration slept on tokio's
//! clock either way).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use sturdy_acme::Clock;
//!
//! let clock = Clock::tokio();
//! let before = clock.now();
//! // On a paused runtime this sleep takes no real time.
//! tokio::time::sleep(Duration::from_secs(30 * 24 * 3600)).await;
//! let elapsed = clock.now().duration_since(before).unwrap();
//! assert!(elapsed >= Duration::from_secs(30 * 24 * 3600));
//! # }
//! ```

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

/// Where the crate reads the time of day. Cheap to copy.
///
/// Example: [`Clock::tokio`] runs a month on a paused runtime in no time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    kind: Kind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Kind {
    #[default]
    System,
    Tokio,
}

/// The wall time and monotonic instant taken together once per process:
/// every [`Clock::tokio`] counts from it, so all of them agree.
fn anchor() -> (SystemTime, Instant) {
    static ANCHOR: OnceLock<(SystemTime, Instant)> = OnceLock::new();
    *ANCHOR.get_or_init(|| (SystemTime::now(), Instant::now()))
}

thread_local! {
    /// This thread's pinned calendar ([`Clock::pin_tokio_calendar`]).
    static PINNED: Cell<Option<(SystemTime, Instant)>> = const { Cell::new(None) };
}

/// While held, [`Clock::tokio`] on this thread reads the calendar pinned by
/// [`Clock::pin_tokio_calendar`]; dropped, the one before is back.
///
/// Example: [`Clock::pin_tokio_calendar`].
#[derive(Debug)]
#[must_use = "the calendar is pinned only while this is held"]
pub struct PinnedCalendar {
    previous: Option<(SystemTime, Instant)>,
}

impl Drop for PinnedCalendar {
    fn drop(&mut self) {
        PINNED.with(|p| p.set(self.previous));
    }
}

impl Clock {
    /// Pins, on this thread, the calendar every [`Clock::tokio`] reads:
    /// `wall` at tokio's instant now, moving with tokio's clock from
    /// there. For a simulation on a current-thread runtime with a paused
    /// clock: every run then sees the same dates to the nanosecond (the
    /// process-wide calendar starts at the wall time it was first read, so
    /// two runs would differ by their start). Other threads keep theirs.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use sturdy_acme::Clock;
    ///
    /// let start = UNIX_EPOCH + Duration::from_secs(1_796_601_600); // 2026-12-07
    /// let _pinned = Clock::pin_tokio_calendar(start);
    /// tokio::time::sleep(Duration::from_secs(3600)).await;
    /// assert_eq!(Clock::tokio().now(), start + Duration::from_secs(3600));
    /// # }
    /// ```
    pub fn pin_tokio_calendar(wall: SystemTime) -> PinnedCalendar {
        let at = tokio::time::Instant::now().into_std();
        PinnedCalendar {
            previous: PINNED.with(|p| p.replace(Some((wall, at)))),
        }
    }

    /// The system clock (the default).
    pub fn system() -> Self {
        Self { kind: Kind::System }
    }

    /// A time of day that moves with tokio's clock: the wall time when the
    /// process first read a `Clock::tokio`, plus how far tokio's clock has
    /// moved since. On a running clock it keeps pace with the system clock
    /// (without its steps); on a paused clock (`start_paused`,
    /// `tokio::time::advance`) it jumps with it.
    pub fn tokio() -> Self {
        anchor();
        Self { kind: Kind::Tokio }
    }

    /// Whether this is [`Clock::tokio`].
    pub fn follows_tokio(&self) -> bool {
        self.kind == Kind::Tokio
    }

    /// Now.
    pub fn now(&self) -> SystemTime {
        match self.kind {
            Kind::System => SystemTime::now(),
            Kind::Tokio => {
                let (wall, at) = PINNED.with(Cell::get).unwrap_or_else(anchor);
                let now = tokio::time::Instant::now().into_std();
                // A paused runtime's clock may stand before the anchor.
                match now.checked_duration_since(at) {
                    Some(ahead) => wall + ahead,
                    None => wall - at.duration_since(now),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_jumps_with_a_paused_runtime_and_the_system_one_does_not() {
        let (tokio, system) = (Clock::tokio(), Clock::system());
        let (t0, s0) = (tokio.now(), system.now());
        tokio::time::advance(Duration::from_secs(90 * 24 * 3600)).await;
        let moved = tokio.now().duration_since(t0).unwrap();
        assert!(moved >= Duration::from_secs(90 * 24 * 3600), "{moved:?}");
        assert!(system.now().duration_since(s0).unwrap() < Duration::from_secs(3600));
        assert!(tokio.follows_tokio() && !system.follows_tokio());
    }
}
