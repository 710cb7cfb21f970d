//! Leases as rows: taken, extended, judged and released by the database's
//! clock, each answer carrying the time left computed in SQL
//! (`until - now()`) so the holder never reads its own clock against the
//! database's.

use std::time::{Duration, Instant};

use super::{PostgresStore, classify, request_id};
use sturdy_acme::StoreError;
use sturdy_acme::store::ProcessIdentity;
use sturdy_acme::store::{Lease, StoreResult};

impl PostgresStore {
    /// [`Self::db_query_opt`], with the instant the successful attempt's
    /// statement was sent: what the row says (a lease's time left, by the
    /// database's clock) was true at some moment after it.
    async fn db_query_opt_sent<'a>(
        &'a self,
        what: &'static str,
        sql: &'static str,
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> StoreResult<(Option<tokio_postgres::Row>, Instant)> {
        self.run(what, |c| {
            Box::pin(async move {
                let stmt = c.prepare_cached(sql).await.map_err(|e| classify(&e))?;
                let sent = Instant::now();
                let row = c.query_opt(&stmt, params).await.map_err(|e| classify(&e))?;
                Ok((row, sent))
            })
        })
        .await
    }

    /// [`Store::acquire_lease`](sturdy_acme::store::Store::acquire_lease).
    pub(super) async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> StoreResult<Lease> {
        let me = ProcessIdentity::current();
        let tag = machine_tag();
        let host = &tag;
        let ms = ttl_ms(ttl);
        let pid = i64::from(me.pid);
        let start_time = i64::try_from(me.start_time).unwrap_or(0);
        // Taken only once expired, whoever held it: the same holder asking
        // again waits too (a revoke must not race an ensure of the same
        // issuer); a crashed holder's row is taken over below. The one
        // exception is this very call retried after its answer was lost
        // (the row carries this call's claim): it takes the row again.
        let claim = request_id()?;
        let (row, sent) = self
            .db_query_opt_sent("acquire lease", "INSERT INTO sturdy_leases AS l \
                               (name, holder, token, until, host, pid, start_time, pid_ns, claim) \
                             VALUES ($1, $2, nextval('sturdy_lease_tokens'), \
                               now() + $3::bigint * interval '1 millisecond', $4, $5, $6, $7, $8) \
                             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                               token = excluded.token, until = excluded.until, host = excluded.host, \
                               pid = excluded.pid, start_time = excluded.start_time, \
                               pid_ns = excluded.pid_ns, claim = excluded.claim \
                             WHERE l.until <= now() OR l.claim = excluded.claim \
                             RETURNING token, floor(extract(epoch FROM until))::bigint, \
                               greatest(0, floor(extract(epoch FROM until - now()) * 1000))::bigint", &[&name, &holder, &ms, &host, &pid, &start_time, &me.pid_ns, &claim])
            .await?;
        self.count(1, 1);
        let lease = |row: tokio_postgres::Row, sent: Instant| {
            Lease {
                name: name.to_owned(),
                holder: holder.to_owned(),
                until: row.get::<_, i64>(1).max(0) as u64,
                token: row.get::<_, i64>(0).max(0) as u64,
                host: tag.clone(),
                pid: me.pid,
                start_time: me.start_time,
                pid_ns: me.pid_ns.clone(),
                validity: None,
            }
            .valid_for(remaining(&row, 2), sent)
        };
        if let Some(row) = row {
            return Ok(lease(row, sent));
        }
        let Some((current, live)) = self.lease_row(name).await? else {
            return Err(StoreError::LeaseHeld {
                name: name.to_owned(),
                holder: String::new(),
                until: 0,
            });
        };
        // Only a holder provably on this machine and boot (the host name
        // alone repeats across cloned machines, and so does the initial PID
        // namespace) is looked up in this machine's /proc.
        let dead = live
            && current.host == tag
            && ProcessIdentity::new(
                me.host.clone(),
                current.pid,
                current.start_time,
                current.pid_ns.clone(),
            )
            .is_dead();
        if !dead {
            return Err(StoreError::LeaseHeld {
                name: name.to_owned(),
                holder: current.holder,
                until: current.until,
            });
        }
        // The holder was a process on this host that is gone: taken over
        // now, if nobody else did in between.
        tracing::warn!(lease = %name, holder = %current.holder, pid = current.pid, "taking over the lease of a process that is gone");
        let seen = i64::try_from(current.token).unwrap_or(i64::MAX);
        let (row, sent) = self
            .db_query_opt_sent("take over lease", "UPDATE sturdy_leases SET holder = $2, token = nextval('sturdy_lease_tokens'), \
                               until = now() + $3::bigint * interval '1 millisecond', host = $4, pid = $5, \
                               start_time = $6, pid_ns = $7, claim = $9 \
                             WHERE name = $1 AND token = $8 \
                             RETURNING token, floor(extract(epoch FROM until))::bigint, \
                               greatest(0, floor(extract(epoch FROM until - now()) * 1000))::bigint", &[&name, &holder, &ms, &host, &pid, &start_time, &me.pid_ns, &seen, &claim])
            .await?;
        self.count(1, 1);
        match row {
            Some(row) => Ok(lease(row, sent)),
            None => Err(StoreError::LeaseHeld {
                name: name.to_owned(),
                holder: current.holder,
                until: current.until,
            }),
        }
    }

