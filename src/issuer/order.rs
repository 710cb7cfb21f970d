//! newOrder under the ledger and the fence: the lost answer's order looked
//! for first, the CAA pre-flight, the reservation, and a CA's refusal of
//! `replaces` resolved (alreadyReplaced resumes this account's earlier
//! replacement order).

use super::*;
use crate::ProblemType;
use crate::store::AskedProfile;
use crate::wait::Wait;

impl<S: Store> Issuer<S> {
    pub(super) async fn new_order(
        &self,
        key: &IdentifierSetKey,
        account: &Account,
        journal: &mut Journal,
        options: &EnsureOptions,
        previous: Option<&StoredCertificate>,
    ) -> Result<Order> {
        let ids = key.identifiers().to_vec();
        let account_url = account.url().to_owned();
        let now = self.now();
        // A journal left at Ordering by an earlier process: its newOrder may
        // have been sent. Look for the order it created before sending one.
        if journal.step == JournalStep::Ordering && journal.order_attempts > 0 {
            let wanted = NewOrder::new(ids.clone())?;
            if let Some(order) = account
                .find_pending_order(&wanted, crate::client::LOST_ANSWER_PAGES)
                .await
            {
                tracing::info!(set = %key, order = %order.url(), "the interrupted newOrder's order was found in the account's orders list");
                journal.order_url = Some(order.url().to_owned());
                journal.step = JournalStep::OrderCreated;
                self.save_journal(key, journal).await?;
                self.observe(key, IssuerStep::OrderCreated);
                return Ok(order);
            }
        }
        // Before anything is spent: would the CA's CAA check pass? (First
        // a dry run of the ledger, nothing written: a set it would refuse
        // now is refused before the pre-flight can spend minutes on DNS.)
        let reserve_certificate = !journal.certificate_reserved;
        let exemption = self.exemption(previous, journal);
        let reserve = |l: &mut RateLedger, now| {
            l.reserve_new_order(&account_url, &ids, now, reserve_certificate, exemption)
        };
        let checked = options
            .within_set
            .as_ref()
            .and_then(|w| w.caa_methods.clone());
        let now = if let Some(methods) = checked {
            // The CA set's pre-flight asked the DNS for every CA at once.
            journal.caa_methods = methods;
            now
        } else if let Some(checker) = &self.inner.caa {
            self.with_ledger(&account_url, &ids, |l| (reserve(l, now).map(drop), false))
                .await??;
            journal.caa_methods = self.caa_preflight(checker, key, account, options).await?;
            // The pre-flight may have waited minutes for a nameserver.
            self.now()
        } else {
            now
        };
        // Checked and counted in one atomic ledger update: the order and,
        // unless this journal already holds one, the certificate it is for.
        self.with_ledger(&account_url, &ids, |l| {
            let reserved = reserve(l, now);
            let changed = reserved.is_ok();
            (reserved, changed)
        })
        .await??;
        if reserve_certificate {
            journal.reserved_as = exemption.name().map(str::to_owned);
        }
        journal.certificate_reserved = true;
        journal.step = JournalStep::Ordering;
        journal.order_attempts += 1;
        let (profile, fell_back) = self.profile_to_ask(options);
        if let Some(wanted) = fell_back {
            self.profile_fell_back(key, wanted, profile.clone());
        }
        journal.profile = AskedProfile::from(profile.clone());
        // A failure from here on keeps what was spent: the journal write may
        // have landed (reserved) even if its answer was lost, and giving the
        // reservation back then would let the order be finalized uncounted.
        self.save_journal(key, journal).await?;
        self.fence(key).await?;
        // Every newOrder sent after the first (a lost answer whose order
        // was not found, a refused `replaces`, a withdrawn profile) spends
        // its own token before it goes: the CA counts each one.
        let without_replaces = match self.exemption(
            previous,
            &Journal {
                replaces: None,
                ..journal.clone()
            },
        ) {
            Exemption::Ari => Exemption::None,
            other => other,
        };
        let gate = self.repeat_gate(account_url.clone(), ids.clone(), without_replaces);
        let request = |profile: Option<String>, journal: &Journal| -> Result<NewOrder> {
            let mut request = NewOrder::new(ids.clone())?.with_repeat_gate(gate.clone());
            if let Some(profile) = profile {
                request = request.with_profile(profile);
            }
            if let Some(id) = journal.replaces.as_deref().and_then(CertId::parse) {
                request = request.with_replaces(id);
            }
            Ok(request)
        };
        if journal.replaces.is_some() {
            tracing::info!(set = %key, replaces = journal.replaces.as_deref(), ?exemption, "renewal: the order names the certificate it replaces");
        }
        let first = request(profile.clone(), journal)?;
        let mut result = self.send_new_order(key, account, journal, &first).await;
        // The CA withdrew the profile since its directory was read: refused
        // (`invalidProfile`), so no order exists. Asked once more with the
        // fallback, recorded first.
        if let (Err(e), Some(asked)) = (&result, profile.as_deref())
            && e.problem_type() == Some(&ProblemType::InvalidProfile)
        {
            let asked = asked.to_owned();
            self.inner.client.profile_refused(&asked);
            let (instead, _) = self.profile_to_ask(options);
            if instead.as_deref() != Some(asked.as_str()) {
                self.profile_fell_back(key, asked, instead.clone());
                journal.profile = AskedProfile::from(instead.clone());
                self.save_journal(key, journal).await?;
                self.fence(key).await?;
                let again = request(instead, journal)?;
                result = match again.allow_repeat().await {
                    Ok(()) => self.send_new_order(key, account, journal, &again).await,
                    Err(e) => Err(e),
                };
            }
        }
        match result {
            Ok(order) => {
                // Reserved as an ARI renewal, but the CA did not take it as
                // one (it refused `replaces`, or does not echo it): counted
                // as the order it is after all.
                let reserved = Exemption::from_name(journal.reserved_as.as_deref());
                if reserved == Exemption::Ari && !order.state().extra.contains_key("replaces") {
                    let as_now = without_replaces;
                    tracing::info!(set = %key, ?as_now, "the order is not an ARI renewal at the CA; counted as one");
                    self.spend_ledger(&account_url, &ids, |l| {
                        l.spend_as(&account_url, &ids, now, as_now, true)
                    })
                    .await?;
                    journal.reserved_as = as_now.name().map(str::to_owned);
                    journal.replaces = None;
                }
                journal.order_url = Some(order.url().to_owned());
                journal.step = JournalStep::OrderCreated;
                self.save_journal(key, journal).await?;
                self.observe(key, IssuerStep::OrderCreated);
                Ok(order)
            }
            Err(e) => {
                let now = self.now();
                if let Some(wait) = Wait::of(&e, now).filter(|w| w.limit.is_some()) {
                    self.spend_ledger(&account_url, &ids, |l| {
                        l.record_server_limit(&account_url, &ids, &wait, now)
                    })
                    .await?;
                }
                Err(e)
            }
        }
    }

