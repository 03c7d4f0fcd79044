//! Unit tests of the `upgrade` phase (issue 15).

use crate::config::{MaxUnavailable, Role, Topology};
use crate::observed::{Fact, MemberHealth, Observed};
use crate::plan::testkit::{cluster, member_id, node, observed_matching, topology};
use crate::plan::{ActionReason, Operation, Plan, PlanOptions, Refusal, Rule, plan};

const OLD: &str = "v1.28.5+k3s1";
const NEW: &str = "v1.29.0+k3s1";

/// 3 servers (a, b, c) and `agents` agents, all at OLD; the topology declares `to`.
fn cluster_at(to: &str, agents: usize) -> (Topology, Observed) {
    let s = [Role::Server];
    let mut nodes = vec![
        node("a", "10.0.0.1", &s),
        node("b", "10.0.0.2", &s),
        node("c", "10.0.0.3", &s),
    ];
    for i in 0..agents {
        nodes.push(node(
            &format!("w{}", i + 1),
            &format!("10.0.1.{}", i + 1),
            &[Role::Agent],
        ));
    }
    let t = topology(cluster("c"), nodes);
    let o = observed_matching(&t);
    let mut t2 = t.clone();
    t2.cluster.k3s_version = Some(to.into());
    (t2, o)
}

fn ops_of<'a>(p: &'a Plan, n: &str) -> Vec<&'a Operation> {
    p.steps
        .iter()
        .filter(|s| s.address.to_string() == format!("node.{n}"))
        .flat_map(|s| &s.operations)
        .collect()
}

fn upgrade_order(p: &Plan) -> Vec<String> {
    p.steps
        .iter()
        .flat_map(|s| &s.operations)
        .filter_map(|o| match o {
            Operation::UpgradeK3s { node, .. } => Some(node.clone()),
            _ => None,
        })
        .collect()
}

fn refused(r: Result<Plan, Refusal>) -> Refusal {
    match r {
        Ok(p) => panic!("expected a refusal, got {:#?}", p.steps),
        Err(r) => r,
    }
}

fn set_host_version(o: &mut Observed, n: &str, v: &str, active: bool) {
    if let Some(Fact::Known(h)) = o.hosts.get_mut(n) {
        let k = h.k3s.as_mut().unwrap();
        k.version = Some(v.into());
        k.service_active = active;
    }
}

fn kube_node<'a>(o: &'a mut Observed, n: &str) -> &'a mut crate::observed::KubeNode {
    match &mut o.kube {
        Fact::Known(k) => k.nodes.iter_mut().find(|x| x.name == n).unwrap(),
        _ => unreachable!(),
    }
}

fn etcd_member<'a>(o: &'a mut Observed, n: &str) -> &'a mut crate::observed::EtcdMember {
    match &mut o.etcd {
        Fact::Known(e) => e.members.iter_mut().find(|m| m.id == member_id(n)).unwrap(),
        _ => unreachable!(),
    }
}

