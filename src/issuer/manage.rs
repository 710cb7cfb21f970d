//! Managing what the issuer keeps: the status of every certificate,
//! revocation, the account key's rollover, and the last error of an
//! interrupted order.

use std::time::SystemTime;

use zeroize::Zeroizing;

use super::{Issuer, now_unix};
use crate::client::{Account, CertificateChain, RevocationReason};
use crate::crypto::{AccountKey, CertificateKey};
use crate::error::{Error, ErrorClass, Result};
use crate::protocol::{Identifier, ProblemType};
use crate::store::{
    IdentifierSetKey, JournalError, JournalStep, Revoked, Store, StoreError, StoredAccount,
    StoredCertificate,
};

/// Which key signs a revocation request (RFC 8555 §7.6).
///
/// Example: [`Issuer::revoke`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokeWith {
    /// The account that ordered the certificate.
    AccountKey,
    /// The certificate's own key (kept in the store), which proves control
    /// of the key without the account.
    CertificateKey,
}

/// What the issuer knows about one identifier set at its CA: the stored
/// certificate, when it is due, and the order in flight with its last
/// error.
///
/// Example: [`Issuer::certificates`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CertificateStatus {
    /// The store's key (identifier set, CA and account).
    pub key: IdentifierSetKey,
    /// The identifiers, sorted.
    pub identifiers: Vec<Identifier>,
    /// The stored certificate's serial (hex), if one is stored.
    pub serial: Option<String>,
    /// The stored certificate's certificate URL at the CA.
    pub url: Option<String>,
    /// The stored certificate's validity end.
    pub not_after: Option<SystemTime>,
    /// When the stored certificate is due for renewal
    /// ([`Issuer::renewal_due_at`]).
    pub renewal_due: Option<SystemTime>,
    /// Set when the stored certificate was revoked.
    pub revoked: Option<Revoked>,
    /// The step an interrupted order reached, if one is in flight.
    pub in_flight: Option<JournalStep>,
    /// The in-flight order's URL, once known.
    pub order_url: Option<String>,
    /// The error the last attempt on the in-flight order stopped with.
    pub last_error: Option<JournalError>,
    /// A record for this set that the store could not read.
    pub unreadable: Option<String>,
}

impl CertificateStatus {
    fn new(key: IdentifierSetKey) -> Self {
        Self {
            identifiers: key.identifiers().to_vec(),
            key,
            serial: None,
            url: None,
            not_after: None,
            renewal_due: None,
            revoked: None,
            in_flight: None,
            order_url: None,
            last_error: None,
            unreadable: None,
        }
    }

    /// True when a stored, unrevoked certificate is due for renewal, or an
    /// order is in flight (an interrupted one to finish).
    pub fn needs_work(&self, now: SystemTime) -> bool {
        self.in_flight.is_some()
            || self.revoked.is_some()
            || self.renewal_due.is_some_and(|due| due <= now)
    }
}

