//! Revocation, one implementation for both dialects: find the certificate,
//! check who may revoke it and that it is not revoked yet, record the
//! reason. The dialects differ only in their [`RevocationPolicy`] and in
//! how they word the refusals.

use super::now_utc;
use super::state::State;
use crate::jws::PublicJwk;
use sturdy_acme::{AccountStatus, AuthorizationStatus, Identifier};

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
    /// names may revoke it, too (RFC 8555 §7.6, a MUST; Boulder's v1 and
    /// v2), not only the account that got it.
    pub(super) authorization_holders: bool,
    /// The reason recorded when such an account (not the one that got it)
    /// revokes: Boulder's v2 overrides whatever was asked with
    /// cessationOfOperation (5) ("the subscriber no longer owns the
    /// domain names"); `None`: the reason asked for.
    pub(super) holder_reason: Option<u8>,
    /// "Already revoked" is answered before "not allowed" (Boulder's v1
    /// order); else after.
    pub(super) revoked_first: bool,
}

/// Why a revocation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RevokeRefusal {
    /// No certificate with that DER.
    NotFound,
    /// The requester may not revoke it (the certificate's serial, hex).
    NotAllowed {
        /// The certificate's serial, lowercase hex without leading zeros.
        serial: String,
    },
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
        let reason = match self.may_revoke(index, by, policy) {
            Some(Standing::Subscriber) => reason,
            Some(Standing::Holder) => policy.holder_reason.unwrap_or(reason),
            None => {
                return Err(RevokeRefusal::NotAllowed {
                    serial: self.certs[index].serial.clone(),
                });
            }
        };
        if revoked {
            return Err(RevokeRefusal::AlreadyRevoked);
        }
        self.certs[index].revoked = Some(reason);
        self.certs[index].revoked_at = Some(super::now());
        Ok(())
    }

    /// Whether `by` may revoke certificate `index`: as its subscriber (its
    /// key, the account that got it) or (where the policy allows) as an
    /// account holding valid authorizations for all its names (a wildcard
    /// name by an authorization for its base name, wildcard or not).
    fn may_revoke(
        &self,
        index: usize,
        by: Revoker<'_>,
        policy: RevocationPolicy,
    ) -> Option<Standing> {
        let cert = &self.certs[index];
        let utc = now_utc();
        let account = by
            .account
            .filter(|a| self.accounts[*a].status == AccountStatus::Valid);
        let holds = |a: usize, id: &Identifier| {
            let base = Identifier {
                kind: id.kind.clone(),
                value: id.base_name().to_owned(),
            };
            let valid = |wildcard| {
                self.find_authz(a, &base, wildcard, AuthorizationStatus::Valid, utc)
                    .is_some()
            };
            valid(false) || (id.is_wildcard() && valid(true))
        };
        if by.key.is_some_and(|key| key.matches_spki(&cert.spki))
            || account.is_some_and(|a| a == cert.account)
        {
            Some(Standing::Subscriber)
        } else if policy.authorization_holders
            && account.is_some_and(|a| cert.identifiers.iter().all(|id| holds(a, id)))
        {
            Some(Standing::Holder)
        } else {
            None
        }
    }
}

/// On what grounds a requester may revoke a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Its key, or the account that got it.
    Subscriber,
    /// An account holding valid authorizations for all its names.
    Holder,
}
