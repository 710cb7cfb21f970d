//! [`PostgresStore`]: the [`Store`] on a shared PostgreSQL database, for a
//! fleet of issuers on many machines.
//!
//! - **One row per record**, each write one statement (or one
//!   transaction): accounts, certificates (the previous one moved to a
//!   history table in the same statement), journals and their archive, the
//!   rate-limit ledger, leases.
//! - **Leases are rows with fencing tokens** from a sequence; expiry is
//!   judged by the database's clock (`now()`), so the machines' clocks do
//!   not decide who holds a lease: the time left is computed in SQL
//!   (`until - now()`) and the holder counts it down on its monotonic
//!   clock from when it sent the request ([`Lease::validity`]). A held
//!   lease is refused to every other acquisition, its own holder's too
//!   (a crashed process's row on this machine is taken over). A fenced
//!   journal write checks the token in the same statement (under a share
//!   lock on the lease row, so a takeover cannot interleave).
//! - **The ledger is updated under a row lock** (`SELECT … FOR UPDATE`) in
//!   one transaction, so issuers never spend more than a limit between
//!   them, and a 429 recorded by one node is seen by all.
//! - **Private keys are sealed** (AES-256-GCM, the record's identity as
//!   associated data) when a [`KeyEncryptionKey`] is configured; without
//!   one they are stored in the clear and a warning is logged at open. They
//!   never appear in SQL text, logs or errors (they travel as parameters).
//! - **Errors are typed**: a lost connection, a restarting server, a
//!   serialization failure or a timeout is retried with backoff for a
//!   while ([`PostgresStoreBuilder::retry_for`]) and then reported as
//!   [`DatabaseErrorKind::Transient`]; a constraint violation is
//!   [`DatabaseErrorKind::Integrity`] and never retried.
//! - **A COMMIT left unanswered is never taken for failed nor repeated
//!   blindly**: it is [`StoreError::CommitUnknown`]. The ledger update
//!   records a request id with the new state and reads its outcome back
//!   (it is never spent or refunded twice); a certificate save is settled
//!   by running it again (it is idempotent). Single-statement writes
//!   (journals, fenced or not, leases, renewer records) are upserts or
//!   deletes that repeat harmlessly, so a lost answer is retried: a
//!   fenced write retried after the lease was lost says `LeaseLost`, and
//!   the newer holder reads whatever the first attempt wrote. An archived
//!   journal may then be archived twice.
//! - **TLS is required off this machine**: a host that is not loopback
//!   (nor a Unix socket) must have `sslmode=require` (the server's
//!   certificate verified), or opening fails with
//!   [`StoreError::PlaintextConnection`], unless
//!   [`PostgresStoreBuilder::danger_accept_plaintext`].
//!
//! Built only on the library's public [`Store`] contract (and its
//! building blocks [`Sealer`] and [`ProcessIdentity`](sturdy_acme::store::ProcessIdentity)): what this crate
//! does, a third party can do for another database.
//!
//! This file holds the store, its retry loop and the records' statements
//! (over 800 lines: one `Store` implementation, each method next to its
//! SQL); leases, the ledger's update, the schema and the connection's TLS
//! decision live in their own modules.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod feed;
mod lease;
mod ledger;
mod requests;
mod schema;
mod tls;

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

use sturdy_acme::store::{
    ChangeKind, ChangePage, DirectoryRecord, FeedSnapshot, IdentifierSetKey, Journal,
    KeyEncryptionKey, Lease, LedgerUpdate, ManagedRecord, RateLimitRecord, Sealed, Sealer, Store,
    StoreResult, StoredAccount, StoredCertificate,
};
use sturdy_acme::{DatabaseErrorKind, StoreError};

/// The fields of a record that hold private keys: sealed, never in the
/// `record` column.
const SECRET_FIELDS: [&str; 2] = ["key_pem", "next_key_pem"];

/// Counts of what a [`PostgresStore`] sent, for benchmarks and metrics.
///
/// Example: [`PostgresStore::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PostgresStats {
    /// Round trips to the server (statements, and `BEGIN`/`COMMIT`).
    pub round_trips: u64,
    /// Statements that changed data (durable writes, each committed).
    pub writes: u64,
    /// Operations retried after a transient failure.
    pub retries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    round_trips: AtomicU64,
    writes: AtomicU64,
    retries: AtomicU64,
}

/// Options for opening a [`PostgresStore`].
///
/// Its `Debug` shows the URL without its password.
///
/// Example: [`PostgresStore`].
#[derive(Clone)]
pub struct PostgresStoreBuilder {
    url: String,
    current_key: Option<KeyEncryptionKey>,
    previous_keys: Vec<KeyEncryptionKey>,
    max_connections: usize,
    operation_timeout: Duration,
    retry_for: Duration,
    root_certificates: Vec<rustls::pki_types::CertificateDer<'static>>,
    allow_unsealed: bool,
    accept_plaintext: bool,
    feed_retention: u64,
}

impl std::fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStoreBuilder")
            .field("url", &tls::Redacted(&self.url))
            .field("current_key", &self.current_key)
            .field("previous_keys", &self.previous_keys)
            .field("max_connections", &self.max_connections)
            .field("operation_timeout", &self.operation_timeout)
            .field("retry_for", &self.retry_for)
            .field("root_certificates", &self.root_certificates.len())
            .field("allow_unsealed", &self.allow_unsealed)
            .field("danger_accept_plaintext", &self.accept_plaintext)
            .field("feed_retention", &self.feed_retention)
            .finish()
    }
}

