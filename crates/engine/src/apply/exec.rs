//! Carrying out one [`Operation`] against the live cluster.
//!
//! Every operation is idempotent: it looks at the live system first and does nothing when
//! its effect is already there (a member already removed, a file already written, a node
//! already cordoned, a PVC already replaced). That is what makes a killed apply safe to run
//! again: the next run re-observes, re-plans, and repeats nothing that took effect.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use k3splan_etcd::MemberId;
use k3splan_host::{FileWrite, InstallRequest, K3sRole, ServiceAction};
use k3splan_kube::{
    AddonChange, AddonMethod, DrainMode, DrainOptions, HostGoneEvidence, ObserveRequest, PodScope,
    Readiness, RebindPolicy, RebindRequest,
};

use crate::live::Live;
use crate::observed::url_host;
use crate::plan::files::{SENSITIVE, SENSITIVE_CHANGED, SENSITIVE_FILE};
use crate::plan::{Operation, SensitiveValue};
use crate::state::SnapshotRecord;

/// Bounds of the waits an apply makes.
#[derive(Debug, Clone)]
pub struct Waits {
    pub learner_promoted: Duration,
    pub node_ready: Duration,
    pub pod_rescheduled: Duration,
    pub drain: Duration,
    pub verify: Duration,
    pub poll: Duration,
    /// How often an operation still running says so ([`super::ApplyEvent::Heartbeat`]).
    pub heartbeat: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Waits {
            learner_promoted: Duration::from_secs(180),
            node_ready: Duration::from_secs(180),
            pod_rescheduled: Duration::from_secs(180),
            drain: Duration::from_secs(300),
            verify: Duration::from_secs(120),
            poll: Duration::from_millis(500),
            heartbeat: super::HEARTBEAT,
        }
    }
}

/// What an operation did, for the progress line and the state.
#[derive(Debug, Default)]
pub struct OpResult {
    /// One line for the operator ("already done" when nothing changed).
    pub note: Option<String>,
    pub snapshot: Option<SnapshotRecord>,
    /// sha256 of a file written, by `NODE:/path`.
    pub file_digest: Option<(String, String)>,
}

/// Executes operations through the providers of a [`Live`] connection.
pub struct Executor<'a> {
    pub live: &'a Live,
    pub waits: Waits,
    /// Where maintenance-API snapshots are written.
    pub snapshot_dir: std::path::PathBuf,
}

fn err(what: impl std::fmt::Display) -> String {
    what.to_string()
}

