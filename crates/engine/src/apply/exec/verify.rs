//! The final verification of an apply: etcd has the expected voters, all healthy, one
//! leader and equal KV hashes; every Node is declared and the expected ones are Ready.

use std::time::Duration;

use k3splan_etcd::EtcdProvider;
use k3splan_kube::{KubeProvider, Readiness};

use super::kube::read_cluster;
use super::{ExecError, Executor, OpResult, done};
use crate::wait::{Check, Wait};

impl Executor<'_> {
    /// Looks every second, until everything holds or the verify wait has passed; the error
    /// lists the problems of the last look.
    pub(super) async fn verify(&self, members: usize, nodes: usize) -> Result<OpResult, ExecError> {
        let etcd = self.live.etcd()?;
        let k = self.live.kube().await?;
        Wait::new(self.waits.verify, Duration::from_secs(1))
            .until(|| async {
                let mut problems = etcd_problems(&etcd, members).await;
                problems.extend(self.kube_problems(k, nodes).await);
                if problems.is_empty() {
                    Check::Ready(done(format!(
                        "{members} members healthy, one leader, KV hashes equal, {nodes} Nodes Ready"
                    )))
                } else {
                    Check::Pending(problems)
                }
            })
            .await
            .map_err(|t| ExecError::VerifyFailed { problems: t.last })
    }

    async fn kube_problems(&self, k: &KubeProvider, nodes: usize) -> Vec<String> {
        let c = match read_cluster(k).await {
            Ok(c) => c,
            Err(e) => return vec![e.to_string()],
        };
        let declared = |name: &str| self.live.topology().node(name).is_some();
        let mut problems = Vec::new();
        // Every Node must be declared: an undeclared one is a node the plan removed coming
        // back (its kubelet registered it again) or one nobody manages; counting Ready nodes
        // alone hides it (issue 13).
        let undeclared: Vec<String> = c
            .nodes
            .iter()
            .filter(|n| !declared(&n.name))
            .map(|n| format!("{} ({:?})", n.name, n.ready))
            .collect();
        if !undeclared.is_empty() {
            problems.push(format!(
                "undeclared Node{} in the cluster: {} (a removed node whose kubelet still runs registers itself again)",
                if undeclared.len() == 1 { "" } else { "s" },
                undeclared.join(", ")
            ));
        }
        let ready = c
            .nodes
            .iter()
            .filter(|n| declared(&n.name))
            .filter(|n| n.ready == Readiness::Ready)
            .count();
        if ready < nodes {
            let not: Vec<&str> = c
                .nodes
                .iter()
                .filter(|n| n.ready != Readiness::Ready)
                .map(|n| n.name.as_str())
                .collect();
            problems.push(format!(
                "{ready} Nodes Ready, expected {nodes} (not Ready: {})",
                not.join(", ")
            ));
        }
        problems
    }
}

/// What keeps etcd from being verified: the member count, unhealthy members, no leader,
/// and (when nothing else is wrong) differing KV hashes.
async fn etcd_problems(etcd: &EtcdProvider, members: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let o = etcd.observe().await;
    let voters = o.members.iter().filter(|m| !m.is_learner).count();
    if o.members.len() != members || voters != members {
        problems.push(format!(
            "etcd has {} members ({voters} voters), expected {members} voters",
            o.members.len()
        ));
    }
    for m in o.members.iter().filter(|m| !m.is_healthy()) {
        problems.push(format!("etcd member {} is {:?}", m.name, m.health));
    }
    if o.health.leader.is_none() {
        problems.push("etcd has no leader".into());
    }
    if problems.is_empty() {
        match etcd.compare_hashes().await {
            Ok(h) if h.consistent() => {}
            Ok(h) => problems.push(format!("etcd KV hashes differ: {h:?}")),
            Err(e) => problems.push(format!("etcd HashKV: {e}")),
        }
    }
    problems
}