/// A [`Store`] on PostgreSQL; see the
/// [module](sturdy_acme::store) documentation for running a fleet on it.
///
/// Cloning is cheap and shares the connection pool.
///
/// # Example
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sturdy_acme::StoreError> {
/// use sturdy_acme::store::KeyEncryptionKey;
/// use sturdy_acme_postgres::PostgresStore;
///
/// let store = PostgresStore::builder("postgres://acme@db.internal:5432/acme?sslmode=require")
///     .key_encryption_key(KeyEncryptionKey::parse(&std::env::var("ACME_KEK").unwrap())?)
///     .max_connections(32)
///     .open()
///     .await?;
/// // Hand it to `Issuer::builder(client, store)` on every node.
/// # drop(store);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    sealer: Sealer,
    operation_timeout: Duration,
    retry_for: Duration,
    counters: Counters,
    /// The connection on `LISTEN` for the change feed.
    listener: Arc<feed::Listener>,
    /// How many changes the feed keeps.
    feed_retention: i64,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("encrypts_keys", &self.inner.sealer.encrypts())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl PostgresStoreBuilder {
    /// Seals private keys with `key` (AES-256-GCM); its id is stored with
    /// every record it seals.
    pub fn key_encryption_key(mut self, key: KeyEncryptionKey) -> Self {
        self.current_key = Some(key);
        self
    }

    /// A key that sealed records earlier: still used to open them (they
    /// are sealed with the current key on their next write).
    pub fn previous_key_encryption_key(mut self, key: KeyEncryptionKey) -> Self {
        self.previous_keys.push(key);
        self
    }

    /// With a key-encryption key configured, also read private keys stored
    /// in the clear (by a store opened without one); they are sealed on
    /// their next write. Off by default: with a key configured, a record in
    /// the clear is refused with [`StoreError::KeyEncryption`], since anyone
    /// who can write the database could have planted it.
    pub fn allow_unsealed_records(mut self, allow: bool) -> Self {
        self.allow_unsealed = allow;
        self
    }

    /// The connection pool's size (default 16).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long one attempt of an operation may take before it is
    /// abandoned as a transient failure (default 10 s). Keep it well below
    /// the issuer's lease TTL.
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// How long transient failures are retried (with backoff) before the
    /// operation fails with [`DatabaseErrorKind::Transient`] (default 30 s:
    /// long enough to ride out a server restart).
    pub fn retry_for(mut self, budget: Duration) -> Self {
        self.retry_for = budget;
        self
    }

    /// Trusts these root certificates (PEM) for TLS connections, in
    /// addition to the Web PKI roots.
    pub fn root_certificates_pem(mut self, pem: &str) -> Result<Self, StoreError> {
        let blocks = pem::parse_many(pem)
            .map_err(|e| StoreError::Other(format!("root certificates: {e}")))?;
        self.root_certificates.extend(
            blocks
                .into_iter()
                .filter(|b| b.tag() == "CERTIFICATE")
                .map(|b| rustls::pki_types::CertificateDer::from(b.into_contents())),
        );
        Ok(self)
    }

    /// Danger: lets connections to a host that is not loopback (nor a Unix
    /// socket) go without TLS (`sslmode=prefer` or `disable`). Off by
    /// default: such a URL is refused with
    /// [`StoreError::PlaintextConnection`], since whoever sits on the path
    /// could then read private keys (without a key-encryption key) and
    /// rewrite journals and leases. Only for a network you trust
    /// completely; a warning is logged at open.
    pub fn danger_accept_plaintext(mut self, accept: bool) -> Self {
        self.accept_plaintext = accept;
        self
    }

    /// Keeps only about the last `changes` of the change feed (pruned
    /// every 1,024 revisions; at least one; 100,000 by default). A reader
    /// further behind starts again from `Store::feed_snapshot`.
    pub fn feed_retention(mut self, changes: u64) -> Self {
        self.feed_retention = changes.max(1);
        self
    }

    /// Connects (retrying transient failures for [`Self::retry_for`]),
    /// applies the schema migrations and returns the store.
    ///
    /// A host that is not loopback (nor a Unix socket) must have
    /// `sslmode=require` (TLS or no connection; the server's certificate is
    /// verified against the Web PKI roots and
    /// [`Self::root_certificates_pem`]): otherwise
    /// [`StoreError::PlaintextConnection`], unless
    /// [`Self::danger_accept_plaintext`].
    pub async fn open(self) -> StoreResult<PostgresStore> {
        let mut config =
            tokio_postgres::Config::from_str(&self.url).map_err(|e| StoreError::Database {
                kind: DatabaseErrorKind::Configuration,
                code: None,
                message: format!("the PostgreSQL URL does not parse: {}", without_echo(&e)),
            })?;
        tls::check_transport(&config, self.accept_plaintext)?;
        if config.get_application_name().is_none() {
            config.application_name("sturdy-acme");
        }
        config.connect_timeout(self.operation_timeout);
        // A peer that stops acknowledging is given up on by the kernel.
        config.tcp_user_timeout(self.operation_timeout.max(Duration::from_secs(5)));
        config.keepalives_idle(Duration::from_secs(30));
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config()?);
        let listener = Arc::new(feed::Listener::new(config.clone(), tls.clone()));
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.operation_timeout))
            .create_timeout(Some(self.operation_timeout))
            .build()
            .map_err(|e| StoreError::Other(format!("connection pool: {e}")))?;
        let sealer =
            Sealer::new(self.current_key, self.previous_keys).allowing_plain(self.allow_unsealed);
        let store = PostgresStore {
            inner: Arc::new(Inner {
                pool,
                sealer,
                operation_timeout: self.operation_timeout,
                retry_for: self.retry_for,
                counters: Counters::default(),
                listener,
                feed_retention: i64::try_from(self.feed_retention.max(1)).unwrap_or(i64::MAX),
            }),
        };
        let found = store
            .run("migrate", |mut c| {
                Box::pin(async move { schema::migrate(&mut c).await })
            })
            .await?;
        if !store.inner.sealer.encrypts() {
            tracing::warn!(
                "PostgreSQL store opened without a key-encryption key: private keys are stored \
                 unencrypted in the database (configure one to seal them with AES-256-GCM)"
            );
        }
        tracing::info!(
            schema = schema::LATEST,
            was = found,
            "PostgreSQL store open"
        );
        Ok(store)
    }

    fn tls_config(&self) -> StoreResult<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in &self.root_certificates {
            roots
                .add(cert.clone())
                .map_err(|e| StoreError::Other(format!("root certificate: {e}")))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            (*sturdy_acme::tls_provider()).clone(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Other(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(config)
    }
}

/// What an operation on one pooled connection returns.
type DbFuture<'a, T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 'a>>;

impl PostgresStore {
    /// Options for a store at `url` (`postgres://USER[:PASSWORD]@HOST:PORT/DB`,
    /// with `?sslmode=require` for TLS, which any host but loopback and Unix
    /// sockets must have).
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            url: url.into(),
            current_key: None,
            previous_keys: Vec::new(),
            max_connections: 16,
            operation_timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(30),
            root_certificates: Vec::new(),
            allow_unsealed: false,
            accept_plaintext: false,
            feed_retention: sturdy_acme::store::feed::DEFAULT_FEED_RETENTION,
        }
    }

    /// Opens the store at `url` with the default options.
    pub async fn connect(url: &str) -> StoreResult<PostgresStore> {
        Self::builder(url).open().await
    }

    /// What this store (and its clones) sent so far.
    pub fn stats(&self) -> PostgresStats {
        let c = &self.inner.counters;
        PostgresStats {
            round_trips: c.round_trips.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }

    fn count(&self, round_trips: u64, writes: u64) {
        let c = &self.inner.counters;
        c.round_trips.fetch_add(round_trips, Ordering::Relaxed);
        c.writes.fetch_add(writes, Ordering::Relaxed);
    }

    /// Runs `op` on a pooled connection, each attempt bounded by the
    /// operation timeout; transient failures are retried with backoff
    /// until the retry budget is spent.
    async fn run<'a, T>(
        &'a self,
        what: &'static str,
        mut op: impl FnMut(Object) -> DbFuture<'a, T> + Send + 'a,
    ) -> StoreResult<T> {
        self.run_tx(what, move |c, _| op(c)).await
    }

    /// [`Self::run`] for an operation that commits a transaction (through
    /// [`commit`], which marks the attempt's [`CommitSent`]): an attempt
    /// that times out after its `COMMIT` was sent is not retried, it is
    /// [`StoreError::CommitUnknown`] (the transaction may have been
    /// applied). Failures before the `COMMIT` are retried as [`Self::run`]
    /// retries them (nothing was applied).
    async fn run_tx<'a, T>(
        &'a self,
        what: &'static str,
        mut op: impl FnMut(Object, CommitSent) -> DbFuture<'a, T> + Send,
    ) -> StoreResult<T> {
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let sent = CommitSent::default();
            let result = tokio::time::timeout(self.inner.operation_timeout, async {
                let client = self.inner.pool.get().await.map_err(pool_error)?;
                op(client, sent.clone()).await
            })
            .await
            .unwrap_or_else(|_| {
                let message = format!(
                    "no answer within {:?} (server or network unresponsive)",
                    self.inner.operation_timeout
                );
                if sent.get() {
                    Err(StoreError::CommitUnknown {
                        operation: what.to_owned(),
                        message: format!("COMMIT sent, {message}"),
                    })
                } else {
                    Err(StoreError::Database {
                        kind: DatabaseErrorKind::Transient,
                        code: None,
                        message,
                    })
                }
            });
            match result {
                Err(StoreError::Database {
                    kind: DatabaseErrorKind::Transient,
                    code,
                    message,
                }) => {
                    if started.elapsed() + backoff > self.inner.retry_for {
                        tracing::error!(operation = what, attempts = attempt, error = %message, "PostgreSQL store: giving up after transient failures");
                        return Err(StoreError::Database {
                            kind: DatabaseErrorKind::Transient,
                            code,
                            message: format!("{what}: {message} (after {attempt} attempts)"),
                        });
                    }
                    tracing::warn!(operation = what, attempt, error = %message, retry_in = ?backoff, "PostgreSQL store: transient failure, retrying");
                    self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    /// Runs an idempotent transaction (`op` recognises its own earlier
    /// application) until its outcome is known: a [`StoreError::CommitUnknown`]
    /// is followed by another run, which reads back whether the first was
    /// applied (it waits for the row locks the first held, so it sees its
    /// final outcome) and applies it only if not. Still unknown once the
    /// retry budget is spent: the error is returned.
    async fn run_until_known<'a, T>(
        &'a self,
        what: &'static str,
        mut op: impl FnMut(Object, CommitSent) -> DbFuture<'a, T> + Send,
    ) -> StoreResult<T> {
        let started = tokio::time::Instant::now();
        loop {
            match self.run_tx(what, &mut op).await {
                Err(StoreError::CommitUnknown { operation, message })
                    if started.elapsed() < self.inner.retry_for =>
                {
                    tracing::warn!(operation = %operation, error = %message, "PostgreSQL store: a COMMIT's outcome is unknown; reading it back");
                    self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                }
                other => return other,
            }
        }
    }

    /// One statement on a pooled connection (prepared once per
    /// connection), retried as [`Self::run`] retries: its rows.
    async fn db_query<'a>(
        &'a self,
        what: &'static str,
        sql: &'static str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> StoreResult<Vec<tokio_postgres::Row>> {
        self.run(what, |c| {
            Box::pin(async move {
                let stmt = c.prepare_cached(sql).await.map_err(|e| classify(&e))?;
                c.query(&stmt, params).await.map_err(|e| classify(&e))
            })
        })
        .await
    }

    /// [`Self::db_query`] for at most one row.
    async fn db_query_opt<'a>(
        &'a self,
        what: &'static str,
        sql: &'static str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> StoreResult<Option<tokio_postgres::Row>> {
        self.run(what, |c| {
            Box::pin(async move {
                let stmt = c.prepare_cached(sql).await.map_err(|e| classify(&e))?;
                c.query_opt(&stmt, params).await.map_err(|e| classify(&e))
            })
        })
        .await
    }

    /// [`Self::db_query`] for a statement without rows: how many it changed.
    async fn db_execute<'a>(
        &'a self,
        what: &'static str,
        sql: &'static str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> StoreResult<u64> {
        self.run(what, |c| {
            Box::pin(async move {
                let stmt = c.prepare_cached(sql).await.map_err(|e| classify(&e))?;
                c.execute(&stmt, params).await.map_err(|e| classify(&e))
            })
        })
        .await
    }

    /// The record without its secrets (for the `record` column) and the
    /// secrets sealed for `identity`.
    fn split<T: Serialize>(&self, identity: &str, record: &T) -> StoreResult<(Value, Sealed)> {
        let mut value = serde_json::to_value(record)
            .map_err(|e| StoreError::Other(format!("encoding {identity}: {e}")))?;
        let mut secrets = serde_json::Map::new();
        if let Value::Object(fields) = &mut value {
            for name in SECRET_FIELDS {
                if let Some(secret) = fields.remove(name) {
                    secrets.insert(name.to_owned(), secret);
                }
            }
        }
        let mut secrets = Value::Object(secrets);
        let plain = Zeroizing::new(serde_json::to_vec(&secrets).expect("JSON object encodes"));
        wipe(&mut secrets);
        Ok((value, self.inner.sealer.seal(identity, &plain)?))
    }

    /// The change feed's head revision.
    async fn feed_head(&self) -> StoreResult<u64> {
        let rows = self
            .db_query("read the feed's head", feed::HEAD, &[])
            .await?;
        self.count(1, 0);
        Ok(rows
            .first()
            .map_or(0, |row| row.get::<_, i64>(0).max(0) as u64))
    }

    /// The record from its columns.
    fn join<T: DeserializeOwned>(
        &self,
        identity: &str,
        record: Value,
        sealed: &[u8],
        kek_id: Option<&str>,
    ) -> StoreResult<T> {
        let plain = self.inner.sealer.open(identity, sealed, kek_id)?;
        let corrupted = |reason: String| StoreError::Corrupted {
            path: format!("postgres:{identity}").into(),
            reason,
        };
        let mut secrets: Value = serde_json::from_slice(&plain)
            .map_err(|_| corrupted("its sealed secrets are not JSON".into()))?;
        let Value::Object(mut fields) = record else {
            wipe(&mut secrets);
            return Err(corrupted("the record is not a JSON object".into()));
        };
        if let Value::Object(secret_fields) = &mut secrets {
            for (name, value) in std::mem::take(secret_fields) {
                fields.insert(name, value);
            }
        }
        let mut value = Value::Object(fields);
        let parsed = T::deserialize(&value).map_err(|e| {
            // serde may quote a value; never a key.
            let text = e.to_string();
            corrupted(if text.contains("PRIVATE KEY") {
                "a field does not have the expected type".into()
            } else {
                text
            })
        });
        wipe(&mut value);
        parsed
    }

    async fn read_row<T: DeserializeOwned>(
        &self,
        what: &'static str,
        sql: &'static str,
        table: &'static str,
        id: &str,
    ) -> StoreResult<Option<T>> {
        let row = self
            .run(what, |c| {
                Box::pin(async move {
                    let stmt = c.prepare_cached(sql).await.map_err(|e| classify(&e))?;
                    c.query_opt(&stmt, &[&id]).await.map_err(|e| classify(&e))
                })
            })
            .await?;
        self.count(1, 0);
        let Some(row) = row else { return Ok(None) };
        let record: Value = row.get(0);
        let sealed: Vec<u8> = row.get(1);
        let kek_id: Option<String> = row.get(2);
        self.join(&identity(table, id), record, &sealed, kek_id.as_deref())
            .map(Some)
    }

    /// Writes a record row: `sql` takes the key, the directory column if
    /// the table has one (`directory` is `Some`), the record, the sealed
    /// secrets and the key-encryption key id, in that order.
    async fn write_row(
        &self,
        what: &'static str,
        sql: &'static str,
        id: &str,
        directory: Option<Option<&str>>,
        record: &Value,
        sealed: &Sealed,
    ) -> StoreResult<()> {
        self.run(what, |c| {
            Box::pin(async move {
                let stmt = c.prepare_cached(sql).await.map_err(|e| classify(&e))?;
                let bytes: &[u8] = sealed.bytes();
                let kek_id = sealed.kek_id();
                let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&id];
                if let Some(directory) = &directory {
                    params.push(directory);
                }
                params.extend([
                    record as &(dyn tokio_postgres::types::ToSql + Sync),
                    &bytes,
                    &kek_id,
                ]);
                c.execute(&stmt, &params).await.map_err(|e| classify(&e))
            })
        })
        .await?;
        self.count(1, 1);
        Ok(())
    }
}

