//! FileStore: journals, one file per identifier set under `journals/`;
//! a superseded one is archived, never deleted (see the [parent](super)).

use super::*;

impl Inner {
    pub(super) fn journal_path(&self, key: &IdentifierSetKey) -> PathBuf {
        self.path(JOURNALS, format!("{}.json", key.file_stem()))
    }

    pub(super) fn load_journal(&self, key: &IdentifierSetKey) -> StoreResult<Option<Journal>> {
        let path = self.journal_path(key);
        if let Some(data) = self.read_record::<JournalData>(&path, "journal")? {
            if data.key != *key {
                let reason = format!("holds the journal for {}, not {key}", data.key);
                return Err(self.corrupted_file(&path, reason));
            }
            return Ok(Some(data.journal));
        }
        self.load_legacy_journal(key)
    }

    /// A journal written before keys carried the CA, if it names `key`'s CA
    /// and account (a journal records both).
    pub(super) fn load_legacy_journal(
        &self,
        key: &IdentifierSetKey,
    ) -> StoreResult<Option<Journal>> {
        let Some(ca) = key.ca() else {
            return Ok(None);
        };
        let legacy = key.legacy();
        let path = self.journal_path(&legacy);
        let Some(data) = self.read_record::<JournalData>(&path, "journal")? else {
            return Ok(None);
        };
        if data.key != legacy {
            let reason = format!("holds the journal for {}, not {legacy}", data.key);
            return Err(self.corrupted_file(&path, reason));
        }
        let ours = data.journal.directory == ca.directory && data.journal.account_url == ca.account;
        Ok(ours.then_some(data.journal))
    }

    pub(super) fn save_journal(&self, data: &JournalData) -> StoreResult<()> {
        let path = self.journal_path(&data.key);
        self.write_record(&path, "journal", data, FileMode::Private)
    }

    pub(super) fn archive_journal(&self, data: &JournalData) -> StoreResult<()> {
        let dir = self.root.join(JOURNALS).join(ARCHIVE);
        self.ensure_dir(&dir)?;
        let stem = data.key.file_stem();
        let now = unix_now();
        let mut n = 0u32;
        let path = loop {
            let path = dir.join(format!("{stem}.{now}-{n}.json"));
            if !path.exists() {
                break path;
            }
            n += 1;
        };
        self.write_record(&path, "journal", data, FileMode::Private)?;
        tracing::info!(target: "sturdy_acme::store", path = %path.display(), "superseded journal archived");
        Ok(())
    }

    pub(super) fn delete_journal(&self, key: &IdentifierSetKey) -> StoreResult<()> {
        // A legacy journal of this CA and account is done with too (one
        // that cannot be read is left for a human, not an error here).
        if key.ca().is_some() {
            match self.load_legacy_journal(key) {
                Ok(Some(_)) => self.delete_journal(&key.legacy())?,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(target: "sturdy_acme::store", error = %e, "a legacy journal could not be read; left in place");
                }
            }
        }
        let path = self.journal_path(key);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(&parent_of(&path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }
}
