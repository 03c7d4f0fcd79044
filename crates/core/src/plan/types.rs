//! Plan data types: addresses, actions, operations, steps, refusals.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Options that change what the planner may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOptions {
    /// `--allow-unreachable NODE`: nodes whose destruction may be planned although a fact
    /// about them is unknown (their host did not answer while another source says they
    /// are alive). Steps that need the host (uninstall) are then skipped.
    pub allow_unreachable: BTreeSet<String>,
    /// `-replace=node.NAME`: nodes rebuilt by this plan only (drained, deleted, member
    /// removed, k3s uninstalled, joined again). One-shot: the request lives on the command
    /// line, in the saved plan and in the apply journal, never in the topology (issue 13).
    #[serde(default)]
    pub replace: BTreeSet<String>,
    /// Nodes that an earlier apply cordoned and did not uncordon (recorded in the state
    /// before the cordon was made): an interrupted apply's cordons are undone by the next
    /// plan; a cordon not in this set is someone else's and is only reported as drift.
    #[serde(default)]
    pub cordoned_by_k3splan: BTreeSet<String>,
    /// How long a lost node's Node must have been NotReady before a PVC pinned to it may be
    /// deleted (`--rebind-min-not-ready`); `None` = [`DEFAULT_REBIND_MIN_NOT_READY_SECS`].
    #[serde(default)]
    pub rebind_min_not_ready_secs: Option<u64>,
}

/// Default NotReady age (seconds) a node needs before its volumes are rebound: the 300 s
/// after which Kubernetes' taint-eviction controller evicts the pods of an unreachable node.
/// A kubelet restart or a network blip turns a Node NotReady within ~50 s.
pub const DEFAULT_REBIND_MIN_NOT_READY_SECS: u64 = 300;

/// What the plan found about a lost node, carried by the rebind operations so that the
/// provider's last guard before deleting a PVC rests on the planner's evidence that the host
/// is gone, and not on "the Node is not Ready" alone (issue 13).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossEvidence {
    /// This plan uninstalls k3s on the node's host (it left the configuration or is
    /// replaced) before the rebind.
    #[serde(default)]
    pub uninstalled_by_plan: bool,
    /// The host answered over SSH and k3s is not installed there (uninstalled earlier, or the
    /// host was rebuilt): no kubelet runs there and k3s's local volumes went with it.
    #[serde(default)]
    pub k3s_absent: bool,
    /// The host did not answer over SSH at plan time. (Facts, not reasons: the plan's
    /// identity must not change with the wording of a timeout.)
    #[serde(default)]
    pub host_unreachable: bool,
    /// The node's etcd member was unhealthy at plan time, or none was at its address.
    #[serde(default)]
    pub member_dead: bool,
    /// `lastTransitionTime` of the Node's Ready condition when it was not Ready at plan
    /// time (RFC 3339); checked when the Node object is gone at apply time.
    #[serde(default)]
    pub not_ready_since: Option<String>,
    /// The NotReady age the provider demands, in seconds.
    #[serde(default = "default_min_not_ready")]
    pub min_not_ready_secs: u64,
}

fn default_min_not_ready() -> u64 {
    DEFAULT_REBIND_MIN_NOT_READY_SECS
}

impl LossEvidence {
    /// The evidence suffices to call the host gone: k3s uninstalled by this plan, or the
    /// host answering without k3s, or the host unreachable and its etcd member dead.
    pub fn host_gone(&self) -> bool {
        self.uninstalled_by_plan || self.k3s_absent || (self.host_unreachable && self.member_dead)
    }
}

/// The target of a step, rendered like a Terraform address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Address {
    /// `node.NAME`: the Kubernetes node and the k3s install on its host.
    Node { name: String },
    /// `etcd_member.NODE`: the etcd member of a node (or the member name when no node
    /// matches its peer address).
    EtcdMember { name: String },
    /// `host_file.NODE:/path`.
    HostFile { node: String, path: String },
    /// `pvc.NAMESPACE/NAME`.
    Pvc { namespace: String, name: String },
    /// `workload.NAMESPACE/KIND/NAME`.
    Workload {
        namespace: String,
        kind: String,
        name: String,
    },
    /// `addon.NAME`.
    Addon { name: String },
    /// `etcd_snapshot`.
    EtcdSnapshot,
    /// `verify`.
    Verify,
}

