//! `CaSet::ensure`: under the set's lease, what every CA holds; an order
//! that may have been finalized resolved where it is; the newest
//! certificate while it is good; else the CAA verdicts for every CA, the
//! choice, and failover without duplicates.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::failover::{self, Judged};
use super::health::Gate;
use super::{CaEnsured, CaSet, CaSetEvent};
use crate::error::{Error, Result};
use crate::issuer::within_set::{CurrentIs, InFlight, SetLease, WithinSet};
use crate::issuer::{CertificateSource, EnsureOptions, Ensured};
use crate::protocol::Identifier;
use crate::store::{CaChoice, IdentifierSetKey, SkipReason, SkippedCa, Store, StoredCertificate};

/// One CA's CAA verdict for the set: the validation methods it leaves
/// (`None`: no pre-flight), or why it forbids.
type CaaVerdictFor = std::result::Result<Option<BTreeMap<String, Vec<String>>>, String>;

/// How many times one `ensure` decides again after the store changed
/// under it.
const MAX_ROUNDS: usize = 3;

/// One decision's end.
enum Round {
    /// The certificate.
    Done(Box<CaEnsured>),
    /// What this CA holds changed meanwhile: decide again.
    Changed(String),
}

/// What a failure at one CA means for the set.
enum After {
    /// An order there may have been finalized: no failover.
    Blocked,
    /// Stop with the error.
    Stop,
    /// Pass to the next CA for this reason; whether it was an outage.
    Next(SkipReason, bool),
}

/// What one CA holds for the set.
struct Held {
    key: Option<IdentifierSetKey>,
    in_flight: InFlight,
    certificate: Option<StoredCertificate>,
}

/// `names` parsed as identifiers (a bad one is the error).
pub(super) fn parse_names<N: AsRef<str>>(names: &[N]) -> Result<Vec<Identifier>> {
    names
        .iter()
        .map(|n| Identifier::parse(n.as_ref()).map_err(Error::from))
        .collect()
}

/// Whether `a` is newer than `b` (issued later).
pub(super) fn newer(a: &StoredCertificate, b: &StoredCertificate) -> bool {
    (a.not_before, a.not_after) > (b.not_before, b.not_after)
}

impl<S: Store> CaSet<S> {
    /// Returns a valid certificate for `names` from one CA of the set: the
    /// newest one any CA holds while it is good, else the one an
    /// interrupted order gets, else a new one at the CA the choice names;
    /// see the [module docs](super). Never two CAs with finalized orders
    /// for one set because of a failover.
    pub async fn ensure<N: AsRef<str>>(
        &self,
        names: &[N],
        options: &EnsureOptions,
    ) -> Result<CaEnsured> {
        let ids = parse_names(names)?;
        if ids.is_empty() {
            return Err(Error::InvalidInput("ensure needs at least one name".into()));
        }
        let set = IdentifierSetKey::new(&ids);
        let names: Vec<String> = ids.iter().map(|i| i.value.clone()).collect();
        let label = set.to_string();
        let first = &self.inner.members[0].issuer;
        first
            .with_lease(
                format!("ca-set-{}", set.file_stem()),
                self.inner.lease_wait,
                |set_lease| self.ensure_held(&ids, &names, &label, options, set_lease),
            )
            .await
    }

    /// The decision under the set's lease. It starts again from what the
    /// store holds when giving up another CA's order finds that it changed
    /// meanwhile (another process finished it or gave it up): the choice
    /// is never made on a stale view.
    async fn ensure_held(
        &self,
        ids: &[Identifier],
        names: &[String],
        label: &str,
        options: &EnsureOptions,
        set_lease: Arc<SetLease>,
    ) -> Result<CaEnsured> {
        let mut changed = String::new();
        for _ in 0..MAX_ROUNDS {
            match self.decide(ids, names, label, options, &set_lease).await? {
                Round::Done(got) => return Ok(*got),
                Round::Changed(ca) => {
                    tracing::info!(set = %label, %ca, "what a CA holds for the set changed meanwhile; deciding again from the store");
                    changed = ca;
                }
            }
        }
        Err(Error::SetChanged {
            set: label.to_owned(),
            ca: changed,
        })
    }

