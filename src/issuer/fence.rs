//! A held lease's fenced state: checked before every journal write and
//! non-idempotent request, judged by the store's answers and the time
//! left it reported (on the monotonic clock). A CA set's lease of the
//! set can sit above an issuance's own lease: every check asks both.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::store::{IdentifierSetKey, Journal, Lease, Store, StoreError};

/// The lease as the renewer and the fence share it.
pub(crate) struct LeaseState {
    lease: Mutex<Lease>,
    /// Why the lease was lost, once it was.
    lost: Mutex<Option<String>>,
    /// A lease above this one (a CA set's lease of the set), checked by
    /// every check of this one.
    outer: Option<Arc<LeaseState>>,
}

impl LeaseState {
    /// The state of `lease`, just taken, under `outer` if any.
    pub(crate) fn new(lease: Lease, outer: Option<Arc<LeaseState>>) -> Self {
        Self {
            lease: Mutex::new(lease),
            lost: Mutex::new(None),
            outer,
        }
    }

    /// The lease as last renewed.
    pub(crate) fn lease(&self) -> Lease {
        self.lease.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the lease with its renewal.
    pub(crate) fn set_lease(&self, lease: Lease) {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = lease;
    }

    /// Marks the lease lost (logged once), for every later check.
    pub(crate) fn mark_lost(&self, reason: String) {
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        if lost.is_none() {
            let lease = self.lease();
            tracing::error!(lease = %lease.name, token = lease.token, %reason, "lease lost; the issuance stops before its next step");
            *lost = Some(reason);
        }
    }

    fn lost_error(&self, lease: &Lease, reason: String) -> Error {
        Error::LeaseLost {
            name: lease.name.clone(),
            token: lease.token,
            reason,
        }
    }

    /// `Ok` while the lease is still this holder's: not marked lost, not
    /// expired (its [`Lease::validity`], on the monotonic clock), and the
    /// store's current token.
    ///
    /// An answer that arrives after the lease's expiry does not count (it
    /// may have been delayed by a partition while another process took the
    /// lease over): the lease is then lost. Expiry is the time left the
    /// store reported, counted from when that request was sent, so neither
    /// clock's offset from the other moves it.
    pub(crate) async fn fence<S: Store>(&self, store: &S) -> Result<()> {
        if let Some(outer) = &self.outer {
            Box::pin(outer.fence(store)).await?;
        }
        let lease = self.usable()?;
        self.judged(&lease, store.check_lease(&lease).await)?;
        self.usable().map(drop)
    }

    /// Writes the journal through the store's fenced write (the token
    /// checked with the write where the store can), after the local checks
    /// of [`Self::fence`].
    pub(super) async fn save_journal<S: Store>(
        &self,
        store: &S,
        key: &IdentifierSetKey,
        journal: &Journal,
    ) -> Result<()> {
        if let Some(outer) = &self.outer {
            outer.fence(store).await?;
        }
        let lease = self.usable()?;
        self.judged(
            &lease,
            store.save_journal_fenced(key, journal, &lease).await,
        )?;
        // An answer delayed past the expiry does not count (the request
        // that depends on this write must not go out), the set's lease's
        // included.
        self.check_local()
    }

    /// Deletes the journal through the store's fenced delete.
    pub(super) async fn delete_journal<S: Store>(
        &self,
        store: &S,
        key: &IdentifierSetKey,
    ) -> Result<()> {
        if let Some(outer) = &self.outer {
            outer.fence(store).await?;
        }
        let lease = self.usable()?;
        self.judged(&lease, store.delete_journal_fenced(key, &lease).await)
    }

    /// `Ok` unless the lease is already known lost or expired on the
    /// monotonic clock (no store round trip): checked before each step of
    /// an order, so a process resumed after a pause notices before it acts
    /// on what it knew.
    pub(crate) fn check_local(&self) -> Result<()> {
        if let Some(outer) = &self.outer {
            outer.check_local()?;
        }
        self.usable().map(drop)
    }

    /// The lease, unless it is already known lost or expired on the
    /// monotonic clock.
    fn usable(&self) -> Result<Lease> {
        let lease = self.lease();
        if let Some(reason) = self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(self.lost_error(&lease, reason));
        }
        if let Some(reason) = expired(&lease) {
            self.mark_lost(reason.clone());
            return Err(self.lost_error(&lease, reason));
        }
        Ok(lease)
    }

    /// A store's answer about the lease: `LeaseLost` marks it lost.
    fn judged(&self, lease: &Lease, answer: std::result::Result<(), StoreError>) -> Result<()> {
        match answer {
            Ok(()) => Ok(()),
            Err(StoreError::LeaseLost { reason, .. }) => {
                self.mark_lost(reason.clone());
                Err(self.lost_error(lease, reason))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Why `lease` must be taken as expired now, if it must: judged only by its
/// [`Lease::validity`] (the store's time left, on this process's monotonic
/// clock), never by comparing its `until` with this machine's time of day.
pub(super) fn expired(lease: &Lease) -> Option<String> {
    match &lease.validity {
        Some(v) if v.expired() => Some("it expired before it was renewed".to_owned()),
        Some(_) => None,
        None => Some(
            "the store did not say how long the lease is valid (a Store must set \
             Lease::validity; see sturdy_acme_testca::check_store)"
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use super::*;
    use crate::store::LeaseValidity;

    fn state(until: u64, validity: Option<LeaseValidity>) -> LeaseState {
        LeaseState::new(
            Lease {
                name: "cert-x".into(),
                holder: "me".into(),
                until,
                token: 7,
                host: String::new(),
                pid: 0,
                start_time: 0,
                pid_ns: String::new(),
                validity,
            },
            None,
        )
    }

    fn unix_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// Issue 27, defect 2: the holder judges expiry by the time left the
    /// store reported, on the monotonic clock, and never by `until` (the
    /// store's time of day) against its own clock.
    #[test]
    fn expiry_is_the_stores_time_left_never_until_against_this_clock() {
        // A database an hour behind: `until` long past by this clock, yet
        // 30 s left by the store's: usable.
        let behind = state(
            unix_now() - 3600,
            Some(LeaseValidity::new(Duration::from_secs(30), Instant::now())),
        );
        assert!(behind.check_local().is_ok());
        // A database an hour ahead: `until` far off by this clock, but the
        // time left, counted from the send, is spent: lost, and stays lost.
        let sent = Instant::now()
            .checked_sub(Duration::from_secs(2))
            .expect("a monotonic clock two seconds old");
        let ahead = state(
            unix_now() + 3600,
            Some(LeaseValidity::new(Duration::from_secs(1), sent)),
        );
        assert!(matches!(ahead.check_local(), Err(Error::LeaseLost { .. })));
        assert!(matches!(ahead.check_local(), Err(Error::LeaseLost { .. })));
        // A store that did not say: lost, saying why (never guessed).
        let unknown = state(unix_now() + 3600, None);
        match unknown.check_local() {
            Err(Error::LeaseLost { reason, .. }) => {
                assert!(reason.contains("Lease::validity"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}
