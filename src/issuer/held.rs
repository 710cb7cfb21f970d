//! What an issuance holds while it runs: the set's lease (acquired, renewed
//! in the background, released), the fence every journal write and
//! non-idempotent request checks, the fenced journal writes, and the
//! rate-limit ledger's atomic updates.

use super::*;

impl<S: Store> Issuer<S> {
    /// Runs `work` while `lease` (the lease of `key`'s issuance) is held:
    /// renewed in the background and registered as the fence every journal
    /// write of `key` checks; released when `work` is done.
    pub(super) async fn with_held_lease<T>(
        &self,
        key: &IdentifierSetKey,
        lease: Lease,
        options: &EnsureOptions,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let outer = options
            .within_set
            .as_ref()
            .map(|w| Arc::clone(&w.set_lease));
        let held = lease::HeldLease::start(Arc::clone(&self.inner), lease, outer);
        self.inner
            .fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), held.state());
        let result = work.await;
        self.inner
            .fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        held.release().await;
        result
    }

    /// Fails with [`Error::LeaseLost`] unless this process still holds the
    /// lease of `key`'s issuance: called before every journal write and
    /// every non-idempotent request.
    pub(super) async fn fence(&self, key: &IdentifierSetKey) -> Result<()> {
        self.lease_state(key)?.fence(&self.inner.store).await
    }

    /// The fenced lease state of `key`'s issuance in this process.
    pub(super) fn lease_state(&self, key: &IdentifierSetKey) -> Result<Arc<fence::LeaseState>> {
        let state = self
            .inner
            .fences
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned();
        state.ok_or_else(|| Error::LeaseLost {
            name: format!("cert-{}", key.file_stem()),
            token: 0,
            reason: "no lease is held for this issuance".into(),
        })
    }

    /// Takes the lease of `key`'s issuance, waiting up to the issuer's
    /// `lease_wait`.
    pub(super) async fn acquire_lease(&self, key: &IdentifierSetKey) -> Result<Lease> {
        self.acquire_named_lease(format!("cert-{}", key.file_stem()), self.inner.lease_wait)
            .await
    }

    /// Takes the store lease `name`, waiting up to `wait` for another
    /// holder.
    pub(super) async fn acquire_named_lease(&self, name: String, wait: Duration) -> Result<Lease> {
        let started = tokio::time::Instant::now();
        loop {
            match self
                .inner
                .store
                .acquire_lease(&name, &self.inner.holder, self.inner.lease_ttl)
                .await
            {
                Ok(lease) => return Ok(lease),
                Err(StoreError::LeaseHeld { holder, until, .. }) => {
                    if started.elapsed() >= wait {
                        return Err(Error::Store(StoreError::LeaseHeld {
                            name,
                            holder,
                            until,
                        }));
                    }
                    tracing::debug!(lease = %name, %holder, "waiting for another issuer's lease");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Gives up a store lease taken with [`Self::acquire_named_lease`]; a
    /// failure is logged (the lease expires on its own).
    pub(super) async fn release_named_lease(&self, lease: &Lease) {
        if let Err(e) = self.inner.store.release_lease(lease).await {
            tracing::warn!(lease = %lease.name, error = %e, "could not release a lease");
        }
    }

    /// Runs `f` on the ledger's entries for `ids` under `account` as the
    /// store holds them now and writes what changed back, in one atomic
    /// update (see [`Store::update_ledger_entries`]), so issuers sharing a
    /// store see each other's spending while issuances of unrelated sets
    /// do not wait for each other. `f` returns its result and whether the
    /// ledger changed (nothing is written if not); it may run more than
    /// once if the store retries. It may only touch the buckets of `ids`
    /// and `account` ([`RateLedger::keys_for`]).
    pub(super) async fn with_ledger<T>(
        &self,
        account: &str,
        ids: &[Identifier],
        mut f: impl FnMut(&mut RateLedger) -> (T, bool) + Send,
    ) -> Result<T>
    where
        T: Send,
    {
        let directory = self.inner.client.directory_url().to_owned();
        let limits = self.inner.limits.clone();
        let now = self.now();
        let keys = RateLedger::keys_for(account, ids);
        let mut out = None;
        self.inner
            .store
            .update_ledger_entries(&directory, &keys, &mut |current| {
                let mut ledger =
                    RateLedger::from_entries(limits.clone(), current.clone(), Some(&keys), now);
                let (result, changed) = f(&mut ledger);
                out = Some(result);
                changed.then(|| ledger.changed_entries(now))
            })
            .await?;
        out.ok_or_else(|| {
            Error::Store(StoreError::Other(
                "the store returned from a ledger update without running it".into(),
            ))
        })
    }

    /// [`Self::with_ledger`] for a change that always writes.
    pub(super) async fn spend_ledger(
        &self,
        account: &str,
        ids: &[Identifier],
        mut f: impl FnMut(&mut RateLedger) + Send,
    ) -> Result<()> {
        self.with_ledger(account, ids, |l| {
            f(l);
            ((), true)
        })
        .await
    }

    /// Deletes the journal under the issuance's lease: refused with
    /// [`Error::LeaseLost`] once another process holds it (the newer
    /// holder's journal may name a finalized order).
    pub(super) async fn delete_journal(&self, key: &IdentifierSetKey) -> Result<()> {
        self.lease_state(key)?
            .delete_journal(&self.inner.store, key)
            .await
    }

    /// Writes the journal under the issuance's lease: refused with
    /// [`Error::LeaseLost`] once another process holds it.
    pub(super) async fn save_journal(
        &self,
        key: &IdentifierSetKey,
        journal: &Journal,
    ) -> Result<()> {
        self.lease_state(key)?
            .save_journal(&self.inner.store, key, journal)
            .await
    }

    /// What is left of each rate limit this issuer's account has spent
    /// from, as its ledger in the store counts it now (the account's
    /// new-order bucket always included). For metrics and dashboards.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sturdy_acme::Error> {
    /// use std::sync::Arc;
    /// use sturdy_acme::solver::http01::Http01Solver;
    /// use sturdy_acme::store::FileStore;
    /// use sturdy_acme_testca::TestCa;
    /// use sturdy_acme::{EnsureOptions, Issuer, RateLimits};
    ///
    /// let ca = TestCa::builder().start_in_process()?;
    /// let dir = std::env::temp_dir().join(format!("sturdy-doc-headroom-{}", std::process::id()));
    /// let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
    ///     .solver(Arc::new(Http01Solver::unserved()))
    ///     .rate_limits(RateLimits::lets_encrypt())
    ///     .build();
    /// issuer.ensure(&["shop.example"], &EnsureOptions::default()).await?;
    /// let left = issuer.rate_limit_headroom().await?;
    /// let orders = left.iter().find(|h| h.bucket.starts_with("orders:")).unwrap();
    /// assert_eq!(orders.tokens.floor(), 299.0); // 300 per 3 hours, one spent
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub async fn rate_limit_headroom(&self) -> Result<Vec<Headroom>> {
        let account = self.account().await?.url().to_owned();
        let directory = self.inner.client.directory_url().to_owned();
        let now = self.now();
        let entries = self
            .inner
            .store
            .load_ledger_entries(&directory, None)
            .await?;
        let mut ledger = RateLedger::from_entries(self.inner.limits.clone(), entries, None, now);
        Ok(ledger.headroom(&account, now))
    }

    /// What paces new certificates, as the ledger counts it now: the
    /// account's new-order bucket (always) and the certificate buckets of
    /// the registered domains spent from, read by prefix, never the
    /// buckets of every exact set and identifier (which grow with the
    /// fleet). What a renewer's budget and its headroom gauges read.
    pub async fn pacing_headroom(&self) -> Result<Vec<Headroom>> {
        let account = self.account().await?.url().to_owned();
        let keys = [format!("orders:{account}"), "domain:*".to_owned()];
        let directory = self.inner.client.directory_url().to_owned();
        let now = self.now();
        let entries = self
            .inner
            .store
            .load_ledger_entries(&directory, Some(&keys))
            .await?;
        let mut ledger = RateLedger::from_entries(self.inner.limits.clone(), entries, None, now);
        Ok(ledger.headroom(&account, now))
    }

    /// The account's new-order bucket as its ledger counts it now (`None`:
    /// no new-order limit is configured): a renewer starts no more new
    /// certificates than its whole tokens.
    pub async fn new_order_headroom(&self) -> Result<Option<Headroom>> {
        if self.inner.limits.new_orders_per_account.is_none() {
            return Ok(None);
        }
        let account = self.account().await?.url().to_owned();
        let orders = format!("orders:{account}");
        // That one entry, not the whole ledger: the renewer asks often.
        let keys = [orders.clone()];
        let directory = self.inner.client.directory_url().to_owned();
        let now = self.now();
        let entries = self
            .inner
            .store
            .load_ledger_entries(&directory, Some(&keys))
            .await?;
        let mut ledger =
            RateLedger::from_entries(self.inner.limits.clone(), entries, Some(&keys), now);
        Ok(ledger
            .headroom(&account, now)
            .into_iter()
            .find(|h| h.bucket == orders))
    }
}
