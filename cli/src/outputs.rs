//! The set of files `issue --out DIR` writes, swapped in as one: a reader
//! never pairs a key with another certificate, whenever the tool stops.
//!
//! ```text
//! DIR/sets/<serial>.<pid>.<nanos>/key.pem       (0600)
//!                                /cert.pem       (the leaf)
//!                                /chain.pem      (the issuers)
//!                                /fullchain.pem  (leaf + issuers)
//! DIR/live -> sets/<serial>.<pid>.<nanos>        (the current set)
//! DIR/key.pem -> live/key.pem                    (and cert.pem, chain.pem,
//!                                                 fullchain.pem alike)
//! ```
//!
//! A new set is written into a fresh directory under `sets/`, every file
//! and the directory are synced, then `live` is replaced in one step (a
//! temporary symlink renamed over it) and `DIR` is synced. The fixed links
//! `DIR/*.pem` go through `live`, so every name shows the same set at any
//! moment, and a crash leaves either the old set or the new one. A program
//! that must read the key and the certificate of one set even while a new
//! one is swapped in resolves `DIR/live` once (`readlink`, or opens the
//! directory) and reads both files from there. Older sets are removed,
//! except the one `live` named before (a reader may be in it). Two runs
//! writing into one `DIR` take turns (a lock on `DIR/.lock`).
//!
//! A `DIR` written by an older version (plain files) is first turned into
//! this layout with its own files as the current set, so no moment mixes
//! the old files with the new ones. On systems without symlinks (not unix)
//! each file is replaced on its own, as before.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writing the output set failed (exit status 7, like the store); the set
/// shown before is still whole.
#[derive(Debug, thiserror::Error)]
#[error("writing the certificate and key into {}: {source}", .dir.display())]
pub struct OutputError {
    /// The output directory.
    pub dir: PathBuf,
    /// What failed.
    #[source]
    pub source: std::io::Error,
}

/// The file names of a set, in the order they are written.
pub const NAMES: [&str; 4] = ["key.pem", "cert.pem", "chain.pem", "fullchain.pem"];

/// The symlink naming the current set.
pub const LIVE: &str = "live";

/// The directory holding the sets.
pub const SETS: &str = "sets";

/// One set's contents.
pub struct OutputSet<'a> {
    /// The private key (written 0600).
    pub key_pem: &'a [u8],
    /// The leaf certificate.
    pub cert_pem: &'a [u8],
    /// The issuers.
    pub chain_pem: &'a [u8],
    /// Leaf and issuers.
    pub fullchain_pem: &'a [u8],
    /// A label for the set's directory (the serial): only `[0-9A-Za-z_-]`
    /// is kept.
    pub label: &'a str,
}

impl OutputSet<'_> {
    fn files(&self) -> [(&'static str, &[u8], bool); 4] {
        [
            (NAMES[0], self.key_pem, true),
            (NAMES[1], self.cert_pem, false),
            (NAMES[2], self.chain_pem, false),
            (NAMES[3], self.fullchain_pem, false),
        ]
    }
}