    /// Sends newOrder; when the CA refuses its `replaces`
    /// ([`ReplacesRefusal`](crate::ReplacesRefusal)), resolves the refusal
    /// instead of dodging it: on `alreadyReplaced` this account's own
    /// earlier replacement order (an answer lost, an order left pending)
    /// is looked for and resumed, keeping the ARI exemption; otherwise, or
    /// when none is found, the refusal is journalled (never met twice for
    /// this issuance) and the order sent without `replaces`. Returns the
    /// outcome.
    /// Reports that an order asks for `used` instead of the profile
    /// `wanted`, which the CA no longer offers.
    fn profile_fell_back(&self, key: &IdentifierSetKey, wanted: String, used: Option<String>) {
        tracing::warn!(set = %key, %wanted, used = used.as_deref().unwrap_or("(the CA's default)"), "the profile asked for is no longer offered by the CA: ordering with the fallback");
        self.inner
            .client
            .emit(crate::Event::ProfileFallback { wanted, used });
    }

    pub(super) async fn send_new_order(
        &self,
        key: &IdentifierSetKey,
        account: &Account,
        journal: &mut Journal,
        request: &NewOrder,
    ) -> Result<Order> {
        let first = account.new_order_as_sent(request).await;
        let (Some(cert_id), Err(e)) = (request.replaces(), &first) else {
            return first;
        };
        let Some(cause) = crate::ReplacesRefusal::of(e) else {
            return first;
        };
        let cert_id = cert_id.to_string();
        if cause == crate::ReplacesRefusal::AlreadyReplaced
            && let Some(order) = account
                .find_pending_order(request, crate::client::REPLACEMENT_SEARCH_PAGES)
                .await
        {
            tracing::info!(set = %key, %cert_id, order = %order.url(), "alreadyReplaced: resuming this account's earlier replacement order");
            self.inner.client.emit(crate::Event::ReplacementResumed {
                cert_id,
                order_url: order.url().to_owned(),
            });
            return Ok(order);
        }
        let resolution = match cause {
            crate::ReplacesRefusal::AlreadyReplaced => {
                "no pending or ready replacement order of this account was found (the CA may \
                 list no orders); ordering without it"
            }
            _ => "ordering without it",
        };
        journal.replaces = None;
        journal.replaces_refused = Some(cause.name().to_owned());
        self.save_journal(key, journal).await?;
        self.fence(key).await?;
        let without = request.without_replaces();
        without.allow_repeat().await?;
        let second = account.new_order_as_sent(&without).await;
        // A CA that hands back a pending order for the same names (Boulder)
        // answers with the earlier replacement order itself: resumed.
        let echoed = second.as_ref().ok().and_then(|order| {
            order
                .state()
                .extra
                .get("replaces")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        });
        if cause == crate::ReplacesRefusal::AlreadyReplaced && echoed.as_deref() == Some(&cert_id) {
            let url = second
                .as_ref()
                .map(|o| o.url().to_owned())
                .unwrap_or_default();
            tracing::info!(set = %key, %cert_id, order = %url, "alreadyReplaced: the CA handed back this account's earlier replacement order");
            journal.replaces = Some(cert_id.clone());
            journal.replaces_refused = None;
            self.inner.client.emit(crate::Event::ReplacementResumed {
                cert_id,
                order_url: url,
            });
        } else {
            account.replaces_dropped(request, cause, e, resolution);
        }
        second
    }

    /// The gate every repeated newOrder of one issuance passes: one order
    /// reserved in the ledger (an ARI renewal's repeat spends nothing; one
    /// without `replaces` counts as `without_replaces` says), or refused
    /// with [`Error::RateLimitedLocally`] when none is left.
    fn repeat_gate(
        &self,
        account_url: String,
        ids: Vec<Identifier>,
        without_replaces: Exemption,
    ) -> crate::client::RepeatGate {
        let issuer = self.clone();
        crate::client::RepeatGate(Arc::new(move |replaces: bool| {
            let issuer = issuer.clone();
            let account_url = account_url.clone();
            let ids = ids.clone();
            let exemption = if replaces {
                Exemption::Ari
            } else {
                without_replaces
            };
            Box::pin(async move {
                if exemption == Exemption::Ari {
                    return Ok(());
                }
                let now = issuer.now();
                issuer
                    .with_ledger(&account_url, &ids, |l| {
                        let reserved =
                            l.reserve_new_order(&account_url, &ids, now, false, exemption);
                        let changed = reserved.is_ok();
                        (reserved, changed)
                    })
                    .await?
            })
        }))
    }
}
