//! Atomic file writes: temp file in the same directory, fsync, rename, fsync
//! the directory. A crash leaves either the old file or the new one, never
//! a torn one; private files are created 0600 from the start.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Who may read a written file.
///
/// # Example
///
/// ```
/// use sturdy_acme::store::{FileMode, write_file_atomic};
///
/// let path = std::env::temp_dir().join(format!("sturdy-doc-key-{}.pem", std::process::id()));
/// write_file_atomic(&path, b"secret", FileMode::Private)?; // 0600, temp file + fsync + rename
/// # #[cfg(unix)]
/// # {
/// #     use std::os::unix::fs::PermissionsExt;
/// #     assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
/// # }
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    /// Owner read/write only (0600): private keys.
    Private,
    /// World-readable (0644): certificates.
    Public,
}

/// Writes `data` to `path` atomically with the given permissions.
pub fn write_file_atomic(path: &Path, data: &[u8], mode: FileMode) -> Result<()> {
    if path.file_name().is_none() {
        return Err(Error::InvalidInput(format!(
            "not a file path: {}",
            path.display()
        )));
    }
    write_file_atomic_counted(path, data, mode, &AtomicU64::new(0)).map_err(Error::Io)
}

/// [`write_file_atomic`] that adds every `fsync` it performs to `fsyncs`
/// (on Unix two when it succeeds: the temp file, then the directory; fewer
/// if it fails before them), for stores that report their durable writes.
pub(crate) fn write_file_atomic_counted(
    path: &Path,
    data: &[u8],
    mode: FileMode,
    fsyncs: &AtomicU64,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a file path: {}", path.display()),
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        unique()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(match mode {
                FileMode::Private => 0o600,
                FileMode::Public => 0o644,
            });
        }
        let mut file = options.open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fsyncs.fetch_add(1, Ordering::Relaxed);
        drop(file);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        #[cfg(unix)]
        {
            File::open(dir)?.sync_all()?;
            fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_with_modes() {
        let dir = std::env::temp_dir().join(format!("sturdy-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key.pem");
        write_file_atomic(&key, b"secret", FileMode::Private).unwrap();
        write_file_atomic(&key, b"secret2", FileMode::Private).unwrap();
        assert_eq!(fs::read(&key).unwrap(), b"secret2");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // A missing directory is an error, not a panic.
        assert!(write_file_atomic(&dir.join("nope/x"), b"x", FileMode::Public).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
