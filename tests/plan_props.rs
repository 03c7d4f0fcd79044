//! Property tests: random topologies and health mixes.
//!
//! 1. Every emitted plan keeps quorum in an independent re-simulation (written here, not the
//!    planner's own), respects the ordering rules, destroys nothing declared, and never
//!    destroys from an unknown fact; every refusal carries a reason.
//! 2. Planning a topology against an observed state that already matches it yields no
//!    changes.
//!
//! 8,000 + 2,500 cases (≥ 10,000 in total).

#![allow(clippy::collapsible_if, clippy::collapsible_match)] // the checker reads better flat

use std::collections::{BTreeMap, BTreeSet};

use k3splan::config::{OnNodeLoss, Role, Topology, WorkloadKind};
use k3splan::observed::{EtcdDataDir, Fact, HostState, MemberHealth, Observed};
use k3splan::plan::testkit::*;
use k3splan::plan::{Operation, Plan, PlanOptions, plan};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct MemberCase {
    /// 0 healthy, 1 unhealthy, 2 unreachable.
    health: u8,
    learner: bool,
    host_unreachable: bool,
    ready: bool,
    removed: bool,
    replace: bool,
}

#[derive(Debug, Clone)]
struct Case {
    members: Vec<MemberCase>,
    /// (stale data dir, host unreachable, role: 0 server, 1 etcd, 2 control-plane, 3 agent)
    new_nodes: Vec<(bool, bool, u8)>,
    agents: Vec<bool>, // removed?
    api_endpoint: bool,
    vip: bool,
    allow_all: bool,
    pvcs_on_removed: bool,
}

fn member_case() -> impl Strategy<Value = MemberCase> {
    (
        prop_oneof![6 => Just(0u8), 1 => Just(1u8), 2 => Just(2u8)],
        prop::bool::weighted(0.08),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.12),
    )
        .prop_map(
            |(health, learner, host_unreachable, ready, removed, replace)| MemberCase {
                health,
                learner,
                host_unreachable,
                ready,
                removed,
                replace,
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(member_case(), 1..=7),
        prop::collection::vec(
            (prop::bool::weighted(0.4), prop::bool::weighted(0.1), 0u8..4),
            0..=2,
        ),
        prop::collection::vec(prop::bool::weighted(0.3), 0..=2),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
        any::<bool>(),
    )
        .prop_map(
            |(members, new_nodes, agents, api_endpoint, vip_on, allow_all, pvcs_on_removed)| Case {
                members,
                new_nodes,
                agents,
                api_endpoint,
                vip: vip_on,
                allow_all,
                pvcs_on_removed,
            },
        )
}

