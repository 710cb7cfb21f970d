//! Revocation by CRL: on a slow cadence ([`RenewerPolicy::with_crl_check_every`](super::RenewerPolicy::with_crl_check_every)),
//! every tracked certificate is looked up in the revocation list it names,
//! each list fetched once per check (a shard serves many certificates) with
//! a conditional GET. A certificate found revoked is recorded so in the
//! store ([`Issuer::record_revocation`]) and replaced at once, even when
//! its renewal information did not move (a third party's key-compromise
//! report is seen only in the list).

use std::collections::BTreeMap;

use super::*;

impl State {
    /// `source`, held once however many certificates name it.
    pub(super) fn intern_crl(&mut self, source: Arc<CrlSource>) -> Arc<CrlSource> {
        if let Some(held) = self.crl_sources.get(&*source) {
            return Arc::clone(held);
        }
        self.crl_sources.insert(Arc::clone(&source));
        source
    }
}

impl<S: Store> Renewer<S> {
    /// Checks every tracked certificate against the revocation list it
    /// names now (as [`Renewer::run`] does on its cadence): each list is
    /// fetched once (conditional GET; a list that cannot be had or
    /// trusted is logged, reported as [`RenewerEvent::RevocationListFailed`]
    /// and tried again at the next check); a certificate it lists is
    /// recorded as revoked and renewed at once
    /// ([`RenewerEvent::RevokedFound`]). Returns how many were found
    /// revoked.
    pub async fn check_crls(&self) -> usize {
        // By list, in a stable order: the same lists are asked in the same
        // order every check.
        let mut by_list: BTreeMap<Arc<CrlSource>, Vec<(String, String)>> = BTreeMap::new();
        {
            let mut state = self.state();
            for (id, t) in state.tracked.iter() {
                let Some(c) = t.current.as_ref().filter(|c| !t.removed && !c.revoked) else {
                    continue;
                };
                let Some(source) = &c.crl else {
                    continue;
                };
                by_list
                    .entry(Arc::clone(source))
                    .or_default()
                    .push((id.clone(), c.serial.clone()));
            }
            // Lists no certificate names any more are let go.
            state.crl_sources.retain(|s| by_list.contains_key(s));
        }
        let mut found = Vec::new();
        for (source, mut certs) in by_list {
            // The renewer's map is unordered; the certificates are not.
            certs.sort();
            let url = source.url.clone();
            match self
                .inner
                .crl
                .fetch(
                    self.inner.through.issuer(source.ca).client(),
                    &url,
                    &source.issuer,
                )
                .await
            {
                Ok(list) => {
                    metrics::counter!(metric::CRL_CHECKS, "result" => "ok").increment(1);
                    for (id, serial) in certs {
                        if let Some(reason) = list.revoked(&serial) {
                            found.push((id, serial, reason, url.clone(), source.ca));
                        }
                    }
                }
                Err(e) => {
                    metrics::counter!(metric::CRL_CHECKS, "result" => "failed").increment(1);
                    tracing::warn!(target: "sturdy_acme::renewer", %url, error = %e, certificates = certs.len(), "a revocation list could not be checked; trying again at the next check");
                    self.emit(RenewerEvent::RevocationListFailed {
                        url,
                        error: e.to_string(),
                        certificates: certs.len(),
                    });
                }
            }
        }
        let mut recorded = 0;
        for (id, serial, reason, url, ca) in found {
            if self.revoked_found(&id, &serial, reason, url, ca).await {
                recorded += 1;
            }
        }
        recorded
    }

    /// Records that the CA revoked certificate `serial` of `id` and
    /// schedules its replacement at once. False when it could not be
    /// recorded (another node holds the set's lease, the store failed, or
    /// it was replaced meanwhile): the next check finds it again.
    /// `ca` is the CA whose list named it (its certificate's CA).
    async fn revoked_found(
        &self,
        id: &str,
        serial: &str,
        reason: Option<u8>,
        url: String,
        ca: usize,
    ) -> bool {
        let Some(stored) = self.state().tracked.get(id).map(|t| t.stored.clone()) else {
            return false;
        };
        match self
            .inner
            .through
            .issuer(ca)
            .record_revocation(stored.spec.names(), serial, reason)
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(target: "sturdy_acme::renewer", %id, %serial, error = %e, "a revocation found in the CA's list could not be recorded yet");
                return false;
            }
        }
        metrics::counter!(metric::REVOKED_FOUND).increment(1);
        self.emit(RenewerEvent::RevokedFound {
            id: id.to_owned(),
            serial: serial.to_owned(),
            reason,
            crl: url,
        });
        // Scheduled again from the stored (now revoked) certificate: due
        // at once.
        if let Err(e) = self.track(stored).await {
            tracing::warn!(target: "sturdy_acme::renewer", %id, error = %e, "could not reschedule a revoked certificate; the next refresh does");
        }
        self.inner.wake.notify_one();
        true
    }
}
