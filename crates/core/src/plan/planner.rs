//! The planner proper: phases in the order of DESIGN's seed 004 paragraph.
//!
//! 1. etcd snapshot (if anything is destructive);
//! 2. failed members and their nodes removed (remove before add);
//! 3. nodes whose replacement is requested (`-replace=node.NAME`) removed;
//! 4. new servers joined one at a time (stale data dir moved aside, config written, learner
//!    promoted), then control-plane-only servers and agents;
//! 5. healthy nodes that left the configuration removed;
//! 6. join URLs naming dead or removed servers rewritten, services restarted one at a time;
//! 7. keepalived manifests (backups first, the primary last: the VIP moves at the end);
//! 8. volumes of lost nodes rebound with the other nodes cordoned, then uncordoned; cordons
//!    an interrupted apply left (recorded in the state) undone;
//! 9. add-on replicas/spread;
//! 10. verification.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use serde_json::json;

use crate::config::{Node, OnNodeLoss, Topology, WorkloadKind};
use crate::observed::{
    EtcdMember, EtcdState, Fact, HostState, HostUnknown, KubeNode, KubeState, Observed, Pvc,
    url_host,
};
use crate::plan::files::{
    self, K3S_CONFIG_PATH, keepalived_matches, keepalived_want, mask_secrets, rewrite_keepalived,
    rewrite_server_url,
};
use crate::plan::safety::{self, Sim, SimMember};
use crate::plan::{
    Action, ActionReason, Address, DEFAULT_REBIND_MIN_NOT_READY_SECS, Drift, LossEvidence,
    Operation, Plan, PlanOptions, Refusal, Rule, Step, UnknownSource, Violation,
};

/// Compute the plan that takes the cluster from `observed` to `desired`.
///
/// Returns a [`Refusal`] (every violation found, each naming the step or target and the
/// rule) when no safe plan exists: quorum already lost (with the recovery to perform),
/// a destruction that would rest on an unknown fact, a step the quorum simulation rejects,
/// or a change that needs a source that is unknown.
pub fn plan(desired: &Topology, observed: &Observed, opts: &PlanOptions) -> Result<Plan, Refusal> {
    Planner::new(desired, observed, opts).run()
}

/// What is known about one node across the three sources.
#[derive(Debug, Clone)]
struct NodeView<'a> {
    name: String,
    declared: Option<&'a Node>,
    kube: Option<&'a KubeNode>,
    member: Option<&'a EtcdMember>,
    host: Fact<&'a HostState>,
    address: Option<IpAddr>,
}

impl NodeView<'_> {
    fn host_reason(&self) -> Option<&str> {
        self.host.unknown_reason()
    }
}

struct Planner<'a> {
    t: &'a Topology,
    o: &'a Observed,
    opts: &'a PlanOptions,
    kube: Option<&'a KubeState>,
    etcd: Option<&'a EtcdState>,
    views: BTreeMap<String, NodeView<'a>>,
    /// Members matching no node, by member name.
    orphans: Vec<&'a EtcdMember>,
    steps: Vec<Step>,
    drift: Vec<Drift>,
    warnings: Vec<String>,
    violations: Vec<Violation>,
    /// Nodes whose Node object this plan deletes (removed or replaced).
    lost: BTreeSet<String>,
    /// Join step id per node joined by this plan.
    joined: BTreeMap<String, usize>,
    /// Nodes whose removal was refused (their join is not planned either).
    refused: BTreeSet<String>,
    /// Nodes this plan uncordons.
    uncordoned: BTreeSet<String>,
    /// Joining servers whose old keepalived manifest is rewritten before k3s starts.
    keepalived_before_start: BTreeSet<String>,
    sim: Sim,
}

fn is_healthy_member(m: Option<&EtcdMember>) -> bool {
    m.is_some_and(|m| m.is_healthy() && !m.is_learner)
}

impl<'a> Planner<'a> {
    /// Neither declared nor a Node object (views hold every declared and every Node name).
    fn gone(&self, name: &str) -> bool {
        self.views
            .get(name)
            .is_none_or(|v| v.declared.is_none() && v.kube.is_none())
    }

    fn is_declared(&self, name: &str) -> bool {
        self.views.get(name).is_some_and(|v| v.declared.is_some())
    }

    /// Whether this plan is asked to rebuild the declared node `name` (`-replace`).
    fn replacing(&self, name: &str) -> bool {
        self.opts.replace.contains(name)
            || self
                .views
                .get(name)
                .is_some_and(|v| v.declared.is_some_and(|d| d.replace))
    }

