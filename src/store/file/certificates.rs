//! FileStore: a certificate is two files (`cert.json`, the commit point,
//! and `key.pem`), saved with a backup of the pair it replaces and loaded
//! with whichever key `cert.json` names (see the [parent](super)).

use super::*;

impl Inner {
    pub(super) fn load_certificate(
        &self,
        key: &IdentifierSetKey,
    ) -> StoreResult<Option<StoredCertificate>> {
        if let Some(found) = self.load_certificate_at(key)? {
            return Ok(Some(found));
        }
        // Written before keys carried the CA: returned only when its URL is
        // on this CA's origin, never for another CA.
        let Some(ca) = key.ca() else {
            return Ok(None);
        };
        let legacy = key.legacy();
        if self.cert_dir(&legacy) == self.cert_dir(key) {
            return Ok(None);
        }
        Ok(self
            .load_certificate_at(&legacy)?
            .filter(|cert| same_origin(&cert.url, &ca.directory)))
    }

    fn load_certificate_at(
        &self,
        key: &IdentifierSetKey,
    ) -> StoreResult<Option<StoredCertificate>> {
        let dir = self.cert_dir(key);
        // Shared with other loads, excluded by a save: a load must not see
        // the new cert.json with a key file caught mid-rename.
        let _lock = self.lock_shared_if_present(&dir.join(".lock"))?;
        let cert_json = dir.join(CERT_JSON);
        let Some(data) = self.read_record::<CertData>(&cert_json, "certificate")? else {
            let key_pem = dir.join(KEY_PEM);
            if let Some(bytes) = read_optional(&key_pem)? {
                let reason = format!("{KEY_PEM} is there but {CERT_JSON} is missing");
                return Err(self.corrupted(&key_pem, &bytes, reason));
            }
            // A key.pem.new alone is a first save that did not commit.
            return Ok(None);
        };
        if data.key != *key {
            let reason = format!("holds the certificate for {}, not {key}", data.key);
            return Err(self.corrupted_file(&cert_json, reason));
        }
        let key_pem = match self.current_key(&dir, &data.key_sha256)? {
            CurrentKey::Found(_, pem) => pem,
            CurrentKey::Missing(reason) => {
                let path = dir.join(KEY_PEM);
                return Err(match read_optional(&path)? {
                    Some(bytes) => self.corrupted(&path, &bytes, reason),
                    None => StoreError::Corrupted { path, reason },
                });
            }
        };
        Ok(Some(StoredCertificate {
            identifiers: data.identifiers,
            chain_pem: data.chain_pem,
            key_pem,
            url: data.url,
            not_before: timestamp::from_unix(data.not_before),
            not_after: timestamp::from_unix(data.not_after),
            serial: data.serial,
            revoked: data.revoked,
            renewal: data.renewal,
            profile: data.profile,
        }))
    }

    /// The key file `cert.json` names: `key.pem`, or `key.pem.new` when a
    /// save stopped between committing `cert.json` and renaming the key.
    fn current_key(&self, dir: &Path, key_sha256: &str) -> StoreResult<CurrentKey> {
        let mut first_problem = None;
        for name in [KEY_PEM, KEY_PEM_NEW] {
            let path = dir.join(name);
            let Some(bytes) = read_optional(&path)? else {
                continue;
            };
            let problem = match std::str::from_utf8(&bytes) {
                Err(_) => Some("is not text".to_owned()),
                Ok(pem) => check_private_key_pem(pem).err(),
            };
            if sha256_hex(&bytes) == key_sha256 {
                if let Some(problem) = problem {
                    let reason = format!("{problem} (it has the hash {CERT_JSON} records)");
                    return Err(self.corrupted(&path, &bytes, reason));
                }
                let pem = String::from_utf8(bytes.to_vec()).unwrap_or_default();
                return Ok(CurrentKey::Found(path, Zeroizing::new(pem)));
            }
            if name == KEY_PEM {
                first_problem = Some(match problem {
                    Some(problem) => problem,
                    None => format!(
                        "is not the key {CERT_JSON} records (sha256 {key_sha256}, file has {})",
                        sha256_hex(&bytes)
                    ),
                });
            }
        }
        Ok(CurrentKey::Missing(first_problem.unwrap_or_else(|| {
            format!("is missing (the key {CERT_JSON} records has sha256 {key_sha256})")
        })))
    }

