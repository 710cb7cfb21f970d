//! The PostgreSQL schema: embedded, versioned migrations applied on open,
//! under a transaction-scoped advisory lock so nodes starting together
//! apply each one once.

use tokio_postgres::GenericClient;

use super::classify;
use sturdy_acme::{DatabaseErrorKind, StoreError};

/// The advisory lock key every node takes while migrating.
const MIGRATION_LOCK: i64 = 0x5354_5552_4459_0001;

/// The schema version this build writes and reads.
pub(crate) const LATEST: i32 = MIGRATIONS.len() as i32;

/// Migration `n` (1-based) is `MIGRATIONS[n - 1]`; never edit one that
/// shipped, append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE sturdy_accounts (
    directory   text PRIMARY KEY,
    record      jsonb NOT NULL,
    sealed      bytea NOT NULL,
    kek_id      text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sturdy_certificates (
    record_key  text PRIMARY KEY,
    directory   text,
    record      jsonb NOT NULL,
    sealed      bytea NOT NULL,
    kek_id      text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sturdy_certificates_directory ON sturdy_certificates (directory);
CREATE TABLE sturdy_certificate_history (
    id          bigserial PRIMARY KEY,
    record_key  text NOT NULL,
    record      jsonb NOT NULL,
    sealed      bytea NOT NULL,
    kek_id      text,
    replaced_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sturdy_certificate_history_key ON sturdy_certificate_history (record_key);
CREATE TABLE sturdy_journals (
    record_key  text PRIMARY KEY,
    directory   text NOT NULL,
    record      jsonb NOT NULL,
    sealed      bytea NOT NULL,
    kek_id      text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sturdy_journals_directory ON sturdy_journals (directory);
CREATE TABLE sturdy_journal_archive (
    id          bigserial PRIMARY KEY,
    record_key  text NOT NULL,
    record      jsonb NOT NULL,
    sealed      bytea NOT NULL,
    kek_id      text,
    archived_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sturdy_ledgers (
    directory   text PRIMARY KEY,
    state       jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE SEQUENCE sturdy_lease_tokens;
CREATE TABLE sturdy_leases (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    token       bigint NOT NULL,
    until       timestamptz NOT NULL,
    host        text NOT NULL DEFAULT '',
    pid         bigint NOT NULL DEFAULT 0,
    start_time  bigint NOT NULL DEFAULT 0,
    pid_ns      text NOT NULL DEFAULT ''
);
"#,
    r#"
CREATE TABLE sturdy_managed (
    directory   text NOT NULL,
    id          text NOT NULL,
    record      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (directory, id)
);
"#,
    // Issue 27: each ledger update records its request id with the new
    // state, so a COMMIT whose answer was lost is recognised when read
    // back (never applied twice). Ids older than a day are pruned. Leases
    // record the acquisition that took them.
    r#"
CREATE TABLE sturdy_ledger_requests (
    directory   text NOT NULL,
    request_id  text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (directory, request_id)
);
CREATE INDEX sturdy_ledger_requests_age ON sturdy_ledger_requests (directory, applied_at);
-- Each acquisition names itself, so its own retry (the first answer lost)
-- is recognised while any other acquisition, the same holder's included,
-- is refused.
ALTER TABLE sturdy_leases ADD COLUMN claim text NOT NULL DEFAULT '';
"#,
    // 4: the directory each CA last served, so a client can be built while
    // its CA is down.
    r#"
CREATE TABLE sturdy_directories (
    directory text PRIMARY KEY,
    record    jsonb NOT NULL
);
"#,
    // 5: the change feed (see feed.rs).
    r#"
CREATE SEQUENCE sturdy_change_revisions;
CREATE TABLE sturdy_changes (
    revision     bigint PRIMARY KEY,
    record_key   text NOT NULL,
    kind         text NOT NULL,
    serial       text NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sturdy_feed_state (
    id             integer PRIMARY KEY CHECK (id = 1),
    pruned_through bigint NOT NULL
);
INSERT INTO sturdy_feed_state (id, pruned_through) VALUES (1, 0);
"#,
    // 6: what edges need besides certificates: on-demand requests and
    // tls-alpn-01 validation certificates (see requests.rs).
    r#"
CREATE TABLE sturdy_requests (
    name         text PRIMARY KEY,
    edge         text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sturdy_validations (
    name       text PRIMARY KEY,
    record     jsonb NOT NULL,
    sealed     bytea NOT NULL,
    kek_id     text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"#,
    // 7: the ledger split in entries, one row each (see ledger.rs), the
    // whole documents' buckets and remembered 429s copied into them (the
    // documents are left as they were, unused).
    r#"
CREATE TABLE sturdy_ledger_entries (
    directory  text NOT NULL,
    key        text NOT NULL,
    value      jsonb,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (directory, key)
);
INSERT INTO sturdy_ledger_entries (directory, key, value)
SELECT l.directory, b.key, b.value
FROM sturdy_ledgers l, jsonb_each(l.state->'buckets') b
WHERE jsonb_typeof(l.state->'buckets') = 'object';
INSERT INTO sturdy_ledger_entries (directory, key, value)
SELECT l.directory, 'block:' || (b->>'key') || ' ' || (b->>'account'), jsonb_agg(b)
FROM sturdy_ledgers l, jsonb_array_elements(l.state->'blocks') b
WHERE jsonb_typeof(l.state->'blocks') = 'array'
  AND jsonb_typeof(b) = 'object' AND b ? 'account' AND b ? 'key'
GROUP BY 1, 2
ON CONFLICT (directory, key) DO NOTHING;
"#,
];

/// Brings the schema to [`LATEST`], or fails with a
/// [`DatabaseErrorKind::Schema`] error if the database is newer than this
/// build. Returns the version found before.
pub(crate) async fn migrate(client: &mut tokio_postgres::Client) -> Result<i32, StoreError> {
    let tx = client.transaction().await.map_err(|e| classify(&e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| classify(&e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS sturdy_schema_version (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(|e| classify(&e))?;
    let found = current_version(&tx).await?;
    if found > LATEST {
        return Err(StoreError::Database {
            kind: DatabaseErrorKind::Schema,
            code: None,
            message: format!(
                "the database's schema is version {found}, newer than this build knows ({LATEST}); \
                 upgrade sturdy-acme on this node"
            ),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::Database {
                kind: DatabaseErrorKind::Schema,
                code: e.code().map(|c| c.code().to_owned()),
                message: format!("migration {version} failed: {e}"),
            })?;
        tx.execute(
            "INSERT INTO sturdy_schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(|e| classify(&e))?;
        tracing::info!(version, "PostgreSQL store schema migrated");
    }
    tx.commit().await.map_err(|e| classify(&e))?;
    Ok(found)
}

async fn current_version(client: &impl GenericClient) -> Result<i32, StoreError> {
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM sturdy_schema_version",
            &[],
        )
        .await
        .map_err(|e| classify(&e))?;
    Ok(row.get(0))
}
