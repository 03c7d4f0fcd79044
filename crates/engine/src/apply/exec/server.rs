//! Waiting for a server's health without a Node: a server run with `disable-agent` has no
//! kubelet and never registers a Node (k3s-io/k3s pkg/cli/cmds/server.go, `disable-agent`:
//! "Do not run a local agent and register a local kubelet"), so its health is its etcd
//! member (a healthy voter) and its supervisor port answering `/cacerts` (issue 19).

use std::time::Duration;

use super::{ExecError, Executor, OpResult, done};
use crate::live::supervisor;
use crate::wait::{Check, Wait};

impl Executor<'_> {
    /// Whether k3s on `node` runs an agent (hence has a Node): agents do; a server does
    /// unless its config.yaml on the host says `disable-agent: true` (read now: the file
    /// may have been written by someone else than k3splan), else as declared.
    pub(super) async fn runs_agent(&self, node: &str) -> bool {
        let declared = self.live.topology().node(node);
        if declared.is_some_and(|d| d.roles.is_agent()) {
            return true;
        }
        let path = &self.live.layout().config_path;
        if let Ok(s) = self.live.hosts().session(node).await
            && let Ok(Some(f)) = s.read_file(path).await
        {
            return !config_disables_agent(&String::from_utf8_lossy(&f.contents));
        }
        declared.is_none_or(|d| d.runs_agent())
    }

    /// Waits until `node`'s member (when it runs etcd) is a healthy voter and its
    /// supervisor port answers with the cluster's CA.
    pub(super) async fn wait_server_healthy(&self, node: &str) -> Result<OpResult, ExecError> {
        let addr = self
            .live
            .hosts()
            .address(node)
            .ok_or_else(|| ExecError::NoAddress {
                node: node.to_string(),
            })?;
        let etcd_member = self
            .live
            .topology()
            .node(node)
            .is_some_and(|d| d.roles.runs_etcd());
        let etcd = self.live.etcd()?;
        let ca = self.live.cluster_ca().await;
        let start = tokio::time::Instant::now();
        let a = addr.to_string();
        Wait::new(self.waits.node_ready, self.waits.poll.max(Duration::from_secs(1)))
            .until(|| async {
                let mut pending = Vec::new();
                if etcd_member {
                    let o = etcd.observe().await;
                    match o.member_by_address(&a) {
                        Some(m) if m.is_healthy() && !m.is_learner => {}
                        Some(m) => pending.push(format!(
                            "etcd member {} is {} ({:?})",
                            m.name,
                            if m.is_learner { "a learner" } else { "a voter" },
                            m.health
                        )),
                        None => pending.push("etcd member not listed".into()),
                    }
                }
                let s = supervisor::probe(addr, ca.as_deref(), Duration::from_secs(5)).await;
                if !s.is_answering() {
                    pending.push(format!("supervisor port {}", s.describe()));
                }
                if pending.is_empty() {
                    Check::Ready(done(format!(
                        "healthy after {:.1}s (member a healthy voter, supervisor answering; no agent, no Node)",
                        start.elapsed().as_secs_f64()
                    )))
                } else {
                    Check::Pending(pending.join("; "))
                }
            })
            .await
            .map_err(|t| ExecError::ServerNotHealthy {
                node: node.to_string(),
                secs: self.waits.node_ready.as_secs(),
                last: t.last,
            })
    }
}

/// Whether a k3s config.yaml sets `disable-agent: true` (the YAML key at the top level).
fn config_disables_agent(text: &str) -> bool {
    serde_yaml::from_str::<serde_yaml::Value>(text)
        .ok()
        .and_then(|d| d.get("disable-agent").cloned())
        .is_some_and(|v| match v {
            serde_yaml::Value::Bool(b) => b,
            serde_yaml::Value::String(s) => s == "true",
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn disable_agent_is_read_from_config_yaml() {
        assert!(super::config_disables_agent(
            "server: x\ndisable-agent: true\n"
        ));
        assert!(super::config_disables_agent("disable-agent: \"true\"\n"));
        assert!(!super::config_disables_agent("disable-agent: false\n"));
        assert!(!super::config_disables_agent("server: x\n"));
        assert!(!super::config_disables_agent("{{not yaml"));
    }
}
