//! Issue 15: upgrading k3s on one node, and waiting until it runs the new version.
//!
//! The upgrade re-runs the installer with `INSTALL_K3S_VERSION` and the options the node was
//! installed with: k3s's docs ("Upgrade K3s Using the Installation Script") say to re-run
//! the script "using the same configuration options you originally used", and install.sh
//! rewrites the unit's env file from the `K3S_*` variables it is given (`create_env_file`),
//! so the `K3S_URL`/`K3S_TOKEN` of an agent's `k3s-agent.service.env` must be passed again
//! or the agent loses its server. They are read from that file on the host and passed as
//! secrets (never logged). install.sh also rewrites the unit file from `INSTALL_K3S_EXEC`, so
//! the arguments of the unit's `ExecStart=` (`--disable traefik`) are read back and passed
//! again (`k3splan_host::unit`); a unit that cannot be read, or an argument install.sh could
//! not carry unchanged, stops the step before the installer runs. install.sh then restarts
//! the unit (`systemctl restart`).

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

    /// The arguments of `unit`'s `ExecStart=` (after `server`/`agent`), which install.sh
    /// would drop when it rewrites the unit: `None` when the host has no unit file (a layout
    /// without systemd units). An unreadable unit, or an argument install.sh could not
    /// carry back unchanged, is an error.
    async fn unit_exec_args(
        &self,
        s: &HostSession,
        node: &str,
        unit: &str,
    ) -> Result<Option<Vec<String>>, ExecError> {
        let path = self.live.layout().unit_file(unit);
        let Some(f) = s.read_file(&path).await? else {
            return Ok(None);
        };
        let err = |detail: String| ExecError::UnitArgs {
            node: node.to_string(),
            path: path.clone(),
            detail,
        };
        let e = std::str::from_utf8(&f.contents)
            .map_err(|e| format!("not UTF-8 ({e})"))
            .and_then(k3splan_host::unit::parse_exec_start)
            .map_err(err)?;
        k3splan_host::unit::install_exec(&e.command, &e.args).map_err(|u| err(u.to_string()))?;
        Ok(Some(e.args))
    }

    /// Checked for every upgrade of the plan before the apply's first step (the apply's
    /// `upgrade_preflight`): the node's unit can be carried through the installer
    /// ([`Self::unit_exec_args`]). A refusal here leaves the cluster as it was: no step has
    /// run, the node is schedulable, not drained, at its old version.
    pub(crate) async fn upgrade_preflight(&self, node: &str, agent: bool) -> Result<(), ExecError> {
        let (s, unit) = self.upgrade_target(node, agent).await?;
        match self.unit_exec_args(&s, node, unit).await {
            Ok(_) => Ok(()),
            Err(ExecError::UnitArgs { node, path, detail }) => Err(ExecError::UnitArgs {
                detail: format!(
                    "{detail} (checked before the step: nothing was changed on {node})"
                ),
                node,
                path,
            }),
            Err(e) => Err(e),
        }
    }

    /// The session to `node` and the unit its upgrade reinstalls (the agent's or the
    /// server's).
    async fn upgrade_target(
        &self,
        node: &str,
        agent: bool,
    ) -> Result<(std::sync::Arc<HostSession>, &str), ExecError> {
        let s = self.live.hosts().session(node).await?;
        let layout = self.live.layout();
        Ok((
            s,
            if agent {
                &layout.agent_unit
            } else {
                &layout.server_unit
            },
        ))
    }

    pub(super) async fn upgrade_k3s(
        &self,
        node: &str,
        version: &str,
        agent: bool,
    ) -> Result<OpResult, ExecError> {
        let (s, unit) = self.upgrade_target(node, agent).await?;
        let layout = self.live.layout();
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
        let exec_args = self.unit_exec_args(&s, node, unit).await?;
        let args = exec_args.as_ref().map_or(0, Vec::len);
        let no_unit = if exec_args.is_none() {
            format!(
                " (no {} on the host: no arguments to keep)",
                layout.unit_file(unit)
            )
        } else {
            String::new()
        };
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
            exec_args: exec_args.unwrap_or_default(),
        };
        s.install_k3s(layout, &req).await?;
        if !s.service_active(layout, unit).await.unwrap_or(false) {
            s.service(layout, unit, ServiceAction::Start).await?;
        }
        Ok(done(format!(
            "installer ran with INSTALL_K3S_VERSION={version}, the {kept} recorded option(s) of {unit}.service.env and the {args} argument(s) of its ExecStart{no_unit}; {unit} restarted"
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
            let mut hashkv: Option<i64> = None;
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
                            Some(m) if m.is_healthy() && !m.is_learner => {
                                // Issue 15: HashKV equal after each restart, not only in
                                // the final verify: a member that came back with diverged
                                // data is caught before the next server restarts.
                                // Its own hash is required when its endpoint is one k3splan
                                // dials (the default: every etcd node's).
                                let a = a.to_string();
                                let dialed = etcd
                                    .config()
                                    .endpoints
                                    .iter()
                                    .any(|e| crate::observed::url_host(e) == Some(a.as_str()));
                                match etcd.compare_hashes().await {
                                    Ok(h) => match hashes_equal_with(&h, dialed.then_some(m.id)) {
                                        Ok(rev) => hashkv = Some(rev),
                                        Err(why) => pending.push(why),
                                    },
                                    Err(e) => pending.push(format!("HashKV: {e}")),
                                }
                            }
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
                let hash = hashkv
                    .map(|r| format!(", HashKV of every voter equal at revision {r}"))
                    .unwrap_or_default();
                Check::Ready(done(format!(
                    "runs {version} after {:.1}s{hash}",
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

/// Whether a HashKV report says the data of every voter is equal, the restarted member
/// `member` among them when given (its endpoint is one k3splan dials): `Ok(revision)`, or
/// what is still pending (a mismatch, a voter that did not answer, the member missing). A mismatch stays pending until the wait's
/// deadline, and its error then names it: a member that rejoined with diverged data must
/// stop the upgrade before the next server restarts.
pub(crate) fn hashes_equal_with(
    h: &k3splan_etcd::HashReport,
    member: Option<k3splan_etcd::MemberId>,
) -> Result<i64, String> {
    if !h.mismatched.is_empty() {
        let ids: Vec<String> = h.mismatched.iter().map(ToString::to_string).collect();
        return Err(format!(
            "HashKV differs at revision {}: member(s) {} disagree with the others",
            h.revision,
            ids.join(", ")
        ));
    }
    if !h.failed.is_empty() {
        let why: Vec<String> = h.failed.iter().map(ToString::to_string).collect();
        return Err(format!(
            "HashKV at revision {}: not every voter answered ({})",
            h.revision,
            why.join("; ")
        ));
    }
    if let Some(member) = member
        && !h.hashes.iter().any(|x| x.member_id == member)
    {
        return Err(format!(
            "HashKV at revision {}: member {member} not among the hashed voters",
            h.revision
        ));
    }
    Ok(h.revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k3splan_etcd::{EndpointError, EndpointErrorKind, HashReport, MemberHash, MemberId};

    fn hash(id: u64, hash: u32) -> MemberHash {
        MemberHash {
            member_id: MemberId(id),
            endpoint: format!("https://10.0.0.{id}:2379"),
            hash,
            compact_revision: 1,
        }
    }

    fn report(hashes: Vec<MemberHash>, mismatched: Vec<u64>) -> HashReport {
        HashReport {
            revision: 42,
            hashes,
            mismatched: mismatched.into_iter().map(MemberId).collect(),
            failed: vec![],
        }
    }

    #[test]
    fn equal_hashes_including_the_restarted_member_end_the_wait() {
        let h = report(vec![hash(1, 7), hash(2, 7), hash(3, 7)], vec![]);
        assert_eq!(hashes_equal_with(&h, Some(MemberId(2))), Ok(42));
    }

    #[test]
    fn a_diverged_member_keeps_the_wait_pending_and_is_named() {
        let h = report(vec![hash(1, 7), hash(2, 9), hash(3, 7)], vec![2]);
        let why = hashes_equal_with(&h, Some(MemberId(2))).unwrap_err();
        assert!(why.contains("HashKV differs at revision 42"), "{why}");
        assert!(why.contains(&MemberId(2).to_string()), "{why}");
    }

    #[test]
    fn a_voter_that_did_not_answer_or_a_missing_member_is_not_equal() {
        let mut h = report(vec![hash(1, 7), hash(3, 7)], vec![]);
        let why = hashes_equal_with(&h, Some(MemberId(2))).unwrap_err();
        assert!(why.contains("not among the hashed voters"), "{why}");
        // Not dialed by k3splan (explicit endpoints without it): the others must agree.
        assert_eq!(hashes_equal_with(&h, None), Ok(42));
        h.failed.push(EndpointError {
            endpoint: "https://10.0.0.2:2379".into(),
            operation: "hash kv".into(),
            kind: EndpointErrorKind::Rpc,
            message: "connection refused".into(),
        });
        let why = hashes_equal_with(&h, Some(MemberId(2))).unwrap_err();
        assert!(why.contains("not every voter answered"), "{why}");
    }
}