impl<S: Store> Issuer<S> {
    /// The status of every identifier set this issuer's account has a
    /// certificate or an in-flight order for at its CA, sorted by set. It
    /// reads the store only: no request is sent, and no account is
    /// registered when the store has none.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sturdy_acme::Error> {
    /// use std::sync::Arc;
    /// use sturdy_acme::solver::http01::Http01Solver;
    /// use sturdy_acme::store::FileStore;
    /// use sturdy_acme_testca::TestCa;
    /// use sturdy_acme::{EnsureOptions, Issuer};
    ///
    /// let ca = TestCa::start().await?;
    /// let dir = std::env::temp_dir().join(format!("sturdy-doc-{}-{}", line!(), std::process::id()));
    /// let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
    ///     .solver(Arc::new(Http01Solver::unserved()))
    ///     .build();
    /// issuer.ensure(&["shop.example"], &EnsureOptions::default()).await?;
    /// let all = issuer.certificates().await?;
    /// assert_eq!(all.len(), 1);
    /// assert!(all[0].serial.is_some() && all[0].in_flight.is_none());
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub async fn certificates(&self) -> Result<Vec<CertificateStatus>> {
        let directory = self.inner.client.directory_url();
        let account_url = match self.inner.account.read().await.as_ref() {
            Some(account) => Some(account.url().to_owned()),
            None => self
                .inner
                .store
                .load_account(directory)
                .await?
                .map(|stored| stored.url)
                .filter(|url| !url.is_empty()),
        };
        let mine = |key: &IdentifierSetKey| {
            key.ca()
                .is_none_or(|ca| Some(ca.account.as_str()) == account_url.as_deref())
        };
        let mut all = std::collections::BTreeMap::new();
        let mut stored = std::collections::BTreeMap::new();
        for key in self.inner.store.list_certificates(directory).await? {
            if !mine(&key) {
                continue;
            }
            let status = all
                .entry(key.set().clone())
                .or_insert_with(|| CertificateStatus::new(key.clone()));
            match self.inner.store.load_certificate(&key).await {
                Ok(Some(cert)) => {
                    stored.insert(key.set().clone(), cert.clone());
                    status.renewal_due = Some(self.renewal_due_at(&cert));
                    status.serial = Some(cert.serial);
                    status.url = Some(cert.url);
                    status.not_after = Some(cert.not_after);
                    status.revoked = cert.revoked;
                }
                Ok(None) => {}
                Err(e) => status.unreadable = Some(e.to_string()),
            }
        }
        for key in self.inner.store.list_journals(directory).await? {
            if !mine(&key) {
                continue;
            }
            let status = all
                .entry(key.set().clone())
                .or_insert_with(|| CertificateStatus::new(key.clone()));
            match self.inner.store.load_journal(&key).await {
                // The stored certificate's own leftover is no order in
                // flight (the next issuance settles it).
                Ok(Some(journal))
                    if stored.get(key.set()).is_some_and(|cert| {
                        super::settle::judge(&journal, Some(cert))
                            != super::settle::Leftover::Resume
                    }) => {}
                Ok(Some(journal)) => {
                    status.in_flight = Some(journal.step);
                    status.order_url = journal.order_url;
                    status.last_error = journal.last_error;
                }
                Ok(None) => {}
                Err(e) => status.unreadable = Some(e.to_string()),
            }
        }
        Ok(all.into_values().collect())
    }

    /// Revokes the stored certificate for `names` and records it as
    /// revoked, so the next [`ensure`](Issuer::ensure) issues a new one.
    /// A certificate already recorded as revoked is returned without a
    /// request; one the CA says is already revoked (`alreadyRevoked`, e.g.
    /// after a lost response) is recorded as revoked. Runs under the set's
    /// store lease, so it cannot race a renewal of the same set.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sturdy_acme::Error> {
    /// use std::sync::Arc;
    /// use sturdy_acme::solver::http01::Http01Solver;
    /// use sturdy_acme::store::FileStore;
    /// use sturdy_acme_testca::TestCa;
    /// use sturdy_acme::{EnsureOptions, Issuer, RevocationReason, RevokeWith};
    ///
    /// let ca = TestCa::start().await?;
    /// let dir = std::env::temp_dir().join(format!("sturdy-doc-{}-{}", line!(), std::process::id()));
    /// let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
    ///     .solver(Arc::new(Http01Solver::unserved()))
    ///     .build();
    /// issuer.ensure(&["shop.example"], &EnsureOptions::default()).await?;
    /// let revoked = issuer
    ///     .revoke(&["shop.example"], Some(RevocationReason::Superseded), RevokeWith::CertificateKey)
    ///     .await?;
    /// assert_eq!(revoked.revoked.unwrap().reason, Some(4));
    /// assert_eq!(ca.ledger().certificates[0].revoked, Some(4));
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub async fn revoke<N: AsRef<str>>(
        &self,
        names: &[N],
        reason: Option<RevocationReason>,
        with: RevokeWith,
    ) -> Result<StoredCertificate> {
        let key = self.set_key(&super::ensure::parse_names(names)?).await?;
        let account = self.account().await?;
        let lease = self.acquire_lease(&key).await?;
        let result = self
            .revoke_under_lease(&account, &key, reason, with, &lease)
            .await;
        self.release_named_lease(&lease).await;
        result
    }