/// The identity a record's secrets are sealed for (their associated data).
fn identity(table: &str, id: &str) -> String {
    format!("sturdy-acme:{table}:{id}")
}

/// The text key of a record.
fn record_key(key: &IdentifierSetKey) -> String {
    serde_json::to_string(key).expect("a key encodes")
}

/// Overwrites the strings of a JSON value that held secrets.
fn wipe(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe),
        Value::Object(fields) => fields.values_mut().for_each(wipe),
        _ => {}
    }
}

/// Whether an attempt sent its `COMMIT`: from then on its outcome is
/// unknown until the answer comes.
#[derive(Debug, Clone, Default)]
struct CommitSent(Arc<std::sync::atomic::AtomicBool>);

impl CommitSent {
    fn mark(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Commits, marking `sent` first; a failure that leaves the outcome open
/// (the connection broke after the `COMMIT` went out) is
/// [`StoreError::CommitUnknown`], never a transient failure to repeat.
async fn commit(
    tx: deadpool_postgres::Transaction<'_>,
    what: &str,
    sent: &CommitSent,
) -> StoreResult<()> {
    sent.mark();
    tx.commit().await.map_err(|e| match classify(&e) {
        StoreError::Database {
            kind: DatabaseErrorKind::Transient | DatabaseErrorKind::OutcomeUnknown,
            message,
            ..
        } => StoreError::CommitUnknown {
            operation: what.to_owned(),
            message,
        },
        other => other,
    })
}

/// A connection string's parse error without the text it quotes (the
/// parser may quote a character of the password).
fn without_echo(e: &tokio_postgres::Error) -> String {
    let text = e.to_string();
    match text.find(" but got `") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// A database error, classified.
pub(crate) fn classify(e: &tokio_postgres::Error) -> StoreError {
    let code = e.code().map(|c| c.code().to_owned());
    let kind = match code.as_deref() {
        Some(c) if c.starts_with("08") => DatabaseErrorKind::Transient,
        Some("40003") => DatabaseErrorKind::OutcomeUnknown,
        Some(
            "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "57014" | "53300" | "55P03" | "25006",
        ) => DatabaseErrorKind::Transient,
        Some(c) if c.starts_with("53") => DatabaseErrorKind::Transient,
        Some(c) if c.starts_with("23") => DatabaseErrorKind::Integrity,
        Some(c) if c.starts_with("28") || c == "3D000" => DatabaseErrorKind::Configuration,
        Some(c) if c.starts_with("42") => DatabaseErrorKind::Schema,
        Some(_) => DatabaseErrorKind::Other,
        // No SQLSTATE: the connection failed (refused, reset, closed, an
        // I/O error), or this side could not encode or decode a value (a
        // bug, never retried).
        None if tls_failure(e) => DatabaseErrorKind::Configuration,
        None if e.is_closed() || connection_failure(e) => DatabaseErrorKind::Transient,
        None => DatabaseErrorKind::Other,
    };
    let message = match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    };
    StoreError::Database {
        kind,
        code,
        message,
    }
}

/// True when TLS failed (an untrusted or mismatched server certificate):
/// retrying will not help.
fn tls_failure(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// True when the error comes from the connection: an I/O error somewhere
/// in its sources, or a failure to connect.
fn connection_failure(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    let text = e.to_string();
    text.starts_with("error connecting") || text.contains("timeout") || text.contains("closed")
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => classify(&e),
        PoolError::Timeout(t) => StoreError::Database {
            kind: DatabaseErrorKind::Transient,
            code: None,
            message: format!("no connection from the pool ({t:?} timed out)"),
        },
        other => StoreError::Database {
            kind: DatabaseErrorKind::Other,
            code: None,
            message: format!("connection pool: {other}"),
        },
    }
}

const LOAD_ACCOUNT: &str =
    "SELECT record, sealed, kek_id FROM sturdy_accounts WHERE directory = $1";
const SAVE_ACCOUNT: &str = "INSERT INTO sturdy_accounts (directory, record, sealed, kek_id) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (directory) DO UPDATE SET record = excluded.record, sealed = excluded.sealed, \
     kek_id = excluded.kek_id, updated_at = now()";
const LOAD_CERTIFICATE: &str =
    "SELECT record, sealed, kek_id FROM sturdy_certificates WHERE record_key = $1";
/// The upsert of a certificate (after its predecessor moved to the
/// history, in the same transaction).
const SAVE_CERTIFICATE: &str = "INSERT INTO sturdy_certificates (record_key, directory, record, sealed, kek_id) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (record_key) DO UPDATE SET directory = excluded.directory, \
     record = excluded.record, sealed = excluded.sealed, kek_id = excluded.kek_id, updated_at = now()";
const LOAD_JOURNAL: &str =
    "SELECT record, sealed, kek_id FROM sturdy_journals WHERE record_key = $1";
const SAVE_JOURNAL: &str = "INSERT INTO sturdy_journals (record_key, directory, record, sealed, kek_id) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (record_key) DO UPDATE SET directory = excluded.directory, \
     record = excluded.record, sealed = excluded.sealed, kek_id = excluded.kek_id, updated_at = now()";
/// The journal is written only while the lease is current, judged in the
/// same statement under a share lock on the lease row.
const SAVE_JOURNAL_FENCED: &str = "WITH fence AS ( \
       SELECT 1 FROM sturdy_leases WHERE name = $6 AND holder = $7 AND token = $8 AND until > now() \
       FOR SHARE \
     ) \
     INSERT INTO sturdy_journals (record_key, directory, record, sealed, kek_id) \
     SELECT $1, $2, $3, $4, $5 FROM fence \
     ON CONFLICT (record_key) DO UPDATE SET directory = excluded.directory, \
     record = excluded.record, sealed = excluded.sealed, kek_id = excluded.kek_id, updated_at = now()";
const ARCHIVE_JOURNAL: &str = "INSERT INTO sturdy_journal_archive (record_key, record, sealed, kek_id) \
     VALUES ($1, $2, $3, $4)";

impl Store for PostgresStore {
    async fn load_account(&self, directory: &str) -> StoreResult<Option<StoredAccount>> {
        self.read_row("load account", LOAD_ACCOUNT, "account", directory)
            .await
    }

    async fn save_account(&self, directory: &str, account: &StoredAccount) -> StoreResult<()> {
        let (record, sealed) = self.split(&identity("account", directory), account)?;
        self.write_row(
            "save account",
            SAVE_ACCOUNT,
            directory,
            None,
            &record,
            &sealed,
        )
        .await
    }

    async fn load_certificate(
        &self,
        key: &IdentifierSetKey,
    ) -> StoreResult<Option<StoredCertificate>> {
        self.read_row(
            "load certificate",
            LOAD_CERTIFICATE,
            "certificate",
            &record_key(key),
        )
        .await
    }

    /// One transaction under a per-key advisory lock: the previous
    /// certificate moves to the history, then the new one replaces it, so
    /// concurrent saves of one set each keep the one they replace. Saving
    /// the same certificate again changes nothing, so a `COMMIT` whose
    /// outcome is unknown is settled by running it again.
    async fn save_certificate(
        &self,
        key: &IdentifierSetKey,
        certificate: &StoredCertificate,
    ) -> StoreResult<()> {
        let id = record_key(key);
        let (record, sealed) = self.split(&identity("certificate", &id), certificate)?;
        let directory = key.ca().map(|ca| ca.directory.as_str());
        let (id, record, sealed) = (&id, &record, &sealed);
        let retention = self.inner.feed_retention;
        // The feed's lock is waited for and held no longer than an
        // operation may take.
        let bound = self.inner.operation_timeout.max(Duration::from_secs(1));
        self.run_until_known("save certificate", |mut c, sent| {
            Box::pin(async move {
                let tx = c.transaction().await.map_err(|e| classify(&e))?;
                let lock = tx
                    .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                    .await
                    .map_err(|e| classify(&e))?;
                tx.execute(&lock, &[id]).await.map_err(|e| classify(&e))?;
                // What the change feed hears of: the record replaced.
                let before = tx
                    .prepare_cached(
                        "SELECT record->>'serial', record->>'chain_pem', \
                         COALESCE(jsonb_typeof(record->'revoked') = 'object', false) \
                         FROM sturdy_certificates WHERE record_key = $1",
                    )
                    .await
                    .map_err(|e| classify(&e))?;
                let old = tx.query_opt(&before, &[id]).await.map_err(|e| classify(&e))?;
                let old: Option<(String, String, bool)> = old.map(|row| {
                    (
                        row.get::<_, Option<String>>(0).unwrap_or_default(),
                        row.get::<_, Option<String>>(1).unwrap_or_default(),
                        row.get(2),
                    )
                });
                let change = ChangeKind::of(
                    old.as_ref().map(|(s, c, r)| (s.as_str(), c.as_str(), *r)),
                    certificate,
                );
                let history = tx
                    .prepare_cached(
                        "INSERT INTO sturdy_certificate_history (record_key, record, sealed, kek_id) \
                         SELECT record_key, record, sealed, kek_id FROM sturdy_certificates \
                         WHERE record_key = $1 AND record->>'serial' IS DISTINCT FROM $2",
                    )
                    .await
                    .map_err(|e| classify(&e))?;
                // The same certificate with new metadata (a renewal
                // schedule, a revocation) replaces nothing worth keeping.
                let serial = certificate.serial.as_str();
                tx.execute(&history, &[id, &serial]).await.map_err(|e| classify(&e))?;
                let save = tx
                    .prepare_cached(SAVE_CERTIFICATE)
                    .await
                    .map_err(|e| classify(&e))?;
                tx.execute(&save, &[id, &directory, record, &sealed.bytes(), &sealed.kek_id()])
                    .await
                    .map_err(|e| classify(&e))?;
                if let Some(kind) = change {
                    feed::record(&tx, id, kind, &certificate.serial, retention, bound).await?;
                }
                commit(tx, "save certificate", &sent).await
            })
        })
        .await?;
        self.count(5, 2);
        Ok(())
    }

    async fn list_certificates(&self, directory: &str) -> StoreResult<Vec<IdentifierSetKey>> {
        let rows = self
            .db_query(
                "list certificates",
                "SELECT record_key, directory, record->>'url' FROM sturdy_certificates \
                             WHERE directory = $1 OR directory IS NULL ORDER BY record_key",
                &[&directory],
            )
            .await?;
        self.count(1, 0);
        let mut keys = Vec::new();
        for row in rows {
            let text: String = row.get(0);
            let scoped: Option<String> = row.get(1);
            let url: Option<String> = row.get(2);
            // A legacy key (no CA) is listed when its certificate is on
            // the directory's origin.
            if scoped.is_none() && !url.as_deref().is_some_and(|u| same_origin(u, directory)) {
                continue;
            }
            match serde_json::from_str::<IdentifierSetKey>(&text) {
                Ok(key) => keys.push(key),
                Err(e) => {
                    tracing::warn!(key = %text, error = %e, "a certificate row's key does not parse; not listed")
                }
            }
        }
        Ok(keys)
    }

    async fn list_journals(&self, directory: &str) -> StoreResult<Vec<IdentifierSetKey>> {
        let rows = self
            .db_query(
                "list journals",
                "SELECT record_key FROM sturdy_journals WHERE directory = $1 \
                             ORDER BY record_key",
                &[&directory],
            )
            .await?;
        self.count(1, 0);
        let mut keys = Vec::new();
        for row in rows {
            let text: String = row.get(0);
            match serde_json::from_str::<IdentifierSetKey>(&text) {
                Ok(key) => keys.push(key),
                Err(e) => {
                    tracing::warn!(key = %text, error = %e, "a journal row's key does not parse; not listed")
                }
            }
        }
        Ok(keys)
    }

    async fn load_journal(&self, key: &IdentifierSetKey) -> StoreResult<Option<Journal>> {
        self.read_row("load journal", LOAD_JOURNAL, "journal", &record_key(key))
            .await
    }

    async fn save_journal(&self, key: &IdentifierSetKey, journal: &Journal) -> StoreResult<()> {
        let id = record_key(key);
        let (record, sealed) = self.split(&identity("journal", &id), journal)?;
        let directory = journal_directory(key, journal);
        self.write_row(
            "save journal",
            SAVE_JOURNAL,
            &id,
            Some(Some(directory)),
            &record,
            &sealed,
        )
        .await
    }

    async fn save_journal_fenced(
        &self,
        key: &IdentifierSetKey,
        journal: &Journal,
        lease: &Lease,
    ) -> StoreResult<()> {
        let id = record_key(key);
        let (record, sealed) = self.split(&identity("journal", &id), journal)?;
        let directory = journal_directory(key, journal);
        let token = i64::try_from(lease.token).unwrap_or(i64::MAX);
        let (id, record, sealed) = (&id, &record, &sealed);
        let written = self
            .db_execute(
                "save journal (fenced)",
                SAVE_JOURNAL_FENCED,
                &[
                    id,
                    &directory,
                    record,
                    &sealed.bytes(),
                    &sealed.kek_id(),
                    &lease.name,
                    &lease.holder,
                    &token,
                ],
            )
            .await?;
        self.count(1, 1);
        if written == 1 {
            return Ok(());
        }
        let reason = self
            .lost_reason(lease)
            .await?
            .unwrap_or_else(|| "it was not current when the journal was written".into());
        Err(StoreError::LeaseLost {
            name: lease.name.clone(),
            token: lease.token,
            reason,
        })
    }

    async fn delete_journal(&self, key: &IdentifierSetKey) -> StoreResult<()> {
        let id = record_key(key);
        let id = &id;
        self.db_execute(
            "delete journal",
            "DELETE FROM sturdy_journals WHERE record_key = $1",
            &[id],
        )
        .await?;
        self.count(1, 1);
        Ok(())
    }

    async fn delete_journal_fenced(
        &self,
        key: &IdentifierSetKey,
        lease: &Lease,
    ) -> StoreResult<()> {
        let id = record_key(key);
        let id = &id;
        let token = i64::try_from(lease.token).unwrap_or(i64::MAX);
        self.run("delete journal (fenced)", |c| {
            Box::pin(async move {
                let stmt = c
                    .prepare_cached(
                        "WITH fence AS ( \
                           SELECT 1 FROM sturdy_leases WHERE name = $2 AND holder = $3 AND token = $4 \
                           AND until > now() FOR SHARE \
                         ), gone AS ( \
                           DELETE FROM sturdy_journals WHERE record_key = $1 AND EXISTS (SELECT 1 FROM fence) \
                         ) \
                         SELECT count(*) FROM fence",
                    )
                    .await
                    .map_err(|e| classify(&e))?;
                c.query_one(&stmt, &[id, &lease.name, &lease.holder, &token])
                    .await
                    .map_err(|e| classify(&e))
                    .map(|row| row.get::<_, i64>(0))
            })
        })
        .await
        .and_then(|fenced| {
            self.count(1, 1);
            if fenced == 1 {
                Ok(())
            } else {
                Err(StoreError::LeaseLost {
                    name: lease.name.clone(),
                    token: lease.token,
                    reason: "it was not current when the journal was to be deleted".into(),
                })
            }
        })
    }

    async fn archive_journal(&self, key: &IdentifierSetKey, journal: &Journal) -> StoreResult<()> {
        let id = record_key(key);
        // Sealed for the live journal's identity, so it can be opened (and
        // moved back by a human) with the same key.
        let (record, sealed) = self.split(&identity("journal", &id), journal)?;
        self.write_row(
            "archive journal",
            ARCHIVE_JOURNAL,
            &id,
            None,
            &record,
            &sealed,
        )
        .await
    }

    async fn changes_since(&self, after: u64, limit: usize) -> StoreResult<ChangePage> {
        let after_db = i64::try_from(after).unwrap_or(i64::MAX);
        let limit_db = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .db_query("read changes", feed::PAGE, &[&after_db, &limit_db])
            .await?;
        self.count(1, 0);
        feed::page(after, &rows)
    }

    /// Wakes on the `NOTIFY` of the listening connection, and reads the
    /// head from the database before and after (a lost notification
    /// costs at most `timeout`).
    async fn wait_for_changes(&self, after: u64, timeout: Duration) -> StoreResult<u64> {
        let mut heard = self.inner.listener.subscribe();
        let head = self.feed_head().await?;
        if head > after {
            return Ok(head);
        }
        let _ = tokio::time::timeout(timeout, heard.wait_for(|h| *h > after)).await;
        self.feed_head().await
    }

    async fn feed_snapshot(&self) -> StoreResult<FeedSnapshot> {
        let revision = self.feed_head().await?;
        let rows = self
            .db_query(
                "list every certificate",
                "SELECT record_key FROM sturdy_certificates ORDER BY record_key",
                &[],
            )
            .await?;
        self.count(1, 0);
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let text: String = row.get(0);
            match serde_json::from_str::<IdentifierSetKey>(&text) {
                Ok(key) => keys.push(key),
                Err(e) => {
                    tracing::warn!(key = %text, error = %e, "a certificate row's key does not parse; not listed")
                }
            }
        }
        let validations = self.validation_names().await?;
        Ok(FeedSnapshot {
            revision,
            keys,
            validations,
        })
    }

    async fn request_certificate(&self, name: &str, edge: &str) -> StoreResult<bool> {
        self.record_request(name, edge).await
    }

    async fn list_requests(&self) -> StoreResult<Vec<sturdy_acme::store::CertificateRequest>> {
        self.pending_requests().await
    }

    async fn delete_request(&self, name: &str) -> StoreResult<()> {
        self.forget_request(name).await
    }

    async fn save_validation(
        &self,
        validation: &sturdy_acme::store::ValidationCertificate,
    ) -> StoreResult<()> {
        self.publish_validation(validation).await
    }

    async fn load_validation(
        &self,
        name: &str,
    ) -> StoreResult<Option<sturdy_acme::store::ValidationCertificate>> {
        self.read_validation(name).await
    }

    async fn delete_validation(&self, name: &str) -> StoreResult<()> {
        self.withdraw_validation(name).await
    }

    async fn load_directory(&self, directory: &str) -> StoreResult<Option<DirectoryRecord>> {
        let row = self
            .db_query_opt(
                "load directory",
                "SELECT record FROM sturdy_directories WHERE directory = $1",
                &[&directory],
            )
            .await?;
        self.count(1, 0);
        let Some(value) = row.map(|row| row.get::<_, Value>(0)) else {
            return Ok(None);
        };
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| StoreError::Corrupted {
                path: format!("postgres:sturdy_directories/{directory}").into(),
                reason: format!("not a directory record: {e}"),
            })
    }

