//! Issue 15: upgrading k3s on one node, and waiting until it runs the new version.
//!
//! The upgrade re-runs the installer with `INSTALL_K3S_VERSION` and the options the node was
//! installed with: k3s's docs ("Upgrade K3s Using the Installation Script") say to re-run
//! the script "using the same configuration options you originally used", and install.sh
//! rewrites the unit's env file from the `K3S_*` variables it is given (`create_env_file`),
//! so the `K3S_URL`/`K3S_TOKEN` of an agent's `k3s-agent.service.env` must be passed again
//! or the agent loses its server. They are read from that file on the host and passed as
//! secrets (never logged). install.sh then restarts the unit (`systemctl restart`).

use std::time::Duration;

use k3splan_host::{
    HostSession, InstallRequest, K3sRole, Secret, ServiceAction, env_assignment_value,
};
use k3splan_kube::Readiness;

use super::{ExecError, Executor, OpResult, already, done};
use crate::live::supervisor;
use crate::wait::{Check, Wait};
use k3splan_core::k3s_version;

impl Executor<'_> {
    /// `k3s --version` on the host, as a version (`v1.29.0+k3s1`).
    async fn host_k3s_version(&self, s: &HostSession) -> Result<String, ExecError> {
        let bin = &self.live.layout().k3s_bin;
        let out = s
            .run(
                "k3s --version",
                &k3splan_host::quote::sh_command(&[bin.as_str(), "--version"]),
                b"",
            )
            .await?;
        let text = out.stdout_str();
        Ok(k3s_version::from_version_output(&text).unwrap_or_else(|| text.trim().to_string()))
    }

    pub(super) async fn upgrade_k3s(
        &self,
        node: &str,
        version: &str,
        agent: bool,
    ) -> Result<OpResult, ExecError> {
        let s = self.live.hosts().session(node).await?;
        let layout = self.live.layout();
        let unit = if agent {
            &layout.agent_unit
        } else {
            &layout.server_unit
        };
        let active = s.service_active(layout, unit).await.unwrap_or(false);
        let have = self.host_k3s_version(&s).await.ok();
        if active
            && have
                .as_deref()
                .is_some_and(|h| k3s_version::same(h, version))
        {
            // Installed: restarted too when its Node reports the version (a server without
            // an agent has no Node: the binary and an active unit are what can be seen).
            let node_at = if self.runs_agent(node).await {
                let k = self.live.kube().await?;
                super::kube::read_cluster(k)
                    .await?
                    .nodes
                    .into_iter()
                    .find(|n| n.name == node)
                    .is_some_and(|n| k3s_version::same(&n.kubelet_version, version))
            } else {
                true
            };
            if node_at {
                return Ok(already(format!("{node} already runs {version}")));
            }
        }
        let mut env = Vec::new();
        if let Some(f) = s.read_file(&layout.env_file(unit)).await? {
            for line in String::from_utf8_lossy(&f.contents).lines() {
                let t = line.trim();
                let t = t.strip_prefix("export ").unwrap_or(t);
                let Some((k, _)) = t.split_once('=') else {
                    continue;
                };
                let k = k.trim();
                let up = k.to_ascii_uppercase();
                let kept = k.starts_with("K3S_")
                    || k.starts_with("CONTAINERD_")
                    || ["NO_PROXY", "HTTP_PROXY", "HTTPS_PROXY"]
                        .iter()
                        .any(|p| up.starts_with(p));
                if !kept || env.iter().any(|(n, _): &(String, Secret)| n == k) {
                    continue;
                }
                if let Some(v) = env_assignment_value(line) {
                    env.push((k.to_string(), Secret::new(v)));
                }
            }
        }
        let kept = env.len();
        // install.sh skips the restart when the binary, unit and env file hashes did not
        // change ("No change detected so skipping service start"): a node installed at the
        // version by an interrupted apply still runs the old binary and must restart.
        env.push(("INSTALL_K3S_FORCE_RESTART".into(), Secret::new("true")));
        let req = InstallRequest {
            role: if agent {
                K3sRole::Agent
            } else {
                K3sRole::Server
            },
            k3s_version: Some(version.to_string()),
            server_url: None,
            token: None,
            extra_env: env,
        };
        s.install_k3s(layout, &req).await?;
        if !s.service_active(layout, unit).await.unwrap_or(false) {
            s.service(layout, unit, ServiceAction::Start).await?;
        }
        Ok(done(format!(
            "installer ran with INSTALL_K3S_VERSION={version} and the {kept} recorded option(s) of {unit}.service.env; {unit} restarted"
        )))
    }

    /// Waits until `k3s --version` on the host says `version`, the node's member (when it
    /// runs etcd) is a healthy voter, and its Node is Ready at `version` (a server without
    /// an agent: its supervisor port answers).
    pub(super) async fn wait_upgraded(
        &self,
        node: &str,
        version: &str,
    ) -> Result<OpResult, ExecError> {
        let etcd_member = self
            .live
            .topology()
            .node(node)
            .is_some_and(|d| d.roles.runs_etcd());
        let agent = self.runs_agent(node).await;
        let addr = self.live.hosts().address(node);
        let ca = if agent {
            None
        } else {
            self.live.cluster_ca().await
        };
        let start = tokio::time::Instant::now();
        Wait::new(
            self.waits.node_ready,
            self.waits.poll.max(Duration::from_secs(1)),
        )
        .until(|| async {
            let mut pending = Vec::new();
            match self.live.hosts().session(node).await {
                Ok(s) => match self.host_k3s_version(&s).await {
                    Ok(v) if k3s_version::same(&v, version) => {}
                    Ok(v) => pending.push(format!("k3s --version says {v}")),
                    Err(e) => pending.push(format!("k3s --version: {e}")),
                },
                Err(e) => pending.push(format!("host: {e}")),
            }
            if etcd_member {
                match (self.live.etcd(), addr) {
                    (Ok(etcd), Some(a)) => {
                        let o = etcd.observe().await;
                        match o.member_by_address(&a.to_string()) {
                            Some(m) if m.is_healthy() && !m.is_learner => {}
                            Some(m) => pending.push(super::etcd::member_last_seen(&o, m)),
                            None => pending.push("etcd member not listed".into()),
                        }
                    }
                    (Err(e), _) => pending.push(format!("etcd: {e}")),
                    (_, None) => pending.push("no address".into()),
                }
            }
            if agent {
                match self.live.kube().await {
                    Ok(k) => match super::kube::read_cluster(k).await {
                        Ok(c) => match c.nodes.iter().find(|n| n.name == node) {
                            Some(n)
                                if n.ready == Readiness::Ready
                                    && k3s_version::same(&n.kubelet_version, version) => {}
                            Some(n) => pending.push(format!(
                                "Node {:?} at kubeletVersion {}",
                                n.ready, n.kubelet_version
                            )),
                            None => pending.push("Node not registered".into()),
                        },
                        Err(e) => pending.push(e.to_string()),
                    },
                    Err(e) => pending.push(e.to_string()),
                }
            } else if let Some(a) = addr {
                let s = supervisor::probe(a, ca.as_deref(), Duration::from_secs(5)).await;
                if !s.is_answering() {
                    pending.push(format!("supervisor port {}", s.describe()));
                }
            }
            if pending.is_empty() {
                Check::Ready(done(format!(
                    "runs {version} after {:.1}s",
                    start.elapsed().as_secs_f64()
                )))
            } else {
                Check::Pending(pending.join("; "))
            }
        })
        .await
        .map_err(|t| ExecError::NotUpgraded {
            node: node.to_string(),
            version: version.to_string(),
            secs: self.waits.node_ready.as_secs(),
            last: t.last,
        })
    }
}
