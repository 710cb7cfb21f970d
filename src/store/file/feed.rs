//! FileStore's change feed (see the [parent](super) and
//! [`store::feed`](crate::store::feed)): `feed/changes.log`, one JSON line
//! per [`Change`], revisions consecutive from the first line's.
//!
//! A certificate save that changes what an edge serves takes the feed's
//! exclusive `flock(2)` (`feed/.lock`), appends its line (fsynced), commits
//! the certificate, and only then releases the lock; readers take the
//! lock shared. So a reader never sees a change before its certificate is
//! committed, and revisions follow commit order. A crash between the line
//! and the commit leaves a change naming a save that did not happen: a
//! reader loads the certificate and finds the previous one, harmlessly. A
//! line torn by a crash is ignored by readers and cut by the next writer.
//! When the log holds twice the retention, the writer rewrites it
//! atomically with the last `retention` changes.

use std::io::{Seek, SeekFrom, Write};

use super::*;
use crate::store::{Change, ChangeKind, ChangePage, FeedSnapshot};

use super::FEED;
const LOG: &str = "changes.log";
const LOCK: &str = ".lock";
/// How much of the log is read at a time, from its end.
const CHUNK: u64 = 64 * 1024;

/// What the end of the log says.
struct Ends {
    /// The last complete line's revision (0: none).
    head: u64,
    /// Where the complete lines end (a torn line starts there).
    complete_len: u64,
}

impl Inner {
    fn feed_path(&self, file: &str) -> PathBuf {
        self.root.join(FEED).join(file)
    }

    /// Appends the change of a save about to commit, and returns the
    /// feed's exclusive lock: the caller holds it until its commit.
    pub(super) fn append_change(
        &self,
        key: &IdentifierSetKey,
        kind: ChangeKind,
        serial: &str,
    ) -> StoreResult<File> {
        let lock = self.lock(&self.feed_path(LOCK))?;
        let path = self.feed_path(LOG);
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        if created {
            // The log's directory entry is durable before a change in it
            // is relied on.
            self.sync_dir(&self.root.join(FEED))?;
        }
        let ends = self.ends(&mut file, &path)?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        if ends.complete_len < len {
            tracing::warn!(target: "sturdy_acme::store", path = %path.display(), "a torn line at the end of the change log is cut");
            file.set_len(ends.complete_len).map_err(io_err(&path))?;
        }
        let change = Change {
            revision: ends.head.saturating_add(1),
            key: key.clone(),
            kind,
            serial: serial.to_owned(),
        };
        let mut line = serde_json::to_vec(&change)
            .map_err(|e| StoreError::Other(format!("encoding a change: {e}")))?;
        line.push(b'\n');
        file.seek(SeekFrom::Start(ends.complete_len))
            .and_then(|_| file.write_all(&line))
            .and_then(|()| file.sync_data())
            .map_err(io_err(&path))?;
        self.count_fsync();
        // Compaction is housekeeping: its failure (a disk full, a damaged
        // line) is logged and never fails the save.
        let retention = self.feed_retention.load(Ordering::Relaxed).max(1);
        let kept = match self.first_revision(&path) {
            Ok(first) => change
                .revision
                .saturating_sub(first.unwrap_or(change.revision))
                .saturating_add(1),
            Err(e) => {
                tracing::warn!(target: "sturdy_acme::store", error = %e, "the change log's first line cannot be read; not compacted");
                0
            }
        };
        if kept > retention.saturating_mul(2)
            && let Err(e) = self.compact(&path, change.revision.saturating_sub(retention))
        {
            tracing::warn!(target: "sturdy_acme::store", error = %e, "the change log could not be compacted");
        }
        Ok(lock)
    }