    async fn save_directory(&self, directory: &str, record: &DirectoryRecord) -> StoreResult<()> {
        let value = serde_json::to_value(record).map_err(|e| {
            StoreError::Other(format!("encoding the directory of {directory}: {e}"))
        })?;
        self.db_execute(
            "save directory",
            "INSERT INTO sturdy_directories (directory, record) VALUES ($1, $2) \
             ON CONFLICT (directory) DO UPDATE SET record = excluded.record",
            &[&directory, &value],
        )
        .await?;
        self.count(1, 1);
        Ok(())
    }

    async fn load_ledger(&self, directory: &str) -> StoreResult<Option<RateLimitRecord>> {
        let row = self
            .db_query_opt(
                "load ledger",
                "SELECT state FROM sturdy_ledgers WHERE directory = $1",
                &[&directory],
            )
            .await?;
        self.count(1, 0);
        Ok(row
            .and_then(|row| row.get::<_, Option<Value>>(0))
            .map(|state| RateLimitRecord { state }))
    }

    async fn save_ledger(&self, directory: &str, ledger: &RateLimitRecord) -> StoreResult<()> {
        let state = &ledger.state;
        self.db_execute("save ledger", "INSERT INTO sturdy_ledgers (directory, state) VALUES ($1, $2) \
                         ON CONFLICT (directory) DO UPDATE SET state = excluded.state, updated_at = now()", &[&directory, state])
        .await?;
        self.count(1, 1);
        Ok(())
    }

