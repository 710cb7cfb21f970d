//! The rate-limit ledger's atomic updates: the whole document under its
//! row's lock, and the split form, one row per entry
//! (`sturdy_ledger_entries`), under the locks of the rows an update names
//! only; each with a request id recorded beside the new state so a
//! `COMMIT` whose answer was lost is read back, never applied twice.

use serde_json::Value;

use super::{PostgresStore, classify, commit, request_id};
use sturdy_acme::store::ledger::key_prefix;
use sturdy_acme::store::{
    LedgerEntries, LedgerEntriesUpdate, LedgerUpdate, RateLimitRecord, StoreResult,
};

impl PostgresStore {
    /// [`Store::update_ledger`](sturdy_acme::store::Store::update_ledger), applied
    /// at most once: one transaction under the ledger row's lock, recorded
    /// with a request id of its own. A `COMMIT` whose answer never came is
    /// read back by running the transaction again, which finds its request
    /// id (the update was applied: `update` is not called again, and what
    /// it captured from the applied run stands) or not (it was not: applied
    /// now). The ledger is never spent or refunded twice for one call.
    pub(super) async fn update_ledger_once(
        &self,
        directory: &str,
        update: &mut LedgerUpdate<'_>,
    ) -> StoreResult<()> {
        let request = request_id()?;
        let update = std::sync::Mutex::new(update);
        let (update, request) = (&update, request.as_str());
        let outcome = self
            .run_until_known("update ledger", |mut c, sent| {
                Box::pin(async move {
                    let tx = c.transaction().await.map_err(|e| classify(&e))?;
                    // The row exists (empty) before it is locked, so the
                    // first update of a new ledger is serialized too.
                    let ensure = tx
                        .prepare_cached(
                            "INSERT INTO sturdy_ledgers (directory, state) VALUES ($1, NULL) \
                             ON CONFLICT (directory) DO NOTHING",
                        )
                        .await
                        .map_err(|e| classify(&e))?;
                    tx.execute(&ensure, &[&directory])
                        .await
                        .map_err(|e| classify(&e))?;
                    // The row lock first: an earlier run of this very
                    // update held it until its COMMIT ended, and the row is
                    // read as that COMMIT left it.
                    let lock = tx
                        .prepare_cached(
                            "SELECT state FROM sturdy_ledgers WHERE directory = $1 FOR UPDATE",
                        )
                        .await
                        .map_err(|e| classify(&e))?;
                    let row = tx
                        .query_one(&lock, &[&directory])
                        .await
                        .map_err(|e| classify(&e))?;
                    // Then whether that run was applied, in a statement of
                    // its own: under READ COMMITTED each statement takes a
                    // fresh snapshot, so it sees a COMMIT that ended while
                    // the lock was awaited (a subquery of the locking
                    // statement would judge by the snapshot taken before
                    // the wait and apply the update twice).
                    let applied = tx
                        .prepare_cached(
                            "SELECT EXISTS (SELECT 1 FROM sturdy_ledger_requests \
                               WHERE directory = $1 AND request_id = $2)",
                        )
                        .await
                        .map_err(|e| classify(&e))?;
                    let seen = tx
                        .query_one(&applied, &[&directory, &request])
                        .await
                        .map_err(|e| classify(&e))?;
                    if seen.get::<_, bool>(0) {
                        tx.rollback().await.map_err(|e| classify(&e))?;
                        return Ok(LedgerOutcome::AlreadyApplied);
                    }
                    let current = row
                        .get::<_, Option<Value>>(0)
                        .map(|state| RateLimitRecord { state });
                    let next = {
                        let mut f = update.lock().unwrap_or_else(|p| p.into_inner());
                        (**f)(current.as_ref())
                    };
                    let Some(next) = next else {
                        tx.rollback().await.map_err(|e| classify(&e))?;
                        return Ok(LedgerOutcome::Unchanged);
                    };
                    // The new state, this request's id, and the ids too old
                    // to be read back any more gone, in one statement.
                    let write = tx
                        .prepare_cached(
                            "WITH done AS ( \
                               INSERT INTO sturdy_ledger_requests (directory, request_id) \
                               VALUES ($1, $3) \
                             ), pruned AS ( \
                               DELETE FROM sturdy_ledger_requests WHERE directory = $1 \
                               AND applied_at < now() - interval '1 day' \
                             ) \
                             UPDATE sturdy_ledgers SET state = $2, updated_at = now() \
                             WHERE directory = $1",
                        )
                        .await
                        .map_err(|e| classify(&e))?;
                    tx.execute(&write, &[&directory, &next.state, &request])
                        .await
                        .map_err(|e| classify(&e))?;
                    commit(tx, "update ledger", &sent).await?;
                    Ok(LedgerOutcome::Written)
                })
            })
            .await?;
        match outcome {
            LedgerOutcome::Written => self.count(5, 1),
            LedgerOutcome::Unchanged => self.count(4, 0),
            LedgerOutcome::AlreadyApplied => {
                tracing::info!(
                    directory,
                    "PostgreSQL store: a ledger update whose COMMIT went unanswered was applied"
                );
                self.count(4, 0)
            }
        }
        Ok(())
    }
}

