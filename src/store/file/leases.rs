//! FileStore: leases, one file each under `leases/`, read-modify-written
//! under `flock(2)`; the fencing token only grows (see the [parent](super)).

use super::*;

impl Inner {
    pub(super) fn lease_paths(&self, name: &str) -> (PathBuf, PathBuf) {
        let safe = safe_name(name);
        (
            self.path(LEASES, format!("{safe}.lease")),
            self.path(LEASES, format!("{safe}.lock")),
        )
    }

    pub(super) fn read_lease(&self, path: &Path, name: &str) -> StoreResult<Option<Lease>> {
        let Some(lease) = self.read_record::<Lease>(path, "lease")? else {
            return Ok(None);
        };
        if lease.name != name {
            let reason = format!("holds the lease {:?}, not {name:?}", lease.name);
            return Err(self.corrupted_file(path, reason));
        }
        Ok(Some(lease))
    }

    pub(super) fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        sent: Instant,
    ) -> StoreResult<Lease> {
        let (path, lock) = self.lease_paths(name);
        let _lock = self.lock(&lock)?;
        let wall = SystemTime::now();
        let now = secs(wall);
        let current = self.read_lease(&path, name)?;
        // Held (by another holder or by this one: a second acquisition
        // waits), unless its holder's process is provably gone.
        if let Some(current) = &current
            && current.until > now
            && !holder_is_dead(current)
        {
            return Err(StoreError::LeaseHeld {
                name: name.to_owned(),
                holder: current.holder.clone(),
                until: current.until,
            });
        }
        // Fencing: every acquisition gets a token above every earlier one
        // (a released lease keeps its record for this).
        let token = current.as_ref().map_or(1, |c| c.token.saturating_add(1));
        if let Some(current) = &current
            && current.until > now
        {
            tracing::warn!(lease = %name, holder = %current.holder, pid = current.pid, "taking over the lease of a process that is gone");
        }
        let me = process::current();
        let lease = Lease {
            name: name.to_owned(),
            holder: holder.to_owned(),
            until: now.saturating_add(ceil_secs(ttl)),
            token,
            host: me.host.clone(),
            pid: me.pid,
            start_time: me.start_time,
            pid_ns: me.pid_ns.clone(),
            validity: None,
        };
        self.write_record(&path, "lease", &lease, FileMode::Private)?;
        let left = super::super::remaining_until(lease.until, wall);
        Ok(lease.valid_for(left, sent))
    }

    pub(super) fn renew_lease(
        &self,
        lease: &Lease,
        ttl: Duration,
        sent: Instant,
    ) -> StoreResult<Lease> {
        let (path, lock) = self.lease_paths(&lease.name);
        let _lock = self.lock(&lock)?;
        match self.read_lease(&path, &lease.name)? {
            Some(current) if current.holder == lease.holder && current.token == lease.token => {
                let wall = SystemTime::now();
                let renewed = Lease {
                    until: secs(wall).saturating_add(ceil_secs(ttl)),
                    ..current
                };
                self.write_record(&path, "lease", &renewed, FileMode::Private)?;
                let left = super::super::remaining_until(renewed.until, wall);
                Ok(renewed.valid_for(left, sent))
            }
            Some(current) => Err(StoreError::LeaseHeld {
                name: lease.name.clone(),
                holder: current.holder,
                until: current.until,
            }),
            None => Err(StoreError::LeaseHeld {
                name: lease.name.clone(),
                holder: String::new(),
                until: 0,
            }),
        }
    }

    pub(super) fn check_lease(&self, lease: &Lease) -> StoreResult<()> {
        let (path, lock) = self.lease_paths(&lease.name);
        let _lock = self.lock(&lock)?;
        let current = self.read_lease(&path, &lease.name)?;
        super::super::judge_lease(current.as_ref(), lease, unix_now())
    }

    pub(super) fn release_lease(&self, lease: &Lease) -> StoreResult<()> {
        let (path, lock) = self.lease_paths(&lease.name);
        let _lock = self.lock(&lock)?;
        match self.read_lease(&path, &lease.name)? {
            Some(current) if current.holder == lease.holder && current.token == lease.token => {
                // Kept (expired, no holder) so the next token is higher.
                let released = Lease {
                    holder: String::new(),
                    until: 0,
                    ..current
                };
                self.write_record(&path, "lease", &released, FileMode::Private)
            }
            _ => Ok(()),
        }
    }
}

/// True when the lease's holder was a process on this host (and PID
/// namespace) that no longer runs.
fn holder_is_dead(lease: &Lease) -> bool {
    process::holder_is_dead(&lease.host, lease.pid, lease.start_time, &lease.pid_ns)
}
