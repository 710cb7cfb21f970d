//! [`Renewer::status`]: the snapshot a service's status endpoint shows.

use super::{LastError, ManagedCertificate, Renewer, RenewerStatus};
use crate::store::Store;

impl<S: Store> Renewer<S> {
    /// A snapshot of every certificate's state, last error and next
    /// attempt, sorted by names: for a service's status endpoint.
    pub fn status(&self) -> RenewerStatus {
        let state = self.state();
        let mut certificates: Vec<ManagedCertificate> = state
            .tracked
            .iter()
            .filter(|(_, t)| !t.removed)
            .map(|(id, t)| ManagedCertificate {
                names: t.stored.spec.names().to_vec(),
                state: t.state,
                serial: t.current.as_ref().map(|c| c.serial.clone()),
                ca: t
                    .current
                    .as_ref()
                    .and_then(|c| self.inner.through.ca_name(c.ca))
                    .map(str::to_owned),
                not_after: t.current.as_ref().map(|c| c.not_after),
                next_attempt: state.queue.scheduled_at(id),
                consecutive_failures: t.stored.failures.consecutive,
                last_error: t
                    .stored
                    .failures
                    .last_error
                    .as_ref()
                    .map(|message| LastError {
                        class: t.stored.failures.last_class.clone().unwrap_or_default(),
                        message: message.clone(),
                    }),
            })
            .collect();
        certificates.sort_by(|a, b| a.names.cmp(&b.names));
        RenewerStatus {
            certificates,
            backlog: state.queue.backlog(),
            paused_until: self.inner.through.paused_until(self.now()),
            replacements_requested: state
                .tracked
                .values()
                .filter(|t| !t.removed && t.current.as_ref().is_some_and(|c| c.requested_early))
                .count(),
        }
    }
}