/// What one run of a ledger update did.
enum LedgerOutcome {
    /// Applied and committed.
    Written,
    /// `update` wanted no change.
    Unchanged,
    /// An earlier run of the same call had been applied (its `COMMIT`
    /// went unanswered): nothing done again.
    AlreadyApplied,
}

impl PostgresStore {
    /// [`Store::load_ledger_entries`](sturdy_acme::store::Store::load_ledger_entries):
    /// the rows asked (or every row of the directory).
    pub(super) async fn read_ledger_entries(
        &self,
        directory: &str,
        keys: Option<&[String]>,
    ) -> StoreResult<LedgerEntries> {
        let rows = match keys {
            Some(keys) => {
                let (prefixes, exact): (Vec<&str>, Vec<&str>) = keys
                    .iter()
                    .map(String::as_str)
                    .partition(|k| key_prefix(k).is_some());
                let prefixes: Vec<&str> = prefixes.into_iter().filter_map(key_prefix).collect();
                self.db_query(
                    "load ledger entries",
                    "SELECT key, value FROM sturdy_ledger_entries \
                     WHERE directory = $1 AND (key = ANY($2) OR key ^@ ANY($3)) \
                     AND value IS NOT NULL",
                    &[&directory, &exact, &prefixes],
                )
                .await?
            }
            None => {
                self.db_query(
                    "load every ledger entry",
                    "SELECT key, value FROM sturdy_ledger_entries \
                     WHERE directory = $1 AND value IS NOT NULL",
                    &[&directory],
                )
                .await?
            }
        };
        self.count(1, 0);
        Ok(rows
            .into_iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, Value>(1)))
            .collect())
    }

    /// [`Store::update_ledger_entries`](sturdy_acme::store::Store::update_ledger_entries),
    /// applied at most once: one transaction that locks only the rows of
    /// the keys asked, in key order (so two updates never deadlock), by
    /// one upsert that creates a missing row and locks an existing one in
    /// the same statement, then reads back whether an earlier run of this
    /// call was applied (its request id, as [`Self::update_ledger_once`]
    /// does), then writes the changed rows and the request id in one
    /// statement. Updates of other keys run beside it.
    pub(super) async fn update_ledger_entries_once(
        &self,
        directory: &str,
        keys: &[String],
        update: &mut LedgerEntriesUpdate<'_>,
    ) -> StoreResult<()> {
        let request = request_id()?;
        let mut sorted: Vec<&str> = keys.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let update = std::sync::Mutex::new(update);
        let (update, request, sorted) = (&update, request.as_str(), &sorted);
        // Now and then, rows left empty for a day go (a bucket refilled).
        let prune = request.starts_with("00");
        let outcome = self
            .run_until_known("update ledger entries", |mut c, sent| {
                Box::pin(async move {
                    let tx = c.transaction().await.map_err(|e| classify(&e))?;
                    let lock = tx
                        .prepare_cached(
                            "INSERT INTO sturdy_ledger_entries (directory, key, value) \
                             SELECT $1, k, NULL FROM unnest($2::text[]) AS k ORDER BY k \
                             ON CONFLICT (directory, key) DO UPDATE SET key = excluded.key \
                             RETURNING key, value",
                        )
                        .await
                        .map_err(|e| classify(&e))?;
                    let rows = tx
                        .query(&lock, &[&directory, sorted])
                        .await
                        .map_err(|e| classify(&e))?;
                    // A statement of its own, after the locks were awaited
                    // (see update_ledger_once).
                    let applied = tx
                        .prepare_cached(
                            "SELECT EXISTS (SELECT 1 FROM sturdy_ledger_requests \
                               WHERE directory = $1 AND request_id = $2)",
                        )
                        .await
                        .map_err(|e| classify(&e))?;
                    let seen = tx
                        .query_one(&applied, &[&directory, &request])
                        .await
                        .map_err(|e| classify(&e))?;
                    if seen.get::<_, bool>(0) {
                        tx.rollback().await.map_err(|e| classify(&e))?;
                        return Ok(LedgerOutcome::AlreadyApplied);
                    }
                    let current: LedgerEntries = rows
                        .into_iter()
                        .filter_map(|row| {
                            let value: Option<Value> = row.get(1);
                            value.map(|v| (row.get::<_, String>(0), v))
                        })
                        .collect();
                    let changes = {
                        let mut f = update.lock().unwrap_or_else(|p| p.into_inner());
                        (**f)(&current)
                    };
                    let changes: Vec<(String, Value)> = changes
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|(k, _)| sorted.contains(&k.as_str()))
                        .collect();
                    if changes.is_empty() {
                        tx.rollback().await.map_err(|e| classify(&e))?;
                        return Ok(LedgerOutcome::Unchanged);
                    }
                    let (changed_keys, values): (Vec<String>, Vec<Value>) =
                        changes.into_iter().unzip();
                    let write = tx
                        .prepare_cached(
                            "WITH done AS ( \
                               INSERT INTO sturdy_ledger_requests (directory, request_id) \
                               VALUES ($1, $4) \
                             ), pruned AS ( \
                               DELETE FROM sturdy_ledger_requests WHERE $5 AND directory = $1 \
                               AND applied_at < now() - interval '1 day' \
                             ), emptied AS ( \
                               DELETE FROM sturdy_ledger_entries WHERE (directory, key) IN ( \
                                 SELECT directory, key FROM sturdy_ledger_entries \
                                 WHERE $5 AND directory = $1 AND value IS NULL \
                                 AND updated_at < now() - interval '1 day' AND NOT key = ANY($2) \
                                 LIMIT 1000 FOR UPDATE SKIP LOCKED) \
                             ) \
                             UPDATE sturdy_ledger_entries AS e \
                             SET value = NULLIF(c.value, 'null'::jsonb), updated_at = now() \
                             FROM unnest($2::text[], $3::jsonb[]) AS c(key, value) \
                             WHERE e.directory = $1 AND e.key = c.key",
                        )
                        .await
                        .map_err(|e| classify(&e))?;
                    tx.execute(
                        &write,
                        &[&directory, &changed_keys, &values, &request, &prune],
                    )
                    .await
                    .map_err(|e| classify(&e))?;
                    commit(tx, "update ledger entries", &sent).await?;
                    Ok(LedgerOutcome::Written)
                })
            })
            .await?;
        match outcome {
            LedgerOutcome::Written => self.count(5, 1),
            LedgerOutcome::Unchanged => self.count(4, 0),
            LedgerOutcome::AlreadyApplied => {
                tracing::info!(
                    directory,
                    "PostgreSQL store: a ledger update whose COMMIT went unanswered was applied"
                );
                self.count(4, 0)
            }
        }
        Ok(())
    }
}
