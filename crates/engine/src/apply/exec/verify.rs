//! The final verification of an apply: etcd has the expected voters, all healthy but the
//! unhealthy members the plan left alone, one leader and equal KV hashes (among the healthy
//! ones); every Node is declared and the expected ones are Ready (nodes with an agent: a
//! server with `disable-agent` has no Node).

use std::time::Duration;

use k3splan_etcd::EtcdProvider;
use k3splan_kube::{KubeProvider, Readiness};

use super::kube::read_cluster;
use super::{ExecError, Executor, OpResult, done};
use crate::wait::{Check, Wait};

impl Executor<'_> {
    /// Looks every second, until everything holds or the verify wait has passed; the error
    /// lists the problems of the last look.
    pub(super) async fn verify(
        &self,
        members: usize,
        nodes: usize,
        unhealthy_left: &[String],
    ) -> Result<OpResult, ExecError> {
        let etcd = self.live.etcd()?;
        let k = self.live.kube().await?;
        Wait::new(self.waits.verify, Duration::from_secs(1))
            .until(|| async {
                let mut problems = etcd_problems(&etcd, members, unhealthy_left).await;
                problems.extend(self.kube_problems(k, nodes).await);
                if problems.is_empty() {
                    let healthy = if unhealthy_left.is_empty() {
                        format!("{members} members healthy")
                    } else {
                        format!(
                            "{} of {members} members healthy ({} left alone)",
                            members.saturating_sub(unhealthy_left.len()),
                            unhealthy_left.join(", ")
                        )
                    };
                    Check::Ready(done(format!(
                        "{healthy}, one leader, KV hashes equal, {nodes} Nodes Ready"
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
async fn etcd_problems(
    etcd: &EtcdProvider,
    members: usize,
    unhealthy_left: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    let o = etcd.observe().await;
    let voters = o.members.iter().filter(|m| !m.is_learner).count();
    if o.members.len() != members || voters != members {
        problems.push(format!(
            "etcd has {} members ({voters} voters), expected {members} voters",
            o.members.len()
        ));
    }
    let left_alone = |name: &str| unhealthy_left.iter().any(|n| n == name);
    for m in o
        .members
        .iter()
        .filter(|m| !m.is_healthy() && !left_alone(&m.name))
    {
        problems.push(format!("etcd member {} is {:?}", m.name, m.health));
    }
    // The client URLs of the members left alone: their HashKV is not expected to answer.
    let left_hosts: Vec<String> = o
        .members
        .iter()
        .filter(|m| left_alone(&m.name))
        .flat_map(|m| m.client_urls.iter())
        .filter_map(|u| crate::observed::url_host(u).map(str::to_string))
        .collect();
    if o.health.leader.is_none() {
        problems.push("etcd has no leader".into());
    }
    if problems.is_empty() {
        match etcd.compare_hashes().await {
            Ok(h) if h.consistent() => {}
            Ok(h)
                if h.mismatched.is_empty()
                    && !h.hashes.is_empty()
                    && h.failed.iter().all(|f| {
                        crate::observed::url_host(&f.endpoint)
                            .is_some_and(|x| left_hosts.iter().any(|l| l == x))
                    }) => {}
            Ok(h) => problems.push(format!("etcd KV hashes differ: {h:?}")),
            Err(e) => problems.push(format!("etcd HashKV: {e}")),
        }
    }
    problems
}
