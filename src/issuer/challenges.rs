//! The challenges of an order: each authorization's challenge picked among
//! the solvers (and the methods CAA leaves), every answer presented before
//! any is answered, cleaned up after, failed validations counted.

use super::run::DriveError;
use super::*;

impl<S: Store> Issuer<S> {
    pub(super) async fn answer_challenges(
        &self,
        key: &IdentifierSetKey,
        order: &mut Order,
        journal: &mut Journal,
        options: &EnsureOptions,
    ) -> std::result::Result<(), DriveError> {
        let account = order.account().clone();
        // An authorization already invalid before this attempt answered
        // anything failed an earlier attempt (a CA may leave such an order
        // `pending`, as acme2certifier does): the order is dead, so it is
        // superseded as an invalid one is, its failures counted once.
        let authorizations = order.authorizations().await?;
        if authorizations
            .iter()
            .any(|a| a.status() == AuthorizationStatus::Invalid)
        {
            tracing::warn!(set = %key, order = %order.url(), "an authorization of the order is invalid: the order is dead although the CA says pending");
            self.count_unseen_failures(key, order, journal).await;
            return Err(DriveError::Restart);
        }
        let mut presented: Vec<(Arc<dyn Solver>, ChallengeAnswer)> = Vec::new();
        let result: Result<()> = async {
            // Every answer is presented before any challenge is answered:
            // presenting can take long (a dns-01 record waits for every
            // nameserver), so the presentations run side by side, and the
            // CA validates none of them half-done.
            let mut to_answer = Vec::new();
            for authz in authorizations {
                if authz.status() != AuthorizationStatus::Pending {
                    continue;
                }
                let (solver, challenge) = self.pick(&authz, options, journal)?;
                let token = challenge.token()?.to_owned();
                let key_authorization = challenge.key_authorization()?;
                let answer = ChallengeAnswer {
                    identifier: challenge.identifier().clone(),
                    kind: challenge.kind().clone(),
                    dns_name: challenge.dns01_record_name(),
                    dns_value: crate::crypto::challenge::dns01_txt_value(&key_authorization),
                    token,
                    key_authorization,
                };
                to_answer.push((solver, challenge, answer));
            }
            let outcomes = present_all(&to_answer).await;
            let mut first_error = None;
            for ((solver, _, answer), outcome) in to_answer.iter().zip(outcomes) {
                match outcome {
                    Ok(()) => presented.push((Arc::clone(solver), answer.clone())),
                    Err(e) => {
                        // Presented or not, it is cleaned up below.
                        presented.push((Arc::clone(solver), answer.clone()));
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
            for (_, challenge, _) in &mut to_answer {
                challenge.respond().await?;
            }
            journal.step = JournalStep::ChallengesAnswered;
            self.save_journal(key, journal).await?;
            self.observe(key, IssuerStep::ChallengesAnswered);
            order.wait_ready().await?;
            Ok(())
        }
        .await;
        for (solver, answer) in &presented {
            if let Err(e) = solver.cleanup(answer).await {
                tracing::warn!(identifier = %answer.identifier, error = %e, "challenge cleanup failed");
            }
        }
        if let Err(e) = &result
            && let ErrorClass::Validation { problems } = e.class()
        {
            let account_url = account.url().to_owned();
            let now = self.now();
            let mut ids = key.identifiers().to_vec();
            ids.extend(problems.iter().map(|(id, _)| id.clone()));
            self.spend_ledger(&account_url, &ids, |l| {
                for (id, _) in &problems {
                    l.spend_failed_authorization(&account_url, &id.value, now);
                }
            })
            .await?;
            // The order is invalid now (finalize was never sent for it):
            // this journal is done, if it is still ours; only once it is
            // gone does its reserved certificate go back (a refund while
            // the journal still says "reserved" would let it be finalized
            // uncounted).
            let refund = journal.certificate_reserved && journal.step < JournalStep::Finalizing;
            self.delete_journal(key).await?;
            if refund {
                let ids = key.identifiers().to_vec();
                let as_ = Exemption::from_name(journal.reserved_as.as_deref());
                self.spend_ledger(&account_url, &ids, |l| l.refund_certificate(&ids, now, as_))
                    .await?;
            }
        }
        result.map_err(DriveError::Failed)
    }

    /// The challenge types in the order they are tried: the options', else
    /// the solvers'.
    pub(super) fn preference(&self, options: &EnsureOptions) -> Vec<ChallengeType> {
        if options.certificate.challenge_types.is_empty() {
            self.inner
                .solvers
                .iter()
                .map(|s| s.challenge_type())
                .collect()
        } else {
            options.certificate.challenge_types.clone()
        }
    }

    /// The solver and challenge for `authz`: the first of the preferred
    /// types the CA offers and CAA leaves it (the journal's
    /// `caa_methods`).
    pub(super) fn pick(
        &self,
        authz: &crate::client::Authorization,
        options: &EnsureOptions,
        journal: &Journal,
    ) -> Result<(Arc<dyn Solver>, crate::client::Challenge)> {
        let caa = journal.caa_methods.get(&authz.identifier().value);
        let preference: Vec<ChallengeType> = self
            .preference(options)
            .into_iter()
            .filter(|kind| caa.is_none_or(|allowed| allowed.contains(&kind.to_string())))
            .collect();
        for kind in &preference {
            let solver = self
                .inner
                .solvers
                .iter()
                .find(|s| &s.challenge_type() == kind);
            if let (Some(solver), Some(challenge)) = (solver, authz.challenge(kind)) {
                return Ok((Arc::clone(solver), challenge));
            }
        }
        let offered: Vec<String> = authz
            .challenges()
            .iter()
            .map(|c| c.kind().to_string())
            .collect();
        Err(Error::Unsupported(format!(
            "no solver for the challenges the CA offers for {} ({})",
            authz.identifier(),
            offered.join(", ")
        )))
    }
}

/// Presents every answer: side by side, except that dns-01 answers at one
/// record name (a wildcard and its apex) go one after another (see
/// [`Solver::present`]). The outcomes, in `to_answer`'s order.
pub(super) async fn present_all(
    to_answer: &[(Arc<dyn Solver>, crate::client::Challenge, ChallengeAnswer)],
) -> Vec<Result<()>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_name: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, (_, _, answer)) in to_answer.iter().enumerate() {
        if answer.kind == ChallengeType::Dns01 {
            if let Some(&g) = by_name.get(answer.dns_name.as_str()) {
                groups[g].push(i);
                continue;
            }
            by_name.insert(answer.dns_name.as_str(), groups.len());
        }
        groups.push(vec![i]);
    }
    let done = futures_util::future::join_all(groups.into_iter().map(|group| async move {
        let mut outcomes = Vec::with_capacity(group.len());
        for i in group {
            let (solver, _, answer) = &to_answer[i];
            outcomes.push((i, solver.present(answer).await));
        }
        outcomes
    }))
    .await;
    let mut outcomes: Vec<(usize, Result<()>)> = done.into_iter().flatten().collect();
    outcomes.sort_by_key(|(i, _)| *i);
    outcomes.into_iter().map(|(_, outcome)| outcome).collect()
}
