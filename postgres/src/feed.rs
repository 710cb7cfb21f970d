//! The change feed on PostgreSQL (see `sturdy_acme::store::feed`).
//!
//! - **A revision per change, in commit order.** A certificate save that
//!   changes what an edge serves inserts its change row in the same
//!   transaction, after taking a transaction-scoped advisory lock on the
//!   feed: the revision (`nextval`) is drawn under that lock, which is
//!   held until the commit, so revisions are committed in order and a
//!   reader that saw revision N has seen every committed revision below N.
//!   (Revisions of transactions that rolled back are gaps, never read.)
//! - **`NOTIFY` for the wake-up, the revision for catch-up.** The same
//!   transaction sends `pg_notify('sturdy_changes', revision)` (delivered
//!   at commit). [`Listener`] keeps one connection outside the pool on
//!   `LISTEN sturdy_changes` and republishes the head it hears; after each
//!   (re)connection it reads the head, so a notification sent while it was
//!   disconnected loses nothing. A reader never trusts the notification
//!   alone: it pages by revision.
//! - **Bounded retention.** Every [`PRUNE_EVERY`] revisions the writer
//!   deletes the changes older than the retention and records how far it
//!   pruned (`sturdy_feed_state`); a reader asking after that gets
//!   `StoreError::FeedBehind`.

use std::sync::Arc;
use std::time::Duration;

use sturdy_acme::StoreError;
use sturdy_acme::store::{Change, ChangeKind, ChangePage, IdentifierSetKey};
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use crate::classify;

/// The advisory lock that orders the feed's writers.
const FEED_LOCK: i64 = 0x5354_5552_4459_0002;
/// The channel of the notifications.
const CHANNEL: &str = "sturdy_changes";
/// How often (in revisions) the writer prunes.
pub(crate) const PRUNE_EVERY: i64 = 1024;

/// Records `kind` for the certificate `record_key` in the transaction
/// `tx` (which saved it): the revision is drawn under the feed's lock.
///
/// The lock is the feed's one serialization point, so this transaction
/// may neither wait for it nor hold it idle longer than `bound` (a writer
/// partitioned before its `COMMIT` would otherwise stall every save of
/// every node until the server noticed): `lock_timeout` and
/// `idle_in_transaction_session_timeout` for the rest of the transaction.
pub(crate) async fn record(
    tx: &deadpool_postgres::Transaction<'_>,
    record_key: &str,
    kind: ChangeKind,
    serial: &str,
    retention: i64,
    bound: Duration,
) -> Result<i64, StoreError> {
    let ms = format!("{}ms", bound.as_millis().max(1));
    let guard = tx
        .prepare_cached(
            "SELECT set_config('lock_timeout', $1, true), \
             set_config('idle_in_transaction_session_timeout', $1, true)",
        )
        .await
        .map_err(|e| classify(&e))?;
    tx.execute(&guard, &[&ms]).await.map_err(|e| classify(&e))?;
    let lock = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1)")
        .await
        .map_err(|e| classify(&e))?;
    tx.execute(&lock, &[&FEED_LOCK])
        .await
        .map_err(|e| classify(&e))?;
    let insert = tx
        .prepare_cached(
            "WITH c AS (INSERT INTO sturdy_changes (revision, record_key, kind, serial) \
             VALUES (nextval('sturdy_change_revisions'), $1, $2, $3) RETURNING revision) \
             SELECT revision, pg_notify('sturdy_changes', revision::text) FROM c",
        )
        .await
        .map_err(|e| classify(&e))?;
    let row = tx
        .query_one(&insert, &[&record_key, &kind.as_str(), &serial])
        .await
        .map_err(|e| classify(&e))?;
    let revision: i64 = row.get(0);
    if revision % PRUNE_EVERY.min(retention.max(1)) == 0 {
        let through = revision - retention.max(1);
        tx.execute(
            "DELETE FROM sturdy_changes WHERE revision <= $1",
            &[&through],
        )
        .await
        .map_err(|e| classify(&e))?;
        tx.execute(
            "UPDATE sturdy_feed_state SET pruned_through = GREATEST(pruned_through, $1) WHERE id = 1",
            &[&through],
        )
        .await
        .map_err(|e| classify(&e))?;
    }
    Ok(revision)
}

/// The page after `after`: one statement, so the head and the page are
/// read in one snapshot.
pub(crate) const PAGE: &str = "SELECT h.head, h.pruned, c.revision, c.record_key, c.kind, c.serial \
     FROM (SELECT GREATEST(COALESCE((SELECT max(revision) FROM sturdy_changes), 0), \
                           (SELECT pruned_through FROM sturdy_feed_state WHERE id = 1)) AS head, \
                  (SELECT pruned_through FROM sturdy_feed_state WHERE id = 1) AS pruned) h \
     LEFT JOIN LATERAL (SELECT revision, record_key, kind, serial FROM sturdy_changes \
                        WHERE revision > $1 ORDER BY revision LIMIT $2) c ON true";

