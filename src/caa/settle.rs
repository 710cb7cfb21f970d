//! Asking again on the CAA schedule: a check whose nameservers did not
//! answer (or disagreed) is repeated on the checker's [`Backoff`] until
//! every name has a verdict that will not change soon, for one CA or for
//! several at once. A lookup that fails for good, or that stays unanswered
//! past the schedule, is an [`Error::CaaPreflight`] with
//! [`CaaCause::LookupFailed`] naming the nameserver; a forbidding verdict
//! is the caller's to judge (one CA's refusal, not the lookup's), and when
//! every CA asked is forbidden the check ends at once.

use std::fmt::Display;

use super::{CaaChecker, CaaContext, CaaReport};
use crate::error::{CaaCause, Error, Result};

impl CaaChecker {
    /// [`CaaChecker::check_each`] until no verdict is transient, waiting
    /// on the checker's retry schedule in between; `set` names the set in
    /// the logs. One list of reports per context, as `check_each`.
    pub(crate) async fn check_settled(
        &self,
        names: &[String],
        contexts: &[CaaContext],
        set: &(dyn Display + Sync),
    ) -> Result<Vec<Vec<CaaReport>>> {
        let backoff = *self.retry_backoff();
        let started = std::time::Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let each = self.check_each(names, contexts).await;
            // A lookup's failure is the same for every CA: the first
            // context's reports tell.
            let first = each.first().map(Vec::as_slice).unwrap_or_default();
            for report in first {
                tracing::info!(set = %set, name = %report.name, verdict = %report.summary(), "CAA pre-flight");
            }
            let unanswered: Vec<&CaaReport> = first
                .iter()
                .filter(|r| {
                    r.verdict.is_transient()
                        || matches!(r.verdict, super::CaaVerdict::Failed { .. })
                })
                .collect();
            // Settled, or settled enough: a record forbids every CA asked
            // (asking again cannot make any of them allowed).
            let all_forbidden = each.iter().all(|reports| {
                reports
                    .iter()
                    .any(|r| matches!(r.verdict, super::CaaVerdict::Forbidden { .. }))
            });
            if unanswered.is_empty() || all_forbidden {
                return Ok(each);
            }
            let error = Error::CaaPreflight {
                names: unanswered.iter().map(|r| r.name.clone()).collect(),
                cause: CaaCause::LookupFailed,
                summary: unanswered
                    .iter()
                    .map(|r| r.summary())
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            // A lookup asking again soon will not fix.
            if unanswered.iter().any(|r| !r.verdict.is_transient()) {
                return Err(error);
            }
            let delay = backoff.nominal_delay(attempt - 1);
            if attempt >= backoff.max_attempts()
                || started.elapsed().saturating_add(delay) > backoff.budget()
            {
                return Err(if attempt > 1 {
                    Error::GaveUp {
                        attempts: attempt,
                        elapsed: started.elapsed(),
                        source: Box::new(error),
                    }
                } else {
                    error
                });
            }
            tracing::warn!(set = %set, error = %error, retry_in = ?delay, "CAA pre-flight: a nameserver did not answer; no order until it does");
            tokio::time::sleep(delay).await;
        }
    }
}
