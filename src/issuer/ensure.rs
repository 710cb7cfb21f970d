//! `Issuer::ensure`: the stored certificate while it is good, else the
//! issuance run under the set's lease; `ensure_all`; the stored certificate
//! read (and its renewal information checked) for listings.

use super::schedule::Verdict;
use super::*;

impl<S: Store> Issuer<S> {
    /// [`Issuer::ensure`] for many identifier sets, at most `concurrency`
    /// at a time (at least one); the results come back in the order of
    /// `sets`, one per set, and one set's failure does not stop the others.
    ///
    /// Concurrent calls are safe whatever the names: calls for the same
    /// names share one issuance, calls for different names run side by
    /// side, and the first account is registered once (under a lease in
    /// the store) and shared by all. The rate-limit ledger is shared too, so
    /// a burst is refused locally once a limit is spent rather than sent.
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
    /// let (builder, responder) = TestCa::builder().with_http01_responder().await?;
    /// let ca = builder.start().await?;
    /// let dir = std::env::temp_dir().join(format!("sturdy-doc-batch-{}", std::process::id()));
    /// let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
    ///     .solver(Arc::new(Http01Solver::for_responder(&responder)))
    ///     .build();
    /// let customers: Vec<Vec<String>> = (0..6)
    ///     .map(|i| vec![format!("shop{i}.example"), format!("www.shop{i}.example")])
    ///     .collect();
    /// let results = issuer.ensure_all(customers, &EnsureOptions::default(), 3).await;
    /// assert!(results.iter().all(|r| r.is_ok()));
    /// assert_eq!(ca.ledger().certificates.len(), 6);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub async fn ensure_all<I, N>(
        &self,
        sets: I,
        options: &EnsureOptions,
        concurrency: usize,
    ) -> Vec<Result<Ensured>>
    where
        I: IntoIterator<Item = N>,
        N: IntoIterator,
        N::Item: Into<String>,
    {
        let sets: Vec<Vec<String>> = sets
            .into_iter()
            .map(|set| set.into_iter().map(Into::into).collect())
            .collect();
        let mut results: Vec<Option<Result<Ensured>>> = (0..sets.len()).map(|_| None).collect();
        let mut running = tokio::task::JoinSet::new();
        let mut pending = sets.into_iter().enumerate();
        let limit = concurrency.max(1);
        loop {
            while running.len() < limit {
                let Some((i, names)) = pending.next() else {
                    break;
                };
                let issuer = self.clone();
                let options = options.clone();
                running.spawn(async move { (i, issuer.ensure(&names, &options).await) });
            }
            match running.join_next().await {
                Some(Ok((i, result))) => results[i] = Some(result),
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Some(Err(e)) => {
                    // Cancelled: only when the runtime shuts down.
                    tracing::warn!(error = %e, "an ensure task was cancelled");
                }
                None => break,
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(Error::InvalidInput(
                        "the ensure task was cancelled (runtime shutting down)".into(),
                    ))
                })
            })
            .collect()
    }

    /// The certificate stored for `names` at this issuer's CA and account
    /// (registering the account on first use), without any request about
    /// the certificate; a corrupted record counts as none.
    pub async fn stored_certificate<N: AsRef<str>>(
        &self,
        names: &[N],
    ) -> Result<Option<StoredCertificate>> {
        let key = self.set_key(&parse_names(names)?).await?;
        self.stored(&key).await
    }

    /// The store's key of `ids` at this CA and account (registering the
    /// account on first use): a store shared with another CA (staging and
    /// production) never mixes their records.
    pub(super) async fn set_key(&self, ids: &[Identifier]) -> Result<IdentifierSetKey> {
        let account_url = self.account().await?.url().to_owned();
        Ok(IdentifierSetKey::for_account(
            self.inner.client.directory_url(),
            account_url,
            ids,
        ))
    }

    /// This process's single-flight lock of `key`'s issuance.
    pub(super) fn flight(&self, key: &IdentifierSetKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.inner.flights.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(flights.entry(key.clone()).or_default())
    }

    /// One try at `key`'s issuance lease (`None`: another holder has it),
    /// for work worth doing only when nobody else is.
    async fn try_lease(&self, key: &IdentifierSetKey) -> Result<Option<Lease>> {
        match self
            .inner
            .store
            .acquire_lease(
                &format!("cert-{}", key.file_stem()),
                &self.inner.holder,
                self.inner.lease_ttl,
            )
            .await
        {
            Ok(lease) => Ok(Some(lease)),
            Err(StoreError::LeaseHeld { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Returns a valid certificate for `names`: the stored one if it is not
    /// due for renewal, else the one an interrupted order already got, else
    /// a new one. Never orders twice for the same set by accident.
    pub async fn ensure<N: AsRef<str>>(
        &self,
        names: &[N],
        options: &EnsureOptions,
    ) -> Result<Ensured> {
        let ids = parse_names(names)?;
        if ids.is_empty() {
            return Err(Error::InvalidInput("ensure needs at least one name".into()));
        }
        self.check_challenge_types(&ids, options)?;
        let key = self.set_key(&ids).await?;

        // One issuance per set in this process.
        let flight = self.flight(&key);
        let _flight = flight.lock().await;
        let mut taken = None;
        if !options.force_new
            && let Some(cert) = self.stored(&key).await?
        {
            let stored = |cert| Ensured {
                certificate: cert,
                source: CertificateSource::Stored,
                replaces: None,
                requested_by_ca: None,
            };
            match self.judge_for(&cert, options) {
                Verdict::Usable => return Ok(stored(cert)),
                // Renewal information to refresh, on a certificate not due
                // on what is known: worth one try at the lease, not a wait
                // (a node holding it is refreshing or renewing it).
                Verdict::Recheck if self.now() < self.renewal_due_at(&cert) => {
                    match self.try_lease(&key).await? {
                        Some(lease) => taken = Some(lease),
                        None => return Ok(stored(cert)),
                    }
                }
                _ => {}
            }
        }

        // One issuance per set across processes sharing the store.
        let lease = match taken {
            Some(lease) => lease,
            None => {
                let wait = options.lease_wait.unwrap_or(self.inner.lease_wait);
                self.acquire_named_lease(format!("cert-{}", key.file_stem()), wait)
                    .await?
            }
        };
        self.with_held_lease(&key, lease, options, async {
            // Another process may have finished while we waited; renewal
            // information is refreshed under the lease.
            let mut previous = self.stored(&key).await?;
            if let Some(cert) = previous.take() {
                let cert = match self.judge_for(&cert, options) {
                    Verdict::Recheck => match self.refresh_renewal_info(&key, cert.clone()).await {
                        Ok(fresh) => fresh,
                        Err(e) => {
                            // Still good on what was known.
                            tracing::warn!(set = %key, error = %e, "could not record the renewal information; deciding on what was known");
                            cert
                        }
                    },
                    _ => cert,
                };
                let usable = !self.profile_changed(&cert, options)
                    && match self.judge(&cert) {
                        Verdict::Usable => true,
                        Verdict::Due => false,
                        Verdict::Recheck => self.now() < self.renewal_due_at(&cert),
                    };
                if !options.force_new && usable {
                    return Ok(Ensured {
                        certificate: cert,
                        source: CertificateSource::Stored,
                        replaces: None,
                        requested_by_ca: None,
                    });
                }
                previous = Some(cert);
            }
            let asked_early = previous
                .as_ref()
                .and_then(|p| p.renewal.clone())
                .filter(|r| r.requested_early);
            let result = self.issue(&key, options, previous.as_ref()).await;
            if let Err(e) = &result {
                self.record_error(&key, e).await;
            }
            result.map(|ensured| Ensured {
                requested_by_ca: asked_early.filter(|_| ensured.source != CertificateSource::Stored),
                ..ensured
            })
        })
        .await
    }

    /// The certificate stored for `names`, its renewal information asked
    /// again first when its recheck time has come (RFC 9773; the CA's
    /// `Retry-After`), so [`Issuer::renewal_due_at`] judges it as
    /// [`Issuer::ensure`] would, without renewing anything. The refresh runs
    /// under the set's lease, tried once: while another process holds it
    /// (renewing, or refreshing), the certificate is returned as stored.
    /// `None` when nothing is stored.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), sturdy_acme::Error> {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use sturdy_acme::solver::http01::Http01Solver;
    /// use sturdy_acme::store::FileStore;
    /// use sturdy_acme_testca::TestCa;
    /// use sturdy_acme::{EnsureOptions, Issuer};
    ///
    /// // The CA's window opens at issuance: due at once.
    /// let ca = TestCa::builder().renewal_info(Some(Duration::ZERO)).start().await?;
    /// let dir = std::env::temp_dir().join(format!("sturdy-doc-{}-{}", line!(), std::process::id()));
    /// let issuer = Issuer::builder(ca.client().await?, FileStore::open(&dir)?)
    ///     .solver(Arc::new(Http01Solver::unserved()))
    ///     .renew_at_window_start(true)
    ///     .build();
    /// issuer.ensure(&["shop.example"], &EnsureOptions::default()).await?;
    /// let cert = issuer.checked_certificate(&["shop.example"]).await?.unwrap();
    /// assert!(cert.renewal.is_some());
    /// assert!(issuer.renewal_due_at(&cert) <= std::time::SystemTime::now());
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub async fn checked_certificate<N: AsRef<str>>(
        &self,
        names: &[N],
    ) -> Result<Option<StoredCertificate>> {
        let key = self.set_key(&parse_names(names)?).await?;
        let Some(cert) = self.stored(&key).await? else {
            return Ok(None);
        };
        if self.judge(&cert) != Verdict::Recheck {
            return Ok(Some(cert));
        }
        let flight = self.flight(&key);
        let _flight = flight.lock().await;
        let Some(lease) = self.try_lease(&key).await? else {
            return Ok(Some(cert));
        };
        self.with_held_lease(&key, lease, &EnsureOptions::default(), async {
            // Read again under the lease: another process may have renewed.
            let Some(cert) = self.stored(&key).await? else {
                return Ok(None);
            };
            if self.judge(&cert) != Verdict::Recheck {
                return Ok(Some(cert));
            }
            self.refresh_renewal_info(&key, cert).await.map(Some)
        })
        .await
    }

    /// A wildcard can only be validated with dns-01: refused before any
    /// order is created when no dns-01 solver may be used.
    pub(super) fn check_challenge_types(
        &self,
        ids: &[Identifier],
        options: &EnsureOptions,
    ) -> Result<()> {
        let Some(wildcard) = ids.iter().find(|i| i.is_wildcard()) else {
            return Ok(());
        };
        let dns01 = self
            .inner
            .solvers
            .iter()
            .any(|s| s.challenge_type() == ChallengeType::Dns01)
            && (options.certificate.challenge_types.is_empty()
                || options
                    .certificate
                    .challenge_types
                    .contains(&ChallengeType::Dns01));
        if dns01 {
            return Ok(());
        }
        Err(Error::InvalidInput(format!(
            "{} is a wildcard, which only dns-01 can validate, and no dns-01 solver is allowed \
             (http-01 and tls-alpn-01 cannot prove a wildcard)",
            wildcard.value
        )))
    }

    /// The stored certificate (a corrupted record counts as none).
    pub(super) async fn stored(&self, key: &IdentifierSetKey) -> Result<Option<StoredCertificate>> {
        match self.inner.store.load_certificate(key).await {
            Ok(cert) => Ok(cert),
            // The store kept the bad record aside; a certificate can always
            // be issued again, so renewal proceeds instead of failing until
            // the certificate expires.
            Err(StoreError::Corrupted { path, reason }) => {
                tracing::error!(set = %key, path = %path.display(), %reason, "the stored certificate is corrupted; treating it as absent");
                self.observe(key, IssuerStep::CorruptedCertificateIgnored);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// `names` parsed as identifiers (a bad one is the error).
pub(super) fn parse_names<N: AsRef<str>>(names: &[N]) -> Result<Vec<Identifier>> {
    names
        .iter()
        .map(|n| Identifier::parse(n.as_ref()).map_err(Error::from))
        .collect()
}