/// The head revision.
pub(crate) const HEAD: &str = "SELECT GREATEST(COALESCE((SELECT max(revision) FROM sturdy_changes), 0), \
     (SELECT pruned_through FROM sturdy_feed_state WHERE id = 1))";

/// The page from the rows of [`PAGE`].
pub(crate) fn page(after: u64, rows: &[tokio_postgres::Row]) -> Result<ChangePage, StoreError> {
    let Some(first) = rows.first() else {
        return Err(StoreError::Other(
            "the change feed's state row is missing (sturdy_feed_state)".into(),
        ));
    };
    let head: i64 = first.get::<_, Option<i64>>(0).unwrap_or(0);
    let pruned: i64 = first.get::<_, Option<i64>>(1).unwrap_or(0);
    let after_db = i64::try_from(after).unwrap_or(i64::MAX);
    // Behind the retention, or ahead of the head (a failover to a replica
    // that lost commits, a restore): start again from a snapshot.
    if after_db < pruned || after_db > head {
        return Err(StoreError::FeedBehind {
            after,
            oldest: pruned.max(0) as u64 + 1,
        });
    }
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(revision) = row.get::<_, Option<i64>>(2) else {
            continue;
        };
        let corrupted = |reason: String| StoreError::Corrupted {
            path: format!("postgres:sturdy_changes/{revision}").into(),
            reason,
        };
        let key_text: String = row.get(3);
        let key: IdentifierSetKey = serde_json::from_str(&key_text)
            .map_err(|e| corrupted(format!("its key does not parse: {e}")))?;
        let kind_text: String = row.get(4);
        // A kind a newer version wrote is kept as `Other` (readers skip it).
        let kind = ChangeKind::from_name(&kind_text);
        changes.push(Change {
            revision: revision as u64,
            key,
            kind,
            serial: row.get(5),
        });
    }
    Ok(ChangePage {
        changes,
        head: head.max(0) as u64,
    })
}

/// One connection on `LISTEN sturdy_changes`, outside the pool,
/// reconnecting while the store lives; it publishes the head it hears.
pub(crate) struct Listener {
    head: watch::Sender<u64>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl Listener {
    pub(crate) fn new(
        config: tokio_postgres::Config,
        tls: tokio_postgres_rustls::MakeRustlsConnect,
    ) -> Self {
        Self {
            head: watch::Sender::new(0),
            task: std::sync::Mutex::new(None),
            config,
            tls,
        }
    }

    /// A receiver of the heads heard, the listening task started if it
    /// was not.
    pub(crate) fn subscribe(self: &Arc<Self>) -> watch::Receiver<u64> {
        let rx = self.head.subscribe();
        let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if task.as_ref().is_none_or(|t| t.is_finished()) {
            let weak = Arc::downgrade(self);
            *task = Some(tokio::spawn(listen(weak)));
        }
        rx
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

/// Listens until the store is dropped, reconnecting with a backoff.
async fn listen(this: std::sync::Weak<Listener>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(listener) = this.upgrade() else {
            return;
        };
        let (config, tls) = (listener.config.clone(), listener.tls.clone());
        drop(listener);
        match config.connect(tls).await {
            Ok((client, mut connection)) => {
                let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
                let driver = AbortOnDrop(tokio::spawn(async move {
                    while let Some(message) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        match message {
                            Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                                if let Ok(revision) = n.payload().parse::<u64>() {
                                    let _ = heard_tx.send(revision);
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::debug!(error = %e, "PostgreSQL change listener: connection lost");
                                return;
                            }
                        }
                    }
                }));
                // Listening first, then the head: a change committed in
                // between is both read and heard, never neither.
                let head = match client.batch_execute("LISTEN sturdy_changes").await {
                    Ok(()) => client.query_one(HEAD, &[]).await,
                    Err(e) => Err(e),
                };
                match &head {
                    Ok(_) => backoff = Duration::from_millis(100),
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "PostgreSQL change listener: LISTEN failed; readers wake at their timeouts meanwhile")
                    }
                }
                if let Ok(row) = head {
                    publish(
                        &this,
                        row.get::<_, Option<i64>>(0).unwrap_or(0).max(0) as u64,
                    );
                    while let Some(revision) = heard.recv().await {
                        publish(&this, revision);
                        if this.strong_count() == 0 {
                            return;
                        }
                    }
                }
                drop(driver);
                drop(client);
            }
            Err(e) => {
                tracing::debug!(error = %e, "PostgreSQL change listener: cannot connect; trying again");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Aborts the task that drives the listening connection when the
/// listener's task ends or is aborted (the store dropped).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn publish(this: &std::sync::Weak<Listener>, revision: u64) {
    if let Some(listener) = this.upgrade() {
        listener.head.send_if_modified(|head| {
            let newer = revision > *head;
            if newer {
                *head = revision;
            }
            newer
        });
    }
}
