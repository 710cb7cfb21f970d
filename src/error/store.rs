//! Why a store operation failed ([`StoreError`], [`DatabaseErrorKind`]).

use super::*;

/// Why a store operation failed. Every variant names what it was about.
///
/// Example: [`Error`] and [`ErrorClass`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing a file failed (permissions, read-only directory,
    /// disk full).
    #[error("store I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A record exists but cannot be trusted: truncated, not the expected
    /// format, or its checksum does not match. It is left in place (and a
    /// copy is kept aside) for a human to look at; it is never silently
    /// discarded or overwritten.
    #[error("corrupted store record {path}: {reason}")]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another holder has the lease.
    #[error("lease {name} is held by {holder} until {until:?}")]
    LeaseHeld {
        /// The lease name.
        name: String,
        /// Who holds it.
        holder: String,
        /// When it expires, seconds since the Unix epoch by the store's
        /// clock (for display: a holder never compares it with its own).
        until: u64,
    },
    /// The lease is no longer this holder's: another holder took it (its
    /// fencing token is newer), or it expired.
    #[error("lease {name} lost: {reason}")]
    LeaseLost {
        /// The lease name.
        name: String,
        /// The token the caller held.
        token: u64,
        /// What happened.
        reason: String,
    },
    /// A database behind the store failed (`sturdy_acme_postgres::PostgresStore`: the
    /// server, the connection or a statement), classified so the caller
    /// knows what to do: [`DatabaseErrorKind::Transient`] failures (a lost
    /// connection, a serialization failure, a restarting server) were
    /// already retried by the store for a while and are worth retrying
    /// later; the others are not.
    #[error("database ({kind:?}{}): {message}", code.as_deref().map(|c| format!(", SQLSTATE {c}")).unwrap_or_default())]
    Database {
        /// What kind of failure it is.
        kind: DatabaseErrorKind,
        /// The SQLSTATE code, when the server sent one.
        code: Option<String>,
        /// What happened (never a record's contents).
        message: String,
    },
    /// A sealed (encrypted) record could not be opened: the key-encryption
    /// key it names is not configured, or the record fails authentication
    /// (altered, or sealed for another record). It is left as it is; the
    /// issuer stops rather than take it for absent.
    #[error("sealed store record {record}: {reason}")]
    KeyEncryption {
        /// Which record.
        record: String,
        /// What is wrong.
        reason: String,
    },
    /// Anything a backend reports that fits nowhere else.
    #[error("store: {0}")]
    Other(String),
    /// A key-encryption key could not be read or built
    /// ([`KeyEncryptionKey::parse`](crate::store::KeyEncryptionKey::parse)):
    /// says which part is wrong, never what it holds (given in the wrong
    /// order, the "id" is the secret).
    #[error("key-encryption key: {reason}")]
    InvalidKeyEncryptionKey {
        /// What is wrong, naming the part (`id`, `key`), never its text.
        reason: String,
    },
    /// A database connection that could be downgraded to plain text was
    /// refused: a host that is not loopback (nor a Unix socket) with a
    /// `sslmode` other than `require`. Without TLS an attacker on the path
    /// reads private keys (without a key-encryption key) and can rewrite
    /// journals and leases.
    #[error(
        "PostgreSQL host {host} with sslmode={sslmode}: refused, the connection could run in plain \
         text (add sslmode=require to the URL; only loopback and Unix sockets may go without \
         TLS, unless PostgresStoreBuilder::danger_accept_plaintext is set)"
    )]
    PlaintextConnection {
        /// The first host that is not loopback.
        host: String,
        /// The `sslmode` asked for (`disable` or `prefer`).
        sslmode: &'static str,
    },
    /// The change feed no longer holds the changes after `after` (it
    /// keeps a bounded number), or its head is before `after` (the store
    /// was restored, or its database failed over and lost commits): the
    /// reader starts again from
    /// [`Store::feed_snapshot`](crate::store::Store::feed_snapshot).
    #[error(
        "the change feed no longer holds the changes after revision {after} (it keeps them from \
         {oldest}): start again from a snapshot"
    )]
    FeedBehind {
        /// The revision the reader asked after.
        after: u64,
        /// The oldest revision the feed still holds.
        oldest: u64,
    },
    /// A name an edge's record cannot be kept under: an on-demand request
    /// ([`Store::request_certificate`](crate::store::Store::request_certificate))
    /// for what is not one host's DNS name (a wildcard, an IP address), or
    /// a validation certificate
    /// ([`Store::save_validation`](crate::store::Store::save_validation))
    /// for a wildcard or a malformed name. Names the rule, never echoes the
    /// name (it may come from a stranger's handshake).
    #[error("the name was refused: {reason}")]
    InvalidRequest {
        /// Which rule the name breaks.
        reason: String,
    },
    /// A transaction's `COMMIT` was sent but its answer did not come (a
    /// timeout, a broken connection): it may or may not have been applied.
    /// The store does not repeat it blindly; where it can (the rate-limit
    /// ledger) it reads the outcome back first, and reports this only when
    /// even that failed. Not [`ErrorClass::Transient`]: the caller must
    /// read the state before doing the same again.
    #[error(
        "{operation}: the COMMIT's outcome is unknown ({message}); read the state before repeating it"
    )]
    CommitUnknown {
        /// The operation whose commit is in doubt.
        operation: String,
        /// What happened to the answer.
        message: String,
    },
}

/// What kind of database failure a [`StoreError::Database`] is.
///
/// Example: [`StoreError::Database`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseErrorKind {
    /// Worth retrying: the connection was lost or refused, the server is
    /// starting or shutting down, a transaction hit a serialization
    /// failure or deadlock, or an operation timed out.
    Transient,
    /// The server said a statement's completion is unknown (SQLSTATE
    /// 40003). The store does not repeat it; the caller re-reads state.
    /// Classed [`ErrorClass::Transient`] for the issuer, whose next attempt
    /// does. (A `COMMIT` left unanswered is [`StoreError::CommitUnknown`].)
    OutcomeUnknown,
    /// The database refused a write as inconsistent (a constraint
    /// violation): a bug in the store or a database changed by hand, never
    /// retried.
    Integrity,
    /// The schema is not one this version can use (newer than it knows, or
    /// a migration failed).
    Schema,
    /// The connection cannot work as configured: a bad URL, refused
    /// credentials, a TLS failure, a missing database.
    Configuration,
    /// Anything else the server reported.
    Other,
}
