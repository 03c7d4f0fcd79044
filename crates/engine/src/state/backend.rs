//! The one interface of the state backends (Terraform's statemgr split): read and write the
//! state document, take the lock (released when the held lock is dropped), say who holds
//! it, break it. [`LocalBackend`] and [`EtcdBackend`] implement it; [`StateBackend`] is the
//! one the topology chose.
//!
//! Guarantees every backend keeps (each backend's module says how):
//! - a write bumps the serial by one and is refused, writing nothing, when the stored state
//!   does not parse, is of another lineage or another serial, or the lock is not held;
//! - a dead holder's lock does not stay: the kernel (local) or the lease (etcd) releases it;
//! - waiting for a lock is [`wait_for_lock`]: look every poll interval until the timeout,
//!   then [`StateError::Locked`] naming the last holder seen.

use std::time::Duration;

use super::etcd::{EtcdBackend, EtcdLock};
use super::local::{LocalBackend, LocalLock};
use super::model::State;
use super::{LockInfo, StateError};
use crate::wait::{Check, Wait};

/// A place the state lives.
pub trait Backend {
    /// The held lock; dropping it releases the lock.
    type Lock: HeldLock;
    /// Where the state lives, for messages (a path, or `etcd ENDPOINTS key KEY`).
    fn location(&self) -> String;
    /// Reads the state; `None` when there is none yet.
    fn read(&self) -> Result<Option<State>, StateError>;
    /// Writes `state` with its serial bumped by one (see the module's guarantees).
    fn write(&self, lock: &Self::Lock, state: &mut State) -> Result<(), StateError>;
    /// Takes the lock, waiting up to `timeout`; the error names the holder.
    fn lock(&self, info: LockInfo, timeout: Duration) -> Result<Self::Lock, StateError>;
    /// Who holds the lock, if anyone.
    fn lock_holder(&self) -> Result<Option<LockInfo>, StateError>;
    /// `force-unlock ID`: breaks the lock when `id` is the holder's and the backend allows it.
    fn force_unlock(&self, id: &str) -> Result<(), StateError>;
}

/// A held lock.
pub trait HeldLock {
    /// The holder's details (this run's).
    fn info(&self) -> &LockInfo;
}

/// One try at a lock.
pub(crate) enum Attempt<L> {
    /// Taken.
    Taken(L),
    /// Someone else holds it.
    Held(LockInfo),
}

/// Tries `try_lock` every `every` until it takes the lock or `timeout` passes (one try at
/// least); then [`StateError::Locked`] at `location`, naming the last holder seen. An error
/// of a try ends the wait.
pub(crate) fn wait_for_lock<L>(
    timeout: Duration,
    every: Duration,
    location: impl FnOnce() -> String,
    mut try_lock: impl FnMut() -> Result<Attempt<L>, StateError>,
) -> Result<L, StateError> {
    let r = Wait::new(timeout, every).until_blocking(|| match try_lock() {
        Ok(Attempt::Taken(l)) => Check::Ready(Ok(l)),
        Ok(Attempt::Held(holder)) => Check::Pending(holder),
        Err(e) => Check::Ready(Err(e)),
    });
    r.unwrap_or_else(|t| {
        Err(StateError::Locked {
            location: location(),
            holder: Box::new(t.last),
        })
    })
}

/// The held lock of either backend.
#[derive(Debug)]
pub enum StateLock {
    /// A local `flock`.
    Local(LocalLock),
    /// An etcd lease-held lock.
    Etcd(EtcdLock),
}

impl HeldLock for StateLock {
    fn info(&self) -> &LockInfo {
        match self {
            StateLock::Local(l) => l.info(),
            StateLock::Etcd(l) => l.info(),
        }
    }
}

impl StateLock {
    /// The holder's details (this run's).
    pub fn info(&self) -> &LockInfo {
        HeldLock::info(self)
    }
}

/// The state backend chosen by the topology (`backend "local"` / `backend "etcd"`).
#[derive(Debug, Clone)]
pub enum StateBackend {
    /// A local file.
    Local(LocalBackend),
    /// A key in etcd.
    Etcd(EtcdBackend),
}