    pub(super) fn save_certificate(
        &self,
        key: &IdentifierSetKey,
        cert: &StoredCertificate,
    ) -> StoreResult<()> {
        if let Err(problem) = check_private_key_pem(&cert.key_pem) {
            return Err(StoreError::Other(format!(
                "refusing to store the certificate for {key}: its key {problem}"
            )));
        }
        let dir = self.cert_dir(key);
        self.ensure_dir(&dir)?;
        let _lock = self.lock(&dir.join(".lock"))?;

        // The same certificate with new metadata (a renewal schedule, a
        // revocation) replaces nothing worth a backup.
        let old = self
            .read_record::<CertData>(&dir.join(CERT_JSON), "certificate")
            .ok()
            .flatten();
        let same = old.as_ref().is_some_and(|old| {
            old.serial == cert.serial && old.key_sha256 == sha256_hex(cert.key_pem.as_bytes())
        });
        // What the change feed hears of (an unreadable old record: a new
        // certificate, at worst a notice too many).
        let change = ChangeKind::of(
            old.as_ref()
                .map(|o| (o.serial.as_str(), o.chain_pem.as_str(), o.revoked.is_some())),
            cert,
        );
        if !same {
            self.backup_certificate(&dir)?;
        }

        let new_key = dir.join(KEY_PEM_NEW);
        self.write_file(&new_key, cert.key_pem.as_bytes(), FileMode::Private)?;
        let data = CertData {
            key: key.clone(),
            identifiers: cert.identifiers.clone(),
            chain_pem: cert.chain_pem.clone(),
            url: cert.url.clone(),
            not_before: timestamp::to_unix(cert.not_before),
            not_after: timestamp::to_unix(cert.not_after),
            serial: cert.serial.clone(),
            key_sha256: sha256_hex(cert.key_pem.as_bytes()),
            revoked: cert.revoked,
            renewal: cert.renewal.clone(),
            profile: cert.profile.clone(),
        };
        // The change is in the feed before the commit, and no reader sees
        // it until the feed's lock is released after the commit.
        let feed = change
            .map(|kind| self.append_change(key, kind, &cert.serial))
            .transpose()?;
        // The commit point: from here on a load returns the new certificate.
        self.write_record(&dir.join(CERT_JSON), "certificate", &data, FileMode::Public)?;
        drop(feed);
        // Not fsynced and not an error if it fails: a load accepts the key
        // under either name, by its hash.
        let key_pem = dir.join(KEY_PEM);
        if let Err(e) = fs::rename(&new_key, &key_pem) {
            tracing::warn!(target: "sturdy_acme::store", path = %new_key.display(), error = %e,
                "certificate saved but its key was left as key.pem.new");
        }
        Ok(())
    }

    /// Hard-links (or copies) the current certificate and key into a new
    /// `backup-<unix time>` directory, durably, before they are replaced.
    fn backup_certificate(&self, dir: &Path) -> StoreResult<()> {
        let cert_json = dir.join(CERT_JSON);
        let mut files: Vec<(PathBuf, &str)> = Vec::new();
        if cert_json.exists() {
            files.push((cert_json.clone(), CERT_JSON));
            let recorded = match self.read_record::<CertData>(&cert_json, "certificate") {
                Ok(data) => data.map(|d| d.key_sha256),
                Err(StoreError::Corrupted { path, reason }) => {
                    tracing::warn!(target: "sturdy_acme::store", path = %path.display(), %reason,
                        "replacing a corrupted certificate; it is kept in the backup");
                    None
                }
                Err(e) => return Err(e),
            };
            match recorded.map(|sha| self.current_key(dir, &sha)) {
                Some(Ok(CurrentKey::Found(path, _))) => files.push((path, KEY_PEM)),
                Some(Err(StoreError::Io { path, source })) => {
                    return Err(StoreError::Io { path, source });
                }
                _ => {
                    // Keep whatever is there, under its own name.
                    files.push((dir.join(KEY_PEM), KEY_PEM));
                    files.push((dir.join(KEY_PEM_NEW), KEY_PEM_NEW));
                }
            }
        } else {
            files.push((dir.join(KEY_PEM), KEY_PEM));
        }
        files.retain(|(path, _)| path.exists());
        if files.is_empty() {
            return Ok(());
        }

        let now = unix_now();
        let mut n = 0u32;
        let backup = loop {
            let name = if n == 0 {
                format!("backup-{now}")
            } else {
                format!("backup-{now}-{n}")
            };
            let path = dir.join(name);
            let mut builder = DirBuilder::new();
            set_dir_mode(&mut builder);
            match builder.create(&path) {
                Ok(()) => break path,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(io_err(&path)(e)),
            }
        };
        for (src, name) in files {
            let dst = backup.join(name);
            if fs::hard_link(&src, &dst).is_err() {
                // File systems without hard links: copy, durably.
                fs::copy(&src, &dst)
                    .and_then(|_| File::open(&dst)?.sync_all())
                    .map_err(io_err(&dst))?;
                self.count_fsync();
            }
        }
        self.sync_dir(&backup)?;
        self.sync_dir(dir)
    }
}

enum CurrentKey {
    /// The file and its PEM.
    Found(PathBuf, Zeroizing<String>),
    /// Why `key.pem` is not the key (it is then the file to blame).
    Missing(String),
}
