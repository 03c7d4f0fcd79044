//! The etcd state backend: the state document under a key, the lock held as a lease.
//!
//! Layout under the configured prefix (default `k3splan/`):
//! - `<prefix>state`: the state, the same JSON document as the local file;
//! - `<prefix>lock`: the holder's [`LockInfo`] JSON, attached to a lease.
//!
//! Guarantees:
//! - **Compare-and-swap writes.** [`EtcdBackend::write`] reads the state, checks it (parse,
//!   version, lineage, serial) and writes in one etcd transaction that succeeds only if the
//!   state key's mod revision is still the one that was read *and* the lock key is still the
//!   one this run created. Two writers can never interleave: the loser gets
//!   [`StateError::SerialConflict`] (or [`StateError::LineageMismatch`] / `Corrupt` if the
//!   key changed into something else) and nothing is written.
//! - **Never overwrites what it does not understand**: a state value that does not parse, has
//!   an unknown version or another lineage is refused and left untouched, as in the local
//!   backend.
//! - **The lock dies with its holder**, like Terraform's etcdv3 backend: the lock key is
//!   created only if absent (transaction on `create_revision == 0`) and attached to a lease
//!   (TTL [`DEFAULT_LOCK_TTL`]) that a background task keeps alive while the [`EtcdLock`] is
//!   held. If the holding process dies or loses etcd, the lease expires after the TTL and
//!   etcd deletes the key. Dropping the [`EtcdLock`] revokes the lease at once.
//! - **A lost lock is noticed.** Writes compare the lock key's create revision: after the
//!   lease expired (a frozen process) or after `force-unlock`, the former holder's writes fail
//!   instead of racing the new holder.
//! - **Errors name the endpoints and the key** (`etcd https://10.0.0.1:2379 key k3splan/state:
//!   …`).
//!
//! Caveats:
//! - Each [`EtcdBackend`] runs a small private tokio runtime (one worker thread); the methods
//!   are synchronous and may be called from plain code *and* from inside another runtime's
//!   `block_on` (they hand the work to the private runtime and wait on a channel, so they
//!   block the calling thread for the duration of one etcd request, bounded by the timeout).
//! - `force_unlock` deletes a lock whose holder may still be alive on another machine (there
//!   is no way to tell from here); that holder's next write then fails.
//! - Waiting for a lock polls every 250 ms; there is no queue, so waiters are not served in
//!   arrival order.

mod lock;

use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use k3splan_etcd::client::{ClientError, ClientSettings, SharedClient, error_chain};
use k3splan_etcd::etcd_client::{
    Client, Compare, CompareOp, GetResponse, KeyValue, Txn, TxnOp, TxnOpResponse,
};

use super::backend::Backend;
use super::local::parse_state;
use super::model::State;
use super::{LockInfo, StateError};

pub use lock::EtcdLock;

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "k3splan/";
/// Default lease TTL of the lock: a dead holder's lock disappears after this long.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(15);
/// Default bound of each etcd request (and of connecting).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a waiting run tries the lock again.
const POLL: Duration = Duration::from_millis(250);

/// A request to etcd that failed (in transport, or etcd refused it).
#[derive(Debug, thiserror::Error)]
pub enum EtcdRequestError {
    /// No client: the endpoints did not answer, or the TLS material was refused.
    #[error(transparent)]
    Connect(#[from] ClientError),
    /// The request failed.
    #[error("{op}: {}", error_chain(.source))]
    Failed {
        op: &'static str,
        #[source]
        source: k3splan_etcd::etcd_client::Error,
    },
    /// The request had no answer in time.
    #[error("{op}: no answer within {timeout:?}")]
    Timeout { op: &'static str, timeout: Duration },
}

/// Where and how the etcd backend stores the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdBackendConfig {
    /// Client URLs (`https://10.0.0.1:2379`); the client fails over between them.
    pub endpoints: Vec<String>,
    /// Key prefix; the state is `<prefix>state`, the lock `<prefix>lock`.
    pub prefix: String,
    /// CA that signed the etcd server certificates (PEM); `None` uses the system roots for
    /// `https://` endpoints.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Bound of connecting and of each request.
    pub timeout: Duration,
    /// Lease TTL of the lock (etcd rounds values under its minimum, about 2 s, up).
    pub lock_ttl: Duration,
}

impl EtcdBackendConfig {
    /// Config for `endpoints` with the default prefix, no TLS and default timeouts.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        EtcdBackendConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: DEFAULT_PREFIX.to_string(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            timeout: DEFAULT_TIMEOUT,
            lock_ttl: DEFAULT_LOCK_TTL,
        }
    }
    /// Sets the key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Sets the TLS files (CA, client certificate, key).
    pub fn with_tls(
        mut self,
        ca_file: impl Into<PathBuf>,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.ca_file = Some(ca_file.into());
        self.cert_file = Some(cert_file.into());
        self.key_file = Some(key_file.into());
        self
    }
    /// Sets the request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Sets the lock lease TTL.
    pub fn with_lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }
    /// Config from the topology's `backend "etcd" { … }` block. Relative TLS paths are
    /// resolved against `base_dir` (the topology's directory).
    pub fn from_topology(
        backend: &crate::config::Backend,
        base_dir: &std::path::Path,
    ) -> Option<Self> {
        let crate::config::Backend::Etcd {
            endpoints,
            prefix,
            ca_file,
            cert_file,
            key_file,
        } = backend
        else {
            return None;
        };
        let resolve = |p: &Option<PathBuf>| p.as_ref().map(|p| base_dir.join(p));
        Some(EtcdBackendConfig {
            ca_file: resolve(ca_file),
            cert_file: resolve(cert_file),
            key_file: resolve(key_file),
            ..EtcdBackendConfig::new(endpoints.clone()).with_prefix(prefix.clone())
        })
    }
}

