//! Plan data types: the operations the apply engine performs.

use serde::{Deserialize, Serialize};

use crate::plan::{LossEvidence, SensitiveValue};

/// One concrete thing the apply engine does. Every variant is idempotent by contract:
/// re-running a finished operation is harmless.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// `k3s etcd-snapshot save` on `node` (or the maintenance API when `None`).
    Snapshot {
        node: Option<String>,
    },
    Cordon {
        node: String,
    },
    /// Drain; with `skip_eviction` the pods are deleted without waiting for the kubelet
    /// (the host is unreachable or the node NotReady: eviction would hang).
    Drain {
        node: String,
        skip_eviction: bool,
    },
    DeleteNode {
        node: String,
    },
    /// `member remove ID`, only if the member is still listed.
    RemoveEtcdMember {
        /// Serialized as a hex string (as `etcdctl` prints it; JSON numbers lose precision
        /// above 2^53).
        #[serde(with = "hex_id")]
        id: u64,
        name: String,
        peer_url: String,
    },
    /// Stop k3s and move `<data-dir>/server/db/etcd` to `etcd-backup-<unix>` (keeps tls/token).
    MoveAsideDataDir {
        node: String,
        path: String,
    },
    /// Write a file; `after` holds `(sensitive)` where a secret goes.
    WriteFile {
        node: String,
        path: String,
        before: Option<String>,
        after: String,
        sensitive: Vec<SensitiveValue>,
    },
    /// Install k3s (if needed) and start it as a server joining through `via`.
    /// Never with `cluster-init` (rule 10, a joining server never uses
    /// cluster-init).
    JoinServer {
        node: String,
        via: String,
        etcd: bool,
        control_plane: bool,
        version: Option<String>,
    },
    /// Install k3s as an agent joining through `via`.
    JoinAgent {
        node: String,
        via: String,
        version: Option<String>,
    },
    /// Wait until the new member is promoted from learner to voter and healthy.
    WaitLearnerPromoted {
        node: String,
    },
    WaitNodeReady {
        node: String,
    },
    /// For a server without an agent (`disable-agent`: no kubelet, so no Node ever): wait
    /// until its etcd member is a healthy voter (when it runs etcd) and its supervisor port
    /// answers `GET https://ADDRESS:6443/cacerts`.
    WaitServerHealthy {
        node: String,
    },
    /// Restart the k3s service and wait until the node (and its member) is healthy again.
    RestartService {
        node: String,
    },
    /// `k3s-uninstall.sh` / `k3s-agent-uninstall.sh`.
    UninstallK3s {
        node: String,
    },
    /// Delete a PVC bound to a lost node, then the pod, so the StatefulSet recreates both
    /// on a schedulable node.
    RebindVolume {
        namespace: String,
        pvc: String,
        pvc_uid: String,
        pod: Option<String>,
        from_node: String,
        /// Why the plan holds `from_node` for gone (checked again by the provider).
        #[serde(default)]
        evidence: LossEvidence,
    },
    /// Delete a PVC and the Deployment that uses it; its operator recreates both.
    RecreateWorkload {
        namespace: String,
        pvc: String,
        pvc_uid: String,
        kind: String,
        name: String,
        from_node: String,
        /// See [`Operation::RebindVolume`].
        #[serde(default)]
        evidence: LossEvidence,
    },
    Uncordon {
        node: String,
    },
    /// Set an add-on's replicas and spread (patch, or HelmChartConfig when `via_helm`).
    ScaleAddon {
        namespace: String,
        name: String,
        replicas: u32,
        spread: Option<String>,
        via_helm: bool,
    },
    /// Every member healthy, one leader, equal HashKV at a common revision; nodes Ready.
    Verify {
        /// Voters expected after the plan.
        expect_members: usize,
        /// Nodes expected Ready: the declared nodes that run an agent (a server with
        /// `disable-agent` has no Node).
        expect_nodes: usize,
        /// Members (by name) the plan leaves alone while they are not healthy: they are
        /// expected listed, not healthy, and the KV hashes are compared without them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unhealthy_left: Vec<String>,
    },
    /// Issue 15: re-run the installer on `node` with `INSTALL_K3S_VERSION=version` and the
    /// options it was installed with (the `K3S_*` variables of its unit's env file, as k3s's
    /// docs say an upgrade must), which replaces the binary and restarts k3s. The quorum
    /// simulation counts the node's etcd member as away from here until its
    /// [`Operation::WaitUpgraded`] (rule 9, restarting a healthy server counts as removing
    /// its member).
    UpgradeK3s {
        node: String,
        /// The version it runs now (`k3s --version` on the host), when known.
        from: Option<String>,
        version: String,
        /// An agent (`k3s-agent` unit) rather than a server.
        agent: bool,
    },
    /// Issue 15: wait until `node` runs `version`: `k3s --version` on the host says it, its
    /// etcd member (when it runs etcd) is a healthy voter again and the HashKV of every voter
    /// is equal at a common revision, and its Node is Ready with `kubeletVersion` = `version`
    /// (a server without an agent: its supervisor port answers).
    WaitUpgraded {
        node: String,
        version: String,
    },
    /// Stop the k3s server service on `node`, also when it is not active (a pending automatic
    /// restart is cancelled) (quorum-loss recovery, issue 16: a
    /// server left running with the old membership would fight the reset).
    StopK3s {
        node: String,
    },
    /// `k3s server --cluster-reset` on `node` (with `--cluster-reset-restore-path=PATH` when
    /// restoring a snapshot), run in the foreground until it exits: the member becomes a
    /// one-member cluster (etcd `--force-new-cluster`). A reset-flag left by an earlier
    /// (maybe interrupted) reset is removed first and the reset run again.
    ClusterReset {
        node: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restore_path: Option<String>,
    },
    /// Issue 17: on `node`, stop k3s, `k3s certificate rotate` (k3s backs up `server/tls` and
    /// deletes the leaf certificates, `pkg/cli/cert/cert.go`), start k3s (which issues new
    /// ones) and wait until it is healthy again. A restart: one server at a time.
    RotateCertificates {
        node: String,
    },
    /// Issue 17: remove the annotation `key` from Node `node` (a leftover
    /// `etcd.k3s.cattle.io/remove`, which k3s acts on at every Node update).
    RemoveNodeAnnotation {
        node: String,
        key: String,
    },
}