    async fn revoke_under_lease(
        &self,
        account: &Account,
        key: &IdentifierSetKey,
        reason: Option<RevocationReason>,
        with: RevokeWith,
        lease: &crate::store::Lease,
    ) -> Result<StoredCertificate> {
        let Some(mut cert) = self.inner.store.load_certificate(key).await? else {
            return Err(Error::InvalidInput(format!(
                "no certificate is stored for {key}"
            )));
        };
        // A journal left beside this certificate is settled first: resumed
        // later, it would store the certificate again as unrevoked.
        if let Some(journal) = self.inner.store.load_journal(key).await? {
            let leftover = super::settle::judge(&journal, Some(&cert));
            if leftover != super::settle::Leftover::Resume {
                if leftover == super::settle::Leftover::Superseded {
                    self.inner.store.archive_journal(key, &journal).await?;
                }
                tracing::warn!(set = %key, ?leftover, "a journal left beside the certificate to revoke is settled");
                self.inner.store.delete_journal_fenced(key, lease).await?;
            }
        }
        if cert.revoked.is_some() {
            return Ok(cert);
        }
        let chain = CertificateChain::parse_pem(&cert.url, &cert.chain_pem)?;
        let sent = match with {
            RevokeWith::AccountKey => account.revoke_certificate(chain.leaf_der(), reason).await,
            RevokeWith::CertificateKey => {
                let cert_key = CertificateKey::from_pkcs8_pem(&cert.key_pem)?;
                self.inner
                    .client
                    .revoke_with_certificate_key(chain.leaf_der(), &cert_key, reason)
                    .await
            }
        };
        match sent {
            Ok(()) => {}
            Err(e) if e.problem_type() == Some(&ProblemType::AlreadyRevoked) => {
                tracing::info!(set = %key, serial = %cert.serial, "the CA says the certificate is already revoked");
            }
            Err(e) => return Err(e),
        }
        cert.revoked = Some(Revoked {
            at: self.now(),
            reason: reason.map(|r| r.code()),
            found_in_crl: false,
        });
        self.inner.store.check_lease(lease).await?;
        self.inner.store.save_certificate(key, &cert).await?;
        tracing::info!(set = %key, serial = %cert.serial, "certificate revoked");
        Ok(cert)
    }

    /// Records that the CA revoked the stored certificate for `names`
    /// whose serial is `serial` (found in its revocation list,
    /// [`crate::crl`], with the list's `reason`): it is stored as revoked
    /// ([`Revoked::found_in_crl`]), so the next [`ensure`](Issuer::ensure)
    /// replaces it at once. Nothing is sent to the CA. Returns the stored
    /// certificate, or `None` when the one stored now has another serial
    /// (already replaced) or none is stored. Runs under the set's lease.
    pub async fn record_revocation<N: AsRef<str>>(
        &self,
        names: &[N],
        serial: &str,
        reason: Option<u8>,
    ) -> Result<Option<StoredCertificate>> {
        let key = self.set_key(&super::ensure::parse_names(names)?).await?;
        let lease = self.acquire_lease(&key).await?;
        let result = async {
            let Some(mut cert) = self.inner.store.load_certificate(&key).await? else {
                return Ok(None);
            };
            if !cert.serial.eq_ignore_ascii_case(serial) {
                return Ok(None);
            }
            if cert.revoked.is_none() {
                cert.revoked = Some(Revoked {
                    at: self.now(),
                    reason,
                    found_in_crl: true,
                });
                self.inner.store.check_lease(&lease).await?;
                self.inner.store.save_certificate(&key, &cert).await?;
                tracing::warn!(set = %key, serial = %cert.serial, ?reason, "the CA's revocation list says the certificate is revoked; it is replaced at once");
            }
            Ok(Some(cert))
        }
        .await;
        self.release_named_lease(&lease).await;
        result
    }

    /// Replaces the account key with `new_key` (RFC 8555 §7.3.5) without
    /// ever leaving the store without the key that owns the account: the
    /// new key is stored as pending before the key-change request, and
    /// kept as the key only once the CA accepted it (or, after an unknown
    /// outcome, once the CA confirms the new key finds the account). A
    /// crash in between is settled on the next load. Orders started
    /// afterwards use the new key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sturdy_acme::Error> {
    /// use sturdy_acme::store::{FileStore, Store};
    /// use sturdy_acme_testca::TestCa;
    /// use sturdy_acme::{AccountKey, Issuer, KeyAlgorithm};
    ///
    /// let ca = TestCa::start().await?;
    /// let dir = std::env::temp_dir().join(format!("sturdy-doc-{}-{}", line!(), std::process::id()));
    /// let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?).build();
    /// let before = issuer.account().await?.key().thumbprint().to_owned();
    /// let account = issuer.rotate_account_key(AccountKey::generate(KeyAlgorithm::Es384)?).await?;
    /// assert_ne!(account.key().thumbprint(), before);
    /// let stored = issuer.store().load_account(&ca.directory_url()).await?.unwrap();
    /// assert!(stored.next_key_pem.is_none());
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub async fn rotate_account_key(&self, new_key: AccountKey) -> Result<Account> {
        let old = self.account().await?;
        // No order picks up the old account while the key changes.
        let mut slot = self.inner.account.write().await;
        let lease = self.account_lease().await?;
        let result = self.rotate_under_lease(&old, new_key).await;
        self.release_named_lease(&lease).await;
        match result {
            Ok(account) => {
                *slot = Some(account.clone());
                Ok(account)
            }
            Err(e) => {
                // Reloaded (and any undecided rollover settled) next time.
                *slot = None;
                Err(e)
            }
        }
    }

