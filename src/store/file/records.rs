//! FileStore: the small records, one file each (accounts, the rate-limit
//! ledger, the renewer's managed specs), and the listings of certificates
//! and journals (see the [parent](super)).

use super::*;

impl Inner {
    /// `<sub>/<sha256(directory URL)>.json`: the one record of a directory
    /// URL (account, ledger, remembered directory).
    fn per_directory_path(&self, sub: &str, directory: &str) -> PathBuf {
        self.path(sub, format!("{}.json", sha256_hex(directory.as_bytes())))
    }

    /// The record of `directory` in `sub`, checked to name that directory
    /// (a file moved from another directory's name is corruption).
    fn load_per_directory<D: DeserializeOwned>(
        &self,
        sub: &str,
        kind: &'static str,
        directory: &str,
        named: impl Fn(&D) -> &str,
    ) -> StoreResult<Option<D>> {
        let path = self.per_directory_path(sub, directory);
        let Some(data) = self.read_record::<D>(&path, kind)? else {
            return Ok(None);
        };
        if named(&data) != directory {
            let reason = format!("holds the {kind} of {:?}, not {directory:?}", named(&data));
            return Err(self.corrupted_file(&path, reason));
        }
        Ok(Some(data))
    }

    pub(super) fn load_account(&self, directory: &str) -> StoreResult<Option<StoredAccount>> {
        Ok(self
            .load_per_directory(ACCOUNTS, "account", directory, |d: &AccountData| {
                &d.directory
            })?
            .map(|d| d.account))
    }

    pub(super) fn save_account(&self, data: &AccountData) -> StoreResult<()> {
        let path = self.per_directory_path(ACCOUNTS, &data.directory);
        self.write_record(&path, "account", data, FileMode::Private)
    }

    pub(super) fn load_ledger(&self, directory: &str) -> StoreResult<Option<RateLimitRecord>> {
        Ok(self
            .load_per_directory(LEDGER, "ledger", directory, |d: &LedgerData| &d.directory)?
            .map(|d| d.ledger))
    }

    pub(super) fn managed_path(&self, directory: &str, id: &str) -> PathBuf {
        self.path(
            MANAGED,
            format!(
                "{}-{}.json",
                sha256_hex(directory.as_bytes()),
                sha256_hex(id.as_bytes())
            ),
        )
    }

    pub(super) fn list_managed(&self, directory: &str) -> StoreResult<Vec<ManagedRecord>> {
        let prefix = format!("{}-", sha256_hex(directory.as_bytes()));
        let mut records = Vec::new();
        for path in self.entries(MANAGED)? {
            let ours = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".json"));
            if !ours || !path.is_file() {
                continue;
            }
            match self.read_record::<ManagedData>(&path, "managed") {
                Ok(Some(data)) if data.directory == directory => records.push(data.record),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(target: "sturdy_acme::store", path = %path.display(), error = %e, "a renewer record cannot be read; not listed");
                }
            }
        }
        Ok(records)
    }

    pub(super) fn save_managed(&self, data: &ManagedData) -> StoreResult<()> {
        let path = self.managed_path(&data.directory, &data.record.id);
        self.write_record(&path, "managed", data, FileMode::Private)
    }

    pub(super) fn delete_managed(&self, directory: &str, id: &str) -> StoreResult<()> {
        let path = self.managed_path(directory, id);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(&parent_of(&path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    pub(super) fn ledger_lock_path(&self, directory: &str) -> PathBuf {
        self.path(LEDGER, format!("{}.lock", sha256_hex(directory.as_bytes())))
    }

    pub(super) fn load_directory(&self, directory: &str) -> StoreResult<Option<DirectoryRecord>> {
        Ok(self
            .load_per_directory(DIRECTORIES, "directory", directory, |d: &DirectoryData| {
                &d.directory
            })?
            .map(|d| d.record))
    }

    /// Public data: written 0644 like certificates.
    pub(super) fn save_directory(&self, data: &DirectoryData) -> StoreResult<()> {
        let path = self.per_directory_path(DIRECTORIES, &data.directory);
        self.write_record(&path, "directory", data, FileMode::Public)
    }

    pub(super) fn save_ledger(&self, data: &LedgerData) -> StoreResult<()> {
        let path = self.per_directory_path(LEDGER, &data.directory);
        self.write_record(&path, "ledger", data, FileMode::Private)
    }

    /// [`Inner::corrupted`] for a file whose bytes were already verified:
    /// reads them again for the copy.
    pub(super) fn corrupted_file(&self, path: &Path, reason: String) -> StoreError {
        match fs::read(path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                self.corrupted(path, &bytes, reason)
            }
            Err(e) => StoreError::Corrupted {
                path: path.to_owned(),
                reason: format!("{reason} (could not keep a copy: {e})"),
            },
        }
    }

    // -- listings ---------------------------------------------------------

    /// The entries of `root/sub`, sorted; none if it does not exist yet.
    pub(super) fn entries(&self, sub: &str) -> StoreResult<Vec<PathBuf>> {
        let dir = self.root.join(sub);
        let read = match fs::read_dir(&dir) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut paths = Vec::new();
        for entry in read {
            paths.push(entry.map_err(io_err(&dir))?.path());
        }
        paths.sort();
        Ok(paths)
    }

    pub(super) fn list_certificates(&self, directory: &str) -> StoreResult<Vec<IdentifierSetKey>> {
        self.certificates_where(|data| match data.key.ca() {
            Some(ca) => ca.directory == directory,
            None => same_origin(&data.url, directory),
        })
    }

    /// The keys of the stored certificates `ours` accepts.
    pub(super) fn certificates_where(
        &self,
        ours: impl Fn(&CertData) -> bool,
    ) -> StoreResult<Vec<IdentifierSetKey>> {
        let mut keys = Vec::new();
        for dir in self.entries(CERTS)? {
            let path = dir.join(CERT_JSON);
            if !dir.is_dir() || !path.exists() {
                continue;
            }
            let data = match self.read_record::<CertData>(&path, "certificate") {
                Ok(Some(data)) => data,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(target: "sturdy_acme::store", path = %path.display(), error = %e, "a certificate record cannot be read; not listed");
                    continue;
                }
            };
            if ours(&data) {
                keys.push(data.key);
            }
        }
        Ok(keys)
    }

    pub(super) fn list_journals(&self, directory: &str) -> StoreResult<Vec<IdentifierSetKey>> {
        let mut keys = Vec::new();
        for path in self.entries(JOURNALS)? {
            if path.extension().and_then(|e| e.to_str()) != Some("json") || !path.is_file() {
                continue;
            }
            match self.read_record::<JournalData>(&path, "journal") {
                Ok(Some(data)) if data.journal.directory == directory => keys.push(data.key),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(target: "sturdy_acme::store", path = %path.display(), error = %e, "a journal cannot be read; not listed");
                }
            }
        }
        Ok(keys)
    }
}