    /// [`Store::renew_lease`](sturdy_acme::store::Store::renew_lease).
    pub(super) async fn extend_lease(&self, lease: &Lease, ttl: Duration) -> StoreResult<Lease> {
        let ms = ttl_ms(ttl);
        let token = i64::try_from(lease.token).unwrap_or(i64::MAX);
        let (row, sent) = self
            .db_query_opt_sent(
                "renew lease",
                "UPDATE sturdy_leases SET until = now() + $4::bigint * interval '1 millisecond' \
                             WHERE name = $1 AND holder = $2 AND token = $3 \
                             RETURNING floor(extract(epoch FROM until))::bigint, \
                               greatest(0, floor(extract(epoch FROM until - now()) * 1000))::bigint",
                &[&lease.name, &lease.holder, &token, &ms],
            )
            .await?;
        self.count(1, 1);
        if let Some(row) = row {
            return Ok(Lease {
                until: row.get::<_, i64>(0).max(0) as u64,
                ..lease.clone()
            }
            .valid_for(remaining(&row, 1), sent));
        }
        let (holder, until) = match self.lease_row(&lease.name).await? {
            Some((current, _)) => (current.holder, current.until),
            None => (String::new(), 0),
        };
        Err(StoreError::LeaseHeld {
            name: lease.name.clone(),
            holder,
            until,
        })
    }

    /// [`Store::check_lease`](sturdy_acme::store::Store::check_lease), by the
    /// database's clock.
    pub(super) async fn judge_lease_row(&self, lease: &Lease) -> StoreResult<()> {
        match self.lost_reason(lease).await? {
            None => Ok(()),
            Some(reason) => Err(StoreError::LeaseLost {
                name: lease.name.clone(),
                token: lease.token,
                reason,
            }),
        }
    }

    /// [`Store::release_lease`](sturdy_acme::store::Store::release_lease).
    pub(super) async fn give_up_lease(&self, lease: &Lease) -> StoreResult<()> {
        let token = i64::try_from(lease.token).unwrap_or(i64::MAX);
        self.db_execute(
            "release lease",
            "UPDATE sturdy_leases SET holder = '', until = to_timestamp(0) \
                         WHERE name = $1 AND holder = $2 AND token = $3",
            &[&lease.name, &lease.holder, &token],
        )
        .await?;
        self.count(1, 1);
        Ok(())
    }

    pub(super) async fn lease_row(&self, name: &str) -> StoreResult<Option<(Lease, bool)>> {
        let row = self
            .db_query_opt(
                "read lease",
                "SELECT holder, token, floor(extract(epoch FROM until))::bigint, host, pid, \
                             start_time, pid_ns, until > now() FROM sturdy_leases WHERE name = $1",
                &[&name],
            )
            .await?;
        self.count(1, 0);
        Ok(row.map(|row| {
            let lease = Lease {
                name: name.to_owned(),
                holder: row.get(0),
                token: row.get::<_, i64>(1).max(0) as u64,
                until: row.get::<_, i64>(2).max(0) as u64,
                host: row.get(3),
                pid: row.get::<_, i64>(4).clamp(0, u32::MAX.into()) as u32,
                start_time: row.get::<_, i64>(5).max(0) as u64,
                pid_ns: row.get(6),
                validity: None,
            };
            (lease, row.get::<_, bool>(7))
        }))
    }

    /// Why `lease` is no longer current, as the store sees it now.
    pub(super) async fn lost_reason(&self, lease: &Lease) -> StoreResult<Option<String>> {
        Ok(match self.lease_row(&lease.name).await? {
            Some((current, live))
                if current.holder == lease.holder && current.token == lease.token =>
            {
                (!live).then(|| "it expired (by the database's clock)".to_owned())
            }
            Some((current, _)) => Some(format!(
                "now held by {:?} with token {}",
                current.holder, current.token
            )),
            None => Some("its row is gone".into()),
        })
    }
}

/// This machine as a lease row records it: the host name and the kernel's
/// boot id, so a process is only ever looked up on the machine (and boot)
/// it ran on.
fn machine_tag() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|b| b.trim().to_owned())
        .unwrap_or_default();
    if boot.is_empty() {
        // Unknown: never equal to another row's tag, so no early takeover.
        format!(
            "{}#unknown-{}",
            ProcessIdentity::current().host,
            ProcessIdentity::unique_holder(None)
        )
    } else {
        format!("{}#{boot}", ProcessIdentity::current().host)
    }
}

/// The time left of a lease, column `i` of a row: milliseconds computed by
/// the database from its own clock (`until - now()`, rounded down), never
/// from this machine's.
fn remaining(row: &tokio_postgres::Row, i: usize) -> Duration {
    Duration::from_millis(row.get::<_, i64>(i).max(0) as u64)
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}
