//! What edges need besides certificates, each row written with its change
//! in one transaction: on-demand requests (see `sturdy_acme::store::request`;
//! one row per pending name in `sturdy_requests`) and tls-alpn-01
//! validation certificates (`sturdy_acme::store::validation`;
//! `sturdy_validations`, the key sealed as a certificate's is).

use std::time::Duration;

use sturdy_acme::store::request::{request_key, request_name};
use sturdy_acme::store::validation::{validation_key, validation_name};
use sturdy_acme::store::{CertificateRequest, ChangeKind, StoreResult, ValidationCertificate};

use super::{PostgresStore, classify, commit, feed, identity, record_key};

/// The table of validation certificates (and their sealing identity).
const VALIDATIONS: &str = "validation";

impl PostgresStore {
    /// [`Store::request_certificate`](sturdy_acme::store::Store::request_certificate):
    /// the row and its change in one transaction. Inserting the row is
    /// idempotent (`ON CONFLICT DO NOTHING`), so a `COMMIT` whose answer
    /// was lost is settled by running it again (which then says "already
    /// pending": the request stands either way).
    pub(super) async fn record_request(&self, name: &str, edge: &str) -> StoreResult<bool> {
        let key = record_key(&request_key(name)?);
        let name = request_name(name)?;
        let retention = self.inner.feed_retention;
        let bound = self.inner.operation_timeout.max(Duration::from_secs(1));
        let (key, name) = (&key, &name);
        let recorded = self
            .run_until_known("request certificate", |mut c, sent| {
                Box::pin(async move {
                    let tx = c.transaction().await.map_err(|e| classify(&e))?;
                    let insert = tx
                        .prepare_cached(
                            "INSERT INTO sturdy_requests (name, edge) VALUES ($1, $2) \
                             ON CONFLICT (name) DO NOTHING",
                        )
                        .await
                        .map_err(|e| classify(&e))?;
                    let new = tx
                        .execute(&insert, &[name, &edge])
                        .await
                        .map_err(|e| classify(&e))?
                        == 1;
                    if new {
                        feed::record(&tx, key, ChangeKind::Requested, "", retention, bound).await?;
                    }
                    commit(tx, "request certificate", &sent).await?;
                    Ok(new)
                })
            })
            .await?;
        self.count(if recorded { 4 } else { 3 }, u64::from(recorded) * 2);
        Ok(recorded)
    }

    pub(super) async fn pending_requests(&self) -> StoreResult<Vec<CertificateRequest>> {
        let rows = self
            .db_query(
                "list requests",
                "SELECT name, edge, extract(epoch FROM requested_at)::bigint \
                 FROM sturdy_requests ORDER BY requested_at, name",
                &[],
            )
            .await?;
        self.count(1, 0);
        Ok(rows
            .into_iter()
            .map(|row| CertificateRequest {
                name: row.get(0),
                edge: row.get(1),
                requested_at: row.get::<_, i64>(2).max(0) as u64,
            })
            .collect())
    }

    pub(super) async fn forget_request(&self, name: &str) -> StoreResult<()> {
        let name = request_name(name)?;
        self.db_execute(
            "delete request",
            "DELETE FROM sturdy_requests WHERE name = $1",
            &[&name],
        )
        .await?;
        self.count(1, 1);
        Ok(())
    }

    /// [`Store::save_validation`](sturdy_acme::store::Store::save_validation):
    /// the row (replacing any) and its change in one transaction. Saving
    /// the same certificate again is harmless (an extra change), so a
    /// `COMMIT` whose answer was lost is settled by running it again.
    pub(super) async fn publish_validation(
        &self,
        validation: &ValidationCertificate,
    ) -> StoreResult<()> {
        let key = record_key(&validation_key(&validation.name)?);
        let name = validation_name(&validation.name)?;
        let record = ValidationCertificate {
            name: name.clone(),
            ..validation.clone()
        };
        let (record, sealed) = self.split(&identity(VALIDATIONS, &name), &record)?;
        let retention = self.inner.feed_retention;
        let bound = self.inner.operation_timeout.max(Duration::from_secs(1));
        let (key, name, record, sealed) = (&key, &name, &record, &sealed);
        self.run_until_known("save validation", |mut c, sent| {
            Box::pin(async move {
                let tx = c.transaction().await.map_err(|e| classify(&e))?;
                let save = tx
                    .prepare_cached(
                        "INSERT INTO sturdy_validations (name, record, sealed, kek_id) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET \
                         record = excluded.record, sealed = excluded.sealed, \
                         kek_id = excluded.kek_id, updated_at = now()",
                    )
                    .await
                    .map_err(|e| classify(&e))?;
                tx.execute(&save, &[name, record, &sealed.bytes(), &sealed.kek_id()])
                    .await
                    .map_err(|e| classify(&e))?;
                feed::record(&tx, key, ChangeKind::Validation, "", retention, bound).await?;
                commit(tx, "save validation", &sent).await
            })
        })
        .await?;
        self.count(4, 2);
        Ok(())
    }

    pub(super) async fn read_validation(
        &self,
        name: &str,
    ) -> StoreResult<Option<ValidationCertificate>> {
        let name = validation_name(name)?;
        self.read_row(
            "load validation",
            "SELECT record, sealed, kek_id FROM sturdy_validations WHERE name = $1",
            VALIDATIONS,
            &name,
        )
        .await
    }

    /// [`Store::delete_validation`](sturdy_acme::store::Store::delete_validation):
    /// a change only when a row was deleted.
    pub(super) async fn withdraw_validation(&self, name: &str) -> StoreResult<()> {
        let key = record_key(&validation_key(name)?);
        let name = validation_name(name)?;
        let retention = self.inner.feed_retention;
        let bound = self.inner.operation_timeout.max(Duration::from_secs(1));
        let (key, name) = (&key, &name);
        let deleted = self
            .run_until_known("delete validation", |mut c, sent| {
                Box::pin(async move {
                    let tx = c.transaction().await.map_err(|e| classify(&e))?;
                    let delete = tx
                        .prepare_cached("DELETE FROM sturdy_validations WHERE name = $1")
                        .await
                        .map_err(|e| classify(&e))?;
                    let deleted = tx
                        .execute(&delete, &[name])
                        .await
                        .map_err(|e| classify(&e))?
                        > 0;
                    if deleted {
                        feed::record(&tx, key, ChangeKind::Validation, "", retention, bound)
                            .await?;
                    }
                    commit(tx, "delete validation", &sent).await?;
                    Ok(deleted)
                })
            })
            .await?;
        self.count(if deleted { 4 } else { 3 }, u64::from(deleted) * 2);
        Ok(())
    }

    /// The names of the validation certificates stored.
    pub(super) async fn validation_names(&self) -> StoreResult<Vec<String>> {
        let rows = self
            .db_query(
                "list validations",
                "SELECT name FROM sturdy_validations ORDER BY name",
                &[],
            )
            .await?;
        self.count(1, 0);
        Ok(rows.into_iter().map(|row| row.get(0)).collect())
    }
}
