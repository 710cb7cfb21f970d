//! Remembers the CA's 429s so the same request is refused locally until the
//! CA's `retry_at`, instead of being sent again into the same limit.

use std::sync::Mutex;
use std::time::SystemTime;

use crate::error::{Error, ErrorClass, RateLimitScope};
use crate::protocol::{Identifier, IdentifierSet};

#[derive(Debug, Clone)]
struct Entry {
    account: String,
    identifiers: IdentifierSet,
    scope: RateLimitScope,
    retry_at: SystemTime,
    reason: String,
}

/// The rate limits a client has run into, per account and scope.
#[derive(Debug, Default)]
pub(crate) struct RateGate {
    entries: Mutex<Vec<Entry>>,
}

fn registered_suffix(name: &str, domain: &str) -> bool {
    let name = name.trim_start_matches("*.");
    name == domain || name.ends_with(&format!(".{domain}"))
}

impl RateGate {
    /// Refuses a newOrder for `ids` while a remembered limit covers it.
    pub(crate) fn check(&self, account: &str, ids: &[Identifier]) -> Result<(), Error> {
        let now = SystemTime::now();
        let ids = IdentifierSet::new(ids);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|e| e.retry_at > now);
        let hit = entries.iter().find(|e| {
            e.account == account
                && match &e.scope {
                    RateLimitScope::Account => true,
                    RateLimitScope::ExactSet | RateLimitScope::Unknown => e.identifiers == ids,
                    RateLimitScope::RegisteredDomain(d) => ids
                        .as_slice()
                        .iter()
                        .any(|i| registered_suffix(&i.value, d)),
                    RateLimitScope::Identifier(n) => ids
                        .as_slice()
                        .iter()
                        .any(|i| i.value.trim_start_matches("*.") == n),
                    _ => false,
                }
        });
        match hit {
            Some(e) => Err(Error::RateLimitedLocally {
                retry_at: e.retry_at,
                limit: "the CA's earlier 429".into(),
                scope: e.scope.clone(),
                reason: e.reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Remembers a server 429 for a newOrder of `ids`.
    pub(crate) fn record(&self, account: &str, ids: &[Identifier], error: &Error) {
        if let ErrorClass::RateLimited {
            retry_at: Some(retry_at),
            scope,
            local: false,
        } = error.class()
        {
            let reason = error
                .problem()
                .and_then(|p| p.detail.clone())
                .unwrap_or_else(|| error.to_string());
            self.entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Entry {
                    account: account.to_owned(),
                    identifiers: IdentifierSet::new(ids),
                    scope,
                    retry_at,
                    reason,
                });
        }
    }
}