impl Executor<'_> {
    fn node_address(&self, node: &str) -> Option<IpAddr> {
        self.live.host_addresses.get(node).copied()
    }

    async fn session(
        &self,
        node: &str,
    ) -> Result<std::sync::Arc<k3splan_host::HostSession>, String> {
        self.live.hosts.session(node).await.map_err(err)
    }

    /// Runs one operation.
    pub async fn run(&self, op: &Operation) -> Result<OpResult, String> {
        let kube = || async { self.live.kube().await };
        match op {
            Operation::Snapshot { node } => self.snapshot(node.as_deref()).await,
            Operation::Cordon { node } => {
                let r = kube().await?.cordon(node).await.map_err(err)?;
                Ok(done_note(format!("{r:?}")))
            }
            Operation::Uncordon { node } => {
                let r = kube().await?.uncordon(node).await.map_err(err)?;
                Ok(done_note(format!("{r:?}")))
            }
            Operation::Drain {
                node,
                skip_eviction,
            } => {
                let k = kube().await?;
                if node_info(k, node).await.map_err(err)?.is_none() {
                    return Ok(note("node already gone"));
                }
                let opts = DrainOptions {
                    mode: if *skip_eviction {
                        DrainMode::ForceDeleteHostGone
                    } else {
                        DrainMode::Evict
                    },
                    deadline: self.waits.drain,
                    ..DrainOptions::default()
                };
                let report = k.drain(node, &opts).await.map_err(err)?;
                if !report.complete() {
                    return Err(report.incomplete_message());
                }
                Ok(note(format!(
                    "{} evicted, {} deleted, {} DaemonSet/mirror pods left",
                    report.evicted.len(),
                    report.force_deleted.len(),
                    report.skipped_daemonset.len() + report.skipped_mirror.len()
                )))
            }
            Operation::DeleteNode { node } => {
                let r = kube().await?.delete_node(node).await.map_err(err)?;
                Ok(done_note(format!("{r:?}")))
            }
            Operation::RemoveEtcdMember { id, name, .. } => {
                let etcd = self.live.etcd()?;
                let obs = etcd.observe().await;
                if obs.member(MemberId(*id)).is_none() && !obs.members.is_empty() {
                    return Ok(note(format!("member {name} already removed")));
                }
                if obs.health.leader == Some(MemberId(*id)) {
                    etcd.move_leader_away(MemberId(*id)).await.map_err(err)?;
                }
                let r = etcd.remove_member(MemberId(*id)).await.map_err(err)?;
                Ok(note(match r {
                    k3splan_etcd::Removal::AlreadyAbsent => "already absent".to_string(),
                    _ => "removed".to_string(),
                }))
            }
            Operation::MoveAsideDataDir { node, .. } => {
                let s = self.session(node).await?;
                let layout = &self.live.layout;
                if s.service_active(layout, &layout.server_unit)
                    .await
                    .map_err(err)?
                {
                    s.service(layout, &layout.server_unit, ServiceAction::Stop)
                        .await
                        .map_err(err)?;
                }
                let dest = s.move_etcd_data_aside(layout).await.map_err(err)?;
                Ok(note(format!("moved to {dest}")))
            }
            Operation::WriteFile {
                node,
                path,
                after,
                sensitive,
                ..
            } => self.write_file(node, path, after, sensitive).await,
            Operation::JoinServer {
                node, via, version, ..
            } => {
                self.join(node, via, version.as_deref(), K3sRole::Server)
                    .await
            }
            Operation::JoinAgent { node, via, version } => {
                self.join(node, via, version.as_deref(), K3sRole::Agent)
                    .await
            }
            Operation::WaitLearnerPromoted { node } => self.wait_promoted(node).await,
            Operation::WaitNodeReady { node } => self.wait_node_ready(node).await,
            Operation::RestartService { node } => {
                let s = self.session(node).await?;
                let layout = &self.live.layout;
                let agent = self
                    .live
                    .topology
                    .node(node)
                    .is_some_and(|n| n.roles.is_agent());
                let unit = if agent {
                    &layout.agent_unit
                } else {
                    &layout.server_unit
                };
                s.service(layout, unit, ServiceAction::Restart)
                    .await
                    .map_err(err)?;
                let runs_etcd = self
                    .live
                    .topology
                    .node(node)
                    .is_some_and(|n| n.roles.runs_etcd());
                if runs_etcd {
                    self.wait_member_healthy(node).await?;
                }
                self.wait_node_ready(node).await?;
                Ok(note("restarted and healthy again"))
            }
            Operation::UninstallK3s { node } => {
                let s = match self.session(node).await {
                    Ok(s) => s,
                    Err(e) => return Err(format!("cannot reach {node} to uninstall k3s: {e}")),
                };
                let layout = &self.live.layout;
                let agent = s
                    .service_active(layout, &layout.agent_unit)
                    .await
                    .unwrap_or(false);
                let out = s
                    .uninstall_k3s(
                        layout,
                        if agent {
                            K3sRole::Agent
                        } else {
                            K3sRole::Server
                        },
                    )
                    .await
                    .map_err(err)?;
                Ok(note(
                    out.lines().last().unwrap_or("uninstalled").to_string(),
                ))
            }
            Operation::RebindVolume {
                namespace,
                pvc,
                pvc_uid,
                from_node,
                evidence,
                ..
            } => {
                self.rebind(
                    namespace,
                    pvc,
                    pvc_uid,
                    from_node,
                    evidence,
                    RebindPolicy::StatefulSetRecreatePvcAndPod,
                )
                .await
            }
            Operation::RecreateWorkload {
                namespace,
                pvc,
                pvc_uid,
                from_node,
                evidence,
                ..
            } => {
                self.rebind(
                    namespace,
                    pvc,
                    pvc_uid,
                    from_node,
                    evidence,
                    RebindPolicy::DeploymentDeleteForOperator,
                )
                .await
            }
            Operation::ScaleAddon {
                namespace,
                name,
                replicas,
                spread,
                via_helm,
            } => {
                let method = if *via_helm {
                    AddonMethod::HelmChartConfig {
                        chart: name.clone(),
                        values_content: None,
                    }
                } else {
                    AddonMethod::Patch
                };
                let r = kube()
                    .await?
                    .set_addon_replicas_and_spread(&AddonChange {
                        namespace: namespace.clone(),
                        name: name.clone(),
                        replicas: *replicas as i32,
                        spread_topology_key: spread.clone(),
                        method,
                    })
                    .await
                    .map_err(err)?;
                Ok(done_note(format!("{r:?}")))
            }
            Operation::Verify {
                expect_members,
                expect_nodes,
            } => self.verify(*expect_members, *expect_nodes).await,
        }
    }

    async fn snapshot(&self, node: Option<&str>) -> Result<OpResult, String> {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // k3s appends the node name and a timestamp to the snapshot name itself.
        let name = if node.is_some() {
            "k3splan".to_string()
        } else {
            format!("k3splan-{unix}")
        };
        let record = match node {
            Some(n) => {
                let s = self.session(n).await?;
                let path = s
                    .etcd_snapshot_save(&self.live.layout, Some(&name))
                    .await
                    .map_err(err)?;
                let out = s
                    .run(
                        "snapshot digest",
                        &k3splan_host::quote::sh_command(&[
                            "sh",
                            "-c",
                            "stat -c %s \"$1\" && sha256sum \"$1\"",
                            "sh",
                            &path,
                        ]),
                        b"",
                    )
                    .await
                    .map_err(err)?;
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
                SnapshotRecord {
                    path: format!("{n}:{path}"),
                    size,
                    sha256: sha,
                    taken_at: crate::state::now_rfc3339(),
                }
            }
            None => {
                std::fs::create_dir_all(&self.snapshot_dir)
                    .map_err(|e| format!("{}: {e}", self.snapshot_dir.display()))?;
                let path = self.snapshot_dir.join(format!("{name}.db"));
                let info = self
                    .live
                    .etcd()?
                    .snapshot(&path, Duration::from_secs(300))
                    .await
                    .map_err(err)?;
                SnapshotRecord {
                    path: info.path.display().to_string(),
                    size: info.size,
                    sha256: info.sha256,
                    taken_at: crate::state::now_rfc3339(),
                }
            }
        };
        Ok(OpResult {
            note: Some(format!("{} ({} bytes)", record.path, record.size)),
            snapshot: Some(record),
            file_digest: None,
        })
    }

    /// Fills `(sensitive)` placeholders: declared secrets from their source, others from the
    /// file already on the host (a rewritten file keeps its token).
    async fn write_file(
        &self,
        node: &str,
        path: &str,
        after: &str,
        sensitive: &[SensitiveValue],
    ) -> Result<OpResult, String> {
        let s = self.session(node).await?;
        let current = s.read_file(path).await.map_err(err)?;
        let current_text = current
            .as_ref()
            .map(|f| String::from_utf8_lossy(&f.contents).into_owned())
            .unwrap_or_default();
        if after.lines().any(|l| l.starts_with(SENSITIVE_FILE)) {
            return Err(format!(
                "{path} on {node}: the file on the host could not be parsed, so its content was not shown and cannot be rewritten; fix or remove it by hand"
            ));
        }
        let mut secrets = Vec::new();
        let mut out = String::new();
        let mut last_env_name: Option<String> = None;
        for line in after.split_inclusive('\n') {
            let trimmed = line.trim_start();
            if let Some(n) = trimmed
                .trim_start_matches("- ")
                .strip_prefix("name:")
                .map(|v| v.trim().trim_matches('"').to_string())
            {
                last_env_name = Some(n);
            }
            let placeholder = [SENSITIVE_CHANGED, SENSITIVE]
                .into_iter()
                .find(|p| line.contains(p));
            let Some(placeholder) = placeholder else {
                out.push_str(line);
                continue;
            };
            let key = if trimmed.starts_with("value:") {
                last_env_name.clone().unwrap_or_default()
            } else {
                trimmed
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .trim_matches(['"', '\''])
                    .to_string()
            };
            let value = match sensitive.iter().find(|v| v.key == key) {
                Some(sv) => self.secret_value(&sv.source).ok_or_else(|| {
                    format!("{path} on {node} needs `{key}` from {}, which is not set", sv.source)
                })?,
                None => existing_value(&current_text, &key).ok_or_else(|| {
                    format!(
                        "{path} on {node}: `{key}` must keep its current value, but the file on the host has none"
                    )
                })?,
            };
            secrets.push(k3splan_host::Secret::new(value.clone()));
            let quoted = if trimmed.starts_with("value:") {
                format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
            } else {
                crate::plan::files::yaml_scalar(&value)
            };
            out.push_str(&line.replacen(placeholder, &quoted, 1));
        }
        let mut w = FileWrite::new(path, out.clone().into_bytes());
        w.mode = 0o600;
        w.secrets = secrets;
        let r = s.write_file_over(&w, current.as_ref()).await.map_err(err)?;
        let digest = crate::apply::sha256_hex(out.as_bytes());
        Ok(OpResult {
            note: Some(if r.changed {
                match r.backup {
                    Some(b) => format!("written (backup {b})"),
                    None => "written".to_string(),
                }
            } else {
                "already up to date".to_string()
            }),
            snapshot: None,
            file_digest: Some((format!("{node}:{path}"), digest)),
        })
    }

    fn secret_value(&self, source: &str) -> Option<String> {
        let c = &self.live.topology.cluster;
        [
            c.token.as_ref(),
            c.vip.as_ref().and_then(|v| v.password.as_ref()),
        ]
        .into_iter()
        .flatten()
        .find(|s| s.source() == source)
        .and_then(|s| s.expose().map(str::to_string))
    }

    async fn join(
        &self,
        node: &str,
        via: &str,
        version: Option<&str>,
        role: K3sRole,
    ) -> Result<OpResult, String> {
        let s = self.session(node).await?;
        let layout = &self.live.layout;
        let unit = match role {
            K3sRole::Server => &layout.server_unit,
            K3sRole::Agent => &layout.agent_unit,
        };
        if s.service_active(layout, unit).await.unwrap_or(false) {
            return Ok(note(format!("k3s already running on {node}")));
        }
        let token = self
            .live
            .topology
            .cluster
            .token
            .as_ref()
            .and_then(|t| t.expose().map(|v| k3splan_host::Secret::new(v.to_string())))
            .ok_or_else(|| {
                let src = self
                    .live
                    .topology
                    .cluster
                    .token
                    .as_ref()
                    .map(|t| t.source().to_string())
                    .unwrap_or_else(|| "the cluster's `token`".into());
                format!("joining {node} needs the join token from {src}, which is not set")
            })?;
        let req = InstallRequest {
            role,
            k3s_version: version.map(str::to_string),
            server_url: Some(via.to_string()),
            token: Some(token),
            extra_env: Vec::new(),
        };
        s.install_k3s(layout, &req).await.map_err(err)?;
        if !s.service_active(layout, unit).await.unwrap_or(false) {
            s.service(layout, unit, ServiceAction::Start)
                .await
                .map_err(err)?;
        }
        Ok(note(format!(
            "k3s installed and started, joining through {via}"
        )))
    }

    async fn wait_promoted(&self, node: &str) -> Result<OpResult, String> {
        let addr = self
            .node_address(node)
            .ok_or_else(|| format!("no address known for {node}"))?
            .to_string();
        let etcd = self.live.etcd()?;
        let start = Instant::now();
        let mut last = String::from("not yet listed");
        let mut tried_promote = false;
        while start.elapsed() < self.waits.learner_promoted {
            let o = etcd.observe().await;
            match o.member_by_address(&addr) {
                Some(m) if !m.is_learner && m.is_healthy() => {
                    return Ok(note(format!(
                        "{} is a voter after {:.1}s",
                        m.name,
                        start.elapsed().as_secs_f64()
                    )));
                }
                Some(m) => {
                    last = format!(
                        "{} is {} ({:?})",
                        if m.name.is_empty() {
                            "the new member"
                        } else {
                            &m.name
                        },
                        if m.is_learner { "a learner" } else { "a voter" },
                        m.health
                    );
                    // k3s promotes learners itself; help it once if it is slow.
                    if m.is_learner && !tried_promote && start.elapsed() > Duration::from_secs(30) {
                        tried_promote = true;
                        let _ = etcd.promote_learner(m.id, Duration::from_secs(10)).await;
                    }
                }
                None => {}
            }
            tokio::time::sleep(self.waits.poll.max(Duration::from_secs(1))).await;
        }
        Err(format!(
            "{node}'s etcd member was not promoted to a healthy voter within {}s: {last}",
            self.waits.learner_promoted.as_secs()
        ))
    }

    async fn wait_member_healthy(&self, node: &str) -> Result<(), String> {
        let addr = self
            .node_address(node)
            .ok_or_else(|| format!("no address known for {node}"))?
            .to_string();
        let etcd = self.live.etcd()?;
        let start = Instant::now();
        while start.elapsed() < self.waits.node_ready {
            let o = etcd.observe().await;
            if o.member_by_address(&addr).is_some_and(|m| m.is_healthy()) && o.health.quorum {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(format!(
            "{node}'s etcd member was not healthy again within {}s",
            self.waits.node_ready.as_secs()
        ))
    }

    async fn wait_node_ready(&self, node: &str) -> Result<OpResult, String> {
        let k = self.live.kube().await?;
        let start = Instant::now();
        let mut last = "not registered".to_string();
        while start.elapsed() < self.waits.node_ready {
            match node_info(k, node).await {
                Ok(Some(n)) if n.ready == Readiness::Ready => {
                    return Ok(note(format!(
                        "Ready after {:.1}s",
                        start.elapsed().as_secs_f64()
                    )));
                }
                Ok(Some(n)) => last = format!("{:?}", n.ready),
                Ok(None) => last = "not registered".into(),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(self.waits.poll).await;
        }
        Err(format!(
            "Node {node} was not Ready within {}s (last: {last})",
            self.waits.node_ready.as_secs()
        ))
    }

    async fn rebind(
        &self,
        namespace: &str,
        pvc: &str,
        uid: &str,
        from_node: &str,
        evidence: &crate::plan::LossEvidence,
        policy: RebindPolicy,
    ) -> Result<OpResult, String> {
        let k = self.live.kube().await?;
        let report = k
            .rebind_volume(&RebindRequest {
                namespace: namespace.to_string(),
                pvc: pvc.to_string(),
                lost_node: from_node.to_string(),
                policy,
                expected_pvc_uid: Some(uid.to_string()),
                deadline: self.waits.pod_rescheduled,
                // The plan's facts about the lost node: the provider refuses to delete the
                // PVC unless they say its host is gone (issue 13).
                evidence: HostGoneEvidence {
                    uninstalled_by_plan: evidence.uninstalled_by_plan,
                    k3s_absent: evidence.k3s_absent,
                    host_unreachable: evidence.host_unreachable,
                    member_dead: evidence.member_dead,
                    not_ready_since: evidence.not_ready_since.clone(),
                },
                min_not_ready: Duration::from_secs(evidence.min_not_ready_secs),
            })
            .await
            .map_err(err)?;
        // Wait until the claim exists again, bound on another node (the workload was rescheduled).
        let start = Instant::now();
        let mut last = "no PVC yet".to_string();
        while start.elapsed() < self.waits.pod_rescheduled {
            let o = k
                .observe(&ObserveRequest {
                    addons: Vec::new(),
                    nodes_of_interest: Vec::new(),
                    pods: PodScope::NodesOfInterest,
                    namespaces: Vec::new(),
                })
                .await
                .map_err(err)?;
            if let Some(c) = o
                .pvcs
                .iter()
                .find(|c| c.namespace == namespace && c.name == pvc)
            {
                match &c.local_node {
                    Some(n) if c.uid != uid && n != from_node && c.phase == "Bound" => {
                        let what = match report.outcome {
                            k3splan_kube::ActOutcome::AlreadyDone => "already done",
                            _ => "deleted",
                        };
                        return Ok(note(format!(
                            "{what}; new volume bound on {n} after {:.1}s",
                            start.elapsed().as_secs_f64()
                        )));
                    }
                    _ => last = format!("PVC {} (node {:?})", c.phase, c.local_node),
                }
            }
            tokio::time::sleep(self.waits.poll).await;
        }
        Err(format!(
            "{namespace}/{pvc} was not recreated and bound on a live node within {}s (last: {last})",
            self.waits.pod_rescheduled.as_secs()
        ))
    }

    async fn verify(&self, members: usize, nodes: usize) -> Result<OpResult, String> {
        let etcd = self.live.etcd()?;
        let k = self.live.kube().await?;
        let start = Instant::now();
        let mut problems: Vec<String>;
        loop {
            problems = Vec::new();
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
            match k
                .observe(&ObserveRequest {
                    addons: Vec::new(),
                    nodes_of_interest: Vec::new(),
                    pods: PodScope::NodesOfInterest,
                    namespaces: Vec::new(),
                })
                .await
            {
                Ok(c) => {
                    // Every Node must be declared: an undeclared one is a node the plan
                    // removed coming back (its kubelet registered it again) or one nobody
                    // manages; counting Ready nodes alone hides it (issue 13).
                    let undeclared: Vec<String> = c
                        .nodes
                        .iter()
                        .filter(|n| self.live.topology.node(&n.name).is_none())
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
                        .filter(|n| self.live.topology.node(&n.name).is_some())
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
                }
                Err(e) => problems.push(e.to_string()),
            }
            if problems.is_empty() {
                return Ok(note(format!(
                    "{members} members healthy, one leader, KV hashes equal, {nodes} Nodes Ready"
                )));
            }
            if start.elapsed() >= self.waits.verify {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(format!("verification failed: {}", problems.join("; ")))
    }
}

/// One node as the API reports it (lists nodes; no pods but the pending ones).
async fn node_info(
    k: &k3splan_kube::KubeProvider,
    name: &str,
) -> Result<Option<k3splan_kube::NodeInfo>, k3splan_kube::KubeError> {
    let o = k
        .observe(&ObserveRequest {
            addons: Vec::new(),
            nodes_of_interest: Vec::new(),
            pods: PodScope::NodesOfInterest,
            namespaces: Vec::new(),
        })
        .await?;
    Ok(o.nodes.into_iter().find(|n| n.name == name))
}

fn note(s: impl Into<String>) -> OpResult {
    OpResult {
        note: Some(s.into()),
        ..OpResult::default()
    }
}

fn done_note(outcome: String) -> OpResult {
    note(if outcome.contains("AlreadyDone") {
        "already done".to_string()
    } else {
        "done".to_string()
    })
}

/// The value of `key` in a file read from a host: a YAML key, or the `value` of a
/// `name: KEY` env entry (the file is parsed, see [`crate::plan::files::existing_secret`]).
fn existing_value(text: &str, key: &str) -> Option<String> {
    crate::plan::files::existing_secret(text, key)
}

/// Host part of an etcd peer URL (`https://10.0.0.1:2380` → `10.0.0.1`).
pub fn peer_host(url: &str) -> Option<&str> {
    url_host(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_values_are_found_for_yaml_keys_and_env_entries() {
        let cfg = "server: https://x:6443\ntoken: K10abc::server:def\nnode-name: a\n";
        assert_eq!(
            existing_value(cfg, "token").as_deref(),
            Some("K10abc::server:def")
        );
        let manifest = "        - name: KEEPALIVED_PASSWORD\n          value: \"s3cr3t\"\n        - name: X\n          value: y\n";
        assert_eq!(
            existing_value(manifest, "KEEPALIVED_PASSWORD").as_deref(),
            Some("s3cr3t")
        );
        assert_eq!(existing_value(cfg, "agent-token"), None);
    }
}
