//! The issuer's account at its CA: loaded from the store, or registered on
//! first use under the account lease (an interrupted key rollover settled).

use super::*;

impl<S: Store> Issuer<S> {
    /// The issuer's account at its CA: loaded from the store, or
    /// registered on first use (under a store lease, so processes starting
    /// together on an empty store share one account). A key rollover that
    /// a crash left undecided is settled here, by asking the CA which key
    /// owns the account.
    pub async fn account(&self) -> Result<Account> {
        if let Some(account) = self.inner.account.read().await.as_ref() {
            return Ok(account.clone());
        }
        let mut slot = self.inner.account.write().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let directory = self.inner.client.directory_url().to_owned();
        if let Some(stored) = self.inner.store.load_account(&directory).await?
            && !stored.url.is_empty()
            && stored.next_key_pem.is_none()
        {
            let key = AccountKey::from_pkcs8_pem(&stored.key_pem)?;
            let account = self.inner.client.account_from_url(key, stored.url.clone());
            *slot = Some(account.clone());
            return Ok(account);
        }
        let lease = self.account_lease().await?;
        let result = self.load_or_register_account(&directory).await;
        self.release_named_lease(&lease).await;
        let account = result?;
        *slot = Some(account.clone());
        Ok(account)
    }

    /// The store lease that serialises registering and re-keying the
    /// account of this CA.
    pub(super) async fn account_lease(&self) -> Result<Lease> {
        let directory = self.inner.client.directory_url();
        let digest = ring::digest::digest(&ring::digest::SHA256, directory.as_bytes());
        let name: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.acquire_named_lease(format!("account-{name}"), self.inner.lease_wait)
            .await
    }

    pub(super) async fn load_or_register_account(&self, directory: &str) -> Result<Account> {
        let inner = &self.inner;
        let stored = match inner.store.load_account(directory).await? {
            Some(s) => s,
            None => {
                // The key is saved before newAccount, so a crash in
                // between finds the same account again.
                let key = AccountKey::generate(inner.account_key_algorithm)?;
                let stored = StoredAccount {
                    url: String::new(),
                    key_pem: key.to_pkcs8_pem(),
                    next_key_pem: None,
                };
                inner.store.save_account(directory, &stored).await?;
                stored
            }
        };
        let key = AccountKey::from_pkcs8_pem(&stored.key_pem)?;
        if !stored.url.is_empty() {
            let account = inner.client.account_from_url(key, stored.url.clone());
            return self.settle_rollover(directory, &stored, account).await;
        }
        let account = inner
            .client
            .create_account(key, &inner.account_options)
            .await?;
        inner
            .store
            .save_account(
                directory,
                &StoredAccount {
                    url: account.url().to_owned(),
                    key_pem: stored.key_pem.clone(),
                    next_key_pem: None,
                },
            )
            .await?;
        Ok(account)
    }
}
