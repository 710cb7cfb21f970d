//! The kinds of ACME resource a request goes to.

/// The kind of ACME resource a request went to.
///
/// # Example
///
/// ```
/// use sturdy_acme::Endpoint;
///
/// assert_eq!(Endpoint::NewOrder.as_str(), "newOrder");
/// assert_eq!(Endpoint::NewOrder.to_string(), "newOrder");
/// ```
///
/// Counting requests per endpoint: [`Event`](crate::Event).
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
    /// renewalInfo (RFC 9773; an unauthenticated GET).
    RenewalInfo,
    /// A certificate revocation list (RFC 5280; an unauthenticated,
    /// conditional GET, often plain HTTP on another host).
    Crl,
    /// Anything else.
    Other,
}

impl Endpoint {
    pub(crate) const ALL: [Endpoint; 16] = [
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
        Self::RenewalInfo,
        Self::Crl,
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
            Self::RenewalInfo => "renewalInfo",
            Self::Crl => "crl",
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