    async fn rotate_under_lease(&self, old: &Account, new_key: AccountKey) -> Result<Account> {
        let directory = self.inner.client.directory_url().to_owned();
        let store = &self.inner.store;
        let stored = store
            .load_account(&directory)
            .await?
            .filter(|s| s.url == old.url())
            .ok_or_else(|| {
                Error::Store(StoreError::Other(format!(
                    "the stored account for {directory} is not {}",
                    old.url()
                )))
            })?;
        let new_pem = new_key.to_pkcs8_pem();
        let pending = StoredAccount {
            next_key_pem: Some(new_pem.clone()),
            ..stored.clone()
        };
        store.save_account(&directory, &pending).await?;
        let outcome = old.change_key(new_key).await;
        let owned_by_new = match &outcome {
            Ok(_) => Ok(true),
            Err(_) => {
                let probe = AccountKey::from_pkcs8_pem(&new_pem)?;
                old.key_owns(&probe).await
            }
        };
        match owned_by_new {
            Ok(true) => {
                store
                    .save_account(&directory, &committed(&stored.url, new_pem.clone()))
                    .await?;
                let key = AccountKey::from_pkcs8_pem(&new_pem)?;
                Ok(self.inner.client.account_from_url(key, stored.url.clone()))
            }
            Ok(false) => {
                store.save_account(&directory, &stored).await?;
                Err(outcome.err().unwrap_or_else(|| {
                    Error::InvalidInput("the key change did not take effect".into())
                }))
            }
            Err(probe_error) => {
                tracing::error!(account = %stored.url, error = %probe_error, "the key change's outcome is unknown; both keys kept, settled on the next load");
                Err(outcome.err().unwrap_or(probe_error))
            }
        }
    }

    /// Settles a rollover a crash left undecided (`next_key_pem` stored):
    /// whichever key the CA says owns the account is kept. Called under the
    /// account lease.
    pub(super) async fn settle_rollover(
        &self,
        directory: &str,
        stored: &StoredAccount,
        account: Account,
    ) -> Result<Account> {
        let Some(next_pem) = stored.next_key_pem.clone() else {
            return Ok(account);
        };
        let next = AccountKey::from_pkcs8_pem(&next_pem)?;
        if account.key_owns(&next).await? {
            tracing::warn!(account = %stored.url, "an interrupted key rollover had taken effect; keeping the new key");
            self.inner
                .store
                .save_account(directory, &committed(&stored.url, next_pem))
                .await?;
            return Ok(self.inner.client.account_from_url(next, stored.url.clone()));
        }
        tracing::warn!(account = %stored.url, "an interrupted key rollover had not taken effect; keeping the old key");
        self.inner
            .store
            .save_account(directory, &committed(&stored.url, stored.key_pem.clone()))
            .await?;
        Ok(account)
    }

    /// Records `error` in the set's journal, if an order is in flight, for
    /// [`certificates`](Issuer::certificates). Best effort: a failure here
    /// is logged, never returned over the error being recorded.
    pub(super) async fn record_error(&self, key: &IdentifierSetKey, error: &Error) {
        if matches!(error, Error::LeaseLost { .. }) {
            return; // the journal is someone else's now
        }
        let mut journal = match self.inner.store.load_journal(key).await {
            Ok(Some(journal)) => journal,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(set = %key, error = %e, "no journal to record the error in");
                return;
            }
        };
        let class: ErrorClass = error.class();
        journal.last_error = Some(JournalError {
            at: now_unix(),
            class: class.name().to_owned(),
            message: error.to_string(),
        });
        if let Err(e) = self.save_journal(key, &journal).await {
            tracing::warn!(set = %key, error = %e, "could not record the error in the journal");
        }
    }
}

fn committed(url: &str, key_pem: Zeroizing<String>) -> StoredAccount {
    StoredAccount {
        url: url.to_owned(),
        key_pem,
        next_key_pem: None,
    }
}
