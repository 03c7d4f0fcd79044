//! The real sources of a configuration load: the local file system ([`StdFs`]) and the
//! process environment ([`ProcessEnv`]), for `k3splan_core::config`'s loader, which reads only
//! through the traits it is given.
//!
//! Guarantees:
//! - [`StdFs::read_regular`] opens the file once, checks the opened file is the one looked at
//!   (device and inode) and reads at most `limit` bytes, so a file swapped for a device or a
//!   huge file between the check and the read is refused;
//! - [`StdFs::metadata`] never opens the file (a FIFO would block the open).
//!
//! [`load_path`], [`load_sources`] and [`config_files`] are the loader's entry points with these
//! sources plugged in (the binary's `config` module re-exports them under those names).

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k3splan_core::config::SourceFile;
use k3splan_core::config::load::{
    EnvSource, Environment, FileKind, FileMeta, LoadError, LoadOptions, Loaded, ReadRegularError,
    SourceFs, config_files_with, load_path_with, load_sources_with,
};

/// The local file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

fn meta_of(m: &std::fs::Metadata) -> FileMeta {
    let ft = m.file_type();
    let kind = if ft.is_file() {
        FileKind::File
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_fifo() {
        FileKind::Fifo
    } else if ft.is_char_device() {
        FileKind::CharDevice
    } else if ft.is_block_device() {
        FileKind::BlockDevice
    } else if ft.is_socket() {
        FileKind::Socket
    } else {
        FileKind::Other
    };
    FileMeta {
        kind,
        len: m.len(),
        id: (m.dev(), m.ino()),
    }
}

impl SourceFs for StdFs {
    fn metadata(&self, path: &Path) -> std::io::Result<FileMeta> {
        std::fs::metadata(path).map(|m| meta_of(&m))
    }

    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    }

    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_regular(
        &self,
        path: &Path,
        expected: &FileMeta,
        limit: u64,
    ) -> Result<Vec<u8>, ReadRegularError> {
        let f = std::fs::File::open(path)?;
        let opened = meta_of(&f.metadata()?);
        if opened.kind != FileKind::File || opened.id != expected.id {
            return Err(ReadRegularError::Replaced);
        }
        let mut buf = Vec::new();
        f.take(limit).read_to_end(&mut buf)?;
        Ok(buf)
    }
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// The process environment as the loader's [`EnvSource`].
pub fn process_env() -> EnvSource {
    EnvSource::Shared(Arc::new(ProcessEnv))
}

/// The `*.hcl` files a `-c PATH` designates on the local file system.
pub fn config_files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    config_files_with(&StdFs, path)
}

/// Loads the topology at `path` (a file or a directory of `*.hcl`) from the local file system.
pub fn load_path(path: &Path, env: EnvSource) -> Result<Loaded, LoadError> {
    load_path_with(&StdFs, path, env)
}

/// Loads already-read files; `file()` reads the local file system.
pub fn load_sources(files: Vec<SourceFile>, opts: &LoadOptions) -> Loaded {
    load_sources_with(&StdFs, files, opts)
}