impl Address {
    pub fn node(n: &str) -> Self {
        Address::Node { name: n.into() }
    }
    pub fn member(n: &str) -> Self {
        Address::EtcdMember { name: n.into() }
    }
    pub fn host_file(node: &str, path: &str) -> Self {
        Address::HostFile {
            node: node.into(),
            path: path.into(),
        }
    }
    /// Resource type as in the JSON `type` field.
    pub fn type_name(&self) -> &'static str {
        match self {
            Address::Node { .. } => "node",
            Address::EtcdMember { .. } => "etcd_member",
            Address::HostFile { .. } => "host_file",
            Address::Pvc { .. } => "pvc",
            Address::Workload { .. } => "workload",
            Address::Addon { .. } => "addon",
            Address::EtcdSnapshot => "etcd_snapshot",
            Address::Verify => "verify",
        }
    }
    /// Resource name as in the JSON `name` field (empty for singletons).
    pub fn name(&self) -> String {
        match self {
            Address::Node { name } | Address::EtcdMember { name } | Address::Addon { name } => {
                name.clone()
            }
            Address::HostFile { node, path } => format!("{node}:{path}"),
            Address::Pvc { namespace, name } => format!("{namespace}/{name}"),
            Address::Workload {
                namespace,
                kind,
                name,
            } => format!("{namespace}/{kind}/{name}"),
            Address::EtcdSnapshot | Address::Verify => String::new(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.name();
        if n.is_empty() {
            f.write_str(self.type_name())
        } else {
            write!(f, "{}.{}", self.type_name(), n)
        }
    }
}

/// What a step does to its target, as in Terraform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Delete,
    /// Delete then create (`-/+`).
    Replace,
    /// A read-only action or check (snapshot, verification, waiting).
    Read,
}

impl Action {
    /// The legend symbol: `+`, `~`, `-`, `-/+`, `<=`.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
            Action::Replace => "-/+",
            Action::Read => "<=",
        }
    }
    /// Deletes or replaces something.
    pub fn is_destructive(self) -> bool {
        matches!(self, Action::Delete | Action::Replace)
    }
    /// Terraform's `change.actions` list.
    pub fn json_actions(self) -> &'static [&'static str] {
        match self {
            Action::Create => &["create"],
            Action::Update => &["update"],
            Action::Delete => &["delete"],
            Action::Replace => &["delete", "create"],
            Action::Read => &["read"],
        }
    }
    /// "will be created" etc.
    pub fn verb(self) -> &'static str {
        match self {
            Action::Create => "will be created",
            Action::Update => "will be updated in-place",
            Action::Delete => "will be destroyed",
            Action::Replace => "will be replaced",
            Action::Read => "will be read",
        }
    }
}

/// Why a step is planned (Terraform's `action_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionReason {
    /// The node is not in the configuration any more.
    DeleteBecauseNoResourceConfig,
    /// The node's replacement was requested (`-replace=node.NAME`).
    ReplaceByRequest,
    /// Declared but not present.
    CreateBecauseDeclared,
    /// The member's peer address matches no declared node.
    DeleteBecauseNoMatchingNode,
    /// A stale etcd data directory would make the new member dial old peers (seed 002).
    StaleEtcdData,
    /// The `server:` join URL names a dead or removed server (seed 001).
    JoinUrlNamesUnavailableServer,
    /// keepalived settings differ from the declaration (seed 004).
    KeepalivedDrift,
    /// A local volume is on a node being removed; the storage policy allows a rebind.
    VolumeOnLostNode,
    /// Other nodes are cordoned so that rebound volumes land on the intended node.
    CordonForRebind,
    UncordonAfterRebind,
    /// An earlier, interrupted apply cordoned the node and did not uncordon it.
    UncordonLeftByInterruptedApply,
    /// Add-on replicas/spread differ from the declaration (seed 003).
    AddonDrift,
    /// A learner has not been promoted yet.
    LearnerPending,
    /// Snapshot before the first destructive step (rule 4).
    SnapshotBeforeDestroy,
    /// Verification after the last step (rule 5).
    VerifyAfterApply,
}

impl ActionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionReason::DeleteBecauseNoResourceConfig => "delete_because_no_resource_config",
            ActionReason::ReplaceByRequest => "replace_by_request",
            ActionReason::CreateBecauseDeclared => "create_because_declared",
            ActionReason::DeleteBecauseNoMatchingNode => "delete_because_no_matching_node",
            ActionReason::StaleEtcdData => "stale_etcd_data",
            ActionReason::JoinUrlNamesUnavailableServer => "join_url_names_unavailable_server",
            ActionReason::KeepalivedDrift => "keepalived_drift",
            ActionReason::VolumeOnLostNode => "volume_on_lost_node",
            ActionReason::CordonForRebind => "cordon_for_rebind",
            ActionReason::UncordonAfterRebind => "uncordon_after_rebind",
            ActionReason::UncordonLeftByInterruptedApply => "uncordon_left_by_interrupted_apply",
            ActionReason::AddonDrift => "addon_drift",
            ActionReason::LearnerPending => "learner_pending",
            ActionReason::SnapshotBeforeDestroy => "snapshot_before_destroy",
            ActionReason::VerifyAfterApply => "verify_after_apply",
        }
    }
}

