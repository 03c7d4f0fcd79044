//! Issue 15, property test: over random clusters (1–7 servers, 0–6 agents, members healthy,
//! unhealthy or learners, nodes at the old version, the new one, or halfway — installed and
//! not restarted, restarting after an interrupted apply —, any etcd leader, any batch size,
//! declared versions that are an upgrade, a patch, a downgrade or a jump, canary overrides),
//! every upgrade plan the planner emits keeps, in an independent replay written here:
//! - healthy etcd voters ≥ floor(voters/2)+1 after every operation, counting a server's
//!   member away from its `UpgradeK3s` until its `WaitUpgraded`;
//! - never two servers restarting at once, never more agents cordoned than the batch;
//! - every restart waited on before the plan ends, servers before agents;
//! - a node already at its declared version is not restarted;
//!
//! and every refusal carries a reason.

use std::collections::BTreeSet;

use k3splan::config::{MaxUnavailable, Role, Topology};
use k3splan::observed::{Fact, MemberHealth, Observed};
use k3splan::plan::testkit::*;
use k3splan::plan::{Operation, PlanOptions, plan};
use proptest::prelude::*;

const OLD: &str = "v1.28.5+k3s1";
const NEW: &str = "v1.29.0+k3s1";

#[derive(Debug, Clone)]
struct NodeCase {
    /// 0 healthy, 1 unreachable member, 2 learner.
    health: u8,
    /// 0 at OLD, 1 at NEW, 2 installed NEW but running OLD, 3 restarting to NEW (member
    /// not back, Node still OLD, cordoned by k3splan).
    stage: u8,
    /// A canary override to NEW.
    canary: bool,
}

#[derive(Debug, Clone)]
struct Case {
    servers: Vec<NodeCase>,
    agents: Vec<NodeCase>,
    leader: usize,
    /// 0 NEW, 1 patch, 2 OLD, 3 jump, 4 downgrade.
    target: u8,
    batch: u32,
    percent: bool,
}

fn node_case() -> impl Strategy<Value = NodeCase> {
    (
        prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        prop_oneof![6 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)],
        prop::bool::weighted(0.1),
    )
        .prop_map(|(health, stage, canary)| NodeCase {
            health,
            stage,
            canary,
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(node_case(), 1..=7),
        prop::collection::vec(node_case(), 0..=6),
        0usize..7,
        prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8), 1 => Just(4u8)],
        1u32..=4,
        any::<bool>(),
    )
        .prop_map(|(servers, agents, leader, target, batch, percent)| Case {
            servers,
            agents,
            leader,
            target,
            batch,
            percent,
        })
}

