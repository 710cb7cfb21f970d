//! What a renewer issues through: one CA's [`Issuer`], or a [`CaSet`]
//! that chooses the CA of each issuance. Each certificate is scheduled by
//! the issuer of the CA that holds it (its renewal information, its
//! lifetime rule, its revocation list); the renewer's own records live
//! under the first CA's directory.

use std::time::SystemTime;

use crate::ca_set::CaSet;
use crate::error::Result;
use crate::issuer::{EnsureOptions, Ensured, Issuer};
use crate::store::{Store, StoredCertificate};

/// One issuer, or a set of CAs.
pub(super) enum Through<S: Store> {
    One(Issuer<S>),
    Set(CaSet<S>),
}

impl<S: Store> Through<S> {
    /// The issuer whose clock, store and directory the renewer keeps its
    /// records with (a set's first CA).
    pub(super) fn home(&self) -> &Issuer<S> {
        match self {
            Self::One(issuer) => issuer,
            Self::Set(set) => set.members()[0].issuer(),
        }
    }

    /// The issuer of CA `ca` (an index into the set; 0 for one issuer).
    pub(super) fn issuer(&self, ca: usize) -> &Issuer<S> {
        match self {
            Self::One(issuer) => issuer,
            Self::Set(set) => set
                .members()
                .get(ca)
                .map_or_else(|| set.members()[0].issuer(), |m| m.issuer()),
        }
    }

    /// The name of CA `ca` in the set (`None` for one issuer).
    pub(super) fn ca_name(&self, ca: usize) -> Option<&str> {
        match self {
            Self::One(_) => None,
            Self::Set(set) => set.members().get(ca).map(|m| m.name()),
        }
    }

    /// `options` as CA `ca` is asked (a set maps profile intents to each
    /// CA's names).
    pub(super) fn options_for(&self, ca: usize, options: &EnsureOptions) -> EnsureOptions {
        match self {
            Self::One(_) => options.clone(),
            Self::Set(set) => set.options_for(ca, options),
        }
    }

    /// The set, if the renewer issues through one.
    pub(super) fn set(&self) -> Option<&CaSet<S>> {
        match self {
            Self::One(_) => None,
            Self::Set(set) => Some(set),
        }
    }

    fn index_of(set: &CaSet<S>, name: &str) -> usize {
        set.members()
            .iter()
            .position(|m| m.name() == name)
            .unwrap_or(0)
    }

    /// The certificate in use for `names` and the CA that holds it (a
    /// set: the newest any CA holds), without a request.
    pub(super) async fn current(
        &self,
        names: &[String],
    ) -> Result<Option<(usize, StoredCertificate)>> {
        match self {
            Self::One(issuer) => Ok(issuer.stored_certificate(names).await?.map(|c| (0, c))),
            Self::Set(set) => Ok(set
                .current(names)
                .await?
                .map(|(ca, cert)| (Self::index_of(set, &ca), cert))),
        }
    }

    /// Ensures the certificate; the CA that holds the result.
    pub(super) async fn ensure(
        &self,
        names: &[String],
        options: &EnsureOptions,
    ) -> (usize, Result<Ensured>) {
        match self {
            Self::One(issuer) => (0, issuer.ensure(names, options).await),
            Self::Set(set) => match set.ensure(names, options).await {
                Ok(got) => (Self::index_of(set, &got.ca), Ok(got.ensured)),
                Err(e) => (0, Err(e)),
            },
        }
    }

    /// Until when nothing can start: one issuer's pause; for a set, only
    /// while every CA is paused (the first to end).
    pub(super) fn paused_until(&self, now: SystemTime) -> Option<SystemTime> {
        match self {
            Self::One(issuer) => issuer.client().paused_until().filter(|t| *t > now),
            Self::Set(set) => set
                .members()
                .iter()
                .map(|m| m.issuer().client().paused_until().filter(|t| *t > now))
                .collect::<Option<Vec<_>>>()
                .and_then(|all| all.into_iter().min()),
        }
    }

    /// Whether new certificates wait for the first CA's ledger budget. A
    /// set does not: with that budget spent its choice goes to another
    /// CA, and each CA's ledger still refuses locally what it would
    /// overspend (no request sent).
    pub(super) fn paces_by_ledger(&self) -> bool {
        matches!(self, Self::One(_))
    }
}

impl<S: Store> Clone for Through<S> {
    fn clone(&self) -> Self {
        match self {
            Self::One(issuer) => Self::One(issuer.clone()),
            Self::Set(set) => Self::Set(set.clone()),
        }
    }
}
