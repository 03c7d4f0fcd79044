//! Replacing a file atomically: the one implementation the state file, saved plans and
//! `fmt` share.
//!
//! Guarantees: the new content goes to a temporary file in the same directory, is fsynced,
//! gets `permissions`, and is renamed over `path`; then the directory is fsynced. A reader
//! sees the old or the new file, never a mix, and a crash leaves one of the two (at worst a
//! stray `.k3splan-*` temporary file beside it). Missing parent directories are created.
//!
//! Caveat: the file's owner is the writer's, not the replaced file's.

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` atomically, with `permissions`.
pub fn write_atomic(path: &Path, bytes: &[u8], permissions: Permissions) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".k3splan-")
        .permissions(permissions)
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir).and_then(|d| d.sync_all())
}
