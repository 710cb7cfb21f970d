//! Orders (v2): creation with their authorizations (reusing valid ones),
//! the status machine pending → ready → processing → valid (or invalid),
//! and finalization.
//!
//! Finalization follows Boulder (with `CAARechecksFailOrder`, boulder#8610):
//! the CSR is checked first (a refusal, e.g. `badCSR` or OCSP Must-Staple's
//! `unauthorized`, leaves the order `ready` for another CSR); a failed CAA
//! recheck then fails the whole order: it turns `invalid` with the `caa`
//! problem as its `error`. Answered at once (no `finalize_processing`), the
//! finalize request gets that problem (403); with `finalize_processing` the
//! request gets the order `processing`, which turns `invalid` when the delay
//! is over, as Boulder's asynchronous finalization does. With
//! [`caa_recheck_fails_order`](crate::TestCaBuilder::caa_recheck_fails_order)
//! off, the older Boulder: the refusal answers the finalize request and the
//! order stays `ready`.

use ring::rand::SecureRandom;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::authorizations::{challenge_kinds, fresh_challenges};
use super::issuance::check_csr_key;
use super::state::{OrderRec, State};
use super::{Config, now_utc};
use crate::jws::Rejection;
use crate::pki::{CsrInfo, Pki};
use sturdy_acme::{AuthorizationStatus, Identifier, OrderStatus};
use sturdy_acme::{Problem, ProblemType};

/// Why a finalization did not issue.
#[derive(Debug)]
pub(super) enum FinalizeRefusal {
    /// An error to answer as such.
    Rejected(Rejection),
    /// The CAA recheck failed: a 403 with this problem document.
    Caa(Box<Problem>),
}

impl From<Rejection> for FinalizeRefusal {
    fn from(r: Rejection) -> Self {
        Self::Rejected(r)
    }
}

/// Boulder's refusal of a CSR asking for OCSP Must-Staple (Let's Encrypt
/// refuses them since 2025-01-30), with the WFE's finalize prefix.
pub(super) const MUST_STAPLE_REFUSED: &str = "Error finalizing order :: OCSP must-staple extension is no longer available: see https://letsencrypt.org/2024/12/05/ending-ocsp";

/// How long a new order and its new authorizations live.
const ORDER_LIFETIME_DAYS: i64 = 7;

impl State {
    /// Moves an order along as its authorizations and issuance progress.
    pub(super) fn refresh_order(&mut self, id: usize) {
        let order = &self.orders[id];
        let status = match order.status {
            OrderStatus::Pending => {
                let statuses: Vec<AuthorizationStatus> = order
                    .authzs
                    .iter()
                    .map(|a| self.authzs[*a].status)
                    .collect();
                if statuses.iter().any(|s| {
                    !matches!(s, AuthorizationStatus::Pending | AuthorizationStatus::Valid)
                }) {
                    OrderStatus::Invalid
                } else if statuses.iter().all(|s| *s == AuthorizationStatus::Valid) {
                    OrderStatus::Ready
                } else {
                    OrderStatus::Pending
                }
            }
            OrderStatus::Processing if order.ready_at.is_none_or(|t| Instant::now() >= t) => {
                if order.failure.is_some() {
                    OrderStatus::Invalid
                } else {
                    OrderStatus::Valid
                }
            }
            other => other,
        };
        let order = &mut self.orders[id];
        if status == OrderStatus::Invalid && order.error.is_none() {
            order.error = order.failure.take().map(|p| *p);
        }
        if status == OrderStatus::Invalid && order.error.is_none() {
            let mut p = Problem::new(
                ProblemType::Unauthorized,
                "an authorization of this order failed",
            );
            p.status = Some(403);
            order.error = Some(p);
        }
        order.status = status;
    }

    /// Checks that order `id` exists and belongs to account `acct`.
    pub(super) fn owned_order(&self, id: usize, acct: usize) -> Result<(), Rejection> {
        match self.orders.get(id) {
            None => Err(Rejection::new(
                ProblemType::Malformed,
                404,
                "No order for ID",
            )),
            Some(o) if o.account != acct => {
                Err(Rejection::unauthorized("Account does not own this order"))
            }
            Some(_) => Ok(()),
        }
    }

    /// A pending or ready, unexpired order of `acct` for exactly `ids` and
    /// the same `profile` (Boulder hands it back instead of a new one, a
    /// replacement order too: `replaces` is the order's, not the request's).
    pub(super) fn reusable_order(
        &mut self,
        acct: usize,
        ids: &[Identifier],
        profile: Option<super::records::Profile>,
    ) -> Option<usize> {
        let utc = now_utc();
        // Only this account's orders for exactly these names (an index,
        // not a scan of every order the CA ever had).
        let candidates = self
            .orders_by_set
            .get(&(acct, ids.to_vec()))
            .cloned()
            .unwrap_or_default();
        for o in candidates {
            self.refresh_order(o);
            let order = &self.orders[o];
            if order.account == acct
                && order.identifiers == ids
                && matches!(order.status, OrderStatus::Pending | OrderStatus::Ready)
                && order.expires > utc
                && order.profile == profile
            {
                return Some(o);
            }
        }
        None
    }

