//! On-demand requests taken up ([`RenewerBuilder::on_demand`](super::RenewerBuilder::on_demand)):
//! the names edges asked for ([`serve::OnDemand`](crate::serve::OnDemand)),
//! turned into certificates the renewer keeps.
//!
//! The store's pending requests are the truth; the change feed only wakes
//! the renewer (a [`ChangeKind::Requested`] change), and it also looks
//! every [`OnDemandIntake::poll`](super::OnDemandIntake::poll) whatever
//! else the feed carries, so a wake-up lost loses nothing. A name a kept
//! spec already covers (in a larger set, or under a wildcard) is not
//! added again: its request is deleted. Each
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
        // The poll runs on its own deadline: a busy feed of other changes
        // never keeps it from looking (a request held back by the backlog,
        // a wake-up lost, a look that failed).
        let mut next_look = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            if look || now >= next_look {
                if let Err(e) = self.take_pending(intake).await {
                    tracing::warn!(target: "sturdy_acme::renewer", error = %e, "on-demand requests cannot be taken up now; trying again");
                }
                next_look = tokio::time::Instant::now() + intake.poll();
            }
            let wait = next_look.saturating_duration_since(tokio::time::Instant::now());
            look = match store.wait_for_changes(after, wait).await {
                Ok(head) if head > after => {
                    let (requested, reached) = requested_after(store, after).await;
                    after = reached.max(after);
                    requested
                }
                Ok(_) => false,
                Err(e) => {
                    tracing::warn!(target: "sturdy_acme::renewer", error = %e, "the change feed cannot be read; looking at the requests on the poll");
                    tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
                    false
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
        // What the specs kept already cover (a name in a larger set, or
        // under a wildcard): a request for it orders nothing new.
        let (mut waiting, covered) = {
            let state = self.state();
            let kept = || state.tracked.values().filter(|t| !t.removed);
            let waiting = kept().filter(|t| t.current.is_none()).count();
            let covered: std::collections::HashSet<String> = kept()
                .flat_map(|t| t.stored.spec.names().iter().cloned())
                .collect();
            (waiting, covered)
        };
        let is_covered = |name: &str| {
            covered.contains(name)
                || name
                    .split_once('.')
                    .is_some_and(|(_, parent)| covered.contains(&format!("*.{parent}")))
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
            if !is_covered(&request.name) {
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
