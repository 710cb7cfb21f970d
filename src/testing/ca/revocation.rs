//! Revocation, one implementation for both dialects: find the certificate,
//! check who may revoke it and that it is not revoked yet, record the
//! reason. The dialects differ only in their [`RevocationPolicy`] and in
//! how they word the refusals.

use super::now_utc;
use super::state::State;
use crate::protocol::{AccountStatus, AuthorizationStatus};
use crate::testing::jws::PublicJwk;

/// The reason codes accepted (RFC 5280 §5.3.1 as Let's Encrypt takes
/// them): unspecified, keyCompromise, affiliationChanged, superseded,
/// cessationOfOperation.
pub(super) const REASONS: [u64; 5] = [0, 1, 3, 4, 5];

/// A requested reason code, if it is one of [`REASONS`].
pub(super) fn reason_code(code: Option<u64>) -> Option<u8> {
    code.filter(|r| REASONS.contains(r))
        .and_then(|r| u8::try_from(r).ok())
}

/// Who asks: the key that signed the request and the account it stands for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Revoker<'a> {
    /// The signing key, when the request carries it (`jwk`); it may revoke
    /// a certificate for that key.
    pub(super) key: Option<&'a PublicJwk>,
    /// The requesting account, if any (only a valid one counts).
    pub(super) account: Option<usize>,
}

/// What differs between the dialects' revocation rules.
#[derive(Debug, Clone, Copy)]
pub(super) struct RevocationPolicy {
    /// An account holding valid authorizations for all the certificate's
    /// names may revoke it, too (Boulder's v1), not only the account that
    /// got it.
    pub(super) authorization_holders: bool,
    /// "Already revoked" is answered before "not allowed" (Boulder's v1
    /// order); else after.
    pub(super) revoked_first: bool,
}

/// Why a revocation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RevokeRefusal {
    /// No certificate with that DER.
    NotFound,
    /// The requester may not revoke it.
    NotAllowed,
    /// It is revoked already.
    AlreadyRevoked,
}

impl State {
    /// Revokes the certificate `der` for `reason` at `by`'s request.
    pub(super) fn revoke(
        &mut self,
        der: &[u8],
        reason: u8,
        by: Revoker<'_>,
        policy: RevocationPolicy,
    ) -> Result<(), RevokeRefusal> {
        let index = self
            .certs
            .iter()
            .position(|c| c.leaf_der == der)
            .ok_or(RevokeRefusal::NotFound)?;
        let revoked = self.certs[index].revoked.is_some();
        if revoked && policy.revoked_first {
            return Err(RevokeRefusal::AlreadyRevoked);
        }
        if !self.may_revoke(index, by, policy) {
            return Err(RevokeRefusal::NotAllowed);
        }
        if revoked {
            return Err(RevokeRefusal::AlreadyRevoked);
        }
        self.certs[index].revoked = Some(reason);
        Ok(())
    }

    /// Whether `by` may revoke certificate `index`: its key, the account
    /// that got it, or (where the policy allows) an account holding valid
    /// authorizations for all its names.
    fn may_revoke(&self, index: usize, by: Revoker<'_>, policy: RevocationPolicy) -> bool {
        let cert = &self.certs[index];
        let utc = now_utc();
        let account = by
            .account
            .filter(|a| self.accounts[*a].status == AccountStatus::Valid);
        let holds_authorizations = |a: usize| {
            cert.identifiers.iter().all(|id| {
                self.find_authz(a, id, false, AuthorizationStatus::Valid, utc)
                    .is_some()
            })
        };
        by.key.is_some_and(|key| key.matches_spki(&cert.spki))
            || account.is_some_and(|a| {
                a == cert.account || (policy.authorization_holders && holds_authorizations(a))
            })
    }
}
