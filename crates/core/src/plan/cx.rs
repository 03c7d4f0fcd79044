//! The planning context every phase reads and extends: the inputs (topology, observation,
//! options), the per-node views built from them once, and what the phases have produced so
//! far (steps, drift, warnings, violations, the quorum simulation as of the last step).
//!
//! Guarantees: the views and inputs are never changed after [`PlanCx::new`]; steps are only
//! added through [`PlanCx::push`], which applies each step's operations to the quorum
//! simulation, so a later phase sees the membership the earlier steps leave.
//! Caveat: step ids are provisional until the `renumber` phase (a snapshot may be inserted
//! first); a phase that records a dependency uses the ids returned by `push`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::config::{Node, Topology};
use crate::observed::{EtcdMember, EtcdState, HostUnknown, KubeNode, KubeState, Observed};
use crate::plan::safety::{Sim, SimMember};
use crate::plan::views::NodeView;
use crate::plan::{
    Action, ActionReason, Address, Drift, Operation, PlanOptions, Quorum, Rule, Step,
    UnknownSource, Violation,
};

/// The shared state of one planning run (see the module doc).
pub(super) struct PlanCx<'a> {
    pub t: &'a Topology,
    pub o: &'a Observed,
    pub opts: &'a PlanOptions,
    pub kube: Option<&'a KubeState>,
    pub etcd: Option<&'a EtcdState>,
    pub views: BTreeMap<String, NodeView<'a>>,
    /// Members matching no node, by member name; sorted by the `classify` phase (failed
    /// first, then by name).
    pub orphans: Vec<&'a EtcdMember>,
    /// Declared nodes whose replacement is requested, failed first (`classify`).
    pub replaced: Vec<String>,
    /// Failed nodes removed from the configuration, and replaced nodes, learners first: the
    /// removals before the joins (`classify`).
    pub early_removals: Vec<(String, ActionReason)>,
    /// Healthy nodes removed from the configuration: removed after the joins (`classify`).
    pub healthy_removed: Vec<String>,
    pub steps: Vec<Step>,
    pub drift: Vec<Drift>,
    pub warnings: Vec<String>,
    pub violations: Vec<Violation>,
    /// Nodes whose Node object this plan deletes (removed or replaced).
    pub lost: BTreeSet<String>,
    /// Join step id per node joined by this plan.
    pub joined: BTreeMap<String, usize>,
    /// Nodes whose removal was refused (their join is not planned either).
    pub refused: BTreeSet<String>,
    /// Nodes this plan uncordons.
    pub uncordoned: BTreeSet<String>,
    /// Joining servers whose old keepalived manifest is rewritten before k3s starts.
    pub keepalived_before_start: BTreeSet<String>,
    /// The membership as of the last step pushed.
    pub sim: Sim,
    /// The membership before the plan, for the final simulation.
    pub start: Sim,
    /// The quorum before the plan (`None` without etcd members).
    pub quorum_before: Option<Quorum>,
    /// A snapshot step was inserted first (set by the `snapshot` phase).
    pub snapshot_required: bool,
}

impl<'a> PlanCx<'a> {
    pub fn new(t: &'a Topology, o: &'a Observed, opts: &'a PlanOptions) -> Self {
        let kube = o.kube.known();
        let etcd = o.etcd.known();
        let (views, orphans) = build_views(t, o, kube, etcd);
        let sim = sim_of(etcd, &views);
        let quorum_before = etcd.filter(|e| !e.members.is_empty()).map(|_| sim.quorum());
        PlanCx {
            t,
            o,
            opts,
            kube,
            etcd,
            views,
            orphans,
            replaced: Vec::new(),
            early_removals: Vec::new(),
            healthy_removed: Vec::new(),
            steps: Vec::new(),
            drift: Vec::new(),
            warnings: Vec::new(),
            violations: Vec::new(),
            lost: BTreeSet::new(),
            joined: BTreeMap::new(),
            refused: BTreeSet::new(),
            uncordoned: BTreeSet::new(),
            keepalived_before_start: BTreeSet::new(),
            start: sim.clone(),
            sim,
            quorum_before,
            snapshot_required: false,
        }
    }

    pub fn refuse(
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
    pub fn push(
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

    pub fn note(&mut self, id: usize, note: String) {
        self.steps[id - 1].notes.push(note);
    }

    /// Declared nodes whose host could not be read: the plan cannot know what differs
    /// there. Accepted when the operator listed the node in `--allow-unreachable`.
    pub fn unknown_sources(&self) -> Vec<UnknownSource> {
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
}

/// Every node named by a source (declared, a Node object, an observed host), with what
/// each source says about it; and the etcd members that match no node.
fn build_views<'a>(
    t: &'a Topology,
    o: &'a Observed,
    kube: Option<&'a KubeState>,
    etcd: Option<&'a EtcdState>,
) -> (BTreeMap<String, NodeView<'a>>, Vec<&'a EtcdMember>) {
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
    // Members matched to nodes by peer address, never by name (rule 11, members
    // matched by peer URL).
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
    (views, orphans)
}

/// The quorum simulation's starting membership: every member, with the node it matched.
fn sim_of(etcd: Option<&EtcdState>, views: &BTreeMap<String, NodeView<'_>>) -> Sim {
    Sim::new(
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
    )
}