    async fn load_ledger_entries(
        &self,
        directory: &str,
        keys: Option<&[String]>,
    ) -> StoreResult<sturdy_acme::store::LedgerEntries> {
        self.read_ledger_entries(directory, keys).await
    }

    async fn update_ledger_entries(
        &self,
        directory: &str,
        keys: &[String],
        update: &mut sturdy_acme::store::LedgerEntriesUpdate<'_>,
    ) -> StoreResult<()> {
        self.update_ledger_entries_once(directory, keys, update)
            .await
    }

    async fn list_managed(&self, directory: &str) -> StoreResult<Vec<ManagedRecord>> {
        let rows = self
            .db_query(
                "list renewer records",
                "SELECT id, record FROM sturdy_managed WHERE directory = $1 ORDER BY id",
                &[&directory],
            )
            .await?;
        self.count(1, 0);
        Ok(rows
            .into_iter()
            .map(|row| ManagedRecord {
                id: row.get(0),
                value: row.get(1),
            })
            .collect())
    }

    async fn save_managed(&self, directory: &str, record: &ManagedRecord) -> StoreResult<()> {
        self.db_execute(
            "save renewer record",
            "INSERT INTO sturdy_managed (directory, id, record) VALUES ($1, $2, $3) \
             ON CONFLICT (directory, id) DO UPDATE SET record = excluded.record, updated_at = now()",
            &[&directory, &record.id, &record.value],
        )
        .await?;
        self.count(1, 1);
        Ok(())
    }

