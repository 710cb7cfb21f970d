//! (being written) The file-backed store.

/// A store in one directory on the local file system.
#[derive(Debug)]
pub struct FileStore;