    fn new(t: &'a Topology, o: &'a Observed, opts: &'a PlanOptions) -> Self {
        let kube = o.kube.known();
        let etcd = o.etcd.known();
        let mut views: BTreeMap<String, NodeView<'a>> = BTreeMap::new();
        // Name lookups through maps: `Topology::node` and `KubeState::node` scan their
        // lists, which made this loop quadratic in the node count. First entry wins, as
        // with `find`.
        let mut declared: HashMap<&str, &'a Node> = HashMap::new();
        for n in &t.nodes {
            declared.entry(n.name.as_str()).or_insert(n);
        }
        let mut kube_nodes: HashMap<&str, &'a KubeNode> = HashMap::new();
        for n in kube.map(|k| k.nodes.as_slice()).unwrap_or_default() {
            kube_nodes.entry(n.name.as_str()).or_insert(n);
        }
        let mut add = |name: &str| {
            views.entry(name.to_string()).or_insert_with(|| NodeView {
                name: name.to_string(),
                declared: declared.get(name).copied(),
                kube: kube_nodes.get(name).copied(),
                member: None,
                host: o.host(name),
                address: None,
            });
        };
        for n in &t.nodes {
            add(&n.name);
        }
        if let Some(k) = kube {
            for n in &k.nodes {
                add(&n.name);
            }
        }
        for name in o.hosts.keys() {
            add(name);
        }
        // Addresses: declared, else the Node's InternalIP, else where SSH reached it.
        for v in views.values_mut() {
            v.address = v
                .declared
                .map(|d| d.address)
                .or_else(|| v.kube.and_then(|k| k.internal_ip))
                .or_else(|| v.host.known().and_then(|h| h.address));
        }
        // Rule 11: members matched to nodes by peer address.
        let mut orphans = Vec::new();
        if let Some(e) = etcd {
            for m in &e.members {
                let addr = m.peer_address();
                let hit = views
                    .values_mut()
                    .find(|v| v.address.is_some() && v.address == addr && v.member.is_none());
                match hit {
                    Some(v) => v.member = Some(m),
                    None => orphans.push(m),
                }
            }
        }
        let sim = Sim::new(
            etcd.map(|e| {
                e.members
                    .iter()
                    .map(|m| SimMember {
                        id: m.id,
                        node: views
                            .values()
                            .find(|v| v.member.is_some_and(|x| x.id == m.id))
                            .map(|v| v.name.clone()),
                        voter: !m.is_learner,
                        healthy: m.is_healthy(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        );
        Planner {
            t,
            o,
            opts,
            kube,
            etcd,
            views,
            orphans,
            steps: Vec::new(),
            drift: Vec::new(),
            warnings: Vec::new(),
            violations: Vec::new(),
            lost: BTreeSet::new(),
            joined: BTreeMap::new(),
            refused: BTreeSet::new(),
            uncordoned: BTreeSet::new(),
            keepalived_before_start: BTreeSet::new(),
            sim,
        }
    }

    fn refuse(
        &mut self,
        rule: Rule,
        step: impl Into<String>,
        message: String,
        advice: Option<String>,
    ) {
        self.violations.push(Violation {
            rule,
            step: Some(step.into()),
            message,
            advice,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        address: Address,
        action: Action,
        reason: ActionReason,
        why: String,
        operations: Vec<Operation>,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> usize {
        let id = self.steps.len() + 1;
        // Membership simulation as we go, so later decisions (restarts) see the state.
        for op in &operations {
            let _ = self.sim.apply(op);
        }
        self.steps.push(Step {
            id,
            address,
            action,
            reason,
            why,
            operations,
            before,
            after,
            depends_on: if id > 1 { vec![id - 1] } else { vec![] },
            quorum: Vec::new(),
            notes: Vec::new(),
        });
        id
    }

    fn note(&mut self, id: usize, note: String) {
        self.steps[id - 1].notes.push(note);
    }

    fn run(mut self) -> Result<Plan, Refusal> {
        let quorum_before = self
            .etcd
            .filter(|e| !e.members.is_empty())
            .map(|_| self.sim.quorum());
        // Quorum already lost: nothing can succeed; say what recovery is needed.
        if let Some(q) = &quorum_before
            && !q.ok()
        {
            return Err(self.quorum_lost_refusal(q.clone()));
        }
        let start = self.sim.clone();

        let (removed, replaced) = self.classify();
        let (failed_removed, healthy_removed): (Vec<_>, Vec<_>) =
            removed.into_iter().partition(|n| self.is_failed(n));
        let mut orphans = std::mem::take(&mut self.orphans);
        orphans.sort_by_key(|m| (m.is_healthy(), m.name.clone()));

        // A pending learner is promoted before any other membership change (rule 3).
        self.pending_learners();
        // 2–3. learners of removed or replaced nodes (removing one changes no quorum and
        // unblocks the next change), then failed members, then replaced nodes, failed first
        // (rule 3: remove before add).
        let mut replaced = replaced;
        replaced.sort_by_key(|n| !self.is_failed(n));
        let mut removals: Vec<(String, ActionReason)> = failed_removed
            .iter()
            .map(|n| (n.clone(), ActionReason::DeleteBecauseNoResourceConfig))
            .chain(
                replaced
                    .iter()
                    .map(|n| (n.clone(), ActionReason::ReplaceByRequest)),
            )
            .collect();
        removals.sort_by_key(|(n, _)| !self.views[n].member.is_some_and(|m| m.is_learner));
        for m in orphans.iter().filter(|m| m.is_learner) {
            self.remove_orphan(m);
        }
        for m in orphans.iter().filter(|m| !m.is_healthy() && !m.is_learner) {
            self.remove_orphan(m);
        }
        for (n, reason) in &removals {
            self.remove_node(n, *reason);
        }
        // 4. joins.
        self.joins(&replaced);
        // 5. healthy removals.
        for m in orphans.iter().filter(|m| m.is_healthy() && !m.is_learner) {
            self.remove_orphan(m);
        }
        for n in &healthy_removed {
            self.remove_node(n, ActionReason::DeleteBecauseNoResourceConfig);
        }
        // 6–9.
        self.join_urls();
        self.keepalived();
        self.rebind();
        self.leftover_cordons();
        self.addons();
        self.unplanned_drift();
        self.planned_drift();
        let pinned_url = self.steps.iter().any(|s| {
            s.operations.iter().any(|op| {
                matches!(
                    op,
                    Operation::JoinServer { .. } | Operation::JoinAgent { .. }
                )
            }) || s.reason == ActionReason::JoinUrlNamesUnavailableServer
        });
        if pinned_url && self.t.cluster.api_endpoint.is_none() {
            self.warnings.push(
                "no cluster.api_endpoint is declared: join URLs name a single server, and a node may not start while that server is down (seed 001); declare a VIP or load balancer".into(),
            );
        }

        // 1 and 10: snapshot and verification around the changes.
        let destructive = self.steps.iter().any(Step::is_destructive);
        let snapshot_required = destructive && self.t.cluster.etcd.snapshot_before_apply;
        if destructive && !self.t.cluster.etcd.snapshot_before_apply {
            self.warnings.push(
                "snapshot_before_apply = false: no etcd snapshot is taken before the destructive steps"
                    .into(),
            );
        }
        if snapshot_required {
            if self.etcd.is_none_or(|e| e.members.is_empty()) {
                self.refuse(
                    Rule::SnapshotFirst,
                    "etcd_snapshot",
                    format!(
                        "cannot take an etcd snapshot before the destructive steps: etcd is {}",
                        self.o.etcd.unknown_reason().map(|r| format!("unknown ({r})")).unwrap_or("empty".into())
                    ),
                    Some("make etcd reachable, or set snapshot_before_apply = false to proceed without".into()),
                );
            }
            let node = self.snapshot_node();
            self.steps.insert(
                0,
                Step {
                    id: 0,
                    address: Address::EtcdSnapshot,
                    action: Action::Read,
                    reason: ActionReason::SnapshotBeforeDestroy,
                    why: "destructive steps follow; the snapshot's path is recorded in the state"
                        .into(),
                    operations: vec![Operation::Snapshot { node }],
                    before: None,
                    after: None,
                    depends_on: vec![],
                    quorum: vec![],
                    notes: vec![],
                },
            );
        }
        let touches_cluster = self
            .steps
            .iter()
            .any(|s| !matches!(s.address, Address::Addon { .. } | Address::EtcdSnapshot));
        if touches_cluster {
            let expect_members = self.t.etcd_nodes().count();
            self.steps.push(Step {
                id: 0,
                address: Address::Verify,
                action: Action::Read,
                reason: ActionReason::VerifyAfterApply,
                why: "the plan changed the cluster; this checks the result".into(),
                operations: vec![Operation::Verify {
                    expect_members,
                    expect_nodes: self.t.nodes.len(),
                }],
                before: None,
                after: None,
                depends_on: vec![],
                quorum: vec![],
                notes: vec![],
            });
        }
        // Renumber; dependencies follow the order (each step after the previous one), plus
        // the explicit ones recorded while planning (shifted if a snapshot was inserted).
        let shift = usize::from(snapshot_required);
        let n = self.steps.len();
        for (i, s) in self.steps.iter_mut().enumerate() {
            s.id = i + 1;
            let mut deps: BTreeSet<usize> = s
                .depends_on
                .iter()
                .map(|d| d + shift)
                .filter(|d| *d <= i)
                .collect();
            if i > 0 {
                deps.insert(i);
            }
            if i + 1 == n && matches!(s.address, Address::Verify) {
                deps = BTreeSet::from([i]);
            }
            s.depends_on = deps.into_iter().collect();
        }
        if !self.violations.is_empty() {
            return Err(Refusal {
                violations: self.violations,
                quorum_before,
            });
        }
        let mut start = start;
        if let Some(k) = self.kube {
            start.gone_nodes = k
                .pvcs
                .iter()
                .filter_map(|p| p.bound_node.clone())
                .filter(|n| self.gone(n))
                .collect();
        }
        safety::simulate(&start, &mut self.steps, snapshot_required)?;
        let unknown = self.unknown_sources();
        Ok(Plan {
            unknown,
            steps: self.steps,
            drift: self.drift,
            warnings: self.warnings,
            quorum_before,
        })
    }

    fn quorum_lost_refusal(&self, q: crate::plan::Quorum) -> Refusal {
        let e = self.etcd.expect("etcd known");
        let down: Vec<String> = e
            .members
            .iter()
            .filter(|m| !m.is_learner && !m.is_healthy())
            .map(|m| format!("{} ({})", self.member_label(m), m.health.describe()))
            .collect();
        let up: Vec<String> = e
            .members
            .iter()
            .filter(|m| !m.is_learner && m.is_healthy())
            .map(|m| self.member_label(m))
            .collect();
        let survivor = up.first().cloned().unwrap_or_else(|| "one server".into());
        Refusal {
            violations: vec![Violation {
                rule: Rule::Quorum,
                step: Some("etcd".into()),
                message: format!(
                    "etcd quorum is already lost: {q}; members down: {}. No step can succeed without quorum",
                    down.join(", ")
                ),
                advice: Some(format!(
                    "recover first: if a down member's data is intact, start k3s on it again and re-run plan; \
                     otherwise, on {survivor} stop k3s and run `k3s server --cluster-reset` (or \
                     `k3s server --cluster-reset --cluster-reset-restore-path=<snapshot>` to restore a snapshot), \
                     start it, move the other servers' <data-dir>/server/db/etcd aside and let them rejoin; then re-run plan"
                )),
            }],
            quorum_before: Some(q),
        }
    }

    fn member_label(&self, m: &EtcdMember) -> String {
        match self
            .views
            .values()
            .find(|v| v.member.is_some_and(|x| x.id == m.id))
        {
            Some(v) => format!("{} (member {})", v.name, m.name),
            None => format!("member {}", m.name),
        }
    }

    /// Alive by any source: Node Ready, member healthy, or k3s active on a reachable host.
    fn is_alive(&self, name: &str) -> bool {
        let v = &self.views[name];
        v.kube.is_some_and(|k| k.ready)
            || is_healthy_member(v.member)
            || v.host
                .known()
                .is_some_and(|h| h.k3s.as_ref().is_some_and(|k| k.service_active))
    }

    /// Failed: its etcd member is not a healthy voter; without a member, no source says it
    /// is alive.
    fn is_failed(&self, name: &str) -> bool {
        match self.views[name].member {
            Some(m) => !m.is_healthy() || m.is_learner,
            None => !self.is_alive(name),
        }
    }

    /// Present in the cluster: a Node object, an etcd member, or an active k3s.
    fn is_present(&self, name: &str) -> bool {
        let v = &self.views[name];
        v.kube.is_some()
            || v.member.is_some()
            || v.host
                .known()
                .is_some_and(|h| h.k3s.as_ref().is_some_and(|k| k.service_active))
    }

    /// (removed from the configuration, marked for replacement)
    fn classify(&mut self) -> (Vec<String>, Vec<String>) {
        let mut removed = Vec::new();
        let mut replaced = Vec::new();
        let names: Vec<String> = self.views.keys().cloned().collect();
        for n in names {
            let v = &self.views[&n];
            match v.declared {
                None if v.kube.is_some() || v.member.is_some() => removed.push(n),
                None => {}
                Some(_) if self.replacing(&n) && self.is_present(&n) => replaced.push(n),
                Some(_) if self.replacing(&n) => self.warnings.push(format!(
                    "node.{n}: its replacement was requested, but it is not in the cluster: it is joined as a new node"
                )),
                Some(_) => {}
            }
        }
        // Declaration order for replaced nodes.
        replaced.sort_by_key(|n| self.t.nodes.iter().position(|d| &d.name == n));
        (removed, replaced)
    }

    /// Rule 1 gate for destroying node `n`: false (and a violation recorded) when its host
    /// is unreachable while another source says it is alive, unless allowed by the operator.
    fn destruction_allowed(&mut self, n: &str, addr: &str) -> bool {
        let v = self.views[n].clone();
        let Some(reason) = v.host_reason() else {
            return true;
        };
        // A host that did not answer (or whose credentials or host key failed) says nothing
        // about whether it is alive: it may run k3s behind a partition. Only a refused
        // connection counts as a host that looks down.
        let kind = self.o.host_failure(n).unwrap_or(HostUnknown::Unanswered);
        if kind != HostUnknown::Refused && !self.opts.allow_unreachable.contains(n) {
            self.refuse(
                Rule::NeverDestroyFromUnknown,
                addr.to_string(),
                format!(
                    "host of {n} is unknown ({reason}): {}; an unknown host is not an absent host",
                    unknown_meaning(kind)
                ),
                Some(format!(
                    "check the host and re-run plan, or pass --allow-unreachable {n} to remove it anyway: k3s on it is then not uninstalled, and must be stopped by hand if the host comes back"
                )),
            );
            return false;
        }
        let ready = v.kube.is_some_and(|k| k.ready);
        let healthy = is_healthy_member(v.member);
        let kube_unknown = self.kube.is_none();
        if (ready || healthy || kube_unknown) && !self.opts.allow_unreachable.contains(n) {
            let mut alive = Vec::new();
            if ready {
                alive.push("the Kubernetes API says its Node is Ready".to_string());
            }
            if healthy {
                alive.push("its etcd member is healthy".to_string());
            }
            if kube_unknown {
                alive.push(format!(
                    "the Kubernetes API is unknown ({})",
                    self.o.kube.unknown_reason().unwrap_or_default()
                ));
            }
            self.refuse(
                Rule::NeverDestroyFromUnknown,
                addr.to_string(),
                format!(
                    "host of {n} is unreachable ({reason}) while {}: an unreachable host is not an absent host",
                    alive.join(" and ")
                ),
                Some(format!(
                    "check the host and re-run plan, or pass --allow-unreachable {n} to remove it without uninstalling k3s"
                )),
            );
            return false;
        }
        true
    }

    fn node_before(&self, v: &NodeView) -> serde_json::Value {
        let mut b = json!({});
        if let Some(a) = v.address {
            b["address"] = json!(a.to_string());
        }
        if let Some(k) = v.kube {
            b["ready"] = json!(k.ready);
            b["unschedulable"] = json!(k.unschedulable);
            b["roles"] = json!(k.roles);
            if let Some(ver) = &k.version {
                b["version"] = json!(ver);
            }
        }
        match &v.host {
            Fact::Known(_) => b["host"] = json!("reachable"),
            Fact::Unknown { reason } => {
                let word = self.o.host_word(&v.name);
                b["host"] = json!(format!("{word}: {reason}"))
            }
        }
        b
    }

    fn member_json(m: &EtcdMember) -> serde_json::Value {
        json!({
            "id": format!("{:x}", m.id),
            "name": m.name,
            "peer_urls": m.peer_urls,
            "is_learner": m.is_learner,
            "health": m.health.describe(),
        })
    }

    fn remove_orphan(&mut self, m: &EtcdMember) {
        let addr = Address::member(&m.name);
        if self.etcd.is_none() {
            return;
        }
        if m.is_healthy() && !self.opts.allow_unreachable.contains(&m.name) {
            self.refuse(
                Rule::NeverDestroyFromUnknown,
                addr.to_string(),
                format!(
                    "etcd member {} ({}) is healthy but matches no node by peer address; its host is unknown",
                    m.name,
                    m.peer_urls.join(", ")
                ),
                Some(format!(
                    "declare the node at that address, or pass --allow-unreachable {} to remove the member",
                    m.name
                )),
            );
            return;
        }
        self.push(
            addr,
            Action::Delete,
            ActionReason::DeleteBecauseNoMatchingNode,
            format!(
                "its peer address matches no declared node; member {}",
                m.health.describe()
            ),
            vec![Operation::RemoveEtcdMember {
                id: m.id,
                name: m.name.clone(),
                peer_url: m.peer_urls.first().cloned().unwrap_or_default(),
            }],
            Some(Self::member_json(m)),
            None,
        );
    }

    fn remove_node(&mut self, n: &str, reason: ActionReason) {
        let v = self.views[n].clone();
        let node_addr = Address::node(n);
        let replacing = reason == ActionReason::ReplaceByRequest;
        if replacing && v.host.known().is_none() {
            self.refused.insert(n.to_string());
            self.refuse(
                Rule::SourceUnknown,
                node_addr.to_string(),
                format!(
                    "{n}'s replacement was requested but its host is unreachable ({}): k3s cannot be reinstalled",
                    v.host_reason().unwrap_or_default()
                ),
                Some(format!(
                    "bring the rebuilt host up at {} first, or remove node \"{n}\" from the configuration",
                    v.address.map(|a| a.to_string()).unwrap_or_default()
                )),
            );
            return;
        }
        if !self.destruction_allowed(n, &node_addr.to_string()) {
            self.refused.insert(n.to_string());
            return;
        }
        if v.member.is_some() && self.etcd.is_none() {
            self.refuse(
                Rule::SourceUnknown,
                Address::member(n).to_string(),
                format!(
                    "cannot plan the removal of {n}'s etcd member: etcd is unknown ({})",
                    self.o.etcd.unknown_reason().unwrap_or_default()
                ),
                Some("make the etcd API reachable so the quorum can be simulated".into()),
            );
            return;
        }
        let why_base = if replacing {
            format!("its replacement was requested (-replace=node.{n})")
        } else {
            "it is not in the configuration".to_string()
        };
        // Kubernetes side.
        if let Some(k) = v.kube {
            let skip_eviction = !k.ready || v.host.known().is_none();
            let mut ops = Vec::new();
            if !k.unschedulable {
                ops.push(Operation::Cordon { node: n.into() });
            }
            ops.push(Operation::Drain {
                node: n.into(),
                skip_eviction,
            });
            // The Node object is deleted last (below), once k3s is uninstalled: a kubelet
            // that still runs registers a deleted Node again (issue 13).
            let id = self.push(
                node_addr.clone(),
                if replacing {
                    Action::Replace
                } else {
                    Action::Delete
                },
                reason,
                why_base.clone(),
                ops,
                Some(self.node_before(&v)),
                None,
            );
            if skip_eviction {
                let why = match v.host_reason() {
                    Some(r) => format!("host {}: {r}", self.o.host_word(n)),
                    None => "Node is NotReady".into(),
                };
                self.note(id, format!("eviction skipped ({why}): eviction would wait for a kubelet that does not answer"));
            }
            self.lost.insert(n.to_string());
        } else if self.kube.is_none() {
            self.warnings.push(format!(
                "node.{n}: the Kubernetes API is unknown ({}); its Node object (if any) is not deleted by this plan",
                self.o.kube.unknown_reason().unwrap_or_default()
            ));
        }
        // etcd side.
        if let Some(m) = v.member {
            self.push(
                Address::member(n),
                Action::Delete,
                reason,
                format!("{why_base}; member {}", m.health.describe()),
                vec![Operation::RemoveEtcdMember {
                    id: m.id,
                    name: m.name.clone(),
                    peer_url: m.peer_urls.first().cloned().unwrap_or_default(),
                }],
                Some(Self::member_json(m)),
                None,
            );
        }
        // Host side, then the Node object: drain → uninstall k3s → delete Node. Deleted
        // before the uninstall, the Node is registered again by the kubelet still running
        // there (issue 13).
        let action = if replacing {
            Action::Replace
        } else {
            Action::Delete
        };
        let delete_node = v.kube.map(|_| Operation::DeleteNode { node: n.into() });
        match &v.host {
            Fact::Known(h) if h.k3s.is_some() => {
                let mut ops = vec![Operation::UninstallK3s { node: n.into() }];
                ops.extend(delete_node);
                let id = self.push(
                    node_addr.clone(),
                    action,
                    reason,
                    format!("{why_base}; its host answers"),
                    ops,
                    Some(json!({"k3s": h.k3s.as_ref().and_then(|k| k.version.clone())})),
                    None,
                );
                if replacing {
                    self.note(
                        id,
                        "k3s-uninstall.sh also removes the old etcd data dir".into(),
                    );
                }
            }
            host => {
                if let Fact::Unknown { reason: r } = host
                    && !replacing
                {
                    let word = self.o.host_word(n);
                    self.warnings.push(format!(
                        "node.{n}: host {word} ({r}): k3s will not be uninstalled; if the host comes back, stop k3s there before it tries to rejoin"
                    ));
                }
                if let Some(op) = delete_node {
                    self.push(
                        node_addr.clone(),
                        action,
                        reason,
                        match host {
                            Fact::Known(_) => {
                                format!("{why_base}; k3s is not installed on its host")
                            }
                            Fact::Unknown { .. } => {
                                format!("{why_base}; its host is {}", self.o.host_word(n))
                            }
                        },
                        vec![op],
                        None,
                        None,
                    );
                }
            }
        }
    }

    /// What this plan knows about lost node `n`, for the rebind operations: the provider
    /// deletes a PVC only when it says the host is gone (issue 13).
    fn loss_evidence(&self, n: &str) -> LossEvidence {
        let v = self.views.get(n);
        let uninstalled_by_plan = self.steps.iter().any(|s| {
            s.operations
                .iter()
                .any(|op| matches!(op, Operation::UninstallK3s { node } if node == n))
        });
        let host_unreachable = match v.map(|v| &v.host) {
            Some(Fact::Known(_)) => false,
            Some(Fact::Unknown { .. }) => true,
            None => !self.o.host(n).is_known(),
        };
        let member_dead = match v.and_then(|v| v.member) {
            Some(m) => !m.is_healthy(),
            None => self.etcd.is_some(),
        };
        LossEvidence {
            uninstalled_by_plan,
            k3s_absent: match v.map(|v| &v.host) {
                Some(Fact::Known(h)) => h.k3s.is_none(),
                _ => false,
            },
            host_unreachable,
            member_dead,
            not_ready_since: v
                .and_then(|v| v.kube)
                .filter(|k| !k.ready)
                .and_then(|k| k.ready_since.clone()),
            min_not_ready_secs: self
                .opts
                .rebind_min_not_ready_secs
                .unwrap_or(DEFAULT_REBIND_MIN_NOT_READY_SECS),
        }
    }

    fn pending_learners(&mut self) {
        let pending: Vec<(String, &EtcdMember)> = self
            .views
            .values()
            .filter(|v| v.declared.is_some() && !self.replacing(&v.name))
            .filter_map(|v| {
                v.member
                    .filter(|m| m.is_learner)
                    .map(|m| (v.name.clone(), m))
            })
            .collect();
        for (n, m) in pending {
            self.push(
                Address::member(&n),
                Action::Update,
                ActionReason::LearnerPending,
                "its member is still a learner, promoted before any other membership change".into(),
                vec![Operation::WaitLearnerPromoted { node: n.clone() }],
                Some(Self::member_json(m)),
                Some(json!({"is_learner": false})),
            );
        }
    }

    /// Healthy servers a node can join through, best first: the primary, then etcd nodes.
    fn healthy_servers(&self, exclude: &str) -> Vec<&'a Node> {
        let mut v: Vec<&Node> = self
            .t
            .server_nodes()
            .filter(|d| d.name != exclude && !self.lost.contains(&d.name))
            .filter(|d| {
                let v = &self.views[&d.name];
                let member_ok = !d.roles.runs_etcd() || is_healthy_member(v.member);
                let kube_ok = self.kube.is_none() || v.kube.is_some_and(|k| k.ready);
                member_ok && kube_ok && v.member.is_some() && !self.joined.contains_key(&d.name)
            })
            .collect();
        v.sort_by_key(|d| (!d.primary, !d.roles.runs_etcd()));
        v
    }

    fn join_url(&self, node: &str) -> Option<String> {
        if let Some(e) = &self.t.cluster.api_endpoint {
            return Some(e.clone());
        }
        self.healthy_servers(node)
            .first()
            .map(|d| format!("https://{}:6443", fmt_host(d.address)))
    }

    fn joins(&mut self, replaced: &[String]) {
        let mut todo: Vec<&'a Node> = self
            .t
            .nodes
            .iter()
            .filter(|d| replaced.contains(&d.name) || !self.is_present(&d.name))
            .collect();
        // etcd members first (one at a time), then control-plane-only, then agents.
        todo.sort_by_key(|d| (!d.roles.runs_etcd(), !d.roles.is_server()));
        for d in todo {
            self.join(d, replaced.contains(&d.name));
        }
    }

    fn join(&mut self, d: &'a Node, replacing: bool) {
        let n = d.name.as_str();
        if self.refused.contains(n) {
            return;
        }
        let v = self.views[n].clone();
        let addr = Address::node(n);
        let Some(h) = v.host.known().copied() else {
            if self.kube.is_none() && v.member.is_none() {
                self.warnings.push(format!(
                    "node.{n}: neither the Kubernetes API nor its host answered ({}); whether it exists is unknown, nothing planned",
                    v.host_reason().unwrap_or_default()
                ));
                return;
            }
            self.refuse(
                Rule::SourceUnknown,
                addr.to_string(),
                format!(
                    "cannot install k3s on {n}: its host is unreachable ({})",
                    v.host_reason().unwrap_or_default()
                ),
                Some(format!(
                    "make {} reachable over SSH and re-run plan",
                    d.address
                )),
            );
            return;
        };
        if d.roles.runs_etcd() && self.etcd.is_none() {
            self.refuse(
                Rule::SourceUnknown,
                addr.to_string(),
                format!(
                    "cannot plan {n}'s join: etcd is unknown ({}), the quorum cannot be simulated",
                    self.o.etcd.unknown_reason().unwrap_or_default()
                ),
                None,
            );
            return;
        }
        if self.etcd.is_some_and(|e| e.members.is_empty()) && d.roles.is_server() {
            self.refuse(
                Rule::NoClusterInitOnJoin,
                addr.to_string(),
                format!("no etcd cluster exists for {n} to join; k3splan does not bootstrap a cluster (that needs cluster-init)"),
                Some("install the first server by hand with cluster-init, then re-run plan".into()),
            );
            return;
        }
        let Some(url) = self.join_url(n) else {
            self.refuse(
                Rule::SourceUnknown,
                addr.to_string(),
                format!(
                    "{n} has no healthy server to join through and no api_endpoint is declared"
                ),
                Some("declare cluster.api_endpoint (the VIP) or restore a server first".into()),
            );
            return;
        };
        let action = if replacing {
            Action::Replace
        } else {
            Action::Create
        };
        let reason = if replacing {
            ActionReason::ReplaceByRequest
        } else {
            ActionReason::CreateBecauseDeclared
        };
        if self.t.cluster.token.is_none() {
            self.warnings.push(format!(
                "node.{n}: no cluster token is declared; k3s cannot join without one"
            ));
        }
        // Stale etcd data (seed 002): moved aside before the join.
        let uninstalled = replacing && h.k3s.is_some();
        if d.roles.runs_etcd()
            && !uninstalled
            && let Some(dd) = &h.etcd_data
        {
            let mut why = "an etcd data dir exists on this host, which is not a member: the new member would dial its old peers".to_string();
            if dd.tombstone {
                why.push_str(" (k3s left a tombstone: the member was removed)");
            }
            // Whose data it is: a removed member's own (this cluster) or another cluster's.
            let (origin, evidence) = self.stale_data_origin(&v, dd);
            why.push_str(&match origin {
                Some(true) => {
                    format!(" (it is this cluster's: a removed member's own data; {evidence})")
                }
                Some(false) => format!(" (it belongs to another cluster: {evidence})"),
                None => format!(
                    " (whether it is this cluster's or another one's is unknown: {evidence})"
                ),
            });
            self.push(
                Address::host_file(n, &dd.path),
                Action::Delete,
                ActionReason::StaleEtcdData,
                why,
                vec![Operation::MoveAsideDataDir {
                    node: n.into(),
                    path: dd.path.clone(),
                }],
                Some(json!({
                    "path": dd.path,
                    "member_name": dd.member_name,
                    "cluster_id": dd.cluster_id,
                    "belongs_to_cluster": dd.belongs_to_cluster,
                    "origin": match origin {
                        Some(true) => "this_cluster",
                        Some(false) => "another_cluster",
                        None => "unknown",
                    },
                })),
                None,
            );
        }
        // config.yaml (never cluster-init, rule 10).
        let (after, sensitive) = files::config_yaml_for(self.t, d, &url);
        let host_secrets = h.config.as_ref().map(|c| &c.secrets);
        let after = files::mark_changed_secrets(self.t, &after, &sensitive, host_secrets);
        let before = h.config.as_ref().map(|c| mask_secrets(&c.raw));
        let path = h
            .config
            .as_ref()
            .map(|c| c.path.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| K3S_CONFIG_PATH.to_string());
        if before.as_deref() != Some(after.as_str()) {
            let mut why = format!("the node joins through {url}, without cluster-init");
            if h.config.as_ref().is_some_and(|c| c.cluster_init) {
                why.push_str(" (the old file had cluster-init: starting with it would create a second cluster)");
            }
            self.push(
                Address::host_file(n, &path),
                if before.is_some() {
                    Action::Update
                } else {
                    Action::Create
                },
                reason,
                why,
                vec![Operation::WriteFile {
                    node: n.into(),
                    path: path.clone(),
                    before: before.clone(),
                    after: after.clone(),
                    sensitive,
                }],
                before.as_ref().map(|b| json!({ "content": b })),
                Some(json!({ "content": after })),
            );
        }
        // An old keepalived manifest on the host (a returning ex-primary's says priority 100)
        // is a static pod: k3s would start it with k3s and it could take the VIP. Rewrite it
        // before k3s starts (issue 13).
        if d.roles.is_server()
            && h.keepalived.is_some()
            && let Some(vip) = &self.t.cluster.vip
        {
            self.keepalived_node(d, vip);
            self.keepalived_before_start.insert(n.to_string());
        }
        let mut ops = Vec::new();
        if d.roles.is_server() {
            ops.push(Operation::JoinServer {
                node: n.into(),
                via: url.clone(),
                etcd: d.roles.runs_etcd(),
                control_plane: d.roles.runs_control_plane(),
                version: self.t.cluster.k3s_version.clone(),
            });
            if d.roles.runs_etcd() {
                ops.push(Operation::WaitLearnerPromoted { node: n.into() });
            }
        } else {
            ops.push(Operation::JoinAgent {
                node: n.into(),
                via: url.clone(),
                version: self.t.cluster.k3s_version.clone(),
            });
        }
        ops.push(Operation::WaitNodeReady { node: n.into() });
        let roles: Vec<&str> = d.roles.0.iter().map(|r| r.as_str()).collect();
        let id = self.push(
            addr,
            action,
            reason,
            if replacing {
                format!("its replacement was requested (-replace=node.{n}): it rejoins on the rebuilt host")
            } else {
                "it is declared but not in the cluster".into()
            },
            ops,
            None,
            Some(json!({
                "address": d.address.to_string(),
                "roles": roles,
                "join_url": url,
                "version": self.t.cluster.k3s_version,
            })),
        );
        self.joined.insert(n.to_string(), id);
    }

    /// Whose etcd data a stale data dir on a joining host holds: `Some(true)` this cluster's
    /// (a removed member's own), `Some(false)` another cluster's, `None` unknown; with the
    /// evidence, for the operator. Evidence, strongest first: the cluster ID recorded in it
    /// against the one in the data dirs of the current members; the peers it was created
    /// with (`initial-cluster`) against the current members; the current members' own
    /// `initial-cluster` naming this host's member (it was their peer).
    fn stale_data_origin(
        &self,
        v: &NodeView,
        dd: &crate::observed::EtcdDataDir,
    ) -> (Option<bool>, String) {
        let members: Vec<&EtcdMember> = self
            .etcd
            .map(|e| e.members.iter().collect())
            .unwrap_or_default();
        // Data dirs of hosts whose member is in the cluster now.
        let member_dirs: Vec<(&str, &crate::observed::EtcdDataDir)> = self
            .views
            .values()
            .filter(|w| w.name != v.name && w.member.is_some())
            .filter_map(|w| {
                w.host
                    .known()
                    .and_then(|h| h.etcd_data.as_ref())
                    .map(|d| (w.name.as_str(), d))
            })
            .collect();
        if let Some(id) = &dd.cluster_id
            && let Some(ours) = member_dirs.iter().find_map(|(_, d)| d.cluster_id.as_ref())
        {
            return if id == ours {
                (Some(true), format!("same cluster ID {id}"))
            } else {
                (
                    Some(false),
                    format!("cluster ID {id}; this cluster's is {ours}"),
                )
            };
        }
        let own = v.address;
        let peers = |ic: &str| -> Vec<(String, Option<IpAddr>)> {
            ic.split(',')
                .filter_map(|e| e.split_once('='))
                .map(|(name, url)| {
                    (
                        name.trim().to_string(),
                        url_host(url.trim()).and_then(|h| h.parse().ok()),
                    )
                })
                .collect()
        };
        let created_with: Vec<(String, Option<IpAddr>)> = dd
            .initial_cluster
            .as_deref()
            .map(peers)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, a)| a.is_none() || *a != own)
            .collect();
        let current: Vec<&(String, Option<IpAddr>)> = created_with
            .iter()
            .filter(|(_, a)| a.is_some() && members.iter().any(|m| m.peer_address() == *a))
            .collect();
        if !current.is_empty() {
            let names: Vec<&str> = current.iter().map(|(n, _)| n.as_str()).collect();
            return (
                Some(true),
                format!(
                    "it was created with peers that are members now ({})",
                    names.join(", ")
                ),
            );
        }
        // A current member that was created with this host's member as a peer.
        if let Some((peer, _)) = member_dirs.iter().find(|(_, d)| {
            d.initial_cluster.as_deref().map(peers).is_some_and(|ps| {
                ps.iter().any(|(name, a)| {
                    (own.is_some() && *a == own)
                        || dd.member_name.as_deref().is_some_and(|m| m == name)
                })
            })
        }) {
            return (
                Some(true),
                format!(
                    "member {} at this address was a peer of {peer}'s member when it joined",
                    dd.member_name.as_deref().unwrap_or("(unnamed)")
                ),
            );
        }
        if !created_with.is_empty() && self.etcd.is_some() {
            let names: Vec<&str> = created_with.iter().map(|(n, _)| n.as_str()).collect();
            return (
                Some(false),
                format!(
                    "none of the peers it was created with ({}) is a member of this cluster",
                    names.join(", ")
                ),
            );
        }
        (
            None,
            "no cluster ID could be read and no peer of it is known to this cluster".into(),
        )
    }

    /// A join URL is fine when it names the api_endpoint or a server that is healthy (or
    /// rejoined by this plan).
    fn url_is_usable(&self, url: &str) -> Result<(), String> {
        if let Some(e) = &self.t.cluster.api_endpoint
            && url_host(e) == url_host(url)
        {
            return Ok(());
        }
        let Some(host) = url_host(url) else {
            return Err("it is not a URL".into());
        };
        let Some(v) = self
            .views
            .values()
            .find(|v| v.address.is_some_and(|a| a.to_string() == host))
        else {
            return Err(format!("{host} is no known node"));
        };
        if v.declared.is_none() {
            return Err(format!("{} ({host}) is removed by this plan", v.name));
        }
        if self.joined.contains_key(&v.name) {
            return Ok(());
        }
        if v.declared.is_some_and(|d| !d.roles.is_server()) {
            return Err(format!("{} ({host}) is not a server", v.name));
        }
        let mut down = Vec::new();
        if v.declared.is_some_and(|d| d.roles.runs_etcd()) {
            match v.member {
                Some(m) if !m.is_healthy() => {
                    down.push(format!("etcd member {}", m.health.describe()))
                }
                Some(_) => {}
                None => down.push("no etcd member".to_string()),
            }
        }
        if v.kube.is_some_and(|k| !k.ready) {
            down.push("Node NotReady".to_string());
        }
        if down.is_empty() {
            Ok(())
        } else {
            Err(format!("{} ({host}) is down: {}", v.name, down.join(", ")))
        }
    }

    fn join_urls(&mut self) {
        let mut todo = Vec::new();
        for d in &self.t.nodes {
            if self.joined.contains_key(&d.name) || !self.is_present(&d.name) {
                continue;
            }
            let v = &self.views[&d.name];
            let Some(h) = v.host.known() else { continue };
            let Some(c) = &h.config else { continue };
            let Some(url) = &c.server else { continue };
            if let Err(why) = self.url_is_usable(url) {
                todo.push((d, c, url.clone(), why));
            }
        }
        // Control-plane-only and agents first: their restarts do not touch etcd.
        todo.sort_by_key(|(d, ..)| d.roles.runs_etcd());
        for (d, c, old, why) in todo {
            let Some(new) = self.join_url(&d.name) else {
                self.warnings.push(format!(
                    "host_file.{}:{}: join URL {old} names an unavailable server ({why}) and no healthy server or api_endpoint can replace it",
                    d.name, c.path
                ));
                continue;
            };
            let before = mask_secrets(&c.raw);
            let after = mask_secrets(&rewrite_server_url(&c.raw, &new));
            let restart = Operation::RestartService {
                node: d.name.clone(),
            };
            let can_restart = self.sim.clone().apply(&restart).is_ok();
            let mut ops = vec![Operation::WriteFile {
                node: d.name.clone(),
                path: c.path.clone(),
                before: Some(before.clone()),
                after: after.clone(),
                sensitive: vec![],
            }];
            if can_restart {
                ops.push(restart);
            }
            self.drift.push(Drift {
                address: Address::host_file(&d.name, &c.path).to_string(),
                attribute: "server".into(),
                declared: Some(new.clone()),
                observed: Some(old.clone()),
                planned: true,
                note: Some(why.clone()),
            });
            let id = self.push(
                Address::host_file(&d.name, &c.path),
                Action::Update,
                ActionReason::JoinUrlNamesUnavailableServer,
                format!("its join URL {old} names an unavailable server: {why}"),
                ops,
                Some(json!({ "server": old })),
                Some(json!({ "server": new })),
            );
            if !can_restart {
                let q = self.sim.quorum();
                self.note(
                    id,
                    format!(
                        "k3s is NOT restarted: restarting {} now would leave {}/{} voters healthy (quorum needs {}) [rule 9]; the new URL takes effect at its next start",
                        d.name,
                        q.healthy_voters.saturating_sub(1),
                        q.voters,
                        q.needed
                    ),
                );
            }
        }
    }

    fn keepalived(&mut self) {
        let Some(vip) = &self.t.cluster.vip else {
            return;
        };
        let mut nodes: Vec<&'a Node> = self
            .t
            .server_nodes()
            .filter(|d| self.is_present(&d.name) || self.joined.contains_key(&d.name))
            .collect();
        // Backups first; the primary last, so the VIP moves once the others are set.
        nodes.sort_by_key(|d| self.t.vip_priority(d).unwrap_or(0));
        for d in nodes {
            // Joined by this plan: its manifest was rewritten before k3s started.
            if !self.keepalived_before_start.contains(&d.name) {
                self.keepalived_node(d, vip);
            }
        }
    }

    /// The keepalived step of one server (none when its manifest is as declared).
    fn keepalived_node(&mut self, d: &'a Node, vip: &crate::config::Vip) {
        let Some(w) = keepalived_want(self.t, d) else {
            return;
        };
        let v = &self.views[&d.name];
        let h = match v.host.known() {
            Some(h) => h,
            None => {
                self.warnings.push(format!(
                    "host_file.{}:{}: host unreachable ({}); keepalived not checked",
                    d.name,
                    vip.manifest_path,
                    v.host_reason().unwrap_or_default()
                ));
                return;
            }
        };
        let addr = Address::host_file(&d.name, &vip.manifest_path);
        match &h.keepalived {
            Some(m) if keepalived_matches(m, &w) => {}
            Some(m) => {
                let before = mask_secrets(&m.raw);
                let after = mask_secrets(&rewrite_keepalived(&m.raw, &w));
                let mut changed = Vec::new();
                let mut drift = |attr: &str, decl: String, obs: Option<String>| {
                    if obs.as_deref() != Some(decl.as_str()) {
                        changed.push(format!(
                            "{attr} {} → {decl}",
                            obs.clone().unwrap_or_else(|| "unset".into())
                        ));
                        self.drift.push(Drift {
                            address: addr.to_string(),
                            attribute: attr.into(),
                            declared: Some(decl),
                            observed: obs,
                            planned: true,
                            note: None,
                        });
                    }
                };
                drift(
                    "priority",
                    w.priority.to_string(),
                    m.priority.map(|p| p.to_string()),
                );
                drift("vip", w.vip.clone(), m.vip.clone());
                drift("interface", w.interface.clone(), m.interface.clone());
                drift(
                    "router_id",
                    w.router_id.to_string(),
                    m.router_id.map(|p| p.to_string()),
                );
                let role = if d.primary { "primary" } else { "backup" };
                self.push(
                        addr.clone(),
                        Action::Update,
                        ActionReason::KeepalivedDrift,
                        format!("keepalived differs: {}; this node is a {role}", changed.join(", ")),
                        vec![Operation::WriteFile {
                            node: d.name.clone(),
                            path: vip.manifest_path.clone(),
                            before: Some(before),
                            after,
                            sensitive: vec![],
                        }],
                        Some(json!({"priority": m.priority, "vip": m.vip, "interface": m.interface, "router_id": m.router_id})),
                        Some(json!({"priority": w.priority, "vip": w.vip, "interface": w.interface, "router_id": w.router_id})),
                    );
            }
            None => {
                let (after, sensitive) =
                    files::keepalived_manifest_for(self.t, d).expect("server with a VIP");
                let reason = if self.joined.contains_key(&d.name) {
                    ActionReason::CreateBecauseDeclared
                } else {
                    ActionReason::KeepalivedDrift
                };
                self.push(
                        addr.clone(),
                        Action::Create,
                        reason,
                        format!(
                            "it runs keepalived for VIP {} with priority {}{}",
                            w.vip,
                            w.priority,
                            if d.primary { " (primary)" } else { "" },
                        ),
                        vec![Operation::WriteFile {
                            node: d.name.clone(),
                            path: vip.manifest_path.clone(),
                            before: None,
                            after: after.clone(),
                            sensitive,
                        }],
                        None,
                        Some(json!({"priority": w.priority, "vip": w.vip, "interface": w.interface, "router_id": w.router_id})),
                    );
            }
        }
    }

    /// The storage binding a PVC belongs to, and the pod using it.
    fn binding_of(
        &self,
        k: &'a KubeState,
        pvc: &Pvc,
    ) -> Option<(
        &'a crate::config::StorageBinding,
        Option<&'a crate::observed::Pod>,
    )> {
        let pod = k
            .pods
            .iter()
            .find(|p| p.namespace == pvc.namespace && p.pvcs.iter().any(|c| c == &pvc.name));
        for b in &self.t.storage {
            if b.namespace != pvc.namespace {
                continue;
            }
            let kind = match b.kind {
                WorkloadKind::StatefulSet => "StatefulSet",
                WorkloadKind::Deployment => "Deployment",
            };
            let by_pod = pod.is_some_and(|p| {
                p.owner_kind.as_deref() == Some(kind) && p.owner_name.as_deref() == Some(&b.name)
            });
            let by_name = b.kind == WorkloadKind::StatefulSet
                && pvc.name.rsplit_once('-').is_some_and(|(head, ord)| {
                    ord.chars().all(|c| c.is_ascii_digit())
                        && head.ends_with(&format!("-{}", b.name))
                });
            if by_pod || by_name {
                return Some((b, pod));
            }
        }
        None
    }

    fn rebind(&mut self) {
        let Some(k) = self.kube else { return };
        let mut work = Vec::new();
        for pvc in &k.pvcs {
            let Some(node) = &pvc.bound_node else {
                continue;
            };
            // Lost: removed by this plan, or already gone (neither declared nor a Node any
            // more — e.g. an earlier, interrupted apply deleted it before rebinding).
            let gone = self.gone(node);
            if !self.lost.contains(node) && !gone {
                continue;
            }
            match self.binding_of(k, pvc) {
                None => self.warnings.push(format!(
                    "pvc.{}/{}: bound to {node}, which is removed; no storage block declares its workload, so it is left as is (its pod stays Pending)",
                    pvc.namespace, pvc.name
                )),
                Some((b, _)) if b.on_node_loss == OnNodeLoss::Keep => self.warnings.push(format!(
                    "pvc.{}/{}: bound to {node}, which is removed; storage \"{}\" says on_node_loss = \"keep\": left for a manual restore",
                    pvc.namespace, pvc.name, b.key()
                )),
                Some((b, pod)) => work.push((pvc, b, pod, node.clone())),
            }
        }
        if work.is_empty() {
            return;
        }
        // Where the volumes should land: preferred nodes, else the nodes this plan joins.
        let mut targets: BTreeSet<String> = work
            .iter()
            .flat_map(|(_, b, ..)| b.prefer_nodes.iter().cloned())
            .filter(|n| {
                (self.is_declared(n) && !self.lost.contains(n)) || self.joined.contains_key(n)
            })
            .collect();
        if targets.is_empty() {
            targets = self.joined.keys().cloned().collect();
        }
        // Cordon the nodes that hold sibling replicas of the rebound workloads, so that the
        // recreated pods land on the target nodes and the replicas stay spread (seed 004).
        let kinds = |b: &crate::config::StorageBinding| match b.kind {
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::Deployment => "Deployment",
        };
        let workloads: BTreeSet<(String, &str, String)> = work
            .iter()
            .map(|(_, b, ..)| (b.namespace.clone(), kinds(b), b.name.clone()))
            .collect();
        let sibling_nodes: BTreeSet<&str> = k
            .pods
            .iter()
            .filter(|p| {
                let (Some(kind), Some(owner)) = (p.owner_kind.as_deref(), p.owner_name.as_ref())
                else {
                    return false;
                };
                workloads.contains(&(p.namespace.clone(), kind, owner.clone()))
            })
            .filter_map(|p| p.node.as_deref())
            .collect();
        // Nodes to cordon, and nodes an interrupted apply already cordoned for this rebind
        // (recorded in the state): those are not cordoned again but are uncordoned after.
        let (cordon, already): (Vec<String>, Vec<String>) = if targets.is_empty() {
            self.warnings.push(
                "volumes are rebound without cordoning: no preferred or new node to steer them to"
                    .into(),
            );
            (vec![], vec![])
        } else {
            let siblings: Vec<&Node> = self
                .t
                .nodes
                .iter()
                .filter(|d| !targets.contains(&d.name) && !self.lost.contains(&d.name))
                .filter(|d| sibling_nodes.contains(d.name.as_str()))
                .collect();
            let schedulable = |d: &Node| self.views[&d.name].kube.is_some_and(|k| !k.unschedulable);
            (
                siblings
                    .iter()
                    .filter(|d| schedulable(d))
                    .map(|d| d.name.clone())
                    .collect(),
                siblings
                    .iter()
                    .filter(|d| !schedulable(d) && self.opts.cordoned_by_k3splan.contains(&d.name))
                    .map(|d| d.name.clone())
                    .collect(),
            )
        };
        let target_list = targets.iter().cloned().collect::<Vec<_>>().join(", ");
        let join_deps: Vec<usize> = targets
            .iter()
            .filter_map(|t| self.joined.get(t).copied())
            .collect();
        for n in &cordon {
            self.push(
                Address::node(n),
                Action::Update,
                ActionReason::CordonForRebind,
                format!("volumes are rebound meanwhile and must land on {target_list}"),
                vec![Operation::Cordon { node: n.clone() }],
                Some(json!({"unschedulable": false})),
                Some(json!({"unschedulable": true})),
            );
        }
        for (pvc, b, pod, node) in work {
            let addr = Address::Pvc {
                namespace: pvc.namespace.clone(),
                name: pvc.name.clone(),
            };
            let (op, why) = match b.on_node_loss {
                OnNodeLoss::Rebind => (
                    Operation::RebindVolume {
                        namespace: pvc.namespace.clone(),
                        pvc: pvc.name.clone(),
                        pvc_uid: pvc.uid.clone(),
                        pod: pod.map(|p| p.name.clone()),
                        from_node: node.clone(),
                        evidence: self.loss_evidence(&node),
                    },
                    format!(
                        "its volume is pinned to {node}, which is removed, and storage \"{}\" says on_node_loss = \"rebind\"",
                        b.key()
                    ),
                ),
                _ => (
                    Operation::RecreateWorkload {
                        namespace: pvc.namespace.clone(),
                        pvc: pvc.name.clone(),
                        pvc_uid: pvc.uid.clone(),
                        kind: "Deployment".into(),
                        name: b.name.clone(),
                        from_node: node.clone(),
                        evidence: self.loss_evidence(&node),
                    },
                    format!(
                        "its volume is pinned to {node}, which is removed, and storage \"{}\" says on_node_loss = \"recreate\"",
                        b.key()
                    ),
                ),
            };
            let id = self.push(
                addr,
                Action::Replace,
                ActionReason::VolumeOnLostNode,
                why,
                vec![op],
                Some(json!({"uid": pvc.uid, "node": node, "volume": pvc.volume, "storage_class": pvc.storage_class})),
                Some(json!({"node": if target_list.is_empty() { None } else { Some(target_list.clone()) }, "storage_class": pvc.storage_class})),
            );
            self.steps[id - 1]
                .depends_on
                .extend(join_deps.iter().copied());
        }
        let mut uncordon = cordon.clone();
        uncordon.extend(already);
        uncordon.sort();
        for n in &uncordon {
            self.uncordoned.insert(n.clone());
            self.push(
                Address::node(n),
                Action::Update,
                ActionReason::UncordonAfterRebind,
                "the volumes have been rebound".into(),
                vec![Operation::Uncordon { node: n.clone() }],
                Some(json!({"unschedulable": true})),
                Some(json!({"unschedulable": false})),
            );
        }
    }

    /// Cordons an earlier apply made and did not undo (it was killed or failed between the
    /// cordon and the uncordon): undone, as the state recorded them before they were made.
    fn leftover_cordons(&mut self) {
        let mut todo = Vec::new();
        for d in &self.t.nodes {
            let v = &self.views[&d.name];
            if self.lost.contains(&d.name)
                || self.uncordoned.contains(&d.name)
                || !self.opts.cordoned_by_k3splan.contains(&d.name)
                || !v.kube.is_some_and(|k| k.unschedulable)
            {
                continue;
            }
            todo.push(d.name.clone());
        }
        for n in todo {
            self.uncordoned.insert(n.clone());
            self.drift.push(Drift {
                address: Address::node(&n).to_string(),
                attribute: "unschedulable".into(),
                declared: Some("false".into()),
                observed: Some("true".into()),
                planned: true,
                note: Some("cordoned by an earlier k3splan apply that did not finish".into()),
            });
            self.push(
                Address::node(&n),
                Action::Update,
                ActionReason::UncordonLeftByInterruptedApply,
                "an earlier apply cordoned it (recorded in the state) and was interrupted before it uncordoned it".into(),
                vec![Operation::Uncordon { node: n.clone() }],
                Some(json!({"unschedulable": true})),
                Some(json!({"unschedulable": false})),
            );
        }
    }

    fn addons(&mut self) {
        if self.t.addons.is_empty() {
            return;
        }
        let Some(k) = self.kube else {
            self.warnings.push(format!(
                "add-ons not checked: the Kubernetes API is unknown ({})",
                self.o.kube.unknown_reason().unwrap_or_default()
            ));
            return;
        };
        let schedulable = self
            .t
            .nodes
            .iter()
            .filter(|d| !self.lost.contains(&d.name))
            .count() as u32;
        for a in &self.t.addons {
            let addr = Address::Addon {
                name: a.name.clone(),
            };
            let Some(obs) = k
                .addons
                .iter()
                .find(|x| x.name == a.name && x.namespace == a.namespace)
            else {
                self.drift.push(Drift {
                    address: addr.to_string(),
                    attribute: "present".into(),
                    declared: Some("true".into()),
                    observed: Some("false".into()),
                    planned: false,
                    note: Some(format!(
                        "Deployment {}/{} not found; k3splan does not install add-ons",
                        a.namespace, a.name
                    )),
                });
                continue;
            };
            let spread_drift = a.spread.is_some() && obs.spread != a.spread;
            if obs.replicas == a.replicas && !spread_drift {
                continue;
            }
            let mut changes = Vec::new();
            if obs.replicas != a.replicas {
                changes.push(format!("replicas {} → {}", obs.replicas, a.replicas));
                self.drift.push(Drift {
                    address: addr.to_string(),
                    attribute: "replicas".into(),
                    declared: Some(a.replicas.to_string()),
                    observed: Some(obs.replicas.to_string()),
                    planned: true,
                    note: None,
                });
            }
            if spread_drift {
                changes.push(format!(
                    "spread {} → {}",
                    obs.spread.as_deref().unwrap_or("none"),
                    a.spread.as_deref().unwrap_or("none")
                ));
                self.drift.push(Drift {
                    address: addr.to_string(),
                    attribute: "spread".into(),
                    declared: a.spread.clone(),
                    observed: obs.spread.clone(),
                    planned: true,
                    note: None,
                });
            }
            if a.spread.as_deref() == Some("kubernetes.io/hostname") && a.replicas > schedulable {
                self.warnings.push(format!(
                    "addon.{}: {} replicas spread over hostnames but only {schedulable} nodes: some stay Pending if the spread is required",
                    a.name, a.replicas
                ));
            }
            let mut why = format!("it differs: {}", changes.join(", "));
            if obs.replicas <= 1 && a.replicas > 1 {
                why.push_str("; one replica means the add-on is down while its node is lost");
            }
            self.push(
                addr,
                Action::Update,
                ActionReason::AddonDrift,
                why,
                vec![Operation::ScaleAddon {
                    namespace: a.namespace.clone(),
                    name: a.name.clone(),
                    replicas: a.replicas,
                    spread: a.spread.clone(),
                    via_helm: obs.helm_chart_config,
                }],
                Some(json!({"replicas": obs.replicas, "ready_replicas": obs.ready_replicas, "spread": obs.spread, "pod_nodes": obs.pod_nodes})),
                Some(json!({"replicas": a.replicas, "spread": a.spread})),
            );
        }
    }

    /// Drift k3splan reports but does not fix, and warnings about failed declared nodes.
    fn unplanned_drift(&mut self) {
        for d in &self.t.nodes {
            let v = &self.views[&d.name];
            if self.joined.contains_key(&d.name) || self.lost.contains(&d.name) {
                continue;
            }
            if let (Some(want), Some(k)) = (&self.t.cluster.k3s_version, v.kube)
                && let Some(have) = &k.version
                && have != want
            {
                self.drift.push(Drift {
                    address: Address::node(&d.name).to_string(),
                    attribute: "version".into(),
                    declared: Some(want.clone()),
                    observed: Some(have.clone()),
                    planned: false,
                    note: Some("upgrades are not planned by k3splan".into()),
                });
            }
            if v.kube.is_some_and(|k| k.unschedulable) && !self.uncordoned.contains(&d.name) {
                self.drift.push(Drift {
                    address: Address::node(&d.name).to_string(),
                    attribute: "unschedulable".into(),
                    declared: Some("false".into()),
                    observed: Some("true".into()),
                    planned: false,
                    note: Some(format!(
                        "cordoned, but not by k3splan (the state records no cordon of it); k3splan leaves it, as it may be on purpose: run `kubectl uncordon {}` when it is not",
                        d.name
                    )),
                });
            }
            if d.roles.runs_etcd()
                && self.etcd.is_some()
                && v.member.is_none()
                && self.is_present(&d.name)
            {
                self.drift.push(Drift {
                    address: Address::member(&d.name).to_string(),
                    attribute: "present".into(),
                    declared: Some("true".into()),
                    observed: Some("false".into()),
                    planned: false,
                    note: Some(format!("the node runs but has no etcd member at its address; run `k3splan apply -replace=node.{}` to rejoin it", d.name)),
                });
            }
            if let Some(m) = v.member
                && !m.is_healthy()
            {
                let host = match &v.host {
                    Fact::Known(_) => "host reachable".to_string(),
                    Fact::Unknown { reason } => {
                        format!("host {}: {reason}", self.o.host_word(&d.name))
                    }
                };
                let ready = match v.kube {
                    Some(k) if k.ready => "Node Ready",
                    Some(_) => "Node NotReady",
                    None => "no Node object",
                };
                // A declared member that is not healthy is drift (the configuration says a
                // healthy voter): a drift check must not stay green while fault tolerance
                // is gone.
                self.drift.push(Drift {
                    address: Address::member(&d.name).to_string(),
                    attribute: "health".into(),
                    declared: Some("healthy".into()),
                    observed: Some(m.health.describe()),
                    planned: false,
                    note: Some(format!(
                        "{ready}, {host}; fault tolerance is reduced. If its data is intact, start k3s on it again; otherwise rebuild it with `-replace=node.{}`, or remove node \"{}\" from the configuration",
                        d.name, d.name
                    )),
                });
            }
        }
    }

    /// `drift[]` is every difference found: the objects this plan creates, destroys or
    /// replaces get an entry (planned) unless a phase already recorded one for them.
    fn planned_drift(&mut self) {
        let recorded: BTreeSet<String> = self.drift.iter().map(|d| d.address.clone()).collect();
        let mut seen = BTreeSet::new();
        for s in &self.steps {
            let address = s.address.to_string();
            let (attribute, declared, observed) = match s.action {
                Action::Create => ("present", "true", "false"),
                Action::Delete => ("present", "false", "true"),
                Action::Replace => ("replace", "requested", "present"),
                Action::Update | Action::Read => continue,
            };
            if recorded.contains(&address) || !seen.insert(address.clone()) {
                continue;
            }
            self.drift.push(Drift {
                address,
                attribute: attribute.into(),
                declared: Some(declared.into()),
                observed: Some(observed.into()),
                planned: true,
                note: Some(s.why.clone()),
            });
        }
    }

    /// Declared nodes whose host could not be read: the plan cannot know what differs
    /// there. Accepted when the operator listed the node in `--allow-unreachable`.
    fn unknown_sources(&self) -> Vec<UnknownSource> {
        self.t
            .nodes
            .iter()
            .filter_map(|d| {
                let reason = self.views[&d.name].host_reason()?;
                let kind = self
                    .o
                    .host_failure(&d.name)
                    .unwrap_or(HostUnknown::Unanswered);
                Some(UnknownSource {
                    address: format!("host.{}", d.name),
                    reason: reason.to_string(),
                    kind: kind.word().into(),
                    accepted: self.opts.allow_unreachable.contains(&d.name),
                })
            })
            .collect()
    }

    fn snapshot_node(&self) -> Option<String> {
        self.t
            .etcd_nodes()
            .filter(|d| !self.lost.contains(&d.name) && !self.joined.contains_key(&d.name))
            .find(|d| {
                let v = &self.views[&d.name];
                is_healthy_member(v.member)
                    && v.host
                        .known()
                        .is_some_and(|h| h.k3s.as_ref().is_some_and(|k| k.service_active))
            })
            .map(|d| d.name.clone())
    }
}

/// What an unknown host of this kind means for a plan that would destroy it.
fn unknown_meaning(kind: HostUnknown) -> &'static str {
    match kind {
        HostUnknown::Refused => "its SSH port refuses connections",
        HostUnknown::Unanswered => {
            "it did not answer within the connect timeout and may be alive behind a partition"
        }
        HostUnknown::Credentials => {
            "SSH authentication failed, which says nothing about whether the host is alive"
        }
        HostUnknown::HostKeyUnknown => "its host key could not be verified against known_hosts",
        HostUnknown::HostKeyChanged => "its host key changed (possible man-in-the-middle)",
        HostUnknown::ObserveFailed => "it answered but could not be observed",
    }
}

fn fmt_host(a: IpAddr) -> String {
    match a {
        IpAddr::V4(v) => v.to_string(),
        IpAddr::V6(v) => format!("[{v}]"),
    }
}

#[cfg(test)]
mod issue13_tests {
    use super::*;
    use crate::config::Role;
    use crate::plan::testkit::{cluster, node, observed_matching, topology};

    fn three() -> Topology {
        let s = [Role::Server, Role::Etcd];
        topology(
            cluster("c"),
            vec![
                node("a", "10.0.0.1", &s),
                node("b", "10.0.0.2", &s),
                node("c", "10.0.0.3", &s),
            ],
        )
    }

    fn cordon(o: &mut Observed, n: &str) {
        if let Fact::Known(k) = &mut o.kube {
            k.nodes
                .iter_mut()
                .find(|x| x.name == n)
                .unwrap()
                .unschedulable = true;
        }
    }

    /// A cordon nobody recorded (an operator's `kubectl cordon`) is drift the plan shows,
    /// with what to do; k3splan does not undo it. On main: "No changes." and no drift.
    #[test]
    fn issue13_unexpected_cordon_on_a_declared_node_is_drift() {
        let t = three();
        let mut o = observed_matching(&t);
        cordon(&mut o, "b");
        let p = plan(&t, &o, &PlanOptions::default()).expect("plan");
        assert!(p.steps.is_empty(), "not acted on: {:?}", p.steps);
        let d = p
            .drift
            .iter()
            .find(|d| d.address == "node.b" && d.attribute == "unschedulable")
            .unwrap_or_else(|| panic!("cordon drift missing: {:?}", p.drift));
        assert!(!d.planned);
        assert!(
            d.note.as_deref().unwrap().contains("kubectl uncordon b"),
            "{d:?}"
        );
        assert_eq!(crate::render::detailed_exitcode(&Ok(p.clone())), 2);
        let text = crate::render::text(&Ok(p), Default::default());
        assert!(text.contains("node.b.unschedulable"), "{text}");
    }

    /// A cordon the state says k3splan made (an interrupted apply's) is undone.
    #[test]
    fn issue13_cordon_recorded_by_k3splan_is_uncordoned() {
        let t = three();
        let mut o = observed_matching(&t);
        cordon(&mut o, "b");
        let opts = PlanOptions {
            cordoned_by_k3splan: ["b".to_string(), "c".to_string()].into(),
            ..PlanOptions::default()
        };
        let p = plan(&t, &o, &opts).expect("plan");
        // c is recorded but schedulable (uncordoned by hand since): nothing to do for it.
        let uncordons: Vec<_> = p
            .steps
            .iter()
            .filter(|s| {
                s.operations
                    .contains(&Operation::Uncordon { node: "b".into() })
            })
            .collect();
        assert_eq!(uncordons.len(), 1, "{:?}", p.steps);
        assert_eq!(
            uncordons[0].reason,
            ActionReason::UncordonLeftByInterruptedApply
        );
        assert!(!p.steps.iter().any(|s| {
            s.operations
                .contains(&Operation::Uncordon { node: "c".into() })
        }));
        assert!(p.drift.iter().all(|d| d.planned), "{:?}", p.drift);
    }

    /// `-replace=node.b` replaces b in this plan; without it, nothing is replaced.
    #[test]
    fn issue13_replace_option_is_one_shot() {
        let t = three();
        let o = observed_matching(&t);
        let p = plan(&t, &o, &PlanOptions::default()).expect("plan");
        assert!(p.steps.is_empty(), "{:?}", p.steps);
        let opts = PlanOptions {
            replace: ["b".to_string()].into(),
            ..PlanOptions::default()
        };
        let p = plan(&t, &o, &opts).expect("plan");
        assert!(
            p.steps
                .iter()
                .any(|s| s.address == Address::member("b")
                    && s.reason == ActionReason::ReplaceByRequest),
            "{:?}",
            p.steps
        );
        assert!(p.steps.iter().any(|s| {
            s.operations
                .iter()
                .any(|op| matches!(op, Operation::JoinServer { node, .. } if node == "b"))
        }));
    }
}