impl StateBackend {
    /// The state file of the local backend; `None` for etcd.
    pub fn local_path(&self) -> Option<&std::path::Path> {
        match self {
            StateBackend::Local(b) => Some(b.path()),
            StateBackend::Etcd(_) => None,
        }
    }

    fn chosen(&self) -> &dyn ErasedBackend {
        match self {
            StateBackend::Local(b) => b,
            StateBackend::Etcd(b) => b,
        }
    }
}

/// [`Backend`] with its lock type wrapped in [`StateLock`], so that [`StateBackend`]
/// dispatches each call once.
trait ErasedBackend {
    fn location(&self) -> String;
    fn read(&self) -> Result<Option<State>, StateError>;
    fn write(&self, lock: &StateLock, state: &mut State) -> Result<(), StateError>;
    fn lock(&self, info: LockInfo, timeout: Duration) -> Result<StateLock, StateError>;
    fn lock_holder(&self) -> Result<Option<LockInfo>, StateError>;
    fn force_unlock(&self, id: &str) -> Result<(), StateError>;
}

/// Which [`StateLock`] a backend's lock is.
trait IntoStateLock: Sized {
    fn wrap(self) -> StateLock;
    fn unwrap(lock: &StateLock) -> Option<&Self>;
}

impl IntoStateLock for LocalLock {
    fn wrap(self) -> StateLock {
        StateLock::Local(self)
    }
    fn unwrap(lock: &StateLock) -> Option<&Self> {
        match lock {
            StateLock::Local(l) => Some(l),
            StateLock::Etcd(_) => None,
        }
    }
}

impl IntoStateLock for EtcdLock {
    fn wrap(self) -> StateLock {
        StateLock::Etcd(self)
    }
    fn unwrap(lock: &StateLock) -> Option<&Self> {
        match lock {
            StateLock::Etcd(l) => Some(l),
            StateLock::Local(_) => None,
        }
    }
}

impl<B: Backend> ErasedBackend for B
where
    B::Lock: IntoStateLock,
{
    fn location(&self) -> String {
        Backend::location(self)
    }
    fn read(&self) -> Result<Option<State>, StateError> {
        Backend::read(self)
    }
    /// A lock of the other backend is refused as [`StateError::NotLocked`].
    fn write(&self, lock: &StateLock, state: &mut State) -> Result<(), StateError> {
        match B::Lock::unwrap(lock) {
            Some(l) => Backend::write(self, l, state),
            None => Err(StateError::NotLocked {
                location: Backend::location(self),
            }),
        }
    }
    fn lock(&self, info: LockInfo, timeout: Duration) -> Result<StateLock, StateError> {
        Backend::lock(self, info, timeout).map(IntoStateLock::wrap)
    }
    fn lock_holder(&self) -> Result<Option<LockInfo>, StateError> {
        Backend::lock_holder(self)
    }
    fn force_unlock(&self, id: &str) -> Result<(), StateError> {
        Backend::force_unlock(self, id)
    }
}

impl Backend for StateBackend {
    type Lock = StateLock;
    fn location(&self) -> String {
        self.chosen().location()
    }
    fn read(&self) -> Result<Option<State>, StateError> {
        self.chosen().read()
    }
    fn write(&self, lock: &StateLock, state: &mut State) -> Result<(), StateError> {
        self.chosen().write(lock, state)
    }
    fn lock(&self, info: LockInfo, timeout: Duration) -> Result<StateLock, StateError> {
        self.chosen().lock(info, timeout)
    }
    fn lock_holder(&self) -> Result<Option<LockInfo>, StateError> {
        self.chosen().lock_holder()
    }
    /// Local: refuses (the kernel releases a dead holder's lock); etcd: deletes the lock
    /// when the ID matches.
    fn force_unlock(&self, id: &str) -> Result<(), StateError> {
        self.chosen().force_unlock(id)
    }
}