    async fn delete_managed(&self, directory: &str, id: &str) -> StoreResult<()> {
        self.db_execute(
            "delete renewer record",
            "DELETE FROM sturdy_managed WHERE directory = $1 AND id = $2",
            &[&directory, &id],
        )
        .await?;
        self.count(1, 1);
        Ok(())
    }

    async fn update_ledger(
        &self,
        directory: &str,
        update: &mut LedgerUpdate<'_>,
    ) -> StoreResult<()> {
        self.update_ledger_once(directory, update).await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> StoreResult<Lease> {
        self.take_lease(name, holder, ttl).await
    }

    async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> StoreResult<Lease> {
        self.extend_lease(lease, ttl).await
    }

    async fn check_lease(&self, lease: &Lease) -> StoreResult<()> {
        self.judge_lease_row(lease).await
    }

    async fn release_lease(&self, lease: &Lease) -> StoreResult<()> {
        self.give_up_lease(lease).await
    }
}

/// A fresh id for one ledger update or lease acquisition (128 random
/// bits, hex).
pub(crate) fn request_id() -> StoreResult<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| StoreError::Other("no randomness for a ledger request id".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The directory a journal is listed under: its key's CA, or (a legacy
/// key) the directory the journal names.
fn journal_directory<'a>(key: &'a IdentifierSetKey, journal: &'a Journal) -> &'a str {
    key.ca()
        .map(|ca| ca.directory.as_str())
        .unwrap_or(journal.directory.as_str())
}

/// True when both URLs have the same scheme, host and port.
fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin() && a.origin().is_tuple(),
        _ => false,
    }
}

/// The README's code compiles.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