fn build(c: &Case) -> (Topology, Observed, PlanOptions) {
    let mut nodes = Vec::new();
    for (i, _) in c.servers.iter().enumerate() {
        nodes.push(node(
            &format!("s{i}"),
            &format!("10.8.1.{}", i + 1),
            &[Role::Server],
        ));
    }
    for (i, _) in c.agents.iter().enumerate() {
        nodes.push(node(
            &format!("w{i}"),
            &format!("10.8.2.{}", i + 1),
            &[Role::Agent],
        ));
    }
    let t_old = topology(cluster("p"), nodes);
    let mut o = observed_matching(&t_old);
    let mut opts = PlanOptions::default();
    let cases: Vec<(&str, &NodeCase, bool)> = c
        .servers
        .iter()
        .enumerate()
        .map(|(i, n)| (i, n, true))
        .chain(c.agents.iter().enumerate().map(|(i, n)| (i, n, false)))
        .map(|(i, n, server)| {
            let name: &'static str =
                Box::leak(format!("{}{i}", if server { "s" } else { "w" }).into_boxed_str());
            (name, n, server)
        })
        .collect();
    for (name, n, server) in &cases {
        let (host_v, node_v, member_back, cordoned) = match n.stage {
            0 => (OLD, OLD, true, false),
            1 => (NEW, NEW, true, false),
            2 => (NEW, OLD, true, false),
            _ => (NEW, OLD, false, true),
        };
        if let Some(Fact::Known(h)) = o.hosts.get_mut(*name) {
            h.k3s.as_mut().unwrap().version = Some(host_v.into());
        }
        if let Fact::Known(k) = &mut o.kube {
            let kn = k.nodes.iter_mut().find(|x| x.name == *name).unwrap();
            kn.version = Some(node_v.into());
            kn.unschedulable = cordoned;
        }
        if cordoned {
            opts.cordoned_by_k3splan.insert(name.to_string());
        }
        if *server && let Fact::Known(e) = &mut o.etcd {
            let m = e
                .members
                .iter_mut()
                .find(|m| m.id == member_id(name))
                .unwrap();
            match n.health {
                1 => {
                    m.health = MemberHealth::Unreachable {
                        reason: "timeout".into(),
                    }
                }
                2 => m.is_learner = true,
                _ => {}
            }
            if !member_back {
                m.health = MemberHealth::Unreachable {
                    reason: "restarting".into(),
                };
            }
        }
    }
    if let Fact::Known(e) = &mut o.etcd {
        e.leader = Some(member_id(&format!("s{}", c.leader % c.servers.len())));
    }
    let mut t = t_old.clone();
    t.cluster.k3s_version = Some(
        match c.target {
            0 => NEW,
            1 => "v1.28.9+k3s1",
            2 => OLD,
            3 => "v1.30.1+k3s1",
            _ => "v1.27.3+k3s1",
        }
        .into(),
    );
    for (name, n, _) in &cases {
        if n.canary {
            t.nodes
                .iter_mut()
                .find(|x| x.name == *name)
                .unwrap()
                .k3s_version = Some(NEW.into());
        }
    }
    t.cluster.upgrade.max_unavailable = if c.percent {
        MaxUnavailable::Percent(c.batch * 20)
    } else {
        MaxUnavailable::Count(c.batch)
    };
    (t, o, opts)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn issue15_no_upgrade_plan_leaves_fewer_healthy_voters_than_quorum(c in case()) {
        let (t, o, opts) = build(&c);
        let p = match plan(&t, &o, &opts) {
            Ok(p) => p,
            Err(r) => {
                prop_assert!(!r.violations.is_empty());
                for v in &r.violations {
                    prop_assert!(!v.message.is_empty(), "{v:?}");
                }
                return Ok(());
            }
        };
        let Fact::Known(e) = &o.etcd else { unreachable!() };
        let voters: BTreeSet<String> = e
            .members
            .iter()
            .filter(|m| !m.is_learner)
            .map(|m| m.name.clone())
            .collect();
        let name_of = |node: &str| member_name(node);
        let mut healthy: BTreeSet<String> = e
            .members
            .iter()
            .filter(|m| !m.is_learner && m.is_healthy())
            .map(|m| m.name.clone())
            .collect();
        let needed = voters.len() / 2 + 1;
        let batch = t.cluster.upgrade.max_unavailable.batch(c.agents.len());
        let mut restarting_servers: BTreeSet<String> = BTreeSet::new();
        let mut cordoned_agents: BTreeSet<String> = BTreeSet::new();
        let mut waited: BTreeSet<String> = BTreeSet::new();
        let mut agent_seen = false;
        for op in p.steps.iter().flat_map(|s| &s.operations) {
            match op {
                Operation::UpgradeK3s { node, version, .. } => {
                    let server = node.starts_with('s');
                    prop_assert!(!(server && agent_seen), "server {node} after an agent");
                    agent_seen |= !server;
                    let decl = t.node(node).unwrap();
                    prop_assert_eq!(Some(version.as_str()), t.k3s_version_of(decl));
                    if server {
                        prop_assert!(
                            restarting_servers.is_empty(),
                            "{node} restarts while {restarting_servers:?} restart"
                        );
                        restarting_servers.insert(node.clone());
                        healthy.remove(&name_of(node));
                        prop_assert!(
                            healthy.len() >= needed,
                            "upgrading {node}: {}/{} healthy, {needed} needed",
                            healthy.len(),
                            voters.len()
                        );
                    }
                    // Not a node already at its declared version everywhere.
                    let case = if server {
                        &c.servers[node[1..].parse::<usize>().unwrap()]
                    } else {
                        &c.agents[node[1..].parse::<usize>().unwrap()]
                    };
                    prop_assert!(
                        !(case.stage == 1 && version == NEW),
                        "{node} is at {NEW} already"
                    );
                }
                Operation::WaitUpgraded { node, .. } => {
                    restarting_servers.remove(node);
                    waited.insert(node.clone());
                    if node.starts_with('s') && voters.contains(&name_of(node)) {
                        healthy.insert(name_of(node));
                    }
                }
                Operation::Cordon { node } if node.starts_with('w') => {
                    cordoned_agents.insert(node.clone());
                    prop_assert!(cordoned_agents.len() <= batch, "{cordoned_agents:?} > {batch}");
                }
                Operation::Uncordon { node } => {
                    cordoned_agents.remove(node);
                }
                _ => {}
            }
        }
        prop_assert!(restarting_servers.is_empty(), "not waited on: {restarting_servers:?}");
        for op in p.steps.iter().flat_map(|s| &s.operations) {
            if let Operation::UpgradeK3s { node, .. } = op {
                prop_assert!(waited.contains(node), "{node} never waited on");
            }
        }
    }
}