/// Owns the private runtime; shuts it down without blocking (safe inside another runtime).
struct Rt(Option<tokio::runtime::Runtime>);

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

struct Inner {
    config: EtcdBackendConfig,
    client: SharedClient,
    rt: Rt,
}

impl Inner {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.rt
            .0
            .as_ref()
            .expect("runtime lives as long as Inner")
            .handle()
    }

    /// Runs `fut` on the private runtime and waits for it from any thread, inside a runtime
    /// or not.
    fn run<F>(&self, fut: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle().spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .expect("the private runtime runs every spawned task to completion")
    }

    fn endpoints(&self) -> String {
        self.config.endpoints.join(",")
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.config.prefix)
    }

    fn location(&self, name: &str) -> String {
        format!("etcd {} key {}", self.endpoints(), self.key(name))
    }

    fn err(&self, name: &str, what: &'static str, source: EtcdRequestError) -> StateError {
        StateError::Etcd {
            location: self.location(name),
            what,
            source: Box::new(source),
        }
    }

    /// One bounded request.
    async fn req<T, Fut>(
        &self,
        op: &'static str,
        f: impl FnOnce(Client) -> Fut,
    ) -> Result<T, EtcdRequestError>
    where
        Fut: std::future::Future<Output = Result<T, k3splan_etcd::etcd_client::Error>>,
    {
        let client = self.client.get().await?;
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, f(client)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(EtcdRequestError::Failed { op, source }),
            Err(_) => Err(EtcdRequestError::Timeout { op, timeout }),
        }
    }
}

/// How often a request that failed in transport (a member restarting) is retried.
const TRANSPORT_RETRIES: u32 = 4;

/// Runs `call` again after a transport error ([`StateError::Etcd`]: a member restarting, a
/// leader election; the client balances over the other endpoints), up to
/// [`TRANSPORT_RETRIES`] times, waiting 0.5 s, 1 s, 1.5 s, … between. `call` is told whether
/// an earlier try failed in transport.
fn retry_transport<T>(
    mut call: impl FnMut(bool) -> Result<T, StateError>,
) -> Result<T, StateError> {
    let mut attempt = 0;
    loop {
        match call(attempt > 0) {
            Err(StateError::Etcd { .. }) if attempt < TRANSPORT_RETRIES => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(500 * u64::from(attempt)));
            }
            r => return r,
        }
    }
}

/// The state in etcd. Cheap to clone (clones share one connection and runtime).
#[derive(Clone)]
pub struct EtcdBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn first_kv(resp: &GetResponse) -> Option<&KeyValue> {
    resp.kvs().first()
}

fn lock_info_of(kv: &KeyValue) -> LockInfo {
    serde_json::from_slice(kv.value()).unwrap_or_else(|_| LockInfo::unknown())
}