    /// What every CA holds for the set.
    async fn holdings(&self, ids: &[Identifier]) -> Result<Vec<Held>> {
        let mut held = Vec::with_capacity(self.inner.members.len());
        for m in &self.inner.members {
            let key = m.issuer.known_key(ids).await?;
            let (in_flight, certificate) = match &key {
                Some(key) => (
                    m.issuer.in_flight(key).await?,
                    m.issuer.stored_for(key).await?,
                ),
                None => (InFlight::Nothing, None),
            };
            held.push(Held {
                key,
                in_flight,
                certificate,
            });
        }
        Ok(held)
    }

    async fn decide(
        &self,
        ids: &[Identifier],
        names: &[String],
        label: &str,
        options: &EnsureOptions,
        set_lease: &Arc<SetLease>,
    ) -> Result<Round> {
        let members = &self.inner.members;
        let mut held = self.holdings(ids).await?;
        let within = |choice: CaChoice, caa_methods| WithinSet {
            choice,
            caa_methods,
            set_lease: Arc::clone(set_lease),
        };
        let mut skipped: Vec<SkippedCa> = Vec::new();
        let mut passed = vec![false; members.len()];

        // An order that may have been finalized is resolved where it is,
        // before anything else; proven invalid there, it is given up and
        // the choice goes on without that CA.
        if let Some(i) = held
            .iter()
            .position(|h| h.in_flight == InFlight::MaybeFinalized)
        {
            let choice = CaChoice {
                ca: members[i].name.clone(),
                resumed: true,
                skipped: Vec::new(),
            };
            self.emit(CaSetEvent::Chosen {
                set: label.to_owned(),
                choice: choice.clone(),
            });
            let error = match self
                .issue_at(i, names, options, within(choice.clone(), None))
                .await
            {
                Ok(ensured) => {
                    return Ok(Round::Done(Box::new(self.done(i, ensured, Some(choice)))));
                }
                Err(e) => self.after_failure(i, ids, label, e).await,
            };
            if matches!(error, Error::FailoverBlocked { .. }) {
                return Err(error);
            }
            let now = members[i].issuer.client().clock().now();
            match failover::judge(&error, now, now) {
                Judged::Stop => return Err(error),
                Judged::Next { reason, .. } => {
                    if let Some(key) = &held[i].key {
                        members[i]
                            .issuer
                            .abandon_unfinalized(key, &within(choice, None))
                            .await?;
                    }
                    held[i].in_flight = InFlight::Nothing;
                    passed[i] = true;
                    skipped.push(SkippedCa {
                        ca: members[i].name.clone(),
                        reason,
                    });
                }
            }
        }

        // The newest certificate anywhere, while it is good.
        let current = held
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.certificate.as_ref().map(|c| (i, c)))
            .reduce(|a, b| if newer(b.1, a.1) { b } else { a })
            .map(|(i, c)| (i, c.clone()));
        let now = members[0].issuer.client().clock().now();
        let mut needed_by = now;
        if let Some((i, cert)) = &current {
            let member = &members[*i];
            let mapped = self.mapped(member, options);
            match member.issuer.current_is(cert, &mapped) {
                CurrentIs::Usable => {
                    return Ok(Round::Done(Box::new(self.stored(*i, cert.clone()))));
                }
                CurrentIs::Recheck => {
                    // Its CA's renewal information first (and a renewal
                    // there with `replaces` if the CA moved its window).
                    if member.health.is_down() || self.paused_too_long(*i).is_some() {
                        return Ok(Round::Done(Box::new(self.stored(*i, cert.clone()))));
                    }
                    let choice = CaChoice::preferred(member.name.clone());
                    return match self
                        .issue_at(*i, names, options, within(choice.clone(), None))
                        .await
                    {
                        Ok(ensured) => {
                            let choice =
                                (ensured.source != CertificateSource::Stored).then_some(choice);
                            Ok(Round::Done(Box::new(self.done(*i, ensured, choice))))
                        }
                        Err(e) => {
                            let e = self.after_failure(*i, ids, label, e).await;
                            if matches!(e, Error::FailoverBlocked { .. }) {
                                return Err(e);
                            }
                            tracing::warn!(set = %label, ca = %member.name, error = %e, "renewal information could not be checked; the certificate, not due, stays in use");
                            Ok(Round::Done(Box::new(self.stored(*i, cert.clone()))))
                        }
                    };
                }
                CurrentIs::Due => {
                    if cert.revoked.is_none() {
                        let lifetime = cert
                            .not_after
                            .duration_since(cert.not_before)
                            .unwrap_or_default();
                        needed_by = cert
                            .not_after
                            .checked_sub(lifetime.mul_f64(self.inner.needed_margin))
                            .unwrap_or(now)
                            .max(now);
                    }
                }
            }
        }

