//! What a [`CaSet`](crate::ca_set::CaSet) asks of the issuer of one of its
//! CAs: the set's key there when the account is known (no request), what
//! is in flight there, giving up an order that was never finalized, the
//! set's own lease, and who this CA is for the CAA pre-flight.

pub(crate) use super::fence::LeaseState as SetLease;
use super::fence::LeaseState;
pub(crate) use super::options::WithinSet;
pub(crate) use super::preflight::{caa_methods, forbidden};
use super::schedule::Verdict;
use super::*;

/// What a stored certificate needs, as its CA's issuer judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CurrentIs {
    /// Good as it is.
    Usable,
    /// Good, once the CA's renewal information is asked again.
    Recheck,
    /// Due for renewal (or revoked, or of another profile).
    Due,
}

/// What a CA holds in flight for a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InFlight {
    /// No journal.
    Nothing,
    /// A journal whose finalize was never sent: giving it up loses nothing.
    Unfinalized(JournalStep),
    /// A journal whose finalize may have been sent (or one too damaged to
    /// say): the CA may have issued its certificate.
    MaybeFinalized,
}

impl<S: Store> Issuer<S> {
    /// The key of `ids` at this CA when the account is known (in memory,
    /// or stored with its URL), without any request: with no account there
    /// can be nothing for the set at this CA.
    pub(crate) async fn known_key(&self, ids: &[Identifier]) -> Result<Option<IdentifierSetKey>> {
        let account_url = match self.inner.account.read().await.as_ref() {
            Some(account) => Some(account.url().to_owned()),
            None => self
                .inner
                .store
                .load_account(self.inner.client.directory_url())
                .await?
                .map(|stored| stored.url)
                .filter(|url| !url.is_empty()),
        };
        Ok(account_url.map(|account| {
            IdentifierSetKey::for_account(self.inner.client.directory_url(), account, ids)
        }))
    }

    /// The certificate stored for `key` (a corrupted record counts as
    /// none).
    pub(crate) async fn stored_for(
        &self,
        key: &IdentifierSetKey,
    ) -> Result<Option<StoredCertificate>> {
        self.stored(key).await
    }

    /// What `cert` needs for `options` (a forced new order: due).
    pub(crate) fn current_is(
        &self,
        cert: &StoredCertificate,
        options: &EnsureOptions,
    ) -> CurrentIs {
        if options.force_new {
            return CurrentIs::Due;
        }
        match self.judge_for(cert, options) {
            Verdict::Usable => CurrentIs::Usable,
            Verdict::Recheck if self.now() < self.renewal_due_at(cert) => CurrentIs::Recheck,
            Verdict::Recheck | Verdict::Due => CurrentIs::Due,
        }
    }

    /// What is in flight for `key` at this CA.
    pub(crate) async fn in_flight(&self, key: &IdentifierSetKey) -> Result<InFlight> {
        match self.inner.store.load_journal(key).await {
            Ok(None) => Ok(InFlight::Nothing),
            Ok(Some(j)) if j.step >= JournalStep::Finalizing && j.key_pem.is_some() => {
                // A journal left beside the certificate it stored (or an
                // older one's) is settled, never resumed: nothing in flight.
                let stored = self.stored(key).await?;
                Ok(match super::settle::judge(&j, stored.as_ref()) {
                    super::settle::Leftover::Resume => InFlight::MaybeFinalized,
                    _ => InFlight::Nothing,
                })
            }
            Ok(Some(j)) => Ok(InFlight::Unfinalized(j.step)),
            Err(StoreError::Corrupted { .. }) => Ok(InFlight::MaybeFinalized),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives up the journal of `key` when its finalize was never sent:
    /// kept aside (`Store::archive_journal`) and removed, under this CA's
    /// lease of the set (and the set's lease), so nobody resumes it. The
    /// order it named yields no certificate: nobody finalizes it. Returns
    /// what was in flight; a journal that may have been finalized is left
    /// untouched.
    pub(crate) async fn abandon_unfinalized(
        &self,
        key: &IdentifierSetKey,
        within: &WithinSet,
    ) -> Result<InFlight> {
        let flight = self.flight(key);
        let _flight = flight.lock().await;
        let lease = self.acquire_lease(key).await?;
        let options = EnsureOptions {
            within_set: Some(within.clone()),
            ..EnsureOptions::default()
        };
        // The same directory twice in a set would make another CA's journal
        // this one's (refused by the set's builder).
        self.with_held_lease(key, lease, &options, async {
            let found = self.in_flight(key).await?;
            if let InFlight::Unfinalized(step) = found {
                if let Some(journal) = self.inner.store.load_journal(key).await? {
                    self.inner.store.archive_journal(key, &journal).await?;
                }
                self.delete_journal(key).await?;
                tracing::info!(set = %key, ?step, directory = self.inner.client.directory_url(), "an order never finalized at this CA was given up: another CA of the set issues");
            }
            Ok(found)
        })
        .await
    }

    /// Runs `work` holding the store lease `name` (waiting up to `wait`
    /// for another holder), renewed in the background; `work` gets the
    /// lease's fenced state. Released when `work` ends.
    pub(crate) async fn with_lease<T, F, Fut>(
        &self,
        name: String,
        wait: Duration,
        work: F,
    ) -> Result<T>
    where
        F: FnOnce(Arc<LeaseState>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let lease = self.acquire_named_lease(name, wait).await?;
        let held = lease::HeldLease::start(Arc::clone(&self.inner), lease, None);
        let result = work(held.state()).await;
        held.release().await;
        result
    }

    /// Who this CA is for a CAA check: its identities (`identities`, else
    /// its directory's `caaIdentities`), the account when it is known, and
    /// the validation methods `options` would use here.
    pub(crate) async fn caa_context(
        &self,
        identities: Option<&[String]>,
        options: &EnsureOptions,
    ) -> CaaContext {
        let account_uri = match self.inner.account.read().await.as_ref() {
            Some(account) => Some(account.url().to_owned()),
            None => match self
                .inner
                .store
                .load_account(self.inner.client.directory_url())
                .await
            {
                Ok(Some(stored)) if !stored.url.is_empty() => Some(stored.url),
                _ => None,
            },
        };
        CaaContext {
            ca_identities: identities.map_or_else(
                || self.inner.client.directory().meta.caa_identities.clone(),
                <[String]>::to_vec,
            ),
            account_uri,
            validation_methods: self
                .preference(options)
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }
}
