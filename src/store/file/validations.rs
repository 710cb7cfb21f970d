//! FileStore's tls-alpn-01 validation certificates (see
//! [`store::validation`](crate::store::validation)):
//! `validations/<sha256(name)>.json`, 0600 (it holds the key).
//!
//! Saves and deletes run under an exclusive `flock(2)` on
//! `validations/.lock` and, inside it, the feed's lock: the change is
//! appended, then the file written or removed, as a certificate save does.

use super::*;
use crate::store::ValidationCertificate;
use crate::store::validation::{validation_key, validation_name};

const LOCK: &str = ".lock";

impl Inner {
    fn validation_path(&self, name: &str) -> PathBuf {
        self.path(VALIDATIONS, format!("{}.json", sha256_hex(name.as_bytes())))
    }

    pub(super) fn save_validation(&self, validation: &ValidationCertificate) -> StoreResult<()> {
        let key = validation_key(&validation.name)?;
        let name = validation_name(&validation.name)?;
        let path = self.validation_path(&name);
        let record = ValidationCertificate {
            name,
            ..validation.clone()
        };
        let _one = self.lock(&self.path(VALIDATIONS, LOCK.into()))?;
        let _feed = self.append_change(&key, ChangeKind::Validation, "")?;
        self.write_record(&path, "validation", &record, FileMode::Private)
    }

    pub(super) fn load_validation(&self, name: &str) -> StoreResult<Option<ValidationCertificate>> {
        let name = validation_name(name)?;
        let path = self.validation_path(&name);
        let Some(record) = self.read_record::<ValidationCertificate>(&path, "validation")? else {
            return Ok(None);
        };
        if record.name != name {
            let reason = format!("holds the validation of {:?}, not {name:?}", record.name);
            return Err(self.corrupted_file(&path, reason));
        }
        Ok(Some(record))
    }

    pub(super) fn delete_validation(&self, name: &str) -> StoreResult<()> {
        let key = validation_key(name)?;
        let name = validation_name(name)?;
        let path = self.validation_path(&name);
        let _one = self.lock(&self.path(VALIDATIONS, LOCK.into()))?;
        if !path.exists() {
            return Ok(());
        }
        let _feed = self.append_change(&key, ChangeKind::Validation, "")?;
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(&parent_of(&path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The names of the validation certificates stored (a file that cannot
    /// be read is left out, logged: loading it reports the damage).
    pub(super) fn validation_names(&self) -> StoreResult<Vec<String>> {
        let mut names = Vec::new();
        for path in self.entries(VALIDATIONS)? {
            if path.extension().is_none_or(|e| e != "json") || !path.is_file() {
                continue;
            }
            match self.read_record::<ValidationCertificate>(&path, "validation") {
                Ok(Some(record)) => names.push(record.name),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(target: "sturdy_acme::store", path = %path.display(), error = %e, "a validation certificate cannot be read; not listed");
                }
            }
        }
        names.sort();
        Ok(names)
    }
}
