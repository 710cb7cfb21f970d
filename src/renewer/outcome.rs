//! What an attempt's outcome does to its certificate's schedule: a success
//! schedules the next check by the new certificate; a failure backs off by
//! its class (a rate limit until the CA's time, CAA on its schedule, an
//! outage as a pause for every start) and is kept in the store, so a
//! restart resumes the backoff.

use super::*;
use crate::wait::{MAX_PAUSE, Wait};

impl<S: Store> Renewer<S> {
    /// Records an attempt's outcome and schedules the next one.
    pub(super) async fn finish(&self, attempt: Attempt) {
        let now = self.now();
        let id = attempt.id;
        let removed = {
            let mut state = self.state();
            if let Some(domains) = &attempt.spends {
                // It spent from the ledger (or gave back): read it again.
                state.levels = None;
                state.budget_in_flight = state.budget_in_flight.saturating_sub(1);
                for d in domains {
                    if let Some(n) = state.domains_in_flight.get_mut(d) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            state.domains_in_flight.remove(d);
                        }
                    }
                }
            }
            let removed = match state.tracked.get_mut(&id) {
                Some(mut t) => {
                    t.running = false;
                    t.removed
                }
                None => return,
            };
            if removed {
                state.tracked.remove(&id);
            }
            removed
        };
        if removed {
            return;
        }
        let persist = match attempt.result {
            Ok(ensured) => self.succeeded(&id, attempt.ca, ensured, attempt.took, now),
            Err(e) => self.failed(&id, &e, now),
        };
        if let Some(record) = persist
            && let Err(e) = self
                .inner
                .through
                .home()
                .store()
                .save_managed(&self.directory(), &record)
                .await
        {
            tracing::warn!(target: "sturdy_acme::renewer", %id, error = %e, "could not record the certificate's failures in the store");
        }
    }

    /// Returns the record to persist, if its failures changed.
    pub(super) fn succeeded(
        &self,
        id: &str,
        ca: usize,
        ensured: Ensured,
        took: Duration,
        now: SystemTime,
    ) -> Option<crate::store::ManagedRecord> {
        let cert = &ensured.certificate;
        // Never sooner than a minute: a CA answering "check again now"
        // forever is not a reason to spin.
        let next = self
            .inner
            .through
            .issuer(ca)
            .next_check_at(cert)
            .max(now + Duration::from_secs(60));
        // Parsed (when it is another certificate) outside the lock.
        let known = self.state().tracked.get(id)?.current.clone();
        let mut current = self.current(ca, cert, known.as_ref());
        let mut state = self.state();
        current.crl = current.crl.take().map(|source| state.intern_crl(source));
        let mut t = state.tracked.get_mut(id)?;
        let renewal = t.current.as_ref().is_some_and(|c| c.serial != cert.serial);
        let fresh = ensured.source != CertificateSource::Stored;
        // The CA asked for a replacement early, news to this renewer: seen
        // on the certificate kept (its window moved), or on the one just
        // renewed (moved and replaced in the same attempt).
        let known_early = t.current.as_ref().is_some_and(|c| c.requested_early);
        let asked: Option<(String, crate::store::RenewalSchedule)> = if renewal {
            ensured
                .requested_by_ca
                .clone()
                .filter(|_| !known_early)
                .zip(t.current.as_ref().map(|c| c.serial.clone()))
                .map(|(schedule, serial)| (serial, schedule))
        } else if current.requested_early && !known_early {
            cert.renewal.clone().map(|r| (cert.serial.clone(), r))
        } else {
            None
        };
        let requested_by_ca = renewal && (known_early || ensured.requested_by_ca.is_some());
        // Renewed under another chain (a new intermediate, another root).
        let chain_changed = t
            .current
            .as_ref()
            .filter(|c| renewal && c.chain != current.chain && c.chain != (None, None))
            .map(|c| (c.chain.clone(), current.chain.clone()));
        t.current = Some(current.clone());
        t.state = ManagedState::Valid;
        let persist = (t.stored.failures != Failures::default()).then(|| {
            t.stored.failures = Failures::default();
            t.stored.to_record()
        });
        let entry = entry(id, &t.stored, Some(&current), next);
        drop(t);
        state.queue.schedule(entry, next);
        drop(state);
        if let Some((serial, schedule)) = asked {
            metrics::counter!(metric::REPLACEMENTS_REQUESTED).increment(1);
            self.emit(RenewerEvent::ReplacementRequested {
                id: id.to_owned(),
                serial,
                window_start: schedule.window_start.unwrap_or(now),
                window_end: schedule.window_end.unwrap_or(now),
                explanation_url: schedule.explanation_url,
            });
        }
        if requested_by_ca {
            metrics::counter!(metric::REPLACEMENTS_DONE).increment(1);
        }
        if let Some(((from_issuer, from_root), (to_issuer, to_root))) = chain_changed {
            tracing::info!(target: "sturdy_acme::renewer", %id, ?from_issuer, ?from_root, ?to_issuer, ?to_root, "renewed under another chain");
            metrics::counter!(metric::CHAIN_CHANGED).increment(1);
            self.emit(RenewerEvent::ChainChanged {
                id: id.to_owned(),
                from_issuer,
                from_root,
                to_issuer,
                to_root,
            });
        }
        if fresh {
            let kind = if renewal { "renewal" } else { "new" };
            let ca_label = self
                .inner
                .through
                .ca_name(ca)
                .unwrap_or_default()
                .to_owned();
            metrics::counter!(metric::ISSUED, "kind" => kind, "ca" => ca_label).increment(1);
            metrics::histogram!(metric::ORDER_SECONDS, "kind" => kind).record(took.as_secs_f64());
            self.emit(RenewerEvent::Issued {
                id: id.to_owned(),
                serial: cert.serial.clone(),
                renewal,
                ca: self.inner.through.ca_name(ca).map(str::to_owned),
                requested_by_ca,
                not_after: cert.not_after,
                took,
            });
        } else {
            self.emit(RenewerEvent::Checked {
                id: id.to_owned(),
                next,
            });
        }
        persist
    }

    /// Schedules the next attempt after `error` by its class; returns the
    /// record to persist.
    pub(super) fn failed(
        &self,
        id: &str,
        error: &Error,
        now: SystemTime,
    ) -> Option<crate::store::ManagedRecord> {
        let policy = &self.inner.policy;
        let class = error.class();
        metrics::counter!(metric::ERRORS, "class" => class.name()).increment(1);
        let mut state = self.state();
        let t = state.tracked.get(id)?;
        let names = t.stored.spec.names().to_vec();
        let current = t.current.clone();

        // Held by a rate limit: counted locally, nothing was sent (one
        // CA's ledger, or every CA of a set passed over for limits). Every
        // certificate spending the same bucket of one CA waits with it.
        let held = match error {
            Error::RateLimitedLocally {
                retry_at,
                limit,
                scope,
                ..
            } => Some((*retry_at, limit.clone(), Block::of(scope, id))),
            _ => set_held_by_limits(error).map(|(until, limit)| (until, limit, None)),
        };
        if let Some((until, limit, block)) = held {
            let until = until.max(now + Duration::from_secs(1));
            if let Some(block) = block {
                state.queue.block(block, until);
            }
            let mut t = state.tracked.get_mut(id)?;
            t.state = ManagedState::WaitingForLimit;
            let entry = entry(id, &t.stored, current.as_ref(), until);
            drop(t);
            state.queue.schedule(entry, until);
            drop(state);
            metrics::counter!(metric::DEFERRED).increment(1);
            self.emit(RenewerEvent::Deferred {
                id: id.to_owned(),
                limit,
                until,
            });
            return None;
        }
        // Another node is doing it.
        if matches!(error, Error::Store(StoreError::LeaseHeld { .. })) {
            let at = now + policy.elsewhere_retry;
            let mut t = state.tracked.get_mut(id)?;
            t.state = ManagedState::Elsewhere;
            let entry = entry(id, &t.stored, current.as_ref(), at);
            drop(t);
            state.queue.schedule(entry, at);
            drop(state);
            self.emit(RenewerEvent::Elsewhere { id: id.to_owned() });
            return None;
        }
        // The CA is down: nothing starts while its pause lasts (the
        // client's waits hold it; `pick` asks them). This certificate is
        // tried again when it ends.
        let wait = Wait::of(error, now);
        if let Some(w) = wait.as_ref().filter(|w| w.is_outage()) {
            let until = now + w.delay.clamp(Duration::from_secs(1), MAX_PAUSE);
            let mut t = state.tracked.get_mut(id)?;
            t.state = ManagedState::BackingOff;
            let entry = entry(id, &t.stored, current.as_ref(), until);
            drop(t);
            state.queue.schedule(entry, until);
            drop(state);
            self.emit(RenewerEvent::Paused {
                until,
                error: error.to_string(),
            });
            return None;
        }
        let unit = self.inner.rng.next_f64();
        let mut t = state.tracked.get_mut(id)?;
        let retry = t.stored.failures.consecutive;
        let (delay, backoff_names): (Duration, Vec<String>) = match &class {
            ErrorClass::RateLimited { .. } => {
                // The CA's count and ours disagreed.
                let delay = wait.map_or(policy.transient_max, |w| w.delay);
                metrics::counter!(metric::CA_RATE_LIMITED).increment(1);
                (delay.max(Duration::from_secs(1)), Vec::new())
            }
            ErrorClass::Caa { names: caa, .. } => (
                backoff_delay(policy.caa_base, policy.caa_max, retry, unit),
                if caa.is_empty() {
                    names.clone()
                } else {
                    caa.clone()
                },
            ),
            ErrorClass::Validation { problems } => (
                backoff_delay(policy.validation_base, policy.validation_max, retry, unit),
                if problems.is_empty() {
                    names.clone()
                } else {
                    problems.iter().map(|(i, _)| i.value.clone()).collect()
                },
            ),
            ErrorClass::Permanent | ErrorClass::InvalidInput | ErrorClass::Crypto => {
                (policy.permanent_retry, Vec::new())
            }
            _ => (
                backoff_delay(policy.transient_base, policy.transient_max, retry, unit),
                Vec::new(),
            ),
        };
        let until = now + delay;
        t.stored.failures.consecutive = retry.saturating_add(1);
        t.stored.failures.retry_at_ms = to_ms(until);
        t.stored.failures.last_class = Some(class.name().to_owned());
        t.stored.failures.last_error = Some(error.to_string());
        t.state = ManagedState::BackingOff;
        let consecutive = t.stored.failures.consecutive;
        let record = t.stored.to_record();
        let entry = entry(id, &t.stored, current.as_ref(), until);
        drop(t);
        state.queue.schedule(entry, until);
        if !backoff_names.is_empty() {
            state.queue.back_off(&backoff_names, until);
        }
        if let ErrorClass::RateLimited { scope, .. } = &class {
            if let Some(block) = Block::of(scope, id) {
                state.queue.block(block, until);
            }
            drop(state);
            self.emit(RenewerEvent::RateLimitedByCa {
                id: id.to_owned(),
                until,
            });
        } else {
            drop(state);
        }
        tracing::warn!(target: "sturdy_acme::renewer", %id, class = class.name(), consecutive, retry_in_s = delay.as_secs(), error = %error, "attempt failed");
        self.emit(RenewerEvent::Failed {
            id: id.to_owned(),
            class: class.name(),
            error: error.to_string(),
            consecutive,
            retry_at: until,
        });
        Some(record)
    }
}

/// When a CA set passed over every CA for rate limits (and for reasons
/// that do not change by waiting, such as the allow-list or CAA, none
/// down or failing): when the first limit refills, and the limits.
fn set_held_by_limits(error: &Error) -> Option<(SystemTime, String)> {
    use crate::store::SkipReason;
    let Error::NoEligibleCa { skipped, .. } = error else {
        return None;
    };
    let mut earliest: Option<i64> = None;
    let mut limits = Vec::new();
    for s in skipped {
        match &s.reason {
            SkipReason::RateLimited { limit, until } => {
                earliest = Some(earliest.map_or(*until, |e| e.min(*until)));
                limits.push(format!("{}: {limit}", s.ca));
            }
            SkipReason::NotAllowed | SkipReason::CaaForbidden { .. } => {}
            _ => return None,
        }
    }
    earliest.map(|at| (crate::protocol::timestamp::from_unix(at), limits.join("; ")))
}