    /// A new order of `acct` for `ids` (checked and normalized), with an
    /// authorization per identifier: a valid one of the account's when
    /// `reuse_valid_authorizations` is on, else a new pending one.
    pub(super) fn create_order(
        &mut self,
        acct: usize,
        ids: Vec<Identifier>,
        not_before: Option<OffsetDateTime>,
        not_after: Option<OffsetDateTime>,
        config: &Config,
        rng: &dyn SecureRandom,
    ) -> usize {
        let expires = now_utc() + time::Duration::days(ORDER_LIFETIME_DAYS);
        let mut authzs = Vec::new();
        for id in &ids {
            let wildcard = id.is_wildcard();
            let base = Identifier {
                kind: id.kind.clone(),
                value: id.base_name().to_owned(),
            };
            let reusable = if config.reuse_valid_authorizations {
                self.find_authz(acct, &base, wildcard, AuthorizationStatus::Valid, now_utc())
            } else {
                None
            };
            let authz = match reusable {
                Some(a) => a,
                None => {
                    let challenges = fresh_challenges(rng, challenge_kinds(id));
                    self.create_authz(acct, base, wildcard, expires, challenges)
                }
            };
            authzs.push(authz);
        }
        let id = self.orders.len();
        self.orders_by_set
            .entry((acct, ids.clone()))
            .or_default()
            .push(id);
        self.orders.push(OrderRec {
            account: acct,
            status: OrderStatus::Pending,
            identifiers: ids,
            authzs,
            not_before,
            not_after,
            expires,
            error: None,
            cert: None,
            ready_at: None,
            failure: None,
            replaces: None,
            exemption: Default::default(),
            profile: None,
        });
        self.refresh_order(id);
        id
    }

    /// Checks that order `id` can be finalized now (it is `ready`).
    pub(super) fn ready_for_finalization(&mut self, id: usize) -> Result<(), Rejection> {
        self.refresh_order(id);
        let status = self.orders[id].status;
        if status != OrderStatus::Ready {
            return Err(Rejection::new(
                ProblemType::OrderNotReady,
                403,
                format!(
                    "Order's status ({:?}) is not acceptable for finalization",
                    status.as_str()
                ),
            ));
        }
        Ok(())
    }

    /// Finalizes ready order `id` with `csr`: the CSR must not ask for
    /// OCSP Must-Staple and must name exactly the order's identifiers with
    /// an acceptable key that is no account's (else the order stays
    /// `ready`); CAA must allow it (`dns_caa`, the check through the CA's
    /// resolver, if it ran; else the configured policies), else the order
    /// turns `invalid`; then the certificate is issued and the order turns
    /// `valid`, or `processing` for `finalize_processing`.
    pub(super) fn finalize_order(
        &mut self,
        pki: &Pki,
        id: usize,
        csr: &CsrInfo,
        config: &Config,
        dns_caa: Option<Box<Problem>>,
    ) -> Result<(), FinalizeRefusal> {
        if csr.must_staple {
            // Boulder's `validateFinalizeRequest`: an UnauthorizedError
            // (403), wrapped by the WFE's "Error finalizing order".
            return Err(Rejection::unauthorized(MUST_STAPLE_REFUSED).into());
        }
        let bad_csr = |d: String| Rejection::new(ProblemType::BadCsr, 400, d);
        let ids = self.orders[id].identifiers.clone();
        if csr.identifiers != ids {
            return Err(bad_csr("CSR does not specify same identifiers as Order".into()).into());
        }
        check_csr_key(&csr.key).map_err(bad_csr)?;
        if self
            .accounts
            .iter()
            .any(|a| a.key.matches_spki(&csr.public_key_der))
        {
            return Err(bad_csr("CSR contains a public key for a known account".into()).into());
        }
        let now = Instant::now();
        if let Err(problem) = dns_caa.map_or_else(|| self.recheck_caa(&ids, config), Err) {
            if !config.caa_recheck_fails_order {
                // Boulder before `CAARechecksFailOrder`: the recheck runs
                // before processing; the order stays ready.
                return Err(FinalizeRefusal::Caa(problem));
            }
            let order = &mut self.orders[id];
            if config.finalize_processing.is_zero() {
                order.status = OrderStatus::Invalid;
                order.error = Some((*problem).clone());
                return Err(FinalizeRefusal::Caa(problem));
            }
            order.status = OrderStatus::Processing;
            order.ready_at = Some(now + config.finalize_processing);
            order.failure = Some(problem);
            return Ok(());
        }
        let acct = self.orders[id].account;
        let nb = self.orders[id]
            .not_before
            .unwrap_or_else(super::issuance::backdated_not_before);
        let na = self.orders[id].not_after;
        let cert_id = self.issue_certificate(pki, acct, Some(id), csr, nb, na, config)?;
        let order = &mut self.orders[id];
        order.cert = Some(cert_id);
        if config.finalize_processing.is_zero() {
            order.status = OrderStatus::Valid;
        } else {
            order.status = OrderStatus::Processing;
            order.ready_at = Some(now + config.finalize_processing);
        }
        Ok(())
    }
}
