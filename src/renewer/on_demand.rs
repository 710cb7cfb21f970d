//! On-demand requests taken up ([`RenewerBuilder::on_demand`](super::RenewerBuilder::on_demand)):
//! the names edges asked for ([`serve::OnDemand`](crate::serve::OnDemand)),
//! turned into certificates the renewer keeps.
//!
//! The store's pending requests are the truth; the change feed only wakes
//! the renewer (a [`ChangeKind::Requested`] change), and it also looks
//! every [`OnDemandIntake::poll`](super::OnDemandIntake::poll), so a wake-up lost loses nothing. Each
//! request is added as a spec ([`Renewer::add`], durable) before it is
//! deleted, so a crash between the two leaves the request to take up
//! again, never a name forgotten. Every renewer node taking requests may
//! add the same name at once: the spec is one record, and the issuer's
//! lease makes one of them order it. The ledger decides when: a new
//! certificate waits for the new-order budget like any other, and at most
//! [`OnDemandIntake::max_pending`](super::OnDemandIntake::max_pending) certificates without a first
//! certificate are waiting at once (further requests stay pending in the
//! store until the backlog drains).

use std::time::Duration;

use super::{CertificateSpec, OnDemandIntake, Renewer, RenewerEvent};
use crate::error::StoreError;
use crate::store::{ChangeKind, Store};

/// Changes read a page at a time while looking for requests.
const PAGE: usize = 1000;

impl<S: Store> Renewer<S> {
    /// Takes up requests until the run ends (its task is aborted then).
    pub(super) async fn take_requests(&self, intake: &OnDemandIntake) {
        let store = self.inner.through.home().store();
        let mut after = store.wait_for_changes(0, Duration::ZERO).await.unwrap_or(0);
        let mut look = true;
        loop {
            if look && let Err(e) = self.take_pending(intake).await {
                tracing::warn!(target: "sturdy_acme::renewer", error = %e, "on-demand requests cannot be taken up now; trying again");
            }
            look = match store.wait_for_changes(after, intake.poll()).await {
                Ok(head) if head > after => {
                    let (requested, reached) = requested_after(store, after).await;
                    after = reached.max(after);
                    requested
                }
                // The poll: requests held back by the backlog, or a
                // wake-up lost.
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(target: "sturdy_acme::renewer", error = %e, "the change feed cannot be read; looking at the requests on the poll");
                    tokio::time::sleep(intake.poll()).await;
                    true
                }
            };
        }
    }

    /// Adds a spec for every pending request (within the backlog bound)
    /// and deletes the requests taken up.
    async fn take_pending(&self, intake: &OnDemandIntake) -> crate::Result<()> {
        let store = self.inner.through.home().store();
        let requests = store.list_requests().await?;
        if requests.is_empty() {
            return Ok(());
        }
        let mut waiting = {
            let state = self.state();
            state
                .tracked
                .values()
                .filter(|t| !t.removed && t.current.is_none())
                .count()
        };
        for request in requests {
            let spec = match CertificateSpec::new([request.name.as_str()]) {
                Ok(spec) => spec.with_options(intake.options().clone()),
                Err(e) => {
                    // The store checks names; one it let through is dropped.
                    tracing::warn!(target: "sturdy_acme::renewer", error = %e, "an on-demand request names no valid host; dropped");
                    store.delete_request(&request.name).await?;
                    continue;
                }
            };
            let id = spec.id();
            let kept = self.state().tracked.get(&id).is_some();
            if !kept {
                if waiting >= intake.max_pending() {
                    tracing::debug!(target: "sturdy_acme::renewer", waiting, "on-demand requests wait for the backlog of new certificates to drain");
                    return Ok(());
                }
                self.emit(RenewerEvent::Requested {
                    id: id.clone(),
                    edge: request.edge.clone(),
                });
                self.add(spec).await?;
                waiting += 1;
            }
            store.delete_request(&request.name).await?;
        }
        Ok(())
    }
}

/// Whether a request was recorded after `after`, and the revision read up
/// to (a reader behind the feed's retention looks at the requests anyway).
async fn requested_after<S: Store>(store: &S, after: u64) -> (bool, u64) {
    let mut cursor = after;
    let mut requested = false;
    loop {
        match store.changes_since(cursor, PAGE).await {
            Ok(page) => {
                requested |= page.changes.iter().any(|c| c.kind == ChangeKind::Requested);
                let next = page.next_after(cursor, PAGE);
                let full = page.changes.len() >= PAGE;
                cursor = next;
                if !full {
                    return (requested, cursor);
                }
            }
            Err(StoreError::FeedBehind { .. }) => {
                let head = store
                    .wait_for_changes(0, Duration::ZERO)
                    .await
                    .unwrap_or(cursor);
                return (true, head);
            }
            Err(e) => {
                tracing::warn!(target: "sturdy_acme::renewer", error = %e, "the change feed cannot be paged; looking at the requests");
                return (true, cursor);
            }
        }
    }
}
