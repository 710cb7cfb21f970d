//! What the renewer tracks: the specs read from the store (every node's
//! additions and removals), each scheduled from its stored certificate
//! (its next check, its backoff, a profile that changed), and what
//! scheduling keeps of that certificate ([`Current`]).

use super::*;

impl<S: Store> Renewer<S> {
    /// Reads the specs from the store (every node's additions), and
    /// schedules each: a certificate already stored at its next check, a
    /// new one at once, one that was failing when its backoff ends.
    pub(super) async fn load(&self) -> Result<()> {
        let records = self
            .inner
            .through
            .home()
            .store()
            .list_managed(&self.directory())
            .await?;
        let mut seen = std::collections::HashSet::new();
        for record in &records {
            match Stored::from_record(record) {
                Ok(stored) => {
                    seen.insert(stored.spec.id());
                    let known = self.state().tracked.contains_key(&stored.spec.id());
                    if !known {
                        self.track(stored).await?;
                    }
                }
                Err(reason) => {
                    tracing::warn!(target: "sturdy_acme::renewer", %reason, "a renewer record cannot be used; skipped");
                }
            }
        }
        // Removed by another node.
        let mut state = self.state();
        let gone: Vec<String> = state
            .tracked
            .iter()
            .filter(|(id, t)| !seen.contains(*id) && !t.running)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            state.queue.forget(&id);
            state.tracked.remove(&id);
        }
        state.loaded = true;
        Ok(())
    }

    /// Starts tracking `stored`, scheduled from its stored certificate.
    pub(super) async fn track(&self, stored: Stored) -> Result<()> {
        let id = stored.spec.id();
        // Unknown when the account cannot be had (the CA is down): looked
        // at once, and the attempt finds out.
        let cert = match self.inner.through.current(stored.spec.names()).await {
            Ok(cert) => cert,
            Err(e) => {
                tracing::debug!(target: "sturdy_acme::renewer", id = %stored.spec.id(), error = %e, "the stored certificate could not be read; looking at it at once");
                None
            }
        };
        let now = self.now();
        let known = self
            .state()
            .tracked
            .get(&id)
            .and_then(|t| t.current.clone());
        let mut current = cert
            .as_ref()
            .map(|(ca, c)| self.current(*ca, c, known.as_ref()));
        // A certificate ordered with another profile than the spec now
        // asks for is renewed at once.
        let options = stored.spec.ensure_options();
        let mut at = cert.as_ref().map_or(now, |(ca, c)| {
            let issuer = self.inner.through.issuer(*ca);
            if issuer.profile_changed(c, &self.inner.through.options_for(*ca, &options)) {
                now
            } else {
                issuer.next_check_at(c)
            }
        });
        let hold = from_ms(stored.failures.retry_at_ms);
        if hold > at {
            at = hold;
        }
        let state_now = match (&current, stored.failures.consecutive) {
            (_, n) if n > 0 && hold > now => ManagedState::BackingOff,
            (None, _) => ManagedState::Pending,
            (Some(_), _) if at <= now => ManagedState::Due,
            (Some(_), _) => ManagedState::Valid,
        };
        let mut state = self.state();
        if let Some(c) = current.as_mut() {
            c.crl = c.crl.take().map(|source| state.intern_crl(source));
        }
        let running = state.tracked.get(&id).is_some_and(|t| t.running);
        let entry = entry(&id, &stored, current.as_ref(), at);
        state.tracked.insert(
            id.clone(),
            Tracked {
                stored,
                current,
                state: if running {
                    ManagedState::Running
                } else {
                    state_now
                },
                running,
                removed: false,
                recheck: false,
            },
        );
        if !running {
            state.queue.schedule(entry, at);
        }
        Ok(())
    }

    /// What scheduling keeps of `cert`. Its chain is parsed only when it
    /// is another certificate than `known` (the one tracked until now: the
    /// same serial and the same chain text): a check that found the same
    /// certificate costs no parsing.
    pub(super) fn current(
        &self,
        ca: usize,
        cert: &StoredCertificate,
        known: Option<&Current>,
    ) -> Current {
        let due = self
            .inner
            .through
            .issuer(ca)
            .renewal_due_at(cert)
            .min(cert.not_after);
        let to_expiry = cert.not_after.duration_since(due).unwrap_or_default();
        let chain_hash = hash_of(&cert.chain_pem);
        let (chain, crl) = match known
            .filter(|k| k.ca == ca && k.serial == cert.serial && k.chain_hash == chain_hash)
        {
            Some(k) => (k.chain.clone(), k.crl.clone()),
            None => Self::chain_of(ca, cert),
        };
        Current {
            ca,
            serial: cert.serial.clone(),
            not_before: cert.not_before,
            not_after: cert.not_after,
            revoked: cert.revoked.is_some(),
            requested_early: cert.revoked.is_none()
                && cert.renewal.as_ref().is_some_and(|r| r.requested_early),
            chain,
            chain_hash,
            urgent_at: due + to_expiry / 2,
            crl,
        }
    }

    /// The chain's issuer and root names, and where its revocation is
    /// published (not yet interned).
    fn chain_of(ca: usize, cert: &StoredCertificate) -> (ChainNames, Option<Arc<CrlSource>>) {
        let parsed = crate::CertificateChain::parse_pem("", &cert.chain_pem).ok();
        (
            parsed
                .as_ref()
                .map(|c| (c.leaf_issuer_common_name(), c.top_issuer_common_name()))
                .unwrap_or_default(),
            parsed.as_ref().and_then(|c| {
                let url = crate::crl::distribution_points(c.leaf_der())
                    .into_iter()
                    .next()?;
                let issuer = c.certificates_der().get(1)?.clone();
                Some(Arc::new(CrlSource { ca, url, issuer }))
            }),
        )
    }
}

/// A hash of a chain's text, to tell the same certificate from another.
fn hash_of(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}
