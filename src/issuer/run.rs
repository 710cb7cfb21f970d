//! One issuance from its journal to a stored certificate: resume or start
//! the journal (a leftover settled, a corrupted one recovered), drive the
//! order through its states, check the chain, store it. A finalized order
//! is given up only on the CA's definitive `invalid`.

use super::*;

impl<S: Store> Issuer<S> {
    pub(super) async fn issue(
        &self,
        key: &IdentifierSetKey,
        options: &EnsureOptions,
        previous: Option<&StoredCertificate>,
    ) -> Result<Ensured> {
        let account = self.account().await?;
        // A renewal names the certificate it replaces (sent only where the
        // CA offers renewal information).
        // (Not for a deliberate duplicate: the stored one stays in use.)
        let replaces = previous
            .filter(|_| !options.force_new)
            .filter(|_| self.inner.client.offers_renewal_info())
            .and_then(|p| CertId::from_pem(&p.chain_pem).ok())
            .map(|id| id.as_str().to_owned());
        let directory = self.inner.client.directory_url().to_owned();
        let fresh = || Journal {
            replaces: replaces.clone(),
            chosen: options.within_set.as_ref().map(|w| w.choice.clone()),
            ..Journal::new(
                directory.clone(),
                account.url(),
                key.identifiers().to_vec(),
                now_unix(),
            )
        };
        let loaded = match self.inner.store.load_journal(key).await {
            Ok(loaded) => loaded,
            Err(StoreError::Corrupted { path, reason }) => {
                Some(self.recover_journal(key, &account, path, reason).await?)
            }
            Err(e) => return Err(e.into()),
        };
        let (mut journal, mut source) = match loaded {
            Some(j) if j.directory == directory && j.account_url == account.url() => {
                match settle::judge(&j, previous) {
                    settle::Leftover::Resume => {
                        tracing::info!(set = %key, step = ?j.step, order = ?j.order_url, "resuming an interrupted order");
                        self.observe(key, IssuerStep::Resumed(j.step));
                        (j, CertificateSource::Resumed)
                    }
                    leftover => {
                        self.settle_leftover(key, &j, leftover).await?;
                        (fresh(), CertificateSource::New)
                    }
                }
            }
            Some(stale) => {
                // Never overwritten: it may hold a certified key.
                tracing::warn!(set = %key, directory = %stale.directory, account = %stale.account_url, "archiving a journal of another CA or account");
                self.inner.store.archive_journal(key, &stale).await?;
                (fresh(), CertificateSource::New)
            }
            None => (fresh(), CertificateSource::New),
        };
        if journal.step == JournalStep::Downloaded && journal.chain_pem.is_some() {
            return self.store_certificate(key, &journal, source).await;
        }

        let mut restarts = 0;
        loop {
            // Once finalize may have been sent, the CA may have issued a
            // certificate for the journalled key: this order is only ever
            // given up on the CA's definitive `invalid`.
            let committed = journal.step >= JournalStep::Finalizing && journal.key_pem.is_some();
            if committed && let Some(url) = journal.certificate_url.clone() {
                // A known certificate URL first: the certificate may be
                // downloadable even when the order no longer is.
                match account
                    .certificate_chain(&url, options.certificate.preferred_chain.as_ref())
                    .await
                {
                    Ok(chain) => {
                        self.journal_chain(key, &mut journal, &chain).await?;
                        return self.store_certificate(key, &journal, source).await;
                    }
                    Err(e) => {
                        tracing::warn!(set = %key, certificate = %url, error = %e, "could not download the journalled certificate; reading its order");
                    }
                }
            }
            let mut order = match journal.order_url.clone() {
                Some(url) => match account.order(&url).await {
                    Ok(o) => o,
                    Err(e) if committed => {
                        tracing::error!(set = %key, order = %url, error = %e, "a finalized order could not be read; journal and key kept for the next attempt");
                        return Err(Error::OrderUnresolved {
                            url,
                            source: Box::new(e),
                        });
                    }
                    Err(e) if e.class() == ErrorClass::Permanent && restarts == 0 => {
                        // Finalize was never sent for it: no certificate
                        // can exist, so a new order is safe.
                        tracing::warn!(set = %key, error = %e, "journalled order is gone before finalize; ordering anew");
                        restarts += 1;
                        self.supersede(key, &mut journal).await?;
                        source = CertificateSource::New;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                None => {
                    self.new_order(key, &account, &mut journal, options, previous)
                        .await?
                }
            };
            check_order_identifiers(key, &order)?;
            match self.drive(key, &mut order, &mut journal, options).await {
                Ok(()) => return self.store_certificate(key, &journal, source).await,
                Err(DriveError::Restart) if options.within_set.is_some() => {
                    // Within a CA set: an order proven invalid (the CA's
                    // definitive word that it yields no certificate) is
                    // given up here, its journal back before finalize (the
                    // key archived), and the set chooses where the next
                    // order goes, this CA or another.
                    self.supersede(key, &mut journal).await?;
                    self.save_journal(key, &journal).await?;
                    return Err(Error::OrderInvalid {
                        url: order.url().to_owned(),
                        problem: order.state().error.clone().map(Box::new),
                    });
                }
                Err(DriveError::Restart) if restarts == 0 => {
                    restarts += 1;
                    self.supersede(key, &mut journal).await?;
                    source = CertificateSource::New;
                }
                Err(DriveError::Restart) => {
                    return Err(Error::OrderInvalid {
                        url: order.url().to_owned(),
                        problem: order.state().error.clone().map(Box::new),
                    });
                }
                Err(DriveError::Failed(e)) => return Err(e),
            }
        }
    }

    /// A corrupted journal is never taken for "no order in flight": it may
    /// name a finalized order. The store kept a copy aside; the order is
    /// looked for among the account's orders for the same identifiers. A
    /// pending or ready one is resumed (no certificate exists yet); one that
    /// is processing or valid was finalized with the key the journal held,
    /// and no order at all may mean newOrder was in flight: both stop with
    /// the typed error naming the file, for a human to recover the key.
    pub(super) async fn recover_journal(
        &self,
        key: &IdentifierSetKey,
        account: &Account,
        path: std::path::PathBuf,
        reason: String,
    ) -> Result<Journal> {
        let stop = |found: String| {
            Error::Store(StoreError::Corrupted {
                path: path.clone(),
                reason: format!("{reason}; {found}"),
            })
        };
        let urls = match account.order_urls(RECOVERY_ORDER_PAGES).await {
            Ok(urls) => urls,
            Err(e) => {
                return Err(stop(format!(
                    "the account's orders could not be listed ({e})"
                )));
            }
        };
        // Every order for these names is looked at: one that may hold a
        // certificate (processing, valid) or that cannot be read stops the
        // recovery; only then is a pending or ready one resumed.
        let mut resumable = None;
        let mut unreadable = 0;
        for url in urls.iter().rev().take(RECOVERY_ORDERS) {
            let order = match account.order(url).await {
                Ok(order) => order,
                Err(e) => {
                    tracing::warn!(order = %url, error = %e, "recovering a corrupted journal: an order could not be read");
                    unreadable += 1;
                    continue;
                }
            };
            if IdentifierSetKey::new(order.identifiers()).identifiers() != key.identifiers() {
                continue;
            }
            match order.status() {
                OrderStatus::Processing | OrderStatus::Valid => {
                    return Err(stop(format!(
                        "its order {url} was finalized with the key the journal held; \
                         recover the key from the copy before ordering again"
                    )));
                }
                OrderStatus::Pending | OrderStatus::Ready => {
                    resumable.get_or_insert(url.clone());
                }
                OrderStatus::Invalid => {}
            }
        }
        if unreadable > 0 || urls.len() > RECOVERY_ORDERS {
            return Err(stop(format!(
                "{unreadable} of the account's orders could not be read and {} were not looked at, \
                 so a finalized order for these names cannot be ruled out",
                urls.len().saturating_sub(RECOVERY_ORDERS)
            )));
        }
        let Some(url) = resumable else {
            return Err(stop(
                "no order for these identifiers in the account's orders list".into(),
            ));
        };
        tracing::warn!(set = %key, order = %url, "corrupted journal: resuming its order found in the account's orders");
        self.observe(key, IssuerStep::CorruptedJournalRecovered);
        Ok(Journal {
            step: JournalStep::OrderCreated,
            order_url: Some(url),
            order_attempts: 1,
            ..Journal::new(
                self.inner.client.directory_url(),
                account.url(),
                key.identifiers().to_vec(),
                now_unix(),
            )
        })
    }

    /// Removes a journal [`settle::judge`] found to be no issuance to
    /// finish: the stored certificate's own leftover is deleted, an older
    /// certificate's journal archived first (it holds a key). Under the
    /// issuance's fenced lease.
    pub(super) async fn settle_leftover(
        &self,
        key: &IdentifierSetKey,
        journal: &Journal,
        leftover: settle::Leftover,
    ) -> Result<()> {
        if leftover == settle::Leftover::Superseded {
            self.inner.store.archive_journal(key, journal).await?;
        }
        tracing::warn!(set = %key, ?leftover, step = ?journal.step, "a journal left beside the stored certificate is settled, not resumed");
        self.delete_journal(key).await?;
        self.observe(key, IssuerStep::LeftoverJournalSettled);
        Ok(())
    }

    /// Starts a new order in place of the journalled one, which the CA said
    /// is invalid or gone. A journal that holds a certificate key is
    /// archived first: a key is never overwritten.
    pub(super) async fn supersede(
        &self,
        key: &IdentifierSetKey,
        journal: &mut Journal,
    ) -> Result<()> {
        if journal.key_pem.is_some() {
            self.inner.store.archive_journal(key, journal).await?;
        }
        // A reservation made for this journal stays with it for the next
        // order: the order superseded is invalid (the CA's definitive word
        // that it yields no certificate, a finalize sent to it included: a
        // CAA recheck that failed at finalize fails the order) or was gone
        // before finalize, so no certificate used it.
        journal.step = JournalStep::Ordering;
        journal.order_url = None;
        journal.key_pem = None;
        journal.certificate_url = None;
        journal.chain_pem = None;
        journal.finalize_sent_at = None;
        journal.finalize_attempts = 0;
        // The next newOrder is this journal's first for its order: no lost
        // answer of it to look for (the superseded order, which a CA may
        // still call pending, is never taken back).
        journal.order_attempts = 0;
        journal.caa_methods.clear();
        Ok(())
    }

    /// Takes an order from whatever state it is in to a downloaded chain.
    pub(super) async fn drive(
        &self,
        key: &IdentifierSetKey,
        order: &mut Order,
        journal: &mut Journal,
        options: &EnsureOptions,
    ) -> std::result::Result<(), DriveError> {
        // Once finalize may have been sent, the order's dialect decides what
        // that means (ACME v1, whose order is the client's own, hands the
        // earlier attempts to its new-cert guard: certificate finder and
        // budget before anything is repeated).
        if journal.step >= JournalStep::Finalizing {
            let sent = match (journal.step, journal.finalize_sent_at) {
                (JournalStep::Finalizing, Some(at)) => Some((
                    UNIX_EPOCH + Duration::from_secs(at.max(0) as u64),
                    journal.finalize_attempts,
                )),
                _ => None,
            };
            order.resume_after_finalize(sent);
        }
        let lease = self.lease_state(key)?;
        loop {
            lease.check_local()?;
            match order.status() {
                OrderStatus::Pending => {
                    self.answer_challenges(key, order, journal, options).await?;
                }
                OrderStatus::Ready => {
                    let cert_key = match &journal.key_pem {
                        Some(pem) => CertificateKey::from_pkcs8_pem(pem)?,
                        None => CertificateKey::generate(options.certificate.key_type)?,
                    };
                    // Counted first (a crash after it over-counts, never
                    // under-counts); then the fenced journal write, and the
                    // request right after it.
                    // (A journal that reserved the certificate with its
                    // newOrder spent it then.)
                    if !journal.certificate_reserved {
                        let ids = key.identifiers().to_vec();
                        let as_ = Exemption::from_name(journal.reserved_as.as_deref());
                        let now = self.now();
                        self.spend_ledger("", &ids, |l| l.spend_as("", &ids, now, as_, false))
                            .await?;
                    }
                    journal.key_pem = Some(cert_key.to_pkcs8_pem());
                    journal.step = JournalStep::Finalizing;
                    journal.finalize_sent_at = Some(now_unix());
                    journal.finalize_attempts = journal.finalize_attempts.saturating_add(1);
                    self.save_journal(key, journal).await?;
                    // (A finalize refused by this client's hold limit never
                    // left, but an error of the same kind from reading the
                    // order after a sent finalize would look alike: the
                    // journal stays at finalize either way, and the CA set
                    // resolves it at this CA once its pause ends.)
                    if let Err(e) = order.finalize(Csr::Key(&cert_key)).await {
                        if options.within_set.is_some() && order.status() == OrderStatus::Invalid {
                            // Read back invalid (a CAA recheck that failed
                            // at finalize): the CA's definitive word that
                            // this order yields nothing. Within a CA set it
                            // is given up here, so the set may go elsewhere.
                            self.supersede(key, journal).await?;
                            self.save_journal(key, journal).await?;
                        } else {
                            self.after_refused_new_cert(key, order, journal, &e).await?;
                        }
                        return Err(e.into());
                    }
                    // v1: the order's URL now names its certificate; journal
                    // it at once so a crash from here on downloads instead
                    // of sending new-cert again.
                    if journal.order_url.as_deref() != Some(order.url()) {
                        journal.order_url = Some(order.url().to_owned());
                        // A chain in hand (found by the certificate finder)
                        // has no URL to download it again from: journalled
                        // in the same write.
                        // The order URL is journalled whatever the check
                        // says: it names the certificate new-cert issued, so
                        // a later run reads it instead of sending new-cert.
                        let mut mismatch = None;
                        if let Some(chain) = order.chain_in_hand() {
                            journal.certificate_url = order.state().certificate.clone();
                            match verify::check_chain(
                                chain,
                                &cert_key.to_pkcs8_pem(),
                                key.identifiers(),
                            ) {
                                Ok(()) => {
                                    journal.chain_pem = Some(chain.pem().to_owned());
                                    journal.step = JournalStep::Downloaded;
                                }
                                Err(e) => mismatch = Some(e),
                            }
                        }
                        self.save_journal(key, journal).await?;
                        if let Some(e) = mismatch {
                            return Err(e.into());
                        }
                    }
                    self.observe(key, IssuerStep::FinalizeSent);
                    if journal.step == JournalStep::Downloaded {
                        self.observe(key, IssuerStep::Downloaded);
                        return Ok(());
                    }
                }
                OrderStatus::Processing => {
                    order.wait_certificate().await?;
                }
                OrderStatus::Valid => {
                    if journal.key_pem.is_none() {
                        // Finalized by someone else: another process that
                        // took this set over (then this one lost its lease).
                        self.fence(key).await?;
                        return Err(DriveError::Failed(Error::InvalidInput(format!(
                            "order {} is valid but its certificate key is not in the journal",
                            order.url()
                        ))));
                    }
                    let url = order.wait_certificate().await?;
                    if journal.certificate_url.as_deref() != Some(url.as_str()) {
                        journal.certificate_url = Some(url);
                        // (v1: the order's URL now carries its certificate.)
                        journal.order_url = Some(order.url().to_owned());
                        journal.step = JournalStep::CertificateUrlKnown;
                        self.save_journal(key, journal).await?;
                        self.observe(key, IssuerStep::CertificateUrlKnown);
                    }
                    let chain = order
                        .certificate_chain(options.certificate.preferred_chain.as_ref())
                        .await?;
                    self.journal_chain(key, journal, &chain).await?;
                    return Ok(());
                }
                OrderStatus::Invalid => {
                    tracing::warn!(set = %key, order = %order.url(), error = ?order.state().error, "order is invalid");
                    self.count_unseen_failures(key, order, journal).await;
                    return Err(DriveError::Restart);
                }
            }
        }
    }

    /// An order found invalid when it is read (a resume) may have failed
    /// validation while no process was waiting for it: killed between a
    /// challenge answer and its validation, the solver gone with it. The
    /// CA counted each failed authorization (Let's Encrypt: 5 per
    /// identifier per account per hour), so the ledger counts them now,
    /// unless the attempt that saw the failure counted it (its error is
    /// journalled as a validation failure). An authorization that cannot be
    /// read counts as failed: over-counting only waits longer.
    pub(super) async fn count_unseen_failures(
        &self,
        key: &IdentifierSetKey,
        order: &Order,
        journal: &Journal,
    ) {
        if journal.step < JournalStep::OrderCreated
            || journal
                .last_error
                .as_ref()
                .is_some_and(|e| e.class == "validation")
        {
            return;
        }
        let failed: Vec<String> = match order.authorizations().await {
            Ok(authzs) => authzs
                .iter()
                .filter(|a| a.status() == AuthorizationStatus::Invalid)
                .map(|a| a.identifier().value.clone())
                .collect(),
            Err(e) => {
                tracing::warn!(set = %key, error = %e, "the invalid order's authorizations could not be read; counting each identifier as failed");
                key.identifiers().iter().map(|i| i.value.clone()).collect()
            }
        };
        if failed.is_empty() {
            return;
        }
        tracing::warn!(set = %key, order = %order.url(), failed = ?failed, "validation failed while no process waited for it; counted in the ledger");
        let account_url = order.account().url().to_owned();
        let now = self.now();
        let mut ids = key.identifiers().to_vec();
        ids.extend(failed.iter().filter_map(|n| Identifier::parse(n).ok()));
        if let Err(e) = self
            .spend_ledger(&account_url, &ids, |l| {
                for name in &failed {
                    l.spend_failed_authorization(&account_url, name, now);
                }
            })
            .await
        {
            tracing::warn!(set = %key, error = %e, "could not count the failed authorizations");
        }
    }

    /// ACME v1: a new-cert the CA refused (a problem document with a 4xx
    /// status, or refused locally before sending) issued nothing, so the journal goes back to
    /// before it; otherwise every later run would take it for a request
    /// whose answer was lost. Kept as it is whenever any new-cert for the
    /// set may have issued a certificate.
    pub(super) async fn after_refused_new_cert(
        &self,
        key: &IdentifierSetKey,
        order: &Order,
        journal: &mut Journal,
        error: &Error,
    ) -> Result<()> {
        if !order.refusal_issued_nothing(error) {
            return Ok(());
        }
        journal.step = JournalStep::ChallengesAnswered;
        journal.finalize_sent_at = None;
        journal.finalize_attempts = journal.finalize_attempts.saturating_sub(1);
        self.save_journal(key, journal).await
    }

    /// Journals `chain` as downloaded once it is checked against the
    /// journal: the leaf certifies the journalled key, for exactly the
    /// ordered identifiers, chained to the issuers it names. Otherwise
    /// [`Error::CertificateMismatch`] and the journal is left as it was.
    pub(super) async fn journal_chain(
        &self,
        key: &IdentifierSetKey,
        journal: &mut Journal,
        chain: &crate::client::CertificateChain,
    ) -> Result<()> {
        let key_pem = journal.key_pem.clone().ok_or_else(|| {
            Error::InvalidInput("a chain was downloaded for a journal without a key".into())
        })?;
        if let Err(e) = verify::check_chain(chain, &key_pem, key.identifiers()) {
            tracing::error!(set = %key, certificate = %chain.url(), error = %e, "the CA's certificate does not match the order; not stored, the journal and its key kept");
            return Err(e);
        }
        journal.chain_pem = Some(chain.pem().to_owned());
        journal.step = JournalStep::Downloaded;
        self.save_journal(key, journal).await?;
        self.observe(key, IssuerStep::Downloaded);
        Ok(())
    }

    pub(super) async fn store_certificate(
        &self,
        key: &IdentifierSetKey,
        journal: &Journal,
        source: CertificateSource,
    ) -> Result<Ensured> {
        let chain_pem = journal
            .chain_pem
            .clone()
            .ok_or_else(|| Error::InvalidInput("journal without a chain".into()))?;
        let key_pem = journal
            .key_pem
            .clone()
            .ok_or_else(|| Error::InvalidInput("journal without a certificate key".into()))?;
        let chain = crate::client::CertificateChain::from_pem(
            journal.certificate_url.as_deref().unwrap_or(""),
            &chain_pem,
            Vec::new(),
        )
        .map_err(Error::InvalidInput)?;
        let (not_before, not_after) = chain.validity().unwrap_or((now_unix(), now_unix()));
        let (not_before, not_after) = (
            timestamp::from_unix(not_before),
            timestamp::from_unix(not_after),
        );
        let certificate = StoredCertificate {
            identifiers: key.identifiers().to_vec(),
            chain_pem,
            key_pem: Zeroizing::new(key_pem.to_string()),
            url: journal.certificate_url.clone().unwrap_or_default(),
            not_before,
            not_after,
            serial: chain.serial_hex().unwrap_or_default(),
            revoked: None,
            renewal: None,
            profile: journal.profile.clone(),
        };
        // Only the lease holder replaces the stored certificate; the chain
        // stays journalled (Downloaded) for it otherwise.
        self.fence(key).await?;
        self.inner.store.save_certificate(key, &certificate).await?;
        self.delete_journal(key).await?;
        self.observe(key, IssuerStep::Stored);
        tracing::info!(set = %key, serial = %certificate.serial, ?source, "certificate stored");
        Ok(Ensured {
            certificate,
            source,
            replaces: journal.replaces.clone(),
            requested_by_ca: None,
        })
    }
}

/// The CA's order must be for exactly the identifiers that were ordered:
/// solvers are never shown, and no key is certified for, anything else.
pub(super) fn check_order_identifiers(key: &IdentifierSetKey, order: &Order) -> Result<()> {
    let theirs = IdentifierSetKey::new(order.identifiers());
    if theirs.identifiers() == key.identifiers() {
        return Ok(());
    }
    Err(Error::ProtocolViolation {
        url: order.url().to_owned(),
        reason: format!("the order is for {theirs}, but {key} was ordered"),
    })
}

pub(super) enum DriveError {
    /// The order is invalid: start a new one (once).
    Restart,
    /// A failure to return.
    Failed(Error),
}

impl From<Error> for DriveError {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}
