//! Operations on etcd: snapshots, removing a member, and waiting for a member (a learner's
//! promotion, health after a restart).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k3splan_etcd::{EtcdProvider, MemberId};

use super::{ExecError, Executor, OpResult, Outcome, already, done};
use crate::state::{SnapshotRecord, now_rfc3339};
use crate::wait::{Check, Wait};

impl Executor<'_> {
    /// The etcd member of `node`, found by its peer address.
    fn member_address(&self, node: &str) -> Result<String, ExecError> {
        self.live
            .hosts()
            .address(node)
            .map(|a| a.to_string())
            .ok_or_else(|| ExecError::NoAddress {
                node: node.to_string(),
            })
    }

    fn etcd(&self) -> Result<EtcdProvider, ExecError> {
        Ok(self.live.etcd()?)
    }

    pub(super) async fn remove_member(&self, id: u64, name: &str) -> Result<OpResult, ExecError> {
        let etcd = self.etcd()?;
        let obs = etcd.observe().await;
        if obs.member(MemberId(id)).is_none() && !obs.members.is_empty() {
            return Ok(already(format!("member {name} already removed")));
        }
        if obs.health.leader == Some(MemberId(id)) {
            etcd.move_leader_away(MemberId(id)).await?;
        }
        Ok(match etcd.remove_member(MemberId(id)).await? {
            k3splan_etcd::Removal::AlreadyAbsent => already("already absent"),
            _ => done("removed"),
        })
    }

    /// A snapshot through k3s on `node`, or through etcd's maintenance API into the
    /// snapshot directory.
    pub(super) async fn snapshot(&self, node: Option<&str>) -> Result<OpResult, ExecError> {
        let record = match node {
            // k3s appends the node name and a timestamp to the snapshot name itself.
            Some(n) => self.snapshot_on_host(n, "k3splan").await?,
            None => {
                let unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let dir = &self.snapshot_dir;
                std::fs::create_dir_all(dir).map_err(|source| ExecError::SnapshotDir {
                    path: dir.clone(),
                    source,
                })?;
                let path = dir.join(format!("k3splan-{unix}.db"));
                let info = self
                    .etcd()?
                    .snapshot(&path, Duration::from_secs(300))
                    .await?;
                SnapshotRecord {
                    path: info.path.display().to_string(),
                    size: info.size,
                    sha256: info.sha256,
                    taken_at: now_rfc3339(),
                }
            }
        };
        Ok(OpResult {
            outcome: Outcome::Done(format!("{} ({} bytes)", record.path, record.size)),
            snapshot: Some(record),
            file_digest: None,
        })
    }

    async fn snapshot_on_host(&self, n: &str, name: &str) -> Result<SnapshotRecord, ExecError> {
        let s = self.live.hosts().session(n).await?;
        let path = s.etcd_snapshot_save(self.live.layout(), Some(name)).await?;
        let digest = k3splan_host::quote::sh_command(&[
            "sh",
            "-c",
            "stat -c %s \"$1\" && sha256sum \"$1\"",
            "sh",
            &path,
        ]);
        let out = s.run("snapshot digest", &digest, b"").await?;
        let text = out.stdout_str();
        let mut lines = text.lines();
        let size = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        let sha = lines
            .next()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        Ok(SnapshotRecord {
            path: format!("{n}:{path}"),
            size,
            sha256: sha,
            taken_at: now_rfc3339(),
        })
    }

    pub(super) async fn wait_promoted(&self, node: &str) -> Result<OpResult, ExecError> {
        let addr = self.member_address(node)?;
        let etcd = self.etcd()?;
        let start = tokio::time::Instant::now();
        let tried_promote = AtomicBool::new(false);
        let every = self.waits.poll.max(Duration::from_secs(1));
        let r = Wait::new(self.waits.learner_promoted, every)
            .until(|| async {
                let o = etcd.observe().await;
                let Some(m) = o.member_by_address(&addr) else {
                    return Check::Pending(String::from("not in the member list yet"));
                };
                if !m.is_learner && m.is_healthy() {
                    return Check::Ready(format!(
                        "{} is a voter after {:.1}s",
                        m.name,
                        start.elapsed().as_secs_f64()
                    ));
                }
                // k3s promotes learners itself; help it once if it is slow.
                if m.is_learner
                    && start.elapsed() > Duration::from_secs(30)
                    && !tried_promote.swap(true, Ordering::SeqCst)
                {
                    let _ = etcd.promote_learner(m.id, Duration::from_secs(10)).await;
                }
                Check::Pending(member_last_seen(&o, m))
            })
            .await;
        r.map(done).map_err(|t| ExecError::NotPromoted {
            node: node.to_string(),
            secs: self.waits.learner_promoted.as_secs(),
            last: t.last,
        })
    }

    pub(super) async fn wait_member_healthy(&self, node: &str) -> Result<(), ExecError> {
        let addr = self.member_address(node)?;
        let etcd = self.etcd()?;
        Wait::new(self.waits.node_ready, Duration::from_secs(1))
            .until(|| async {
                let o = etcd.observe().await;
                match o.member_by_address(&addr) {
                    Some(m) if m.is_healthy() && o.health.quorum => Check::Ready(()),
                    Some(m) if !o.health.quorum => Check::Pending(format!(
                        "{}; the cluster has no quorum ({} of {} voters healthy)",
                        member_last_seen(&o, m),
                        o.health.healthy_voters,
                        o.health.voters
                    )),
                    Some(m) => Check::Pending(member_last_seen(&o, m)),
                    None => Check::Pending("not in the member list".to_string()),
                }
            })
            .await
            .map_err(|t| ExecError::MemberNotHealthy {
                node: node.to_string(),
                last: t.last,
                secs: self.waits.node_ready.as_secs(),
            })
    }
}

/// What a poll saw of member `m`, for the message of a wait that timed out: its role, its
/// health, and how far its raft log is behind the leader's (`learner, healthy, not in sync
/// (raft index 120 of 4500)`), from the endpoint statuses of the same observation.
pub(super) fn member_last_seen(
    o: &k3splan_etcd::Observation,
    m: &k3splan_etcd::MemberInfo,
) -> String {
    use k3splan_etcd::MemberHealth as H;
    let index_of = |id: MemberId| {
        o.endpoints
            .iter()
            .filter_map(|e| e.state.as_ref())
            .find(|s| s.member_id == id)
            .map(|s| s.raft_index)
    };
    let name = if m.name.is_empty() {
        "not started (no name yet)".to_string()
    } else {
        m.name.clone()
    };
    let role = if m.is_learner { "learner" } else { "voter" };
    let health = match &m.health {
        H::Healthy { .. } => "healthy".to_string(),
        H::NoLeader { .. } => "answering but without a leader".to_string(),
        H::Unreachable { error } => format!("unreachable ({error})"),
        H::NotObserved => "health not observed".to_string(),
    };
    let sync = match (index_of(m.id), o.health.leader.and_then(index_of)) {
        (Some(a), Some(b)) if a >= b => format!("in sync (raft index {a} of {b})"),
        (Some(a), Some(b)) => format!("not in sync (raft index {a} of {b})"),
        (None, Some(b)) => format!("raft index unknown (the leader is at {b})"),
        (_, None) => "no leader seen".to_string(),
    };
    format!("{role} {name}, {health}, {sync}")
}
