//! The local state backend: a JSON file and an advisory lock beside it.
//!
//! Guarantees:
//! - writes are atomic: a temporary file in the same directory (mode 0600), fsync, rename
//!   over the state, fsync of the directory. A reader sees the old or the new state, never a
//!   mix, and a crash leaves one of the two;
//! - a state file that does not parse, has an unknown version or another lineage is an error
//!   and is never overwritten;
//! - the lock is an `flock` on `<state>.lock`: the kernel releases it when the holder dies,
//!   so a killed apply never leaves a stale lock. The file holds the holder's [`LockInfo`]
//!   for the message other runs print. The lock file is never deleted (deleting it would let
//!   two runs lock two different files).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::backend::{Attempt, Backend, HeldLock, wait_for_lock};
use super::model::{OLDEST_STATE_VERSION, STATE_VERSION, State};
use super::{LockInfo, StateError};

/// How often a waiting run tries the lock again.
const LOCK_POLL: Duration = Duration::from_millis(100);

/// A state file on the local filesystem.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    path: PathBuf,
}

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct LocalLock {
    file: File,
    pub info: LockInfo,
}

impl Drop for LocalLock {
    fn drop(&mut self) {
        // Clear the holder's details; the kernel drops the lock when the file closes.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

impl HeldLock for LocalLock {
    fn info(&self) -> &LockInfo {
        &self.info
    }
}

impl LocalBackend {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalBackend { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }
}

impl Backend for LocalBackend {
    type Lock = LocalLock;

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    /// Reads the state; `None` when there is no state file yet.
    fn read(&self) -> Result<Option<State>, StateError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        parse_state(&self.path.display().to_string(), &bytes).map(Some)
    }

    /// Writes `state` with its serial bumped by one. The lock must be held. Refuses when the
    /// file on disk is unreadable, of another lineage, or was written by someone else since
    /// it was read (its serial is not `state.serial`).
    fn write(&self, _lock: &LocalLock, state: &mut State) -> Result<(), StateError> {
        let t0 = std::time::Instant::now();
        if let Some(current) = self.read()? {
            if current.lineage != state.lineage {
                return Err(StateError::LineageMismatch {
                    location: self.path.display().to_string(),
                    found: current.lineage,
                    expected: state.lineage.clone(),
                });
            }
            if current.serial != state.serial {
                return Err(StateError::SerialConflict {
                    location: self.path.display().to_string(),
                    found: current.serial,
                    expected: state.serial,
                });
            }
        }
        let mut next = state.clone();
        next.serial = state.next_serial(&self.path.display().to_string())?;
        next.version = STATE_VERSION;
        next.k3splan_version = env!("CARGO_PKG_VERSION").to_string();
        let mut json = serde_json::to_vec_pretty(&next).expect("state serializes");
        json.push(b'\n');
        let t_checked = t0.elapsed();
        write_atomic_private(&self.path, &json)?;
        tracing::debug!(
            "state written: serial {}, {} bytes, {:.1} ms ({:.1} ms reading and checking the file on disk)",
            next.serial,
            json.len(),
            t0.elapsed().as_secs_f64() * 1e3,
            t_checked.as_secs_f64() * 1e3
        );
        *state = next;
        Ok(())
    }

    /// Takes the lock, waiting up to `timeout`. When another run holds it, the error names
    /// the holder.
    fn lock(&self, info: LockInfo, timeout: Duration) -> Result<LocalLock, StateError> {
        let lock_path = self.lock_path();
        let io = |source| StateError::Io {
            path: lock_path.clone(),
            source,
        };
        if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io)?;
        wait_for_lock(
            timeout,
            LOCK_POLL,
            || lock_path.display().to_string(),
            || match file.try_lock() {
                Ok(()) => Ok(Attempt::Taken(())),
                Err(std::fs::TryLockError::WouldBlock) => {
                    Ok(Attempt::Held(read_lock_info(&mut file)))
                }
                Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
            },
        )?;
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut text = serde_json::to_vec_pretty(&info).expect("lock info serializes");
        text.push(b'\n');
        file.write_all(&text).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(LocalLock { file, info })
    }

    /// Who holds the lock, if anyone.
    fn lock_holder(&self) -> Result<Option<LockInfo>, StateError> {
        let lock_path = self.lock_path();
        let mut file = match OpenOptions::new().read(true).write(true).open(&lock_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    path: lock_path,
                    source,
                });
            }
        };
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                Ok(None)
            }
            Err(_) => Ok(Some(read_lock_info(&mut file))),
        }
    }

    /// `force-unlock`: a local lock is released by the kernel when its holder exits, so there
    /// is nothing to break unless a live process holds it, which this refuses to disturb.
    fn force_unlock(&self, id: &str) -> Result<(), StateError> {
        match self.lock_holder()? {
            None => Err(StateError::NotLocked {
                location: self.lock_path().display().to_string(),
            }),
            Some(h) if h.id != id => Err(StateError::LockIdMismatch {
                given: id.to_string(),
                holder: Box::new(h),
            }),
            Some(h) => Err(StateError::HolderAlive {
                holder: Box::new(h),
            }),
        }
    }
}

fn read_lock_info(file: &mut File) -> LockInfo {
    let mut s = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_string(&mut s);
    serde_json::from_str(&s).unwrap_or_else(|_| LockInfo::unknown())
}

/// Parses a state document, refusing unknown versions and invalid states ([`State::validate`]).
pub fn parse_state(location: &str, bytes: &[u8]) -> Result<State, StateError> {
    #[derive(serde::Deserialize)]
    struct Version {
        version: Option<u32>,
    }
    let v: Version = serde_json::from_slice(bytes).map_err(|source| StateError::Corrupt {
        location: location.to_string(),
        source,
    })?;
    match v.version {
        Some(v) if (OLDEST_STATE_VERSION..=STATE_VERSION).contains(&v) => {}
        other => {
            return Err(StateError::UnsupportedVersion {
                location: location.to_string(),
                found: other,
            });
        }
    }
    let state: State = serde_json::from_slice(bytes).map_err(|source| StateError::Corrupt {
        location: location.to_string(),
        source,
    })?;
    state.validate(location)?;
    Ok(state)
}

/// Atomic write with mode 0600 (see [`crate::atomic`]); errors name `path`.
pub fn write_atomic_private(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    crate::atomic::write_atomic(path, bytes, std::fs::Permissions::from_mode(0o600)).map_err(
        |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        },
    )
}