impl Operation {
    /// Destroys something (data, membership, objects).
    pub fn is_destructive(&self) -> bool {
        matches!(
            self,
            Operation::Drain { .. }
                | Operation::DeleteNode { .. }
                | Operation::RemoveEtcdMember { .. }
                | Operation::MoveAsideDataDir { .. }
                | Operation::UninstallK3s { .. }
                | Operation::RebindVolume { .. }
                | Operation::RecreateWorkload { .. }
                | Operation::UpgradeK3s { .. }
                | Operation::ClusterReset { .. }
        )
    }

    /// One line for an operator.
    pub fn describe(&self) -> String {
        match self {
            Operation::Snapshot { node: Some(n) } => {
                format!("take an etcd snapshot on {n} (k3s etcd-snapshot save)")
            }
            Operation::Snapshot { node: None } => {
                "take an etcd snapshot through the maintenance API".into()
            }
            Operation::Cordon { node } => format!("cordon {node}"),
            Operation::Drain {
                node,
                skip_eviction: true,
            } => format!(
                "drain {node} without eviction (delete its pods, do not wait for the kubelet)"
            ),
            Operation::Drain { node, .. } => format!("drain {node} (evict its pods)"),
            Operation::DeleteNode { node } => format!("delete Node {node}"),
            Operation::RemoveEtcdMember { id, name, peer_url } => {
                format!("remove etcd member {name} (id {id:x}, {peer_url}) if still listed")
            }
            Operation::MoveAsideDataDir { node, path } => {
                format!(
                    "on {node}: stop k3s if it runs, move {path} aside to {path}-backup-<unix> (keep server/tls and server/token)"
                )
            }
            Operation::WriteFile { node, path, .. } => format!("write {path} on {node}"),
            Operation::JoinServer { .. } | Operation::JoinAgent { .. } => self.describe_join(),
            Operation::WaitLearnerPromoted { node } => {
                format!("wait until {node}'s etcd learner is promoted to voter")
            }
            Operation::WaitNodeReady { node } => format!("wait until Node {node} is Ready"),
            Operation::WaitServerHealthy { node } => format!(
                "wait until {node} is healthy: its etcd member a healthy voter and its supervisor port answering /cacerts (no agent, so no Node)"
            ),
            Operation::RestartService { node } => {
                format!("restart k3s on {node} and wait until it is healthy again")
            }
            Operation::UninstallK3s { node } => format!("uninstall k3s on {node}"),
            Operation::Uncordon { node } => format!("uncordon {node}"),
            Operation::RebindVolume { .. }
            | Operation::RecreateWorkload { .. }
            | Operation::ScaleAddon { .. } => self.describe_workload(),
            Operation::Verify {
                expect_members,
                expect_nodes,
                unhealthy_left,
            } => {
                let healthy = expect_members.saturating_sub(unhealthy_left.len());
                let mut s = if unhealthy_left.is_empty() {
                    format!("verify: {expect_members} etcd members healthy")
                } else {
                    format!(
                        "verify: {expect_members} etcd voters, {healthy} of them healthy ({} left alone by this plan and not expected healthy)",
                        unhealthy_left.join(", ")
                    )
                };
                s.push_str(&format!(
                    ", one leader, equal HashKV at a common revision; {expect_nodes} nodes Ready"
                ));
                s
            }
            Operation::UpgradeK3s {
                node,
                from,
                version,
                agent,
            } => {
                let from = from
                    .as_deref()
                    .map(|f| format!(" from {f}"))
                    .unwrap_or_default();
                let unit = if *agent { "k3s-agent" } else { "k3s" };
                format!(
                    "upgrade k3s on {node}{from} to {version}: re-run the installer with its recorded K3S_* options and ExecStart arguments; {unit} restarts"
                )
            }
            Operation::WaitUpgraded { node, version } => format!(
                "wait until {node} runs {version}: k3s --version says it, its etcd member (a server's) a healthy voter again with HashKV equal to the other voters', its Node Ready at {version}"
            ),
            Operation::StopK3s { node } => format!("stop k3s on {node} if it runs"),
            Operation::ClusterReset {
                node,
                restore_path: None,
            } => format!(
                "on {node}: k3s server --cluster-reset (etcd force-new-cluster on its own data: a one-member cluster), until it exits"
            ),
            Operation::ClusterReset {
                node,
                restore_path: Some(p),
            } => format!(
                "on {node}: k3s server --cluster-reset --cluster-reset-restore-path={p} (its data dir moved to etcd-old-<unix>, the snapshot restored as a one-member cluster), until it exits"
            ),
            Operation::RotateCertificates { node } => format!(
                "on {node}: stop k3s, k3s certificate rotate, start k3s and wait until it is healthy again"
            ),
            Operation::RemoveNodeAnnotation { node, key } => {
                format!("remove annotation {key} from Node {node}")
            }
        }
    }

