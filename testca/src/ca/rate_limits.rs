//! Let's Encrypt's rate limits as the CA applies them: the bucket keys,
//! the checks at new-order (v2) or new-cert (v1), and what issuance and a
//! failed validation spend.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use super::state::State;
use crate::jws::Rejection;
use crate::limits::{Limit, RateLimits, registered_domain};
use sturdy_acme::Identifier;
use sturdy_acme::ProblemType;

/// A 429 `rateLimited` as Boulder words it, "retry after" the UTC time.
pub(super) fn rate_limited(detail: String, wait: Duration) -> Rejection {
    let when = time::Duration::try_from(wait)
        .ok()
        .and_then(|wait| super::now_utc().checked_add(wait))
        .and_then(|retry_at| {
            retry_at
                .format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
                ))
                .ok()
        })
        .unwrap_or_default();
    Rejection::new(
        ProblemType::RateLimited,
        429,
        format!("{detail}, retry after {when}: see https://letsencrypt.org/docs/rate-limits/"),
    )
}

/// The key of an exact identifier set (the duplicate-certificate limit).
pub(super) fn set_key(ids: &[Identifier]) -> String {
    ids.iter()
        .map(|i| i.value.clone())
        .collect::<Vec<_>>()
        .join(",")
}

/// The registered domains of `ids`, each once.
fn domains(ids: &[Identifier]) -> HashSet<String> {
    ids.iter().map(|i| registered_domain(&i.value)).collect()
}

/// The bucket of failed validations for one account and name.
fn failed_authz_key(acct: usize, value: &str) -> String {
    format!("authzfail:{acct}:{value}")
}

impl State {
    /// Checks the new-order limits (spending the per-account one): the
    /// worst one exceeded, with how long to wait.
    pub(super) fn check_order_limits(
        &mut self,
        acct: usize,
        ids: &[Identifier],
        limits: &RateLimits,
        now: Instant,
        exemption: super::records::Exemption,
    ) -> Result<(), (Rejection, Duration)> {
        use super::records::Exemption;
        if exemption == Exemption::Ari {
            return Ok(());
        }
        // A renewal of the exact set is exempt from these two (Boulder).
        let renewal = exemption == Exemption::ExactSetRenewal;
        let none = RateLimits::none();
        let limits = &RateLimits {
            new_orders_per_account: if renewal {
                none.new_orders_per_account
            } else {
                limits.new_orders_per_account
            },
            certificates_per_domain: if renewal {
                none.certificates_per_domain
            } else {
                limits.certificates_per_domain
            },
            ..limits.clone()
        };
        let mut worst: Option<(String, Duration)> = None;
        let mut consider = |result: Result<(), Duration>, detail: String| {
            if let Err(wait) = result
                && worst.as_ref().is_none_or(|(_, w)| wait > *w)
            {
                worst = Some((detail, wait));
            }
        };
        if let Some(l) = &limits.new_orders_per_account {
            consider(
                self.buckets.check(&format!("orders:{acct}"), l, now),
                format!(
                    "too many new orders ({}) from this account in the last {:?}",
                    l.burst, l.period
                ),
            );
        }
        if let Some(l) = &limits.duplicate_certificates {
            consider(
                self.buckets
                    .check(&format!("fqdnset:{}", set_key(ids)), l, now),
                format!(
                    "too many certificates ({}) already issued for this exact set of identifiers in the last {:?}",
                    l.burst, l.period
                ),
            );
        }
        if let Some(l) = &limits.certificates_per_domain {
            for d in domains(ids) {
                consider(
                    self.buckets.check(&format!("domain:{d}"), l, now),
                    format!(
                        "too many certificates ({}) already issued for {d:?} in the last {:?}",
                        l.burst, l.period
                    ),
                );
            }
        }
        if let Some(l) = &limits.failed_authorizations {
            for id in ids {
                consider(
                    self.buckets
                        .check(&failed_authz_key(acct, &id.value), l, now),
                    format!(
                        "too many failed authorizations ({}) for {:?} in the last {:?}",
                        l.burst, id.value, l.period
                    ),
                );
            }
        }
        if let Some((detail, wait)) = worst {
            return Err((rate_limited(detail, wait), wait));
        }
        if let Some(l) = &limits.new_orders_per_account {
            self.buckets.spend(&format!("orders:{acct}"), l, now);
        }
        Ok(())
    }

    /// Boulder's certificate limits, checked (not spent) at v1's new-cert.
    pub(super) fn check_certificate_limits(
        &mut self,
        ids: &[Identifier],
        limits: &RateLimits,
    ) -> Result<(), Rejection> {
        let now = Instant::now();
        let limited = |detail: String| {
            Rejection::new(
                ProblemType::RateLimited,
                429,
                format!("Error creating new cert :: {detail}"),
            )
        };
        if let Some(l) = &limits.certificates_per_domain {
            let mut domains: Vec<String> = domains(ids).into_iter().collect();
            domains.sort();
            let over: Vec<String> = domains
                .into_iter()
                .filter(|d| self.buckets.check(&format!("domain:{d}"), l, now).is_err())
                .collect();
            if !over.is_empty() {
                return Err(limited(format!(
                    "too many certificates already issued for: {}",
                    over.join(", ")
                )));
            }
        }
        if let Some(l) = &limits.duplicate_certificates {
            let set = set_key(ids);
            if self
                .buckets
                .check(&format!("fqdnset:{set}"), l, now)
                .is_err()
            {
                return Err(limited(format!(
                    "too many certificates already issued for exact set of domains: {set}"
                )));
            }
        }
        Ok(())
    }

    /// What an issued certificate spends: the duplicate-certificate and
    /// per-domain buckets.
    pub(super) fn spend_certificate_limits(&mut self, ids: &[Identifier], limits: &RateLimits) {
        let now = Instant::now();
        if let Some(l) = &limits.duplicate_certificates {
            self.buckets
                .spend(&format!("fqdnset:{}", set_key(ids)), l, now);
        }
        if let Some(l) = &limits.certificates_per_domain {
            for d in domains(ids) {
                self.buckets.spend(&format!("domain:{d}"), l, now);
            }
        }
    }

    /// What an exact-set renewal spends: the duplicate-certificate bucket.
    pub(super) fn spend_duplicate_limit(&mut self, ids: &[Identifier], limits: &RateLimits) {
        if let Some(l) = &limits.duplicate_certificates {
            self.buckets
                .spend(&format!("fqdnset:{}", set_key(ids)), l, Instant::now());
        }
    }

    /// Whether account `acct` failed too many validations of `value` lately.
    pub(super) fn failed_authorizations_exceeded(
        &mut self,
        acct: usize,
        value: &str,
        limit: &Limit,
    ) -> bool {
        self.buckets
            .check(&failed_authz_key(acct, value), limit, Instant::now())
            .is_err()
    }

    /// A failed validation of `value` for account `acct`.
    pub(super) fn spend_failed_authorization(&mut self, acct: usize, value: &str, limit: &Limit) {
        self.buckets
            .spend(&failed_authz_key(acct, value), limit, Instant::now());
    }
}
