//! The store lease an issuance runs under: renewed in the background
//! (its fenced state is `fence.rs`), released when the issuance ends or
//! its future is dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::Inner;
use super::fence::{LeaseState, expired};
use crate::store::{Lease, Store, StoreError};

/// A lease held for one issuance. Dropping it (also when the `ensure`
/// future is cancelled) stops the renewer and releases the lease.
pub(super) struct HeldLease<S: Store> {
    inner: Arc<Inner<S>>,
    state: Arc<LeaseState>,
    renewer: JoinHandle<()>,
    released: bool,
}

impl<S: Store> HeldLease<S> {
    /// Starts renewing `lease` every third of the TTL; `outer` is a lease
    /// every fence of this one checks too (a CA set's lease of the set).
    pub(super) fn start(
        inner: Arc<Inner<S>>,
        lease: Lease,
        outer: Option<Arc<LeaseState>>,
    ) -> Self {
        let state = Arc::new(LeaseState::new(lease, outer));
        let renewer = tokio::spawn(renew(Arc::clone(&inner), Arc::clone(&state)));
        Self {
            inner,
            state,
            renewer,
            released: false,
        }
    }

    /// The shared state the fence checks.
    pub(super) fn state(&self) -> Arc<LeaseState> {
        Arc::clone(&self.state)
    }

    /// Stops renewing and gives the lease up.
    pub(super) async fn release(mut self) {
        self.renewer.abort();
        self.released = true;
        let lease = self.state.lease();
        if let Err(e) = self.inner.store.release_lease(&lease).await {
            tracing::warn!(lease = %lease.name, error = %e, "could not release the lease");
        }
    }
}

impl<S: Store> Drop for HeldLease<S> {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.renewer.abort();
        let lease = self.state.lease();
        let inner = Arc::clone(&self.inner);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = inner.store.release_lease(&lease).await {
                        tracing::warn!(lease = %lease.name, error = %e, "could not release the lease of a cancelled issuance");
                    }
                });
            }
            Err(_) => {
                tracing::warn!(lease = %lease.name, "no runtime to release the lease of a cancelled issuance; it expires on its own");
            }
        }
    }
}

/// Renews until aborted or lost. A renewal that comes too late (the
/// process was paused past the TTL) or finds another holder marks the
/// lease lost: the issuance then stops at its next fence. A store error
/// is retried until the lease would expire.
async fn renew<S: Store>(inner: Arc<Inner<S>>, state: Arc<LeaseState>) {
    let period = inner.lease_ttl / 3;
    let mut delay = period;
    loop {
        tokio::time::sleep(delay).await;
        delay = period;
        let lease = state.lease();
        if expired(&lease).is_some() {
            state.mark_lost(
                "not renewed before it expired (the process was paused or the store unreachable)"
                    .into(),
            );
            return;
        }
        match inner.store.renew_lease(&lease, inner.lease_ttl).await {
            Ok(renewed) => state.set_lease(renewed),
            Err(StoreError::LeaseHeld { holder, .. }) => {
                state.mark_lost(format!("taken over by {holder:?}"));
                return;
            }
            Err(StoreError::LeaseLost { reason, .. }) => {
                state.mark_lost(reason);
                return;
            }
            Err(e) => {
                tracing::warn!(lease = %lease.name, error = %e, "lease renewal failed; retrying");
                // Retried often until the lease would expire.
                delay = Duration::from_millis(200).min(period);
            }
        }
    }
}