fn build(c: &Case) -> (Topology, Observed, PlanOptions) {
    let mut cl = cluster("prop");
    if c.api_endpoint {
        cl.api_endpoint = Some("https://10.9.0.100:6443".into());
    }
    if c.vip {
        cl.vip = Some(vip("10.9.0.100", "eth0", 42));
    }
    let mut all = Vec::new();
    for (i, _) in c.members.iter().enumerate() {
        let mut n = node(
            &format!("e{i}"),
            &format!("10.9.1.{}", i + 1),
            &[Role::Server],
        );
        n.primary = i == 0;
        all.push(n);
    }
    for (i, _) in c.agents.iter().enumerate() {
        all.push(node(
            &format!("w{i}"),
            &format!("10.9.2.{}", i + 1),
            &[Role::Agent],
        ));
    }
    let mut before = topology(cl.clone(), all.clone());
    before.storage = vec![storage(
        "db/pg",
        WorkloadKind::StatefulSet,
        OnNodeLoss::Rebind,
    )];
    let mut o = observed_matching(&before);
    let Fact::Known(kube) = &mut o.kube else {
        unreachable!()
    };
    let Fact::Known(etcd) = &mut o.etcd else {
        unreachable!()
    };
    for (i, m) in c.members.iter().enumerate() {
        let name = format!("e{i}");
        let em = etcd
            .members
            .iter_mut()
            .find(|x| x.name == member_name(&name))
            .unwrap();
        em.is_learner = m.learner;
        em.health = match m.health {
            0 => MemberHealth::Healthy,
            1 => MemberHealth::Unhealthy {
                reason: "no leader".into(),
            },
            _ => MemberHealth::Unreachable {
                reason: "timeout".into(),
            },
        };
        kube.nodes
            .iter_mut()
            .find(|x| x.name == name)
            .unwrap()
            .ready = m.ready;
        if m.host_unreachable {
            o.hosts.insert(name.clone(), Fact::unknown("ssh timeout"));
        }
        if c.pvcs_on_removed {
            kube.pvcs.push(k3splan::observed::Pvc {
                namespace: "db".into(),
                name: format!("data-pg-{i}"),
                uid: format!("uid-{i}"),
                storage_class: Some("local-path".into()),
                phase: "Bound".into(),
                bound_node: Some(name.clone()),
                volume: None,
            });
        }
    }
    // Desired: drop removed, mark replaced, add new nodes.
    let mut desired = before.clone();
    desired.nodes.retain(|n| {
        let i: Option<usize> = n.name.strip_prefix('e').and_then(|x| x.parse().ok());
        let j: Option<usize> = n.name.strip_prefix('w').and_then(|x| x.parse().ok());
        !(i.is_some_and(|i| c.members[i].removed) || j.is_some_and(|j| c.agents[j]))
    });
    for n in &mut desired.nodes {
        if let Some(i) = n
            .name
            .strip_prefix('e')
            .and_then(|x| x.parse::<usize>().ok())
        {
            n.replace = c.members[i].replace;
        }
    }
    for (k, (stale, unreachable, role)) in c.new_nodes.iter().enumerate() {
        let role = [Role::Server, Role::Etcd, Role::ControlPlane, Role::Agent][*role as usize];
        let name = format!("n{k}");
        desired
            .nodes
            .push(node(&name, &format!("10.9.3.{}", k + 1), &[role]));
        let h = if *unreachable {
            Fact::unknown("ssh timeout")
        } else {
            Fact::Known(HostState {
                etcd_data: stale.then(|| EtcdDataDir {
                    path: "/var/lib/rancher/k3s/server/db/etcd".into(),
                    member_name: Some("old".into()),
                    cluster_id: None,
                    belongs_to_cluster: None,
                    tombstone: true,
                    initial_cluster: None,
                }),
                ..Default::default()
            })
        };
        o.hosts.insert(name, h);
    }
    if !desired.nodes.iter().any(|n| n.primary) {
        if let Some(n) = desired.nodes.iter_mut().find(|n| n.roles.is_server()) {
            n.primary = true;
        }
    }
    let opts = PlanOptions {
        allow_unreachable: if c.allow_all {
            before.nodes.iter().map(|n| n.name.clone()).collect()
        } else {
            BTreeSet::new()
        },
        ..PlanOptions::default()
    };
    (desired, o, opts)
}

