//! Request counters per ACME endpoint, for measurement and tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// The kind of ACME resource a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Endpoint {
    /// The directory.
    Directory,
    /// newNonce (HEAD).
    NewNonce,
    /// newAccount (also onlyReturnExisting lookups).
    NewAccount,
    /// An account URL (update, deactivate, refresh).
    Account,
    /// keyChange.
    KeyChange,
    /// newOrder.
    NewOrder,
    /// An order URL (polls).
    Order,
    /// An account's orders list.
    Orders,
    /// An authorization URL (fetch, poll, deactivate).
    Authorization,
    /// A challenge URL (answer, poll).
    Challenge,
    /// An order's finalize URL.
    Finalize,
    /// A certificate URL (download, alternates).
    Certificate,
    /// revokeCert.
    Revoke,
    /// Anything else.
    Other,
}

impl Endpoint {
    const ALL: [Endpoint; 14] = [
        Self::Directory,
        Self::NewNonce,
        Self::NewAccount,
        Self::Account,
        Self::KeyChange,
        Self::NewOrder,
        Self::Order,
        Self::Orders,
        Self::Authorization,
        Self::Challenge,
        Self::Finalize,
        Self::Certificate,
        Self::Revoke,
        Self::Other,
    ];

    /// A short name for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Directory => "directory",
            Self::NewNonce => "newNonce",
            Self::NewAccount => "newAccount",
            Self::Account => "account",
            Self::KeyChange => "keyChange",
            Self::NewOrder => "newOrder",
            Self::Order => "order",
            Self::Orders => "orders",
            Self::Authorization => "authz",
            Self::Challenge => "challenge",
            Self::Finalize => "finalize",
            Self::Certificate => "certificate",
            Self::Revoke => "revokeCert",
            Self::Other => "other",
        }
    }
}

impl Endpoint {
    /// Parses a name as [`Endpoint::as_str`] writes it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|e| e.as_str() == name)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters([AtomicU64; 14]);

impl Counters {
    pub(crate) fn count(&self, endpoint: Endpoint) {
        let i = Endpoint::ALL
            .iter()
            .position(|e| *e == endpoint)
            .unwrap_or(13);
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RequestStats {
        let by_endpoint = Endpoint::ALL
            .iter()
            .zip(&self.0)
            .map(|(e, c)| (*e, c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        RequestStats { by_endpoint }
    }
}

/// How many HTTP requests a [`Client`](crate::Client) has sent, per endpoint
/// (every attempt counts, including `badNonce` retries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// Requests per endpoint (endpoints never used are absent).
    pub by_endpoint: BTreeMap<Endpoint, u64>,
}

impl RequestStats {
    /// Requests to `endpoint`.
    pub fn get(&self, endpoint: Endpoint) -> u64 {
        self.by_endpoint.get(&endpoint).copied().unwrap_or(0)
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.by_endpoint.values().sum()
    }

    /// The requests made since `earlier` (a previous snapshot).
    pub fn since(&self, earlier: &RequestStats) -> RequestStats {
        let by_endpoint = self
            .by_endpoint
            .iter()
            .map(|(e, n)| (*e, n - earlier.get(*e).min(*n)))
            .filter(|(_, n)| *n > 0)
            .collect();
        RequestStats { by_endpoint }
    }
}

impl std::fmt::Display for RequestStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .by_endpoint
            .iter()
            .map(|(e, n)| format!("{e}={n}"))
            .collect();
        write!(f, "{} ({})", self.total(), parts.join(" "))
    }
}