        // Who may issue: the allow-list, then CAA for every CA at once.
        let allowed = options.certificate().allowed_cas();
        let caa = self.caa_for_each(ids, options, label).await?;

        for (i, m) in members.iter().enumerate() {
            if passed[i] {
                continue;
            }
            let skip = |reason| SkippedCa {
                ca: m.name.clone(),
                reason,
            };
            if !allowed.is_empty() && !allowed.contains(&m.name) {
                skipped.push(skip(SkipReason::NotAllowed));
                continue;
            }
            let methods = match &caa[i] {
                Ok(methods) => methods.clone(),
                Err(summary) => {
                    skipped.push(skip(SkipReason::CaaForbidden {
                        summary: summary.clone(),
                    }));
                    continue;
                }
            };
            let mut gate = m.health.gate(self.inner.down_for);
            // Another issuance is trying the CA again: its outcome decides
            // (bounded), rather than sending this one elsewhere.
            let waited_until = tokio::time::Instant::now() + self.inner.max_pause;
            while let Gate::Probing(_) = gate {
                let left = waited_until.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                m.health.probe_settled(left).await;
                gate = m.health.gate(self.inner.down_for);
            }
            let probe = match gate {
                Gate::Down(error) | Gate::Probing(error) => {
                    skipped.push(skip(SkipReason::Down { error }));
                    continue;
                }
                Gate::Probe => true,
                Gate::Open => false,
            };
            if let Some(left) = self.paused_too_long(i) {
                if probe {
                    m.health.probe_ended();
                }
                skipped.push(skip(SkipReason::Paused {
                    seconds: left.as_secs(),
                }));
                continue;
            }
            // Orders never finalized at the other CAs are given up first:
            // nobody finalizes them later.
            for (j, h) in held.iter_mut().enumerate() {
                if j == i || !matches!(h.in_flight, InFlight::Unfinalized(_)) {
                    continue;
                }
                let Some(key) = &h.key else { continue };
                let choice = CaChoice::preferred(members[j].name.clone());
                let found = members[j]
                    .issuer
                    .abandon_unfinalized(key, &within(choice, None))
                    .await;
                let found = match found {
                    Ok(found) => found,
                    Err(e) => {
                        if probe {
                            m.health.probe_ended();
                        }
                        return Err(e);
                    }
                };
                if probe && !matches!(found, InFlight::Unfinalized(_)) {
                    m.health.probe_ended();
                }
                match found {
                    InFlight::Unfinalized(_) => self.emit(CaSetEvent::Abandoned {
                        set: label.to_owned(),
                        ca: members[j].name.clone(),
                    }),
                    // Finished, given up or finalized by another process
                    // meanwhile: decide again from the store.
                    InFlight::Nothing | InFlight::MaybeFinalized => {
                        return Ok(Round::Changed(members[j].name.clone()));
                    }
                }
                h.in_flight = InFlight::Nothing;
            }
            // (Two CAs holding orders that may be finalized predate the set:
            // the first was resolved above; nothing goes anywhere else
            // while another stays unresolved.)
            if let Some(j) = held
                .iter()
                .enumerate()
                .position(|(j, h)| j != i && h.in_flight == InFlight::MaybeFinalized)
            {
                if probe {
                    m.health.probe_ended();
                }
                return Ok(Round::Changed(members[j].name.clone()));
            }
            let choice = CaChoice {
                ca: m.name.clone(),
                resumed: matches!(held[i].in_flight, InFlight::Unfinalized(_)),
                skipped: skipped.clone(),
            };
            tracing::info!(set = %label, choice = %choice, "CA chosen");
            self.emit(CaSetEvent::Chosen {
                set: label.to_owned(),
                choice: choice.clone(),
            });
            let result = self
                .issue_at(i, names, options, within(choice.clone(), methods))
                .await;
            let error = match result {
                Ok(ensured) => {
                    return Ok(Round::Done(Box::new(self.done(i, ensured, Some(choice)))));
                }
                Err(e) => e,
            };
            // Whatever happens next, the probe (if this was one) reports.
            let outcome = self.next_after(i, ids, label, &error, needed_by).await;
            if probe && !matches!(outcome, Ok(After::Next(_, true))) {
                m.health.probe_ended();
            }
            match outcome? {
                After::Blocked => return Err(self.blocked(i, label, error)),
                After::Stop => return Err(error),
                After::Next(reason, outage) => {
                    if outage {
                        self.mark_down(i, &error);
                    }
                    if let Some(key) = &m.issuer.known_key(ids).await? {
                        match m
                            .issuer
                            .abandon_unfinalized(key, &within(choice, None))
                            .await?
                        {
                            InFlight::MaybeFinalized => {
                                return Err(self.blocked(i, label, error));
                            }
                            InFlight::Unfinalized(_) => self.emit(CaSetEvent::Abandoned {
                                set: label.to_owned(),
                                ca: m.name.clone(),
                            }),
                            InFlight::Nothing => {}
                        }
                    }
                    held[i].in_flight = InFlight::Nothing;
                    skipped.push(skip(reason));
                }
            }
        }
        Err(Error::NoEligibleCa {
            set: label.to_owned(),
            skipped,
        })
    }

    /// After CA `i` failed an issuance with `error`: blocked (an order
    /// there may have been finalized: [`Error::FailoverBlocked`] with the
    /// error as its source, its class kept), stop with the error, or pass
    /// to the next CA for a reason (and whether it was an outage).
    async fn next_after(
        &self,
        i: usize,
        ids: &[Identifier],
        label: &str,
        error: &Error,
        needed_by: std::time::SystemTime,
    ) -> Result<After> {
        let m = &self.inner.members[i];
        if let Some(key) = &m.issuer.known_key(ids).await?
            && m.issuer.in_flight(key).await? == InFlight::MaybeFinalized
        {
            let now = m.issuer.client().clock().now();
            if matches!(
                failover::judge(error, now, now),
                Judged::Next { outage: true, .. }
            ) {
                self.mark_down(i, error);
            }
            return Ok(After::Blocked);
        }
        Ok(
            match failover::judge(error, needed_by, m.issuer.client().clock().now()) {
                Judged::Stop => After::Stop,
                Judged::Next { reason, outage } => {
                    tracing::warn!(set = %label, ca = %m.name, error = %error, "passing to the next CA of the set");
                    After::Next(reason, outage)
                }
            },
        )
    }

    /// Each CA's CAA verdict for the set, from one lookup (all `Ok(None)`
    /// when the set has no pre-flight or the set has no DNS name).
    async fn caa_for_each(
        &self,
        ids: &[Identifier],
        options: &EnsureOptions,
        label: &str,
    ) -> Result<Vec<CaaVerdictFor>> {
        let members = &self.inner.members;
        let none = || vec![Ok(None); members.len()];
        let Some(checker) = &self.inner.caa else {
            return Ok(none());
        };
        let dns_names: Vec<String> = ids
            .iter()
            .filter(|i| i.kind == "dns")
            .map(|i| i.value.clone())
            .collect();
        if dns_names.is_empty() {
            return Ok(none());
        }
        let mut contexts = Vec::with_capacity(members.len());
        for m in members {
            contexts.push(
                m.issuer
                    .caa_context(m.caa_identities.as_deref(), &self.mapped(m, options))
                    .await,
            );
        }
        let label: &(dyn std::fmt::Display + Sync) = &label;
        let each = checker.check_settled(&dns_names, &contexts, label).await?;
        Ok(each
            .iter()
            .map(|reports| {
                crate::issuer::within_set::forbidden(reports)
                    .and_then(|()| crate::issuer::within_set::caa_methods(reports))
                    .map(Some)
                    .map_err(|e| match e {
                        Error::CaaPreflight { summary, .. } => summary,
                        other => other.to_string(),
                    })
            })
            .collect())
    }

    /// `options` as CA `m` is asked: the set's profile intents mapped to
    /// its profile names.
    pub(super) fn mapped(&self, m: &super::CaMember<S>, options: &EnsureOptions) -> EnsureOptions {
        let mut options = options.clone();
        let map =
            |p: Option<&str>| p.map(|p| m.profiles.get(p).cloned().unwrap_or_else(|| p.to_owned()));
        let certificate = options.certificate().clone();
        let profile = map(certificate.profile());
        let fallback = map(certificate.profile_fallback());
        options = options.with_certificate(
            certificate
                .with_profile(profile)
                .with_profile_fallback(fallback),
        );
        options
    }

    /// One issuance at CA `i`, within the set.
    async fn issue_at(
        &self,
        i: usize,
        names: &[String],
        options: &EnsureOptions,
        within: WithinSet,
    ) -> Result<Ensured> {
        let m = &self.inner.members[i];
        let mut options = self.mapped(m, options);
        options.within_set = Some(within);
        m.issuer.ensure(names, &options).await
    }

    /// How long CA `i`'s pause still runs, when longer than the set's
    /// bound.
    fn paused_too_long(&self, i: usize) -> Option<std::time::Duration> {
        self.inner.members[i]
            .issuer
            .client()
            .pause_left()
            .filter(|left| *left > self.inner.max_pause)
    }

    /// After CA `i` failed: an order there that may have been finalized
    /// blocks any failover (the error says so); else the error as it is.
    /// An outage marks the CA down either way.
    async fn after_failure(
        &self,
        i: usize,
        ids: &[Identifier],
        label: &str,
        error: Error,
    ) -> Error {
        let m = &self.inner.members[i];
        let now = m.issuer.client().clock().now();
        if matches!(
            failover::judge(&error, now, now),
            Judged::Next { outage: true, .. }
        ) {
            self.mark_down(i, &error);
        }
        let committed = match m.issuer.known_key(ids).await {
            Ok(Some(key)) => !matches!(
                m.issuer.in_flight(&key).await,
                Ok(InFlight::Nothing | InFlight::Unfinalized(_))
            ),
            Ok(None) => false,
            Err(_) => true,
        };
        if committed {
            self.blocked(i, label, error)
        } else {
            error
        }
    }

    /// [`Error::FailoverBlocked`] at CA `i`, reported.
    fn blocked(&self, i: usize, label: &str, source: Error) -> Error {
        let ca = self.inner.members[i].name.clone();
        tracing::warn!(set = %label, %ca, error = %source, "an order there may have been finalized: nothing is ordered at another CA until it is resolved");
        self.emit(CaSetEvent::FailoverBlocked {
            set: label.to_owned(),
            ca: ca.clone(),
        });
        Error::FailoverBlocked {
            set: label.to_owned(),
            ca,
            source: Box::new(source),
        }
    }

    fn mark_down(&self, i: usize, error: &Error) {
        let m = &self.inner.members[i];
        m.health.failed(error.to_string(), self.inner.down_for);
        tracing::warn!(ca = %m.name, error = %error, skipped_for = ?self.inner.down_for, "CA down: skipped by this set for a while");
        self.emit(CaSetEvent::Down {
            ca: m.name.clone(),
            error: error.to_string(),
            skipped_for: self.inner.down_for,
        });
    }

    /// CA `i` answered: up again if it was down.
    fn done(&self, i: usize, ensured: Ensured, choice: Option<CaChoice>) -> CaEnsured {
        let m = &self.inner.members[i];
        if m.health.succeeded() {
            tracing::info!(ca = %m.name, "CA answers again");
            self.emit(CaSetEvent::Up { ca: m.name.clone() });
        }
        CaEnsured {
            ca: m.name.clone(),
            ensured,
            choice,
        }
    }

    fn stored(&self, i: usize, certificate: StoredCertificate) -> CaEnsured {
        CaEnsured {
            ca: self.inner.members[i].name.clone(),
            ensured: Ensured {
                certificate,
                source: CertificateSource::Stored,
                replaces: None,
                requested_by_ca: None,
            },
            choice: None,
        }
    }
}