/// A secret substituted into a file at apply time: the plan holds `(sensitive)` in its place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensitiveValue {
    /// The YAML key (`token`) or env name (`KEEPALIVED_PASSWORD`) whose value is secret.
    pub key: String,
    /// Where the apply engine reads the value (`env("K3S_TOKEN")`), safe to print.
    pub source: String,
}

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
    /// Never with `cluster-init` (rule 10).
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
        expect_members: usize,
        expect_nodes: usize,
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
                let v = version
                    .as_deref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default();
                format!(
                    "install k3s{v} on {node} as {what}, joining through {via} (no cluster-init)"
                )
            }
            Operation::JoinAgent { node, via, version } => {
                let v = version
                    .as_deref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default();
                format!("install k3s{v} on {node} as agent, joining through {via}")
            }
            Operation::WaitLearnerPromoted { node } => {
                format!("wait until {node}'s etcd learner is promoted to voter")
            }
            Operation::WaitNodeReady { node } => format!("wait until Node {node} is Ready"),
            Operation::RestartService { node } => {
                format!("restart k3s on {node} and wait until it is healthy again")
            }
            Operation::UninstallK3s { node } => format!("uninstall k3s on {node}"),
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
            Operation::Uncordon { node } => format!("uncordon {node}"),
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
            Operation::Verify {
                expect_members,
                expect_nodes,
            } => format!(
                "verify: {expect_members} etcd members healthy, one leader, equal HashKV at a common revision; {expect_nodes} nodes Ready"
            ),
        }
    }
}

/// etcd quorum at one point of the simulation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quorum {
    pub voters: usize,
    pub healthy_voters: usize,
    pub learners: usize,
    /// floor(voters/2)+1.
    pub needed: usize,
}

impl Quorum {
    pub fn new(voters: usize, healthy_voters: usize, learners: usize) -> Self {
        Quorum {
            voters,
            healthy_voters,
            learners,
            needed: voters / 2 + 1,
        }
    }
    pub fn ok(&self) -> bool {
        self.healthy_voters >= self.needed
    }
    /// How many more voters may fail before quorum is lost.
    pub fn tolerance(&self) -> usize {
        self.healthy_voters.saturating_sub(self.needed)
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} voters healthy (quorum needs {})",
            self.healthy_voters, self.voters, self.needed
        )?;
        if self.learners > 0 {
            let s = if self.learners == 1 { "" } else { "s" };
            write!(f, ", {} learner{s}", self.learners)?;
        }
        Ok(())
    }
}

/// Quorum recorded after a membership step (or during a server restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumCheck {
    /// Which operation of the step (0-based) this was checked at.
    pub operation: usize,
    /// `after` a membership change, or `during` a restart.
    pub when: String,
    pub quorum: Quorum,
}

/// One planned change of one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// 1-based position in the plan.
    pub id: usize,
    pub address: Address,
    pub action: Action,
    pub reason: ActionReason,
    /// Human explanation of the reason, for the heading.
    pub why: String,
    /// Operations, executed in order.
    pub operations: Vec<Operation>,
    /// Relevant attributes before (observed); `null` when creating.
    pub before: Option<serde_json::Value>,
    /// Relevant attributes after (declared); `null` when deleting.
    pub after: Option<serde_json::Value>,
    /// Steps that must be complete first.
    pub depends_on: Vec<usize>,
    /// Quorum checks made by the simulation for this step.
    pub quorum: Vec<QuorumCheck>,
    /// Notes for the operator (skipped operations and why).
    pub notes: Vec<String>,
}

impl Step {
    pub fn is_destructive(&self) -> bool {
        self.action.is_destructive() || self.operations.iter().any(Operation::is_destructive)
    }
}

/// A difference between declared and observed that the plan reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub address: String,
    pub attribute: String,
    pub declared: Option<String>,
    pub observed: Option<String>,
    /// Whether a step of this plan fixes it.
    pub planned: bool,
    pub note: Option<String>,
}

/// An ordered, quorum-checked plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub drift: Vec<Drift>,
    pub warnings: Vec<String>,
    /// Quorum as observed, before any step (`None` when etcd is unknown or empty).
    pub quorum_before: Option<Quorum>,
    /// Declared sources that could not be read. A plan with an unknown that the operator
    /// did not accept (`--allow-unreachable NODE`) is incomplete: it may miss changes, so
    /// `plan` exits 1 and never reports "No changes".
    #[serde(default)]
    pub unknown: Vec<UnknownSource>,
}

/// A declared source the plan could not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownSource {
    /// What could not be read, e.g. `host.server-1`.
    pub address: String,
    /// Why (the provider's error: host, address, command or file).
    pub reason: String,
    /// `unknown` (it may be alive) or `unreachable` (connection refused).
    pub kind: String,
    /// The operator accepted it (`--allow-unreachable NODE`).
    pub accepted: bool,
}

