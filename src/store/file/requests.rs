//! FileStore's on-demand requests (see [`store::request`](crate::store::request)):
//! `requests/<sha256(name)>.json`, one per pending name.
//!
//! A request is recorded under an exclusive `flock(2)` on
//! `requests/.lock` (so two processes asking for one name record it once)
//! and, inside it, the feed's lock: its change is appended, then the
//! request file written, as a certificate save does.

use super::*;
use crate::store::CertificateRequest;
use crate::store::request::{request_key, request_name};

const LOCK: &str = ".lock";

impl Inner {
    fn request_path(&self, name: &str) -> PathBuf {
        self.path(REQUESTS, format!("{}.json", sha256_hex(name.as_bytes())))
    }

    pub(super) fn request_certificate(&self, name: &str, edge: &str) -> StoreResult<bool> {
        let key = request_key(name)?;
        let name = request_name(name)?;
        let path = self.request_path(&name);
        let _one = self.lock(&self.path(REQUESTS, LOCK.into()))?;
        if let Some(pending) = self.read_record::<CertificateRequest>(&path, "request")? {
            if pending.name != name {
                let reason = format!("holds the request for {:?}, not {name:?}", pending.name);
                return Err(self.corrupted_file(&path, reason));
            }
            return Ok(false);
        }
        let request = CertificateRequest {
            name,
            edge: edge.to_owned(),
            requested_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let _feed = self.append_change(&key, ChangeKind::Requested, "")?;
        self.write_record(&path, "request", &request, FileMode::Public)?;
        Ok(true)
    }

    /// Oldest first; a file that cannot be read is left out, logged.
    pub(super) fn list_requests(&self) -> StoreResult<Vec<CertificateRequest>> {
        let mut requests = Vec::new();
        for path in self.entries(REQUESTS)? {
            if path.extension().is_none_or(|e| e != "json") || !path.is_file() {
                continue;
            }
            match self.read_record::<CertificateRequest>(&path, "request") {
                Ok(Some(request)) => requests.push(request),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(target: "sturdy_acme::store", path = %path.display(), error = %e, "an on-demand request cannot be read; not listed");
                }
            }
        }
        requests.sort_by(|a, b| (a.requested_at, &a.name).cmp(&(b.requested_at, &b.name)));
        Ok(requests)
    }

    pub(super) fn delete_request(&self, name: &str) -> StoreResult<()> {
        let name = request_name(name)?;
        let path = self.request_path(&name);
        let _one = self.lock(&self.path(REQUESTS, LOCK.into()))?;
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(&parent_of(&path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }
}