    /// [`Operation::describe`] of a join.
    fn describe_join(&self) -> String {
        match self {
            Operation::JoinServer {
                node,
                via,
                etcd,
                control_plane,
                version,
            } => {
                let what = match (etcd, control_plane) {
                    (true, true) => "server (etcd + control plane)",
                    (true, false) => "etcd-only server",
                    (false, true) => "control-plane-only server",
                    (false, false) => "server",
                };
                let v = version_word(version);
                format!(
                    "install k3s{v} on {node} as {what}, joining through {via} (no cluster-init)"
                )
            }
            Operation::JoinAgent { node, via, version } => {
                let v = version_word(version);
                format!("install k3s{v} on {node} as agent, joining through {via}")
            }
            _ => unreachable!("not a join: {self:?}"),
        }
    }

    /// [`Operation::describe`] of a change to a workload (its PVC, its replicas).
    fn describe_workload(&self) -> String {
        match self {
            Operation::RebindVolume {
                namespace,
                pvc,
                pod,
                from_node,
                ..
            } => {
                let p = pod
                    .as_deref()
                    .map(|p| format!(" and pod {namespace}/{p}"))
                    .unwrap_or_default();
                format!(
                    "delete PVC {namespace}/{pvc} (pinned to {from_node}){p}; the StatefulSet recreates them"
                )
            }
            Operation::RecreateWorkload {
                namespace,
                pvc,
                kind,
                name,
                from_node,
                ..
            } => format!(
                "delete PVC {namespace}/{pvc} (pinned to {from_node}) and {kind} {namespace}/{name}; its operator recreates them"
            ),
            Operation::ScaleAddon {
                namespace,
                name,
                replicas,
                spread,
                via_helm,
            } => {
                let s = spread
                    .as_deref()
                    .map(|s| format!(", spread over {s}"))
                    .unwrap_or_default();
                let via = if *via_helm {
                    " via HelmChartConfig"
                } else {
                    ""
                };
                format!("set {namespace}/{name} to {replicas} replicas{s}{via}")
            }
            _ => unreachable!("not a workload change: {self:?}"),
        }
    }
}

/// ` VERSION` of a join, or nothing when the version is not pinned.
fn version_word(version: &Option<String>) -> String {
    version
        .as_deref()
        .map(|v| format!(" {v}"))
        .unwrap_or_default()
}

mod hex_id {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{id:x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16).map_err(serde::de::Error::custom)
    }
}