impl Plan {
    /// Unknown sources the operator did not accept: the plan is incomplete.
    pub fn unaccepted_unknowns(&self) -> impl Iterator<Item = &UnknownSource> {
        self.unknown.iter().filter(|u| !u.accepted)
    }
    /// Whether every declared source was read (or its absence accepted).
    pub fn is_complete(&self) -> bool {
        self.unaccepted_unknowns().next().is_none()
    }
}

/// Counts for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub remove: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
    /// Counts of distinct targets per action: create → add, update → change, delete →
    /// remove, replace → add + remove; reads are not counted. A target changed by several
    /// steps with the same action (cordon, then uncordon) counts once.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        let mut seen = std::collections::BTreeSet::new();
        for st in &self.steps {
            if !seen.insert((st.address.clone(), st.action as u8)) {
                continue;
            }
            match st.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Delete => s.remove += 1,
                Action::Replace => {
                    s.add += 1;
                    s.remove += 1
                }
                Action::Read => {}
            }
        }
        s
    }
    /// The lowest quorum recorded by the simulation.
    pub fn lowest_quorum(&self) -> Option<&Quorum> {
        self.steps
            .iter()
            .flat_map(|s| s.quorum.iter().map(|q| &q.quorum))
            .min_by_key(|q| (q.tolerance(), q.voters))
    }
}

/// The DESIGN safety rules the planner enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// 1: never destroy from unknown.
    NeverDestroyFromUnknown,
    /// 2: healthy voters ≥ floor(voters/2)+1 after every step.
    Quorum,
    /// 3: remove failed before add; one change at a time; learners promoted first.
    OneMembershipChange,
    /// 4: snapshot before the first destructive step.
    SnapshotFirst,
    /// 6: never delete a PVC bound to a healthy node.
    PvcOnHealthyNode,
    /// 9: a restart counts as a member removal.
    RestartCountsAsRemoval,
    /// 10: never join with cluster-init.
    NoClusterInitOnJoin,
    /// A step needs a source that is unknown (the API, etcd) to be planned at all.
    SourceUnknown,
}

impl Rule {
    /// DESIGN rule number (0 for rules not numbered there).
    pub fn number(self) -> u8 {
        match self {
            Rule::NeverDestroyFromUnknown => 1,
            Rule::Quorum => 2,
            Rule::OneMembershipChange => 3,
            Rule::SnapshotFirst => 4,
            Rule::PvcOnHealthyNode => 6,
            Rule::RestartCountsAsRemoval => 9,
            Rule::NoClusterInitOnJoin => 10,
            Rule::SourceUnknown => 0,
        }
    }
    pub fn title(self) -> &'static str {
        match self {
            Rule::NeverDestroyFromUnknown => "never destroy from an unknown fact",
            Rule::Quorum => "etcd quorum must hold after every step",
            Rule::OneMembershipChange => {
                "remove failed members first, one membership change at a time, learners promoted before the next"
            }
            Rule::SnapshotFirst => "etcd snapshot before the first destructive step",
            Rule::PvcOnHealthyNode => "no PVC bound to a healthy node is deleted",
            Rule::RestartCountsAsRemoval => {
                "restarting a healthy server counts as removing its member"
            }
            Rule::NoClusterInitOnJoin => "a joining server never uses cluster-init",
            Rule::SourceUnknown => "a source needed for this change is unknown",
        }
    }
    /// `rule 2 (etcd quorum must hold after every step)`.
    pub fn label(self) -> String {
        match self.number() {
            0 => self.title().to_string(),
            n => format!("rule {n} ({})", self.title()),
        }
    }
}

/// One reason a plan is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub rule: Rule,
    /// The step (`#3 etcd_member.x: remove etcd member …`) or target concerned.
    pub step: Option<String>,
    pub message: String,
    /// What the operator can do.
    pub advice: Option<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.step {
            write!(f, "{s}: ")?;
        }
        write!(f, "{} [{}]", self.message, self.rule.label())?;
        if let Some(a) = &self.advice {
            write!(f, "; {a}")?;
        }
        Ok(())
    }
}

/// The planner refuses: no plan is safe to show as applicable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub struct Refusal {
    pub violations: Vec<Violation>,
    /// Quorum as observed, when known.
    pub quorum_before: Option<Quorum>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plan refused:")?;
        for v in &self.violations {
            write!(f, "\n  - {v}")?;
        }
        Ok(())
    }
}

impl Refusal {
    pub fn one(rule: Rule, step: Option<String>, message: String, advice: Option<String>) -> Self {
        Refusal {
            violations: vec![Violation {
                rule,
                step,
                message,
                advice,
            }],
            quorum_before: None,
        }
    }
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
