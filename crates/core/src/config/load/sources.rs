//! What a load reads from outside: files ([`SourceFs`]) and environment variables
//! ([`EnvSource`]).
//!
//! Guarantees:
//! - the loader reads nothing but through these two: the configuration files, the files named
//!   by `file("…")`, the variables named by `env("…")`, `K3SPLAN_VAR_<name>` and `HOME` (for
//!   `file("~/…")`). The core has no implementation that touches the real disk or the process
//!   environment; the binary passes those in (`k3splan_engine::sources`);
//! - [`MemFs`] and [`EnvSource::Map`] make a load fully deterministic (tests, `fmt`).
//!
//! Caveat: a [`SourceFs`] is trusted to describe files faithfully; the FIFO and size checks of
//! `file()` are only as good as its [`FileMeta`].

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reads environment variables.
pub trait Environment: fmt::Debug + Send + Sync {
    /// The value of `name`, or `None` when it is unset (or not Unicode).
    fn var(&self, name: &str) -> Option<String>;
}

/// Where `env("…")`, `K3SPLAN_VAR_*` and `HOME` values come from.
#[derive(Debug, Clone)]
pub enum EnvSource {
    /// A fixed map (tests, or no environment at all when empty).
    Map(BTreeMap<String, String>),
    /// Any other environment, e.g. the process environment the binary passes in.
    Shared(Arc<dyn Environment>),
}

impl Default for EnvSource {
    /// An empty environment: a load reads no variable unless the caller provides one.
    fn default() -> Self {
        EnvSource::Map(BTreeMap::new())
    }
}

impl EnvSource {
    /// The value of `name`, or `None` when it is unset.
    pub fn get(&self, name: &str) -> Option<String> {
        match self {
            EnvSource::Map(m) => m.get(name).cloned(),
            EnvSource::Shared(e) => e.var(name),
        }
    }
}

/// What a file is, as far as `file()` cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
    Other,
}

impl FileKind {
    /// How `file()` names a file it refuses to read; `None` for a regular file.
    pub(super) fn refused_as(self) -> Option<&'static str> {
        match self {
            FileKind::File => None,
            FileKind::Dir => Some("a directory"),
            FileKind::Fifo => Some("a FIFO (named pipe)"),
            FileKind::CharDevice => Some("a character device"),
            FileKind::BlockDevice => Some("a block device"),
            FileKind::Socket => Some("a socket"),
            FileKind::Other => Some("not a regular file"),
        }
    }
}

/// The metadata of a file (symbolic links followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub kind: FileKind,
    /// Size in bytes, as the file claims.
    pub len: u64,
    /// Identity (device, inode): a file replaced between two looks has another one.
    pub id: (u64, u64),
}

/// A bounded read of a regular file that failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadRegularError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The file opened is not the file looked at before (it was replaced meanwhile).
    #[error("it was replaced while being read")]
    Replaced,
}

/// Read access to files.
pub trait SourceFs: fmt::Debug + Send + Sync {
    /// The metadata of `path`, following symbolic links.
    fn metadata(&self, path: &Path) -> io::Result<FileMeta>;
    /// The paths of the entries of the directory `path`, in any order.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// The whole content of `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens `path`, checks it is still the regular file `expected` describes, and reads at
    /// most `limit` bytes of it (never more, whatever its size claims).
    fn read_regular(
        &self,
        path: &Path,
        expected: &FileMeta,
        limit: u64,
    ) -> Result<Vec<u8>, ReadRegularError>;
}

/// An in-memory file system: regular files by path, directories implied by their files.
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl MemFs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the file `path`.
    pub fn with_file(mut self, path: impl Into<PathBuf>, content: impl Into<Vec<u8>>) -> Self {
        self.files.insert(path.into(), content.into());
        self
    }

    fn not_found(path: &Path) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: not in the in-memory file system", path.display()),
        )
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.files.keys().any(|p| p.starts_with(path) && p != path)
    }

    fn id_of(&self, path: &Path) -> (u64, u64) {
        let ino = self.files.keys().position(|p| p == path).unwrap_or(0);
        (0, ino as u64 + 1)
    }
}

impl SourceFs for MemFs {
    fn metadata(&self, path: &Path) -> io::Result<FileMeta> {
        if let Some(content) = self.files.get(path) {
            return Ok(FileMeta {
                kind: FileKind::File,
                len: content.len() as u64,
                id: self.id_of(path),
            });
        }
        if self.is_dir(path) {
            return Ok(FileMeta {
                kind: FileKind::Dir,
                len: 0,
                id: (0, 0),
            });
        }
        Err(Self::not_found(path))
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        if !self.is_dir(path) {
            return Err(Self::not_found(path));
        }
        let mut entries: Vec<PathBuf> = self
            .files
            .keys()
            .filter_map(|p| p.strip_prefix(path).ok())
            .filter_map(|rest| rest.components().next())
            .map(|first| path.join(first))
            .collect();
        entries.dedup();
        Ok(entries)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| Self::not_found(path))
    }

    fn read_regular(
        &self,
        path: &Path,
        expected: &FileMeta,
        limit: u64,
    ) -> Result<Vec<u8>, ReadRegularError> {
        let mut content = self.read(path)?;
        if self.id_of(path) != expected.id {
            return Err(ReadRegularError::Replaced);
        }
        content.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(content)
    }
}
