//! The etcd lock: a key created only if absent, attached to a lease a background task keeps
//! alive (see the guarantees of [`super`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use k3splan_etcd::etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};

use super::super::backend::{Attempt, HeldLock, wait_for_lock};
use super::{EtcdBackend, Inner, POLL, first_kv, lock_info_of};
use crate::state::{LockInfo, StateError};

/// Holds the etcd lock until dropped: its lease is kept alive by a background task, and
/// revoked on drop (which deletes the lock key).
pub struct EtcdLock {
    inner: Arc<Inner>,
    /// The holder's details, as stored in the lock key.
    pub info: LockInfo,
    lease: i64,
    pub(super) create_revision: i64,
    lost: Arc<AtomicBool>,
    keeper: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for EtcdLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdLock")
            .field("info", &self.info)
            .field("lease", &format_args!("{:x}", self.lease))
            .field("create_revision", &self.create_revision)
            .field("lost", &self.is_lost())
            .finish()
    }
}

impl EtcdLock {
    /// The lease holding the lock (hex in etcdctl's output).
    pub fn lease_id(&self) -> i64 {
        self.lease
    }
    /// Whether the keep-alive found the lease gone (expired or revoked by someone else).
    /// Writes check the lock in etcd itself regardless of this flag.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for EtcdLock {
    fn drop(&mut self) {
        if let Some(k) = self.keeper.take() {
            k.abort();
        }
        // Revoke on the private runtime and wait a bounded time: never panics, even when
        // dropped inside another runtime. If etcd is unreachable the lease expires anyway.
        let inner = self.inner.clone();
        let lease = self.lease;
        let (tx, rx) = mpsc::sync_channel(1);
        self.inner.handle().spawn(async move {
            let r = inner
                .req("lease revoke", |mut c| async move {
                    c.lease_revoke(lease).await
                })
                .await;
            let _ = tx.send(r);
        });
        let _ = rx.recv_timeout(self.inner.config.timeout + Duration::from_secs(1));
    }
}

impl HeldLock for EtcdLock {
    fn info(&self) -> &LockInfo {
        &self.info
    }
}

/// Takes the lock, waiting up to `timeout` (see [`wait_for_lock`]), and starts keeping its
/// lease alive.
pub(super) fn take(
    inner: &Arc<Inner>,
    info: LockInfo,
    timeout: Duration,
) -> Result<EtcdLock, StateError> {
    let value = serde_json::to_vec_pretty(&info).expect("lock info serializes");
    let (lease, create_revision) = wait_for_lock(
        timeout,
        POLL,
        || inner.location("lock"),
        || {
            let (i, v) = (inner.clone(), value.clone());
            inner.run(async move { try_lock(i, v).await })
        },
    )?;
    let lost = Arc::new(AtomicBool::new(false));
    let keeper = inner
        .handle()
        .spawn(keep_alive(inner.clone(), lease, lost.clone()));
    Ok(EtcdLock {
        inner: inner.clone(),
        info,
        lease,
        create_revision,
        lost,
        keeper: Some(keeper),
    })
}

/// One try: creates the lock key (with a fresh lease) if it is absent; `Taken` with
/// (lease, create revision of the lock key), or `Held` by the holder it found. When the key
/// vanished between the failed create and the read, tries again at once.
async fn try_lock(inner: Arc<Inner>, value: Vec<u8>) -> Result<Attempt<(i64, i64)>, StateError> {
    let key = inner.key("lock");
    let ttl = inner.config.lock_ttl.as_secs().max(1) as i64;
    loop {
        if let Some(kv) = EtcdBackend::get_raw(inner.clone(), "lock").await? {
            return Ok(Attempt::Held(lock_info_of(&kv)));
        }
        let lease = inner
            .req("lease grant", |mut c| async move {
                c.lease_grant(ttl, None).await
            })
            .await
            .map_err(|e| inner.err("lock", "taking the lock", e))?
            .id();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = inner.req("txn (create lock)", |mut c| async move { c.txn(txn).await });
        match resp.await {
            Ok(r) if r.succeeded() => {
                let rev = r.header().map(|h| h.revision()).unwrap_or(0);
                return Ok(Attempt::Taken((lease, rev)));
            }
            other => {
                let _ = inner
                    .req("lease revoke", |mut c| async move {
                        c.lease_revoke(lease).await
                    })
                    .await;
                let r = other.map_err(|e| inner.err("lock", "taking the lock", e))?;
                if let Some(TxnOpResponse::Get(g)) = r.op_responses().first()
                    && let Some(kv) = first_kv(g)
                {
                    return Ok(Attempt::Held(lock_info_of(kv)));
                }
            }
        }
    }
}

/// Keeps the lease alive every TTL/3 until aborted; sets `lost` when etcd says the lease is
/// gone. Transport errors are retried (a new stream each time) until the lease would have
/// expired anyway.
async fn keep_alive(inner: Arc<Inner>, lease: i64, lost: Arc<AtomicBool>) {
    let period = (inner.config.lock_ttl / 3).max(Duration::from_millis(300));
    loop {
        let stream = inner
            .req("lease keep-alive", |mut c| async move {
                c.lease_keep_alive(lease).await
            })
            .await;
        let (mut keeper, mut stream) = match stream {
            Ok(s) => s,
            Err(e) => {
                if e.to_string().contains("lease not found") {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
                tracing::warn!("etcd state lock: keep-alive of lease {lease:x}: {e}");
                tokio::time::sleep(period).await;
                continue;
            }
        };
        loop {
            tokio::time::sleep(period).await;
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match tokio::time::timeout(inner.config.timeout, stream.message()).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {}
                Ok(Ok(Some(_))) => {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
                _ => break,
            }
        }
    }
}