impl EtcdBackend {
    /// Builds the backend, reading the TLS files now (errors name the file). Connecting is
    /// lazy: an unreachable etcd shows at the first call, with the endpoints and the key.
    pub fn new(config: EtcdBackendConfig) -> Result<Self, StateError> {
        let location = format!("etcd backend {}", config.endpoints.join(","));
        let client = SharedClient::new(ClientSettings {
            endpoints: config.endpoints.clone(),
            ca_file: config.ca_file.clone(),
            cert_file: config.cert_file.clone(),
            key_file: config.key_file.clone(),
            timeout: config.timeout,
        })
        .map_err(|e| StateError::EtcdSetup {
            location: location.clone(),
            source: Box::new(e),
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("k3splan-etcd-state")
            .enable_all()
            .build()
            .map_err(|source| StateError::Runtime { location, source })?;
        Ok(EtcdBackend {
            inner: Arc::new(Inner {
                config,
                client,
                rt: Rt(Some(rt)),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EtcdBackendConfig {
        &self.inner.config
    }

    /// The state key, `<prefix>state`.
    pub fn state_key(&self) -> String {
        self.inner.key("state")
    }

    /// The lock key, `<prefix>lock`.
    pub fn lock_key(&self) -> String {
        self.inner.key("lock")
    }

    async fn get_raw(
        inner: Arc<Inner>,
        name: &'static str,
    ) -> Result<Option<KeyValue>, StateError> {
        let key = inner.key(name);
        let resp = inner
            .req("get", |mut c| async move { c.get(key, None).await })
            .await
            .map_err(|e| inner.err(name, "reading", e))?;
        Ok(first_kv(&resp).cloned())
    }
}

impl Backend for EtcdBackend {
    type Lock = EtcdLock;

    /// `etcd ENDPOINTS key PREFIXstate`, for messages.
    fn location(&self) -> String {
        self.inner.location("state")
    }

    /// Reads the state; `None` when the key does not exist yet.
    fn read(&self) -> Result<Option<State>, StateError> {
        let kv = retry_transport(|_| self.inner.run(Self::get_raw(self.inner.clone(), "state")))?;
        match kv {
            None => Ok(None),
            Some(kv) => parse_state(&self.location(), kv.value()).map(Some),
        }
    }

    /// Writes `state` with its serial bumped by one, as a compare-and-swap. Refuses, and
    /// writes nothing, when the stored value is unreadable, of another lineage, of another
    /// serial than `state.serial`, changed between the read and the write, or when `lock` is
    /// no longer the lock in etcd (its lease expired or it was force-unlocked).
    fn write(&self, lock: &EtcdLock, state: &mut State) -> Result<(), StateError> {
        let lock_rev = lock.create_revision;
        let next = retry_transport(|retried| {
            let (inner, st) = (self.inner.clone(), state.clone());
            match self.inner.run(write_async(inner, lock_rev, st)) {
                // After a transport failure (the transaction may or may not have been
                // applied), our own write may have landed: the stored document is then
                // exactly the one we meant to write.
                Err(e @ StateError::SerialConflict { .. }) if retried => {
                    let mut intended = state.clone();
                    intended.serial = state.next_serial(&self.location())?;
                    intended.version = crate::state::model::STATE_VERSION;
                    intended.k3splan_version = env!("CARGO_PKG_VERSION").to_string();
                    match self.read() {
                        Ok(Some(stored)) if stored == intended => Ok(intended),
                        _ => Err(e),
                    }
                }
                r => r,
            }
        })?;
        *state = next;
        Ok(())
    }

    /// Takes the lock, waiting up to `timeout`. When another run holds it, the error names
    /// the holder (ID, operation, user@host, pid, since).
    fn lock(&self, info: LockInfo, timeout: Duration) -> Result<EtcdLock, StateError> {
        lock::take(&self.inner, info, timeout)
    }

    /// Who holds the lock, if anyone.
    fn lock_holder(&self) -> Result<Option<LockInfo>, StateError> {
        let inner = self.inner.clone();
        let kv = self.inner.run(Self::get_raw(inner, "lock"))?;
        Ok(kv.as_ref().map(lock_info_of))
    }

    /// `force-unlock ID`: deletes the lock key and revokes its lease when `id` is the ID of
    /// the lock held. [`StateError::NotLocked`] when there is no lock,
    /// [`StateError::LockIdMismatch`] (nothing deleted) when the ID differs. The former
    /// holder, if it still runs, can no longer write the state.
    fn force_unlock(&self, id: &str) -> Result<(), StateError> {
        let inner = self.inner.clone();
        let id = id.to_string();
        self.inner.run(async move {
            loop {
                let Some(kv) = Self::get_raw(inner.clone(), "lock").await? else {
                    return Err(StateError::NotLocked {
                        location: inner.location("lock"),
                    });
                };
                let holder = lock_info_of(&kv);
                if holder.id != id {
                    return Err(StateError::LockIdMismatch {
                        given: id,
                        holder: Box::new(holder),
                    });
                }
                let key = inner.key("lock");
                let txn = Txn::new()
                    .when([Compare::create_revision(
                        key.clone(),
                        CompareOp::Equal,
                        kv.create_revision(),
                    )])
                    .and_then([TxnOp::delete(key, None)]);
                let resp = inner
                    .req("txn (delete lock)", |mut c| async move { c.txn(txn).await })
                    .await
                    .map_err(|e| inner.err("lock", "force-unlock", e))?;
                if !resp.succeeded() {
                    // The lock changed under us: look again.
                    continue;
                }
                let lease = kv.lease();
                if lease != 0 {
                    // Best effort: the key is gone already; a revoke failure only leaves a
                    // lease without keys, which expires by itself.
                    let _ = inner
                        .req("lease revoke", |mut c| async move {
                            c.lease_revoke(lease).await
                        })
                        .await;
                }
                return Ok(());
            }
        })
    }
}

async fn write_async(inner: Arc<Inner>, lock_rev: i64, state: State) -> Result<State, StateError> {
    let location = inner.location("state");
    let state_key = inner.key("state");
    let lock_key = inner.key("lock");
    let current = EtcdBackend::get_raw(inner.clone(), "state").await?;
    let mod_rev = current.as_ref().map(|kv| kv.mod_revision()).unwrap_or(0);
    if let Some(kv) = &current {
        check_current(&location, kv.value(), &state)?;
    }
    let mut next = state.clone();
    next.serial = state.next_serial(&location)?;
    next.version = crate::state::model::STATE_VERSION;
    next.k3splan_version = env!("CARGO_PKG_VERSION").to_string();
    let mut json = serde_json::to_vec_pretty(&next).expect("state serializes");
    json.push(b'\n');
    let state_cmp = if current.is_some() {
        Compare::mod_revision(state_key.clone(), CompareOp::Equal, mod_rev)
    } else {
        Compare::create_revision(state_key.clone(), CompareOp::Equal, 0)
    };
    let txn = Txn::new()
        .when([
            state_cmp,
            Compare::create_revision(lock_key.clone(), CompareOp::Equal, lock_rev),
        ])
        .and_then([TxnOp::put(state_key.clone(), json, None)])
        .or_else([TxnOp::get(state_key, None), TxnOp::get(lock_key, None)]);
    let resp = inner
        .req("txn (write state)", |mut c| async move { c.txn(txn).await })
        .await
        .map_err(|e| inner.err("state", "writing", e))?;
    if resp.succeeded() {
        return Ok(next);
    }
    // Lost the compare: say why, from the values the transaction read.
    let ops = resp.op_responses();
    let get = |i: usize| match ops.get(i) {
        Some(TxnOpResponse::Get(g)) => first_kv(g).cloned(),
        _ => None,
    };
    let (now_state, now_lock) = (get(0), get(1));
    match now_lock {
        Some(kv) if kv.create_revision() == lock_rev => {}
        Some(kv) => {
            return Err(StateError::Locked {
                location: inner.location("lock"),
                holder: Box::new(lock_info_of(&kv)),
            });
        }
        None => {
            return Err(StateError::NotLocked {
                location: format!(
                    "{} (this run's lock expired or was force-unlocked; nothing was written)",
                    inner.location("lock")
                ),
            });
        }
    }
    match now_state {
        Some(kv) => {
            let found = check_current(&location, kv.value(), &state)?;
            Err(StateError::SerialConflict {
                location,
                found,
                expected: state.serial,
            })
        }
        // Deleted since it was read: someone else is writing.
        None => Err(StateError::SerialConflict {
            location,
            found: 0,
            expected: state.serial,
        }),
    }
}

/// Checks a stored value against the state about to be written; returns its serial.
fn check_current(location: &str, bytes: &[u8], state: &State) -> Result<u64, StateError> {
    let current = parse_state(location, bytes)?;
    if current.lineage != state.lineage {
        return Err(StateError::LineageMismatch {
            location: location.to_string(),
            found: current.lineage,
            expected: state.lineage.clone(),
        });
    }
    if current.serial != state.serial {
        return Err(StateError::SerialConflict {
            location: location.to_string(),
            found: current.serial,
            expected: state.serial,
        });
    }
    Ok(current.serial)
}
