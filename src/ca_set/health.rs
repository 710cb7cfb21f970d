//! A CA's health as one set sees it: marked down by an outage for a
//! while (on the monotonic clock), then tried again by one issuance at a
//! time (a half-open circuit) until one succeeds.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// What a set knows of one CA's availability.
#[derive(Debug, Default)]
pub(super) struct Health {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Down until then, for this reason.
    down: Option<(Instant, String)>,
    /// An issuance is trying the CA again after it was down.
    probing: bool,
}

/// May an issuance go to the CA now?
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Gate {
    /// Yes.
    Open,
    /// Yes, as the one probe after an outage: report the outcome.
    Probe,
    /// No: down (or being probed by another issuance), for this reason.
    Down(String),
}

impl Health {
    /// Whether an issuance may go to the CA now; the first after an
    /// outage's `down_for` is the probe, and the others wait for its
    /// outcome.
    pub(super) fn gate(&self) -> Gate {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some((until, why)) = state.down.clone() else {
            return Gate::Open;
        };
        if Instant::now() < until || state.probing {
            return Gate::Down(why);
        }
        state.probing = true;
        Gate::Probe
    }

    /// The CA answered an issuance: up again. Whether it was down.
    pub(super) fn succeeded(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.probing = false;
        state.down.take().is_some()
    }

    /// The CA failed an issuance with an outage: down for `down_for`.
    pub(super) fn failed(&self, why: String, down_for: Duration) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.probing = false;
        state.down = Some((Instant::now() + down_for, why));
    }

    /// A probe that ended with neither (another kind of failure): the
    /// next issuance probes again.
    pub(super) fn probe_ended(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).probing = false;
    }

    /// Whether the CA is marked down now.
    pub(super) fn is_down(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .down
            .as_ref()
            .is_some_and(|(until, _)| Instant::now() < *until || state.probing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn down_then_one_probe_then_up() {
        let health = Health::default();
        assert_eq!(health.gate(), Gate::Open);
        health.failed("503".into(), Duration::from_secs(60));
        assert_eq!(health.gate(), Gate::Down("503".into()));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(health.gate(), Gate::Probe);
        // While the probe runs, the others still skip the CA.
        assert_eq!(health.gate(), Gate::Down("503".into()));
        assert!(health.succeeded());
        assert_eq!(health.gate(), Gate::Open);
        assert!(!health.is_down());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_marks_it_down_again() {
        let health = Health::default();
        health.failed("connect refused".into(), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(health.gate(), Gate::Probe);
        health.failed("connect refused".into(), Duration::from_secs(10));
        assert!(matches!(health.gate(), Gate::Down(_)));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(health.gate(), Gate::Probe);
        health.probe_ended();
        assert_eq!(health.gate(), Gate::Probe);
    }
}