/// An independent replay of the plan's operations; returns the first broken invariant.
fn check(t: &Topology, o: &Observed, opts: &PlanOptions, p: &Plan) -> Result<(), String> {
    let etcd = o.etcd.known().unwrap();
    // node name → member (by peer address); nodes keep declared or observed addresses.
    let mut addr: BTreeMap<String, String> = BTreeMap::new();
    for (name, h) in &o.hosts {
        if let Some(a) = h.known().and_then(|h| h.address) {
            addr.insert(name.clone(), a.to_string());
        }
    }
    for n in &o.kube.known().unwrap().nodes {
        addr.insert(n.name.clone(), n.internal_ip.unwrap().to_string());
    }
    for n in &t.nodes {
        addr.insert(n.name.clone(), n.address.to_string());
    }
    // (id, node, voter, healthy)
    let mut members: Vec<(u64, Option<String>, bool, bool)> = etcd
        .members
        .iter()
        .map(|m| {
            let a = m.peer_address().unwrap().to_string();
            let node = addr.iter().find(|(_, v)| **v == a).map(|(k, _)| k.clone());
            (m.id, node, !m.is_learner, m.is_healthy())
        })
        .collect();
    let quorum_ok = |ms: &Vec<(u64, Option<String>, bool, bool)>, minus: usize| {
        let v = ms.iter().filter(|m| m.2).count();
        let h = ms.iter().filter(|m| m.2 && m.3).count();
        v == 0 || h.saturating_sub(minus) > v / 2
    };
    if !quorum_ok(&members, 0) {
        return Err("plan emitted although quorum was already lost".into());
    }
    let declared_keep: BTreeSet<&str> = t
        .nodes
        .iter()
        .filter(|n| !n.replace)
        .map(|n| n.name.as_str())
        .collect();
    let mut snap = false;
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    let mut next_id = 1u64 << 60;
    for s in &p.steps {
        for op in &s.operations {
            let tag = format!("step {} {}: {}", s.id, s.address, op.describe());
            if op.is_destructive() && !snap && t.cluster.etcd.snapshot_before_apply {
                return Err(format!("{tag}: destructive before snapshot"));
            }
            match op {
                Operation::Snapshot { .. } => snap = true,
                Operation::Drain { node, .. }
                | Operation::DeleteNode { node }
                | Operation::UninstallK3s { node } => {
                    if declared_keep.contains(node.as_str()) {
                        return Err(format!("{tag}: destroys a declared node"));
                    }
                    let host_unknown = !o.hosts.get(node).is_some_and(|h| h.is_known());
                    if matches!(op, Operation::UninstallK3s { .. }) && host_unknown {
                        return Err(format!("{tag}: uninstall on an unreachable host"));
                    }
                    if host_unknown && !opts.allow_unreachable.contains(node) {
                        let ready = o.kube.known().unwrap().node(node).is_some_and(|k| k.ready);
                        let healthy = members
                            .iter()
                            .any(|m| m.1.as_deref() == Some(node) && m.3 && m.2);
                        if ready || healthy {
                            return Err(format!("{tag}: destroys from an unknown host fact"));
                        }
                    }
                    if matches!(op, Operation::DeleteNode { .. }) {
                        deleted.insert(node.clone());
                    }
                    if let Operation::UninstallK3s { node } = op
                        && let Some(m) = members.iter_mut().find(|m| m.1.as_deref() == Some(node))
                    {
                        m.3 = false;
                    }
                }
                Operation::RemoveEtcdMember { id, .. } => {
                    if members.iter().any(|m| !m.2 && m.0 != *id) {
                        return Err(format!("{tag}: removal while a learner is pending"));
                    }
                    let Some(i) = members.iter().position(|m| m.0 == *id) else {
                        return Err(format!("{tag}: unknown member"));
                    };
                    if members[i]
                        .1
                        .as_deref()
                        .is_some_and(|n| declared_keep.contains(n))
                    {
                        return Err(format!("{tag}: removes a declared node's member"));
                    }
                    members.remove(i);
                }
                Operation::JoinServer {
                    node,
                    etcd: is_etcd,
                    ..
                } => {
                    if *is_etcd {
                        if members.iter().any(|m| !m.2) {
                            return Err(format!("{tag}: join while a learner is pending"));
                        }
                        if members.iter().any(|m| {
                            !m.3 && m.1.as_deref().is_some_and(|n| !declared_keep.contains(n))
                        }) {
                            return Err(format!(
                                "{tag}: join before a failed member being removed is gone"
                            ));
                        }
                        next_id += 1;
                        members.push((next_id, Some(node.clone()), false, true));
                    }
                }
                Operation::WaitLearnerPromoted { node } => {
                    if let Some(m) = members.iter_mut().find(|m| m.1.as_deref() == Some(node)) {
                        m.2 = true;
                        m.3 = true;
                    }
                }
                Operation::RestartService { node } => {
                    if members
                        .iter()
                        .any(|m| m.1.as_deref() == Some(node) && m.2 && m.3)
                        && !quorum_ok(&members, 1)
                    {
                        return Err(format!("{tag}: restart loses quorum (rule 9)"));
                    }
                }
                Operation::MoveAsideDataDir { node, .. } => {
                    if members.iter().any(|m| m.1.as_deref() == Some(node) && m.3) {
                        return Err(format!("{tag}: data dir of a live member moved"));
                    }
                }
                Operation::WriteFile { after, path, .. } => {
                    if path.ends_with("config.yaml") && after.contains("cluster-init") {
                        return Err(format!("{tag}: cluster-init written"));
                    }
                    if after.contains("K10secret") || after.contains("MTkyLjE2") {
                        return Err(format!("{tag}: secret in plan"));
                    }
                }
                Operation::RebindVolume { from_node, .. }
                | Operation::RecreateWorkload { from_node, .. } => {
                    if !deleted.contains(from_node) {
                        return Err(format!("{tag}: PVC on a node that stays"));
                    }
                }
                _ => {}
            }
            if !quorum_ok(&members, 0) {
                return Err(format!("{tag}: quorum lost"));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_plan_keeps_quorum_or_is_refused_with_a_reason(c in case()) {
        let (t, o, opts) = build(&c);
        match plan(&t, &o, &opts) {
            Ok(p) => {
                if let Err(e) = check(&t, &o, &opts, &p) {
                    let text = k3splan::render::text(&Ok(p), Default::default());
                    prop_assert!(false, "{e}\n{text}");
                }
            }
            Err(r) => {
                prop_assert!(!r.violations.is_empty());
                for v in &r.violations {
                    prop_assert!(!v.message.is_empty() && v.step.is_some(), "{v:?}");
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Shape {
    roles: Vec<u8>,
    vip: bool,
    api_endpoint: bool,
    addons: Vec<(u32, bool)>,
    rename_members: bool,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        prop::collection::vec(0u8..4, 1..=9),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec((1u32..5, any::<bool>()), 0..=3),
        any::<bool>(),
    )
        .prop_map(|(roles, vip, api_endpoint, addons, rename_members)| Shape {
            roles,
            vip,
            api_endpoint,
            addons,
            rename_members,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn desired_matching_observed_yields_no_changes(s in shape()) {
        let mut cl = cluster("same");
        if s.vip {
            cl.vip = Some(vip("10.8.0.100", "eth0", 7));
        }
        if s.api_endpoint {
            cl.api_endpoint = Some("https://10.8.0.100:6443".into());
        }
        let mut nodes = Vec::new();
        // Always at least one etcd node first (a cluster exists).
        let mut roles = s.roles.clone();
        roles[0] = 0;
        for (i, r) in roles.iter().enumerate() {
            let role = [Role::Server, Role::Etcd, Role::ControlPlane, Role::Agent][*r as usize];
            let mut n = node(&format!("m{i}"), &format!("10.8.1.{}", i + 1), &[role]);
            n.primary = i == 0;
            nodes.push(n);
        }
        let mut t = topology(cl, nodes);
        t.addons = s
            .addons
            .iter()
            .enumerate()
            .map(|(i, (r, sp))| addon(&format!("a{i}"), *r, sp.then_some("kubernetes.io/hostname")))
            .collect();
        let mut o = observed_matching(&t);
        if s.rename_members {
            let Fact::Known(e) = &mut o.etcd else { unreachable!() };
            for m in &mut e.members {
                m.name = format!("{}-renamed", m.id);
            }
        }
        let p = plan(&t, &o, &PlanOptions::default());
        let p = p.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(p.steps.is_empty(), "{}", k3splan::render::text(&Ok(p.clone()), Default::default()));
        prop_assert!(p.drift.is_empty(), "{:?}", p.drift);
    }
}

/// The generator exercises both outcomes: many emitted plans with membership changes,
/// restarts and rebinds, and refusals under several rules (so the property above is not
/// vacuous).
#[test]
fn generator_covers_plans_and_refusals() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut plans, mut membership, mut rebinds, mut refusals) = (0, 0, 0, 0);
    let mut rules = BTreeSet::new();
    for _ in 0..2000 {
        let c = case().new_tree(&mut runner).unwrap().current();
        let (t, o, opts) = build(&c);
        match plan(&t, &o, &opts) {
            Ok(p) => {
                plans += 1;
                let ops: Vec<&Operation> = p.steps.iter().flat_map(|s| &s.operations).collect();
                if ops
                    .iter()
                    .any(|op| matches!(op, Operation::RemoveEtcdMember { .. }))
                    && ops
                        .iter()
                        .any(|op| matches!(op, Operation::JoinServer { etcd: true, .. }))
                {
                    membership += 1;
                }
                if ops
                    .iter()
                    .any(|op| matches!(op, Operation::RebindVolume { .. }))
                {
                    rebinds += 1;
                }
            }
            Err(r) => {
                refusals += 1;
                rules.extend(r.violations.iter().map(|v| v.rule.number()));
            }
        }
    }
    eprintln!(
        "plans {plans}, remove+join {membership}, rebinds {rebinds}, refusals {refusals}, rules {rules:?}"
    );
    assert!(
        plans > 400 && membership > 50 && rebinds > 50 && refusals > 200,
        "plans {plans}, remove+join {membership}, rebinds {rebinds}, refusals {refusals}"
    );
    assert!(rules.contains(&1) && rules.contains(&2), "{rules:?}");
}