/// A point of the write, after which a test hook may fail it (a crash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// A file of an older layout was turned into a link to the same content.
    Migrated(&'static str),
    /// A file of the new set was written and synced.
    Wrote(&'static str),
    /// The new set's directory was synced.
    SetSynced,
    /// `live` names the new set.
    Flipped,
    /// A fixed link `DIR/<name>` was made.
    Linked(&'static str),
}

/// Writes `set` into `out` and makes it the current set; returns the
/// set's directory.
pub fn write_set(out: &Path, set: &OutputSet<'_>) -> std::io::Result<PathBuf> {
    write_set_with(out, set, &mut |_| Ok(()))
}

/// [`write_set`], calling `hook` after each step: an error it returns
/// stops the write there, as a crash would (for tests).
#[cfg(unix)]
pub fn write_set_with(
    out: &Path,
    set: &OutputSet<'_>,
    hook: &mut dyn FnMut(Stage) -> std::io::Result<()>,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(out.join(SETS))?;
    // One writer at a time per directory (two runs naming the same --out).
    let lock = std::fs::File::create(out.join(".lock"))?;
    fs4::FileExt::lock(&lock)?;
    migrate_plain_files(out, hook)?;
    let previous = std::fs::read_link(out.join(LIVE)).ok();

    let name = set_name(set.label);
    let dir = out.join(SETS).join(&name);
    std::fs::create_dir(&dir)?;
    for (file, data, private) in set.files() {
        write_synced(&dir.join(file), data, private)?;
        hook(Stage::Wrote(file))?;
    }
    sync_dir(&dir)?;
    sync_dir(&out.join(SETS))?;
    hook(Stage::SetSynced)?;

    let target = Path::new(SETS).join(&name);
    replace_with_symlink(out, LIVE, &target)?;
    hook(Stage::Flipped)?;
    for file in NAMES {
        ensure_link(out, file)?;
        hook(Stage::Linked(file))?;
    }
    sync_dir(out)?;
    remove_old_sets(out, &target, previous.as_deref());
    Ok(dir)
}

/// Without symlinks: each file replaced on its own (not atomic as a set).
#[cfg(not(unix))]
pub fn write_set_with(
    out: &Path,
    set: &OutputSet<'_>,
    hook: &mut dyn FnMut(Stage) -> std::io::Result<()>,
) -> std::io::Result<PathBuf> {
    use sturdy_acme::store::{FileMode, write_file_atomic};
    std::fs::create_dir_all(out)?;
    for (file, data, private) in set.files() {
        let mode = if private {
            FileMode::Private
        } else {
            FileMode::Public
        };
        write_file_atomic(&out.join(file), data, mode).map_err(std::io::Error::other)?;
        hook(Stage::Wrote(file))?;
    }
    Ok(out.to_path_buf())
}

/// `<label>.<pid>.<nanos>`: never an existing set's name.
#[cfg_attr(not(unix), allow(dead_code))]
fn set_name(label: &str) -> String {
    let label: String = label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{}.{}.{nanos}",
        if label.is_empty() { "set" } else { &label },
        std::process::id()
    )
}

/// Creates `path` (new, 0600 when `private`), writes `data` and syncs it.
#[cfg(unix)]
fn write_synced(path: &Path, data: &[u8], private: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// Syncs a directory's entries to disk.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Makes `out/name` a symlink to `target` in one step: a temporary link
/// renamed over it.
#[cfg(unix)]
fn replace_with_symlink(out: &Path, name: &str, target: &Path) -> std::io::Result<()> {
    let temp = out.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    std::os::unix::fs::symlink(target, &temp)?;
    if let Err(e) = std::fs::rename(&temp, out.join(name)) {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok(())
}

/// `live/<name>`, the target of the fixed link `out/<name>`.
#[cfg(unix)]
fn link_target(name: &str) -> PathBuf {
    Path::new(LIVE).join(name)
}

/// Makes `out/<name>` the link `live/<name>` unless it already is.
#[cfg(unix)]
fn ensure_link(out: &Path, name: &str) -> std::io::Result<()> {
    match std::fs::read_link(out.join(name)) {
        Ok(t) if t == link_target(name) => Ok(()),
        _ => replace_with_symlink(out, name, &link_target(name)),
    }
}

/// Turns the plain files of an older layout (or links made by hand) into
/// the current set without a moment that mixes them with the new set:
/// their contents become a set of their own, `live` names it, then each
/// file is replaced by its link (to the same content).
#[cfg(unix)]
fn migrate_plain_files(
    out: &Path,
    hook: &mut dyn FnMut(Stage) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut plain = Vec::new();
    for name in NAMES {
        let path = out.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(_) if std::fs::read_link(&path).ok() == Some(link_target(name)) => {}
            Ok(meta) if meta.is_dir() => {
                return Err(std::io::Error::other(format!(
                    "{} is a directory: it is in the way of the output file",
                    path.display()
                )));
            }
            Ok(_) => plain.push(name),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if plain.is_empty() {
        return Ok(());
    }
    // Every file shown now (through a link already made, too) joins the set.
    let name = set_name("previous");
    let dir = out.join(SETS).join(&name);
    std::fs::create_dir(&dir)?;
    for file in NAMES {
        let data = match std::fs::read(out.join(file)) {
            Ok(data) => zeroize::Zeroizing::new(data),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        write_synced(&dir.join(file), &data, file == NAMES[0])?;
    }
    sync_dir(&dir)?;
    sync_dir(&out.join(SETS))?;
    replace_with_symlink(out, LIVE, &Path::new(SETS).join(&name))?;
    sync_dir(out)?;
    for file in plain {
        replace_with_symlink(out, file, &link_target(file))?;
        hook(Stage::Migrated(file))?;
    }
    sync_dir(out)
}

/// Removes every set but the current one and the one `live` named before
/// the flip; a set a crash left half written goes too. Failures are only
/// logged: the current set is in place.
#[cfg(unix)]
fn remove_old_sets(out: &Path, current: &Path, previous: Option<&Path>) {
    let Ok(entries) = std::fs::read_dir(out.join(SETS)) else {
        return;
    };
    // A concurrent writer may have flipped since: never remove what
    // `live` names now.
    let live_now = std::fs::read_link(out.join(LIVE)).ok();
    for entry in entries.flatten() {
        let relative = Path::new(SETS).join(entry.file_name());
        if relative == current
            || Some(relative.as_path()) == previous
            || Some(&relative) == live_now.as_ref()
        {
            continue;
        }
        if let Err(e) = std::fs::remove_dir_all(entry.path()) {
            tracing::warn!(set = %entry.path().display(), error = %e, "could not remove an old output set");
        }
    }
}
