//! Plan data types: addresses, actions, operations, steps, refusals.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::plan::{Operation, Quorum, QuorumCheck};

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
    /// Issue 17: the `k3splan check` report of the same observation, when the topology has a
    /// `check` block: its findings are shown beside the plan, and the ones k3splan can fix
    /// safely become steps (phase `check_fixes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<crate::check::Report>,
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
    /// A stale etcd data directory would make the new member dial old peers.
    StaleEtcdData,
    /// The `server:` join URL names a dead or removed server.
    JoinUrlNamesUnavailableServer,
    /// keepalived settings differ from the declaration.
    KeepalivedDrift,
    /// A local volume is on a node being removed; the storage policy allows a rebind.
    VolumeOnLostNode,
    /// Other nodes are cordoned so that rebound volumes land on the intended node.
    CordonForRebind,
    UncordonAfterRebind,
    /// An earlier, interrupted apply cordoned the node and did not uncordon it.
    UncordonLeftByInterruptedApply,
    /// Add-on replicas/spread differ from the declaration.
    AddonDrift,
    /// A declared add-on is one k3s packages: without `NAME.yaml.skip` on a server, k3s
    /// re-applies its manifest at that server's next start and undoes the declaration.
    PackagedAddonSkip,
    /// A learner has not been promoted yet.
    LearnerPending,
    /// Snapshot before the first destructive step (rule 4, etcd snapshot first).
    SnapshotBeforeDestroy,
    /// Verification after the last step (rule 5, verification after apply).
    VerifyAfterApply,
    /// The declared k3s version differs from the installed one (issue 15).
    UpgradeK3sVersion,
    /// etcd quorum is lost and the operator asked for a recovery (`--recover`, issue 16).
    QuorumLossRecovery,
    /// `k3splan check` found something this step fixes (issue 17).
    CheckFinding,
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
            ActionReason::PackagedAddonSkip => "packaged_addon_skip",
            ActionReason::LearnerPending => "learner_pending",
            ActionReason::SnapshotBeforeDestroy => "snapshot_before_destroy",
            ActionReason::VerifyAfterApply => "verify_after_apply",
            ActionReason::UpgradeK3sVersion => "upgrade_k3s_version",
            ActionReason::QuorumLossRecovery => "quorum_loss_recovery",
            ActionReason::CheckFinding => "check_finding",
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
    /// Issue 15: how long the steps should take, from the durations earlier applies
    /// recorded in the state ([`crate::plan::estimate`]); `None` when no earlier apply
    /// recorded any (set by the caller after planning: the planner does not see the state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<crate::plan::estimate::Estimate>,
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