/// The whole sequence: snapshot, servers one at a time with the leader (a) last, each
/// cordon → drain → install+restart → wait → uncordon, agents after, verification last;
/// the quorum during each server's restart is 2/3.
#[test]
fn issue15_version_change_is_a_rolling_upgrade_servers_first_leader_last() {
    let (t, o) = cluster_at(NEW, 2);
    let p = plan(&t, &o, &PlanOptions::default()).expect("plan");
    assert!(
        matches!(p.steps[0].operations[0], Operation::Snapshot { .. }),
        "snapshot first: {:#?}",
        p.steps[0]
    );
    assert_eq!(upgrade_order(&p), ["b", "c", "a", "w1", "w2"]);
    for n in ["a", "b", "c", "w1", "w2"] {
        let ops = ops_of(&p, n);
        let kinds: Vec<&str> = ops
            .iter()
            .map(|o| match o {
                Operation::Cordon { .. } => "cordon",
                Operation::Drain { .. } => "drain",
                Operation::UpgradeK3s { .. } => "upgrade",
                Operation::WaitUpgraded { .. } => "wait",
                Operation::Uncordon { .. } => "uncordon",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            ["cordon", "drain", "upgrade", "wait", "uncordon"],
            "{n}"
        );
    }
    let a = p
        .steps
        .iter()
        .find(|s| s.address.to_string() == "node.a")
        .unwrap();
    assert_eq!(a.reason, ActionReason::UpgradeK3sVersion);
    assert!(
        a.notes.iter().any(|n| n.contains("leader")),
        "{:?}",
        a.notes
    );
    let during: Vec<String> = p
        .steps
        .iter()
        .flat_map(|s| &s.quorum)
        .filter(|q| q.when == "during")
        .map(|q| format!("{}/{}", q.quorum.healthy_voters, q.quorum.voters))
        .collect();
    assert_eq!(during, ["2/3", "2/3", "2/3"]);
    assert!(matches!(
        p.steps.last().unwrap().operations[0],
        Operation::Verify { .. }
    ));
    // Planned drift, no unplanned "version" drift.
    assert!(
        p.drift
            .iter()
            .filter(|d| d.attribute == "version")
            .all(|d| d.planned),
        "{:?}",
        p.drift
    );
    let text = crate::render::text(&Ok(p), Default::default());
    assert!(
        text.contains("upgrade k3s on b from v1.28.5+k3s1 to v1.29.0+k3s1"),
        "{text}"
    );
}

#[test]
fn issue15_same_version_plans_nothing() {
    let (t, o) = cluster_at(OLD, 2);
    let p = plan(&t, &o, &PlanOptions::default()).expect("plan");
    assert!(p.steps.is_empty(), "{:#?}", p.steps);
    assert!(p.drift.is_empty(), "{:?}", p.drift);
}

#[test]
fn issue15_downgrade_and_minor_jumps_are_refused_with_the_reason() {
    let (t, o) = cluster_at("v1.27.9+k3s1", 0);
    let r = refused(plan(&t, &o, &PlanOptions::default()));
    assert!(
        r.violations
            .iter()
            .any(|v| v.rule == Rule::UpgradePreflight && v.message.contains("downgrade")),
        "{r:?}"
    );
    let (t, o) = cluster_at("v1.30.2+k3s1", 0);
    let r = refused(plan(&t, &o, &PlanOptions::default()));
    let v = r
        .violations
        .iter()
        .find(|v| v.rule == Rule::UpgradePreflight)
        .unwrap();
    assert!(
        v.message.contains("skips 1 minor version") && v.message.contains("v1.29.x"),
        "{v:?}"
    );
    // One violation naming every node with that reason.
    assert_eq!(r.violations.len(), 1, "{r:?}");
    assert_eq!(v.step.as_deref(), Some("node.a, node.b, node.c"));
    // A patch upgrade is fine.
    let (t, o) = cluster_at("v1.28.9+k3s2", 0);
    plan(&t, &o, &PlanOptions::default()).expect("patch upgrade");
}

#[test]
fn issue15_unhealthy_member_or_learner_refuses_the_upgrade() {
    let (t, mut o) = cluster_at(NEW, 0);
    etcd_member(&mut o, "b").health = MemberHealth::Unreachable {
        reason: "timeout".into(),
    };
    let r = refused(plan(&t, &o, &PlanOptions::default()));
    assert!(
        r.violations.iter().any(|v| v.rule == Rule::UpgradePreflight
            && v.message.contains("unreachable")
            && v.step.as_deref().is_some_and(|s| s.contains("b"))),
        "{r:?}"
    );
    let (t, mut o) = cluster_at(NEW, 0);
    etcd_member(&mut o, "c").is_learner = true;
    let r = refused(plan(&t, &o, &PlanOptions::default()));
    assert!(
        r.violations
            .iter()
            .any(|v| v.rule == Rule::UpgradePreflight && v.message.contains("learner")),
        "{r:?}"
    );
}

#[test]
fn issue15_two_voters_cannot_restart_one() {
    let s = [Role::Server];
    let t = topology(
        cluster("c"),
        vec![node("a", "10.0.0.1", &s), node("b", "10.0.0.2", &s)],
    );
    let o = observed_matching(&t);
    let mut t2 = t.clone();
    t2.cluster.k3s_version = Some(NEW.into());
    let r = refused(plan(&t2, &o, &PlanOptions::default()));
    assert!(
        r.violations
            .iter()
            .any(|v| v.rule == Rule::UpgradePreflight && v.message.contains("2 etcd voters")),
        "{r:?}"
    );
}

#[test]
fn issue15_host_and_node_versions_disagreeing_is_reported() {
    let (t, mut o) = cluster_at(NEW, 0);
    // b: installed at NEW by hand, never restarted: its Node still says OLD.
    set_host_version(&mut o, "b", "k3s version v1.29.0+k3s1 (abc)", true);
    let p = plan(&t, &o, &PlanOptions::default()).expect("plan");
    assert!(
        p.warnings.iter().any(|w| w.contains("node.b")
            && w.contains("v1.29.0+k3s1")
            && w.contains("v1.28.5+k3s1")),
        "{:?}",
        p.warnings
    );
    // It still needs its restart.
    assert!(upgrade_order(&p).contains(&"b".to_string()));
}

/// Installed by hand and not restarted, with nothing else to upgrade: reported (a warning,
/// the version drift unplanned), not restarted by the plan.
#[test]
fn issue15_installed_not_restarted_alone_is_only_reported() {
    let (t, mut o) = cluster_at(NEW, 0);
    for n in ["a", "b", "c"] {
        set_host_version(&mut o, n, NEW, true);
    }
    kube_node(&mut o, "c").version = Some(NEW.into());
    kube_node(&mut o, "a").version = Some(NEW.into());
    let p = plan(&t, &o, &PlanOptions::default()).expect("plan");
    assert!(p.steps.is_empty(), "{:#?}", p.steps);
    assert!(
        p.drift
            .iter()
            .any(|d| d.address == "node.b" && d.attribute == "version" && !d.planned),
        "{:?}",
        p.drift
    );
    assert!(
        p.warnings.iter().any(|w| w.contains("node.b")),
        "{:?}",
        p.warnings
    );
}

/// Resume: b's upgrade was interrupted after the installer restarted it (host at NEW, its
/// member not back, its Node still OLD, cordoned by k3splan): b is waited on first, without
/// a second restart, and nothing else restarts before it is back.
#[test]
fn issue15_interrupted_upgrade_resumes_with_the_node_in_flight() {
    let (t, mut o) = cluster_at(NEW, 1);
    set_host_version(&mut o, "b", NEW, true);
    etcd_member(&mut o, "b").health = MemberHealth::Unreachable {
        reason: "restarting".into(),
    };
    kube_node(&mut o, "b").unschedulable = true;
    let opts = PlanOptions {
        cordoned_by_k3splan: ["b".to_string()].into(),
        ..PlanOptions::default()
    };
    let p = plan(&t, &o, &opts).expect("plan");
    let first = p
        .steps
        .iter()
        .find(|s| s.reason == ActionReason::UpgradeK3sVersion)
        .unwrap();
    assert_eq!(first.address.to_string(), "node.b");
    assert_eq!(
        first.operations,
        [
            Operation::WaitUpgraded {
                node: "b".into(),
                version: NEW.into()
            },
            Operation::Uncordon { node: "b".into() }
        ]
    );
    assert_eq!(upgrade_order(&p), ["c", "a", "w1"]);
    // Uncordoned once (not again by the leftover-cordons phase).
    let uncordons = p
        .steps
        .iter()
        .flat_map(|s| &s.operations)
        .filter(|o| **o == Operation::Uncordon { node: "b".into() })
        .count();
    assert_eq!(uncordons, 1);
    // Without b's wait first, c's restart would leave 1/3: the simulation agrees.
    let q: Vec<_> = p
        .steps
        .iter()
        .flat_map(|s| &s.quorum)
        .map(|q| (q.when.clone(), q.quorum.healthy_voters))
        .collect();
    assert_eq!(q[0], ("after".to_string(), 3), "{q:?}");
}

/// Resume after the node in flight came back (still cordoned by k3splan): its uncordon
/// comes first, before the next server restarts; without a rollout going on, the same
/// cordon is the `leftover_cordons` phase's.
#[test]
fn issue15_node_back_but_cordoned_is_finished_first() {
    let (t, mut o) = cluster_at(NEW, 0);
    set_host_version(&mut o, "b", NEW, true);
    kube_node(&mut o, "b").version = Some(NEW.into());
    kube_node(&mut o, "b").unschedulable = true;
    let opts = PlanOptions {
        cordoned_by_k3splan: ["b".to_string()].into(),
        ..PlanOptions::default()
    };
    let p = plan(&t, &o, &opts).expect("plan");
    let first = p
        .steps
        .iter()
        .find(|s| s.reason == ActionReason::UpgradeK3sVersion)
        .unwrap();
    assert_eq!(first.address.to_string(), "node.b");
    assert!(
        first
            .operations
            .contains(&Operation::Uncordon { node: "b".into() })
    );
    assert_eq!(upgrade_order(&p), ["c", "a"]);
    // Everything at NEW: the leftover cordon is undone with its own reason.
    let mut o2 = o.clone();
    for n in ["a", "c"] {
        set_host_version(&mut o2, n, NEW, true);
        kube_node(&mut o2, n).version = Some(NEW.into());
    }
    let p = plan(&t, &o2, &opts).expect("plan");
    let node_steps: Vec<_> = p
        .steps
        .iter()
        .filter(|s| s.address.to_string().starts_with("node."))
        .collect();
    assert_eq!(node_steps.len(), 1, "{:#?}", p.steps);
    assert_eq!(
        node_steps[0].reason,
        ActionReason::UncordonLeftByInterruptedApply
    );
}

#[test]
fn issue15_agents_in_batches_of_max_unavailable() {
    let (mut t, o) = cluster_at(NEW, 5);
    t.cluster.upgrade.max_unavailable = MaxUnavailable::Count(2);
    let p = plan(&t, &o, &PlanOptions::default()).expect("plan");
    // Never more than 2 agents cordoned at once, in plan order.
    let mut cordoned = std::collections::BTreeSet::new();
    let mut max = 0;
    for op in p.steps.iter().flat_map(|s| &s.operations) {
        match op {
            Operation::Cordon { node } if node.starts_with('w') => {
                cordoned.insert(node.clone());
            }
            Operation::Uncordon { node } => {
                cordoned.remove(node);
            }
            _ => {}
        }
        max = max.max(cordoned.len());
    }
    assert_eq!(max, 2);
    assert_eq!(upgrade_order(&p)[3..], ["w1", "w2", "w3", "w4", "w5"]);
    // 40 % of 5 agents = 2 as well.
    t.cluster.upgrade.max_unavailable = MaxUnavailable::Percent(40);
    let p2 = plan(&t, &o, &PlanOptions::default()).expect("plan");
    assert_eq!(p.steps, p2.steps);
}

#[test]
fn issue15_per_node_override_is_a_canary() {
    let (mut t, o) = cluster_at(OLD, 2);
    t.nodes
        .iter_mut()
        .find(|n| n.name == "b")
        .unwrap()
        .k3s_version = Some(NEW.into());
    let p = plan(&t, &o, &PlanOptions::default()).expect("plan");
    assert_eq!(upgrade_order(&p), ["b"]);
    // An agent newer than the servers is refused.
    let (mut t, o) = cluster_at(OLD, 1);
    t.nodes
        .iter_mut()
        .find(|n| n.name == "w1")
        .unwrap()
        .k3s_version = Some(NEW.into());
    let r = refused(plan(&t, &o, &PlanOptions::default()));
    assert!(
        r.violations
            .iter()
            .any(|v| v.message.contains("kubelet must not be newer")),
        "{r:?}"
    );
}

/// A node cordoned by someone else stays cordoned: no cordon, no uncordon, a note.
#[test]
fn issue15_foreign_cordon_is_left_alone() {
    let (t, mut o) = cluster_at(NEW, 1);
    kube_node(&mut o, "w1").unschedulable = true;
    let p = plan(&t, &o, &PlanOptions::default()).expect("plan");
    let ops = ops_of(&p, "w1");
    assert!(
        !ops.iter()
            .any(|o| matches!(o, Operation::Cordon { .. } | Operation::Uncordon { .. })),
        "{ops:?}"
    );
}

/// The simulation itself: two upgrade restarts without the wait between them lose quorum.
#[test]
fn issue15_simulation_counts_an_upgrade_restart_until_its_wait() {
    use crate::plan::safety::{Sim, SimMember};
    let m = |n: &str, id| SimMember {
        id,
        node: Some(n.into()),
        voter: true,
        healthy: true,
    };
    let mut sim = Sim::new(vec![m("a", 1), m("b", 2), m("c", 3)]);
    let up = |n: &str| Operation::UpgradeK3s {
        node: n.into(),
        from: None,
        version: NEW.into(),
        agent: false,
    };
    sim.apply(&up("a")).expect("one restart");
    let e = sim.apply(&up("b")).unwrap_err();
    assert_eq!(e.0, Rule::RestartCountsAsRemoval);
    let mut sim = Sim::new(vec![m("a", 1), m("b", 2), m("c", 3)]);
    sim.apply(&up("a")).unwrap();
    sim.apply(&Operation::WaitUpgraded {
        node: "a".into(),
        version: NEW.into(),
    })
    .unwrap();
    sim.apply(&up("b")).expect("after the wait");
}
