//! Durable storage. For now: the atomic, permission-aware file writes every
//! store (and the example tools) use for keys and certificates.

mod atomic;

pub use atomic::{FileMode, write_file_atomic};
