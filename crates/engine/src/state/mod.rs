//! State: what k3splan manages, the apply journal, and the lock that keeps two runs apart.
//!
//! [`model`] is the document and its serialization; [`backend`] the one interface of the
//! backends: [`local`] persists the state in a file with an `flock`-based lock, [`etcd`]
//! under a key with a lease-held lock.

pub mod backend;
pub mod etcd;
pub mod local;
pub mod model;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use backend::{Backend, HeldLock, StateBackend, StateLock};
pub use etcd::{EtcdBackend, EtcdBackendConfig, EtcdLock, EtcdRequestError};
pub use local::{LocalBackend, LocalLock};
pub use model::*;

/// Default location of the local state file, relative to the working directory.
pub const DEFAULT_STATE_PATH: &str = "state/k3splan.state.json";

/// Who holds a lock, for the message another run prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Random ID, for `force-unlock`.
    pub id: String,
    /// `plan`, `apply`, …
    pub operation: String,
    /// `user@host`.
    pub who: String,
    pub pid: u32,
    /// RFC 3339.
    pub created: String,
    pub version: String,
}

impl LockInfo {
    /// Lock details for this process.
    pub fn for_operation(operation: &str) -> Self {
        let user = user_name();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        LockInfo {
            id: random_id(),
            operation: operation.to_string(),
            who: format!("{user}@{host}"),
            pid: std::process::id(),
            created: now_rfc3339(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    fn unknown() -> Self {
        LockInfo {
            id: "unknown".into(),
            operation: "unknown".into(),
            who: "unknown".into(),
            pid: 0,
            created: "unknown".into(),
            version: "unknown".into(),
        }
    }
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ID {}, operation {}, by {} (pid {}), since {}, k3splan v{}",
            self.id, self.operation, self.who, self.pid, self.created, self.version
        )
    }
}

/// This process's user: the name of its real uid in the passwd database (through NSS, so
/// directory users too), else `$USER` / `$LOGNAME`, else `uid N`. `$USER` alone is often
/// unset (cron, systemd units, `env -i`).
pub fn user_name() -> String {
    // SAFETY: getuid cannot fail; getpwuid_r writes only into `pwd` and `buf` (whose length
    // it is given) and sets `result` to null or to `&pwd`, whose strings point into `buf`,
    // which outlives their use here.
    let uid = unsafe { libc::getuid() };
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc =
            unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
            let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
                .to_string_lossy()
                .into_owned();
            if !name.is_empty() {
                return name;
            }
        }
        break;
    }
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// 16 random hex digits (from the operating system's random source; the time and the
/// process ID if it fails).
pub fn random_id() -> String {
    let n = getrandom::u64().unwrap_or_else(|_| {
        let t = jiff::Timestamp::now().as_nanosecond();
        (t as u64) ^ u64::from(std::process::id())
    });
    hex::encode(n.to_le_bytes())
}

/// Errors of the state layer.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A request to the etcd backend failed (a transport error: retried where that is safe).
    #[error("{location}: {what}: {source}")]
    Etcd {
        location: String,
        what: &'static str,
        #[source]
        source: Box<EtcdRequestError>,
    },
    /// The etcd backend's configuration is unusable (no endpoints, a TLS file).
    #[error("{location}: {source}")]
    EtcdSetup {
        location: String,
        #[source]
        source: Box<k3splan_etcd::client::ClientError>,
    },
    /// The etcd backend's private runtime could not start.
    #[error("{location}: {source}")]
    Runtime {
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{location}: the state does not parse ({source}); it was left untouched")]
    Corrupt {
        location: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{location}: state format version {} is not supported (this k3splan reads versions {OLDEST_STATE_VERSION} to {STATE_VERSION}){}; it was left untouched",
        found.map(|v| v.to_string()).unwrap_or_else(|| "(missing)".into()),
        if found.is_some_and(|v| v > STATE_VERSION) { ": it was written by a newer k3splan, use that version or a later one" } else { "" }
    )]
    UnsupportedVersion {
        location: String,
        found: Option<u32>,
    },
    #[error(
        "{location}: the state was written by k3splan {found}, newer than this k3splan ({}); use that version or a later one. It was left untouched",
        env!("CARGO_PKG_VERSION")
    )]
    NewerK3splan { location: String, found: String },
    #[error("{location}: the state is invalid: {why}; it was left untouched")]
    Invalid { location: String, why: String },
    #[error(
        "{location}: the state belongs to another lineage ({found}, expected {expected}): is this the state of another cluster? It was left untouched"
    )]
    LineageMismatch {
        location: String,
        found: String,
        expected: String,
    },
    #[error(
        "{location}: the state changed while this run held it (serial {found}, expected {expected}); nothing was written"
    )]
    SerialConflict {
        location: String,
        found: u64,
        expected: u64,
    },
    #[error("the state is locked ({location}): {holder}")]
    Locked {
        location: String,
        holder: Box<LockInfo>,
    },
    #[error("{location}: the state is not locked")]
    NotLocked { location: String },
    #[error("lock ID {given} does not match the lock held: {holder}")]
    LockIdMismatch {
        given: String,
        holder: Box<LockInfo>,
    },
    #[error(
        "the lock is held by a running process ({holder}); stop that process instead of forcing the lock"
    )]
    HolderAlive { holder: Box<LockInfo> },
}
