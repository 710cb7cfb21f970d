//! Accounts (v1: registrations): creation, contacts, key rollover and
//! deactivation, whichever dialect asks.

use serde_json::Value;

use super::state::{AccountRec, State};
use crate::jws::{PublicJwk, Rejection};
use sturdy_acme::ProblemType;
use sturdy_acme::{AccountStatus, AuthorizationStatus};

/// Checks a `contact` list: an array of `mailto:` addresses, each with a
/// local part and a dotted domain.
pub(super) fn check_contacts(contact: &Value) -> Result<Vec<String>, Rejection> {
    let list = contact
        .as_array()
        .ok_or_else(|| Rejection::malformed("contact must be an array"))?;
    let mut out = Vec::new();
    for c in list {
        let c = c
            .as_str()
            .ok_or_else(|| Rejection::malformed("contact entries must be strings"))?;
        let Some(addr) = c.strip_prefix("mailto:") else {
            return Err(Rejection::new(
                ProblemType::UnsupportedContact,
                400,
                format!("contact method {c:?} is not supported (mailto: only)"),
            ));
        };
        let valid = addr
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !addr.contains(','));
        if !valid {
            return Err(Rejection::new(
                ProblemType::InvalidContact,
                400,
                format!("invalid contact {c:?}"),
            ));
        }
        out.push(c.to_owned());
    }
    Ok(out)
}

impl State {
    /// The account whose key has this thumbprint.
    pub(super) fn account_by_key(&self, thumbprint: &str) -> Option<usize> {
        self.by_thumbprint.get(thumbprint).copied()
    }

    /// A new valid account for `key` (not registered yet); returns its id.
    pub(super) fn create_account(
        &mut self,
        key: &PublicJwk,
        contact: Vec<String>,
        eab_kid: Option<String>,
    ) -> usize {
        let id = self.accounts.len();
        self.by_thumbprint.insert(key.thumbprint.clone(), id);
        self.accounts.push(AccountRec {
            key: key.clone(),
            status: AccountStatus::Valid,
            contact,
            eab_kid,
        });
        id
    }

    /// Deactivates account `id` and its pending and valid authorizations.
    pub(super) fn deactivate_account(&mut self, id: usize) {
        self.accounts[id].status = AccountStatus::Deactivated;
        for authz in self.authzs.iter_mut().filter(|a| a.account == id) {
            if authz.status == AuthorizationStatus::Pending
                || authz.status == AuthorizationStatus::Valid
            {
                authz.status = AuthorizationStatus::Deactivated;
            }
        }
    }

    /// Rolls account `acct` over to `new_key`; `Err(other)` if the key
    /// already belongs to account `other`.
    pub(super) fn change_account_key(
        &mut self,
        acct: usize,
        new_key: &PublicJwk,
    ) -> Result<(), usize> {
        if let Some(other) = self.account_by_key(&new_key.thumbprint) {
            return Err(other);
        }
        let old = self.accounts[acct].key.thumbprint.clone();
        self.by_thumbprint.remove(&old);
        self.by_thumbprint.insert(new_key.thumbprint.clone(), acct);
        self.accounts[acct].key = new_key.clone();
        Ok(())
    }
}
