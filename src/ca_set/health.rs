//! A CA's health as one set sees it: marked down by an outage for a
//! while (on the monotonic clock), then tried again by one issuance at a
//! time (a half-open circuit) until one succeeds. A probe that never
//! reports (its `ensure` was cancelled, or ended another way) lapses after
//! its deadline, so a CA is never shut out for good.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// What a set knows of one CA's availability.
#[derive(Debug, Default)]
pub(super) struct Health {
    state: Mutex<State>,
    /// Wakes the issuances waiting for a probe's outcome.
    settled: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Down until then, for this reason.
    down: Option<(Instant, String)>,
    /// An issuance is trying the CA again after it was down, until then
    /// at the latest.
    probing: Option<Instant>,
}

/// May an issuance go to the CA now?
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Gate {
    /// Yes.
    Open,
    /// Yes, as the one probe after an outage: report the outcome.
    Probe,
    /// Not yet: another issuance is probing it (wait for its outcome with
    /// [`Health::probe_settled`], then ask again).
    Probing(String),
    /// No: down, for this reason.
    Down(String),
}

impl Health {
    /// Whether an issuance may go to the CA now; the first after an
    /// outage's `down_for` is the probe (for at most `probe_for`), and the
    /// others wait for its outcome.
    pub(super) fn gate(&self, probe_for: Duration) -> Gate {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some((until, why)) = state.down.clone() else {
            return Gate::Open;
        };
        let now = Instant::now();
        if now < until {
            return Gate::Down(why);
        }
        if state.probing.is_some_and(|p| now < p) {
            return Gate::Probing(why);
        }
        state.probing = Some(now + probe_for);
        Gate::Probe
    }

    /// Waits (at most `within`) until the probe running now reports.
    pub(super) async fn probe_settled(&self, within: Duration) {
        let notified = self.settled.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let running = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.probing.is_some_and(|p| Instant::now() < p)
        };
        if running {
            let _ = tokio::time::timeout(within, notified).await;
        }
    }

    /// The CA answered an issuance: up again. Whether it was down.
    pub(super) fn succeeded(&self) -> bool {
        let was_down = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.probing = None;
            state.down.take().is_some()
        };
        self.settled.notify_waiters();
        was_down
    }

    /// The CA failed an issuance with an outage: down for `down_for`.
    pub(super) fn failed(&self, why: String, down_for: Duration) {
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.probing = None;
            state.down = Some((Instant::now() + down_for, why));
        }
        self.settled.notify_waiters();
    }

    /// A probe that ended with neither (another kind of failure): the
    /// next issuance probes again.
    pub(super) fn probe_ended(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).probing = None;
        self.settled.notify_waiters();
    }

    /// Whether the CA is marked down now.
    pub(super) fn is_down(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        state
            .down
            .as_ref()
            .is_some_and(|(until, _)| now < *until || state.probing.is_some_and(|p| now < p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn down_then_one_probe_then_up() {
        let health = Health::default();
        assert_eq!(health.gate(PROBE), Gate::Open);
        health.failed("503".into(), Duration::from_secs(60));
        assert_eq!(health.gate(PROBE), Gate::Down("503".into()));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(health.gate(PROBE), Gate::Probe);
        // While the probe runs, the others wait for its outcome.
        assert_eq!(health.gate(PROBE), Gate::Probing("503".into()));
        assert!(health.succeeded());
        assert_eq!(health.gate(PROBE), Gate::Open);
        assert!(!health.is_down());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_marks_it_down_again() {
        let health = Health::default();
        health.failed("connect refused".into(), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(health.gate(PROBE), Gate::Probe);
        health.failed("connect refused".into(), Duration::from_secs(10));
        assert!(matches!(health.gate(PROBE), Gate::Down(_)));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(health.gate(PROBE), Gate::Probe);
        health.probe_ended();
        assert_eq!(health.gate(PROBE), Gate::Probe);
    }

    /// The issuances waiting for a probe wake when it reports.
    #[tokio::test(start_paused = true)]
    async fn waiters_wake_when_the_probe_reports() {
        let health = std::sync::Arc::new(Health::default());
        health.failed("503".into(), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(health.gate(PROBE), Gate::Probe);
        let waiter = {
            let health = std::sync::Arc::clone(&health);
            tokio::spawn(async move {
                let started = Instant::now();
                health.probe_settled(Duration::from_secs(60)).await;
                (started.elapsed(), health.gate(PROBE))
            })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(health.succeeded());
        let (waited, gate) = waiter.await.unwrap();
        assert_eq!(waited, Duration::from_secs(2));
        assert_eq!(gate, Gate::Open);
    }

    /// A probe that never reports (its issuance was cancelled) lapses: the
    /// CA is tried again after the probe's deadline, never shut out.
    #[tokio::test(start_paused = true)]
    async fn a_probe_that_never_reports_lapses() {
        let health = Health::default();
        health.failed("503".into(), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(health.gate(PROBE), Gate::Probe);
        // Never reported.
        assert!(matches!(health.gate(PROBE), Gate::Probing(_)));
        assert!(health.is_down());
        tokio::time::advance(PROBE + Duration::from_secs(1)).await;
        assert_eq!(health.gate(PROBE), Gate::Probe);
    }
}