    /// Keeps the changes after `through`.
    fn compact(&self, path: &Path, through: u64) -> StoreResult<()> {
        let bytes = fs::read(path).map_err(io_err(path))?;
        let mut kept = Vec::with_capacity(bytes.len() / 2);
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            if !line.ends_with(b"\n") {
                continue;
            }
            if parse(line, path)?.revision > through {
                kept.extend_from_slice(line);
            }
        }
        self.write_file(path, &kept, FileMode::Public)
    }

    /// The first complete line's revision.
    fn first_revision(&self, path: &Path) -> StoreResult<Option<u64>> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(path)(e)),
        };
        let mut head = Vec::new();
        let mut chunk = vec![0; 4096];
        loop {
            let n = file.read(&mut chunk).map_err(io_err(path))?;
            if n == 0 {
                return Ok(None);
            }
            head.extend_from_slice(&chunk[..n]);
            if let Some(end) = head.iter().position(|b| *b == b'\n') {
                return Ok(Some(parse(&head[..=end], path)?.revision));
            }
        }
    }

    fn ends(&self, file: &mut File, path: &Path) -> StoreResult<Ends> {
        let mut last = None;
        let complete_len = self.scan_back(file, path, |c| {
            last = Some(c.revision);
            false
        })?;
        Ok(Ends {
            head: last.unwrap_or(0),
            complete_len,
        })
    }

    /// Walks the complete lines from the last, while `more` says so;
    /// returns where the complete lines end.
    fn scan_back(
        &self,
        file: &mut File,
        path: &Path,
        mut more: impl FnMut(Change) -> bool,
    ) -> StoreResult<u64> {
        let len = file.metadata().map_err(io_err(path))?.len();
        let mut pos = len;
        // Bytes after `pos` not yet split into lines (a line's start is
        // in an earlier chunk).
        let mut carry: Vec<u8> = Vec::new();
        let mut complete_len = None;
        while pos > 0 {
            let start = pos.saturating_sub(CHUNK);
            let mut chunk = vec![0; (pos - start) as usize];
            file.seek(SeekFrom::Start(start))
                .and_then(|_| file.read_exact(&mut chunk))
                .map_err(io_err(path))?;
            chunk.extend_from_slice(&carry);
            let mut end = chunk.len();
            if complete_len.is_none() {
                // The end of the last complete line: a torn one is left out.
                let cut = chunk.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                if cut == 0 && start > 0 {
                    carry = chunk;
                    pos = start;
                    continue;
                }
                complete_len = Some(start + cut as u64);
                end = cut;
            }
            // Lines within chunk[..end], from the last; the first may be
            // partial unless the chunk starts the file.
            let mut line_end = end;
            while line_end > 0 {
                let line_start = chunk[..line_end - 1]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1);
                if line_start == 0 && start > 0 {
                    break;
                }
                if !more(parse(&chunk[line_start..line_end], path)?) {
                    return Ok(complete_len.unwrap_or(0));
                }
                line_end = line_start;
            }
            chunk.truncate(line_end);
            carry = chunk;
            pos = start;
        }
        Ok(complete_len.unwrap_or(0))
    }

    /// The changes after `after`, at most `limit`.
    pub(super) fn changes_since(&self, after: u64, limit: usize) -> StoreResult<ChangePage> {
        let empty = || {
            if after > 0 {
                Err(StoreError::FeedBehind { after, oldest: 1 })
            } else {
                Ok(ChangePage {
                    changes: Vec::new(),
                    head: 0,
                })
            }
        };
        let Some(_shared) = self.lock_shared_if_present(&self.feed_path(LOCK))? else {
            return empty();
        };
        let path = self.feed_path(LOG);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return empty(),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut newer = Vec::new();
        let mut head = None;
        let mut reached = false;
        self.scan_back(&mut file, &path, |c| {
            head.get_or_insert(c.revision);
            if c.revision <= after {
                reached = true;
                return false;
            }
            newer.push(c);
            true
        })?;
        let head = head.unwrap_or(0);
        if after > head {
            // The log was restored or removed: the reader is ahead of it.
            return Err(StoreError::FeedBehind {
                after,
                oldest: newer.last().map_or(head.saturating_add(1), |c| c.revision),
            });
        }
        if !reached
            && let Some(oldest) = newer.last().map(|c| c.revision)
            && oldest > after.saturating_add(1)
        {
            return Err(StoreError::FeedBehind { after, oldest });
        }
        newer.reverse();
        newer.truncate(limit);
        Ok(ChangePage {
            changes: newer,
            head,
        })
    }

    /// The head revision (0: no change yet).
    pub(super) fn feed_head(&self) -> StoreResult<u64> {
        let Some(_shared) = self.lock_shared_if_present(&self.feed_path(LOCK))? else {
            return Ok(0);
        };
        let path = self.feed_path(LOG);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err(&path)(e)),
        };
        Ok(self.ends(&mut file, &path)?.head)
    }

    pub(super) fn feed_snapshot(&self) -> StoreResult<FeedSnapshot> {
        let revision = self.feed_head()?;
        Ok(FeedSnapshot {
            revision,
            keys: self.certificates_where(|_| true)?,
            validations: self.validation_names()?,
        })
    }

    /// The log's length and modification time, to poll it cheaply.
    pub(super) fn feed_mark(&self) -> Option<(u64, SystemTime)> {
        let meta = fs::metadata(self.feed_path(LOG)).ok()?;
        Some((meta.len(), meta.modified().ok()?))
    }
}

fn parse(line: &[u8], path: &Path) -> StoreResult<Change> {
    serde_json::from_slice(line.trim_ascii_end()).map_err(|e| StoreError::Corrupted {
        path: path.to_owned(),
        reason: format!("a line of the change log is not a change: {e}"),
    })
}
