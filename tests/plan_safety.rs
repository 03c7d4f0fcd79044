//! One test (or more) per safety rule: refusals name the step and the rule; the simulation
//! rejects hand-built unsafe step lists.

use k3splan::config::{Role, Topology};
use k3splan::observed::{Fact, HostState, MemberHealth, Observed};
use k3splan::plan::safety::{Sim, SimMember, simulate};
use k3splan::plan::testkit::*;
use k3splan::plan::{
    Action, ActionReason, Address, Operation, Plan, PlanOptions, Refusal, Rule, Step, plan,
};
use k3splan::render::{self, TextOptions};

const S: [Role; 1] = [Role::Server];

fn three() -> Topology {
    topology(
        cluster("t"),
        vec![
            node("a", "10.0.0.1", &S),
            node("b", "10.0.0.2", &S),
            node("c", "10.0.0.3", &S),
        ],
    )
}

fn set_member(o: &mut Observed, n: &str, h: MemberHealth) {
    let Fact::Known(e) = &mut o.etcd else {
        unreachable!()
    };
    e.members
        .iter_mut()
        .find(|m| m.name == member_name(n))
        .unwrap()
        .health = h;
}

fn set_ready(o: &mut Observed, n: &str, ready: bool) {
    let Fact::Known(k) = &mut o.kube else {
        unreachable!()
    };
    k.nodes.iter_mut().find(|x| x.name == n).unwrap().ready = ready;
}

fn dead() -> MemberHealth {
    MemberHealth::Unreachable {
        reason: "connection refused".into(),
    }
}

fn refusal(r: Result<Plan, Refusal>) -> Refusal {
    match r {
        Ok(p) => panic!(
            "expected a refusal, got a plan:\n{}",
            render::text(&Ok(p), TextOptions::default())
        ),
        Err(e) => e,
    }
}

fn ok(r: Result<Plan, Refusal>) -> Plan {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn step(id: usize, address: Address, ops: Vec<Operation>) -> Step {
    Step {
        id,
        address,
        action: Action::Update,
        reason: ActionReason::CreateBecauseDeclared,
        why: String::new(),
        operations: ops,
        before: None,
        after: None,
        depends_on: vec![],
        quorum: vec![],
        notes: vec![],
    }
}

fn sim(health: &[bool]) -> Sim {
    Sim::new(
        health
            .iter()
            .enumerate()
            .map(|(i, h)| SimMember {
                id: i as u64 + 1,
                node: Some(format!("n{i}")),
                voter: true,
                healthy: *h,
            })
            .collect(),
    )
}

// ---------------------------------------------------------------- rule 1

#[test]
fn rule1_unreachable_host_of_a_ready_node_is_not_removed() {
    let mut t = three();
    t.nodes.retain(|n| n.name != "c");
    let mut o = observed_matching(&three());
    host_refused(&mut o, "c", "ssh 10.0.0.3:22: no route to host");
    let r = refusal(plan(&t, &o, &PlanOptions::default()));
    let v = &r.violations[0];
    assert_eq!(v.rule, Rule::NeverDestroyFromUnknown);
    assert_eq!(v.step.as_deref(), Some("node.c"));
    assert!(
        v.message.contains("no route to host") && v.message.contains("Ready"),
        "{}",
        v.message
    );
    assert!(
        v.advice
            .as_deref()
            .unwrap()
            .contains("--allow-unreachable c")
    );
    let text = render::text(&Err(r), TextOptions::default());
    assert!(
        text.contains("rule 1 (never destroy from an unknown fact)"),
        "{text}"
    );

    // With the flag: planned, but k3s is not uninstalled and a warning says so.
    let opts = PlanOptions {
        allow_unreachable: ["c".to_string()].into(),
        ..PlanOptions::default()
    };
    let p = ok(plan(&t, &o, &opts));
    assert!(p.steps.iter().any(|s| s.address == Address::member("c")));
    assert!(
        !p.steps
            .iter()
            .flat_map(|s| &s.operations)
            .any(|op| matches!(op, Operation::UninstallK3s { .. }))
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("will not be uninstalled"))
    );
}

#[test]
fn rule1_dead_by_all_sources_is_removed_without_the_flag_and_without_eviction() {
    let mut t = three();
    t.nodes.retain(|n| n.name != "c");
    let mut o = observed_matching(&three());
    host_refused(&mut o, "c", "ssh 10.0.0.3:22: connection refused");
    set_ready(&mut o, "c", false);
    set_member(&mut o, "c", dead());
    let p = ok(plan(&t, &o, &PlanOptions::default()));
    let drain = p
        .steps
        .iter()
        .flat_map(|s| &s.operations)
        .find_map(|op| match op {
            Operation::Drain { skip_eviction, .. } => Some(*skip_eviction),
            _ => None,
        });
    assert_eq!(drain, Some(true));
}

#[test]
fn rule1_healthy_member_matching_no_node_is_not_removed() {
    let t = three();
    let mut o = observed_matching(&t);
    let Fact::Known(e) = &mut o.etcd else {
        unreachable!()
    };
    e.members.push(member(
        "ghost",
        "10.0.0.99".parse().unwrap(),
        MemberHealth::Healthy,
    ));
    let r = refusal(plan(&t, &o, &PlanOptions::default()));
    assert_eq!(r.violations[0].rule, Rule::NeverDestroyFromUnknown);
    assert_eq!(
        r.violations[0].step.as_deref(),
        Some(format!("etcd_member.{}", member_name("ghost")).as_str())
    );
}

#[test]
fn desired_node_that_is_dead_is_not_destroyed_but_reported() {
    let t = three();
    let mut o = observed_matching(&t);
    o.hosts.insert("c".into(), Fact::unknown("timeout"));
    set_ready(&mut o, "c", false);
    set_member(&mut o, "c", dead());
    let p = ok(plan(&t, &o, &PlanOptions::default()));
    assert!(p.steps.is_empty(), "{:?}", p.steps);
    // issue 13: a dead declared member is drift (exit 2 under --detailed-exitcode), with
    // what to do; and its unread host makes the plan incomplete (exit 1) until accepted.
    let d = p
        .drift
        .iter()
        .find(|d| d.address == "etcd_member.c")
        .unwrap_or_else(|| panic!("dead member is drift: {:?}", p.drift));
    assert!(!d.planned);
    assert!(
        d.note.as_deref().unwrap().contains("-replace=node.c"),
        "{d:?}"
    );
    assert!(!p.is_complete(), "host c was not read: {:?}", p.unknown);
    assert_eq!(render::detailed_exitcode(&Ok(p)), 1);
    let opts = PlanOptions {
        allow_unreachable: ["c".to_string()].into(),
        ..PlanOptions::default()
    };
    let p = ok(plan(&t, &o, &opts));
    assert!(p.is_complete());
    let text = render::text(&Ok(p.clone()), TextOptions::default());
    assert!(!text.contains("No changes."), "{text}");
    assert!(text.contains("etcd_member.c.health"), "{text}");
    assert_eq!(render::detailed_exitcode(&Ok(p)), 2);
}

/// issue 13: a declared server whose member is dead while its host answers (rebuilt empty)
/// is drift, not "No changes.": `plan --detailed-exitcode` exits 2.
#[test]
fn issue13_dead_member_of_a_reachable_declared_server_is_drift_exit_2() {
    let t = three();
    let mut o = observed_matching(&t);
    set_member(&mut o, "c", dead());
    let p = ok(plan(&t, &o, &PlanOptions::default()));
    assert!(p.is_complete());
    assert!(
        p.drift
            .iter()
            .any(|d| d.address == "etcd_member.c" && d.attribute == "health"),
        "{:?}",
        p.drift
    );
    let text = render::text(&Ok(p.clone()), TextOptions::default());
    assert!(!text.contains("No changes."), "{text}");
    assert_eq!(render::detailed_exitcode(&Ok(p)), 2);
}

/// issue 13: with every host unknown (known_hosts missing, wrong key), the plan is
/// incomplete: it never says "No changes." and exits 1, naming each host and why; accepted
/// hosts are warnings.
#[test]
fn issue13_unknown_declared_hosts_make_the_plan_incomplete_never_no_changes() {
    let t = three();
    let mut o = observed_matching(&t);
    for n in ["a", "b", "c"] {
        o.hosts.insert(
            n.into(),
            Fact::unknown(format!(
                "ssh {n}: authentication as root failed (tried key)"
            )),
        );
        o.host_failures
            .insert(n.into(), k3splan::observed::HostUnknown::Credentials);
    }
    let r = plan(&t, &o, &PlanOptions::default());
    let p = ok(r.clone());
    assert!(p.steps.is_empty() && !p.is_complete(), "{p:?}");
    assert_eq!(p.unknown.len(), 3);
    let text = render::text(&r, TextOptions::default());
    assert!(!text.contains("No changes."), "{text}");
    assert!(
        text.contains("the plan is incomplete: 3 declared sources"),
        "{text}"
    );
    assert!(
        text.contains("host.a is unknown: ssh a: authentication as root failed"),
        "{text}"
    );
    assert_eq!(render::detailed_exitcode(&r), 1);
    let json = render::json_value(&r);
    assert_eq!(json["complete"], false, "{json}");
    assert_eq!(json["unknown"].as_array().unwrap().len(), 3);
    // Accepting all three: complete, and the text lists them as warnings.
    let opts = PlanOptions {
        allow_unreachable: ["a", "b", "c"].iter().map(|s| s.to_string()).collect(),
        ..PlanOptions::default()
    };
    let r = plan(&t, &o, &opts);
    assert!(ok(r.clone()).is_complete());
    let text = render::text(&r, TextOptions::default());
    assert!(
        text.contains("Warning: host.b is unknown (accepted"),
        "{text}"
    );
    assert_eq!(render::detailed_exitcode(&r), 0);
}

/// issue 13: a removed node whose host did not answer in time (it may be alive behind a
/// partition) is not removed without --allow-unreachable, even when its Node is NotReady and
/// its member dead; the plan says "unknown", not "unreachable", and with the flag it warns
/// that k3s will not be uninstalled.
#[test]
fn issue13_removing_a_silent_host_needs_the_flag_and_says_unknown() {
    let mut t = three();
    t.nodes.retain(|n| n.name != "c");
    let mut o = observed_matching(&three());
    host_silent(
        &mut o,
        "c",
        "ssh c: connect to 10.0.0.3:22 timed out after 10s",
    );
    set_ready(&mut o, "c", false);
    set_member(&mut o, "c", dead());
    let r = refusal(plan(&t, &o, &PlanOptions::default()));
    let v = &r.violations[0];
    assert_eq!(v.rule, Rule::NeverDestroyFromUnknown);
    assert!(
        v.message.contains("is unknown") && v.message.contains("partition"),
        "{}",
        v.message
    );
    assert!(
        v.advice
            .as_deref()
            .unwrap()
            .contains("--allow-unreachable c")
    );
    let opts = PlanOptions {
        allow_unreachable: ["c".to_string()].into(),
        ..PlanOptions::default()
    };
    let p = ok(plan(&t, &o, &opts));
    assert!(p.steps.iter().any(|s| s.address == Address::member("c")));
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("node.c: host unknown") && w.contains("will not be uninstalled")),
        "{:?}",
        p.warnings
    );
    let json = render::json(&Ok(p));
    assert!(json.contains("\"unknown: ssh c: connect"), "{json}");
    assert!(!json.contains("unreachable: ssh c"), "{json}");
}

// ---------------------------------------------------------------- rule 2

#[test]
fn rule2_quorum_already_lost_refuses_with_recovery_advice() {
    let t = three();
    let mut o = observed_matching(&t);
    set_member(&mut o, "b", dead());
    set_member(&mut o, "c", dead());
    let r = refusal(plan(&t, &o, &PlanOptions::default()));
    let v = &r.violations[0];
    assert_eq!(v.rule, Rule::Quorum);
    assert!(
        v.message.contains("1/3 voters healthy (quorum needs 2)"),
        "{}",
        v.message
    );
    let advice = v.advice.as_deref().unwrap();
    assert!(
        advice.contains("--cluster-reset") && advice.contains("restore-path"),
        "{advice}"
    );
    assert!(
        advice.contains("on a (member"),
        "names the survivor: {advice}"
    );
    assert_eq!(render::detailed_exitcode(&Err(r)), 1);
}

#[test]
fn rule2_removing_a_healthy_member_while_another_is_dead_is_refused_naming_the_step() {
    let mut t = three();
    t.nodes.retain(|n| n.name != "b");
    let mut o = observed_matching(&three());
    set_member(&mut o, "c", dead());
    set_ready(&mut o, "c", false);
    let r = refusal(plan(&t, &o, &PlanOptions::default()));
    let v = r
        .violations
        .iter()
        .find(|v| v.rule == Rule::Quorum)
        .expect("rule 2");
    let step = v.step.as_deref().unwrap();
    assert!(
        step.contains("etcd_member.b") && step.contains("remove etcd member"),
        "{step}"
    );
    assert!(v.message.contains("1/2 voters healthy"), "{}", v.message);
    let json = render::json(&Err(r));
    assert!(json.contains("\"rule_number\": 2"), "{json}");
}

#[test]
fn rule2_simulation_rejects_a_removal_that_breaks_quorum() {
    let mut steps = vec![step(
        1,
        Address::member("n0"),
        vec![Operation::RemoveEtcdMember {
            id: 1,
            name: "n0".into(),
            peer_url: String::new(),
        }],
    )];
    let r = simulate(&sim(&[true, true, false]), &mut steps, false).unwrap_err();
    assert_eq!(r.violations[0].rule, Rule::Quorum);
    assert!(
        r.violations[0]
            .step
            .as_deref()
            .unwrap()
            .starts_with("step 1 etcd_member.n0")
    );
}

// ---------------------------------------------------------------- rule 3

#[test]
fn rule3_replacement_of_a_failed_member_removes_before_it_adds() {
    let mut t = three();
    t.nodes.retain(|n| n.name != "c");
    t.nodes.push(node("d", "10.0.0.4", &S));
    let mut o = observed_matching(&three());
    set_member(&mut o, "c", dead());
    set_ready(&mut o, "c", false);
    host_refused(&mut o, "c", "ssh 10.0.0.3:22: connection refused");
    o.hosts
        .insert("d".into(), Fact::Known(HostState::default()));
    let p = ok(plan(&t, &o, &PlanOptions::default()));
    let pos = |a: &Address| p.steps.iter().position(|s| &s.address == a).unwrap();
    assert!(pos(&Address::member("c")) < pos(&Address::node("d")));
    let q: Vec<String> = p
        .steps
        .iter()
        .flat_map(|s| s.quorum.iter().map(|q| q.quorum.to_string()))
        .collect();
    assert_eq!(q[0], "2/2 voters healthy (quorum needs 2)");
}

#[test]
fn rule3_simulation_rejects_join_before_removing_the_failed_member_and_two_learners() {
    let join = |n: &str| Operation::JoinServer {
        node: n.into(),
        via: "https://x:6443".into(),
        etcd: true,
        control_plane: true,
        version: None,
    };
    let mut steps = vec![
        step(1, Address::node("d"), vec![join("d")]),
        step(2, Address::node("e"), vec![join("e")]),
        step(
            3,
            Address::member("n2"),
            vec![Operation::RemoveEtcdMember {
                id: 3,
                name: "n2".into(),
                peer_url: String::new(),
            }],
        ),
    ];
    let r = simulate(&sim(&[true, true, false]), &mut steps, false).unwrap_err();
    let rules: Vec<(Rule, &str)> = r
        .violations
        .iter()
        .map(|v| (v.rule, v.step.as_deref().unwrap()))
        .collect();
    assert!(
        rules
            .iter()
            .any(|(r, s)| *r == Rule::OneMembershipChange && s.starts_with("step 1 node.d")),
        "{rules:?}"
    );
    assert!(
        rules
            .iter()
            .any(|(r, s)| *r == Rule::OneMembershipChange && s.starts_with("step 2 node.e")),
        "{rules:?}"
    );
}

#[test]
fn rule3_pending_learner_is_promoted_before_the_next_change() {
    let mut t = three();
    t.nodes.push(node("d", "10.0.0.4", &S));
    let mut o = observed_matching(&three());
    let Fact::Known(e) = &mut o.etcd else {
        unreachable!()
    };
    e.members[2].is_learner = true;
    o.hosts
        .insert("d".into(), Fact::Known(HostState::default()));
    let p = ok(plan(&t, &o, &PlanOptions::default()));
    let first_change = p
        .steps
        .iter()
        .find(|s| s.address != Address::EtcdSnapshot)
        .unwrap();
    assert_eq!(first_change.address, Address::member("c"));
    assert!(matches!(
        first_change.operations[0],
        Operation::WaitLearnerPromoted { .. }
    ));
}

// ---------------------------------------------------------------- rule 4 / 5

#[test]
fn rule4_snapshot_precedes_destruction_and_verify_follows() {
    let mut t = three();
    t.nodes.retain(|n| n.name != "c");
    let o = observed_matching(&three());
    let p = ok(plan(&t, &o, &PlanOptions::default()));
    assert_eq!(p.steps[0].address, Address::EtcdSnapshot);
    assert_eq!(p.steps.last().unwrap().address, Address::Verify);
    // Healthy removal: evicted, then k3s uninstalled after the member is gone.
    let ops: Vec<&Operation> = p.steps.iter().flat_map(|s| &s.operations).collect();
    let member = ops
        .iter()
        .position(|op| matches!(op, Operation::RemoveEtcdMember { .. }))
        .unwrap();
    let uninstall = ops
        .iter()
        .position(|op| matches!(op, Operation::UninstallK3s { .. }))
        .unwrap();
    assert!(member < uninstall);
    assert!(ops.iter().any(|op| matches!(
        op,
        Operation::Drain {
            skip_eviction: false,
            ..
        }
    )));

    let mut no_snap = t.clone();
    no_snap.cluster.etcd.snapshot_before_apply = false;
    let p = ok(plan(&no_snap, &o, &PlanOptions::default()));
    assert!(p.steps.iter().all(|s| s.address != Address::EtcdSnapshot));
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("snapshot_before_apply = false"))
    );
}

#[test]
fn rule4_simulation_rejects_destruction_without_snapshot() {
    let mut steps = vec![step(
        1,
        Address::node("n0"),
        vec![Operation::DeleteNode { node: "n0".into() }],
    )];
    let r = simulate(&sim(&[true, true, true]), &mut steps, true).unwrap_err();
    assert_eq!(r.violations[0].rule, Rule::SnapshotFirst);
}

// ---------------------------------------------------------------- rule 6

#[test]
fn rule6_simulation_rejects_deleting_a_pvc_on_a_node_that_stays() {
    let mut steps = vec![step(
        1,
        Address::Pvc {
            namespace: "ns".into(),
            name: "data-0".into(),
        },
        vec![Operation::RebindVolume {
            namespace: "ns".into(),
            pvc: "data-0".into(),
            pvc_uid: "u".into(),
            pod: None,
            from_node: "n1".into(),
            evidence: Default::default(),
        }],
    )];
    let r = simulate(&sim(&[true, true, true]), &mut steps, false).unwrap_err();
    assert_eq!(r.violations[0].rule, Rule::PvcOnHealthyNode);
    assert!(r.violations[0].message.contains("n1"));
}

// ---------------------------------------------------------------- rule 9

#[test]
fn rule9_restart_with_two_of_three_healthy_is_refused_by_the_simulation() {
    let mut steps = vec![step(
        1,
        Address::host_file("n0", "/etc/rancher/k3s/config.yaml"),
        vec![Operation::RestartService { node: "n0".into() }],
    )];
    let r = simulate(&sim(&[true, true, false]), &mut steps, false).unwrap_err();
    assert_eq!(r.violations[0].rule, Rule::RestartCountsAsRemoval);
    assert!(
        r.violations[0].message.contains("1/3 voters healthy"),
        "{}",
        r.violations[0].message
    );
    // With three healthy, the restart is allowed and the quorum during it recorded.
    let mut steps = vec![step(
        1,
        Address::host_file("n0", "/x"),
        vec![Operation::RestartService { node: "n0".into() }],
    )];
    simulate(&sim(&[true, true, true]), &mut steps, false).unwrap();
    assert_eq!(steps[0].quorum[0].when, "during");
    assert_eq!(steps[0].quorum[0].quorum.healthy_voters, 2);
}

// ---------------------------------------------------------------- rule 10

#[test]
fn rule10_simulation_rejects_cluster_init_in_a_written_config() {
    let mut steps = vec![step(
        1,
        Address::host_file("n0", "/etc/rancher/k3s/config.yaml"),
        vec![Operation::WriteFile {
            node: "n0".into(),
            path: "/etc/rancher/k3s/config.yaml".into(),
            before: None,
            after: "cluster-init: true\n".into(),
            sensitive: vec![],
        }],
    )];
    let r = simulate(&sim(&[true, true, true]), &mut steps, false).unwrap_err();
    assert_eq!(r.violations[0].rule, Rule::NoClusterInitOnJoin);
}

#[test]
fn rule10_replaced_bootstrap_server_rejoins_with_server_url_not_cluster_init() {
    let mut t = three();
    t.nodes[0].replace = true;
    let o = observed_matching(&three()); // a has cluster-init: true in its config
    let p = ok(plan(&t, &o, &PlanOptions::default()));
    let cfg = p
        .steps
        .iter()
        .flat_map(|s| &s.operations)
        .find_map(|op| match op {
            Operation::WriteFile { node, after, .. } if node == "a" => Some(after),
            _ => None,
        })
        .unwrap();
    assert!(
        !cfg.contains("cluster-init") && cfg.contains("server: https://10.0.0.2:6443"),
        "{cfg}"
    );
    assert!(p.steps.iter().any(|s| s.why.contains("second cluster")));
}

// ---------------------------------------------------------------- rule 11

#[test]
fn rule11_members_are_matched_by_peer_address_not_name() {
    let t = three();
    let mut o = observed_matching(&t);
    let Fact::Known(e) = &mut o.etcd else {
        unreachable!()
    };
    // Rejoined members get new names and IDs; names never match node names.
    for (i, m) in e.members.iter_mut().enumerate() {
        m.name = format!("host{i}-deadbeef");
        m.id += 17;
    }
    assert!(ok(plan(&t, &o, &PlanOptions::default())).steps.is_empty());
    // A member named like a node but at another address is not that node's member.
    let Fact::Known(e) = &mut o.etcd else {
        unreachable!()
    };
    e.members[2].name = "c".into();
    e.members[2].peer_urls = vec!["https://10.9.9.9:2380".into()];
    e.members[2].health = dead();
    let p = ok(plan(&t, &o, &PlanOptions::default()));
    assert!(
        p.steps
            .iter()
            .any(|s| s.address == Address::member("c") && s.action == Action::Delete)
    );
    assert!(
        p.drift
            .iter()
            .any(|d| d.address == "etcd_member.c" && !d.planned),
        "node c has no member: {:?}",
        p.drift
    );
}

// ---------------------------------------------------------------- sources unknown

#[test]
fn etcd_unknown_refuses_membership_changes() {
    let mut t = three();
    t.nodes.push(node("d", "10.0.0.4", &S));
    let mut o = observed_matching(&three());
    o.etcd = Fact::unknown("https://10.0.0.1:2379: certificate signed by unknown authority");
    o.hosts
        .insert("d".into(), Fact::Known(HostState::default()));
    let r = refusal(plan(&t, &o, &PlanOptions::default()));
    assert!(
        r.violations
            .iter()
            .any(|v| v.rule == Rule::SourceUnknown && v.step.as_deref() == Some("node.d"))
    );
}

#[test]
fn new_node_with_unreachable_host_is_refused() {
    let mut t = three();
    t.nodes.push(node("d", "10.0.0.4", &[Role::Agent]));
    let mut o = observed_matching(&three());
    o.hosts.insert(
        "d".into(),
        Fact::unknown("ssh: handshake failed: host key mismatch"),
    );
    let r = refusal(plan(&t, &o, &PlanOptions::default()));
    assert!(r.violations[0].message.contains("host key mismatch"));
}

// ---------------------------------------------------------------- rendering

#[test]
fn colour_switch_and_exit_codes() {
    let t = three();
    let mut o = observed_matching(&t);
    let Fact::Known(k) = &mut o.kube else {
        unreachable!()
    };
    k.addons.clear();
    let mut t2 = t.clone();
    t2.addons = vec![addon("coredns", 2, None)];
    let Fact::Known(k) = &mut o.kube else {
        unreachable!()
    };
    k.addons.push(k3splan::observed::AddonDeployment {
        namespace: "kube-system".into(),
        name: "coredns".into(),
        replicas: 1,
        ready_replicas: 1,
        pod_nodes: vec!["a".into()],
        spread: None,
        helm_chart_config: true,
    });
    let r = plan(&t2, &o, &PlanOptions::default());
    let coloured = render::text(&r, TextOptions { color: true });
    let plain = render::text(&r, TextOptions { color: false });
    assert!(coloured.contains("\x1b[33m~"), "{coloured}");
    assert!(!plain.contains('\x1b'));
    assert!(plain.contains("via HelmChartConfig"));
    assert!(
        plain.contains("Plan: 0 to add, 1 to change, 0 to remove."),
        "{plain}"
    );
    assert_eq!(render::detailed_exitcode(&r), 2);
    assert!(render::use_color(false, None));
    assert!(!render::use_color(false, Some("1")));
    assert!(!render::use_color(true, None));
    let v: serde_json::Value = serde_json::from_str(&render::json(&r)).unwrap();
    assert_eq!(v["format_version"], "1.0");
    assert_eq!(v["resource_changes"][0]["change"]["actions"][0], "update");
    assert_eq!(v["resource_changes"][0]["action_reason"], "addon_drift");
}

#[test]
fn unfixable_drift_alone_exits_2_and_says_so() {
    let t = three();
    let mut o = observed_matching(&t);
    let Fact::Known(k) = &mut o.kube else {
        unreachable!()
    };
    k.nodes[1].version = Some("v1.27.1+k3s1".into());
    let r = plan(&t, &o, &PlanOptions::default());
    let p = r.as_ref().unwrap();
    assert!(p.steps.is_empty());
    assert_eq!(p.drift.len(), 1);
    assert_eq!(render::detailed_exitcode(&r), 2);
    let text = render::text(&r, TextOptions::default());
    assert!(
        text.starts_with("No changes planned, but the cluster differs"),
        "{text}"
    );
    assert!(
        text.contains("node.b.version: declared v1.28.5+k3s1, observed v1.27.1+k3s1"),
        "{text}"
    );
}

#[test]
fn refusal_json_has_no_changes_and_names_rule_and_step() {
    let t = three();
    let mut o = observed_matching(&t);
    set_member(&mut o, "a", dead());
    set_member(&mut o, "b", dead());
    let v: serde_json::Value =
        serde_json::from_str(&render::json(&plan(&t, &o, &PlanOptions::default()))).unwrap();
    assert_eq!(v["complete"], false);
    assert_eq!(v["errored"], true);
    assert_eq!(v["resource_changes"].as_array().unwrap().len(), 0);
    assert_eq!(v["safety"]["refusals"][0]["rule_number"], 2);
    assert_eq!(v["safety"]["refusals"][0]["step"], "etcd");
    assert_eq!(v["safety"]["quorum_before"]["healthy_voters"], 1);
}

#[test]
fn observed_state_round_trips_through_json() {
    let mut o = observed_matching(&three());
    o.hosts.insert("x".into(), Fact::unknown("ssh: timeout"));
    let s = serde_json::to_string(&o).unwrap();
    let back: Observed = serde_json::from_str(&s).unwrap();
    assert_eq!(back, o);
}

// ---------------------------------------------------------------- text output at scale

/// Issue 20: a plan with many unreadable hosts names the first 10 of each block and counts
/// the rest by kind (`plan --json` keeps every one); a few are still named one by one.
#[test]
fn issue20_many_unreadable_hosts_are_named_up_to_ten_then_counted() {
    let mut nodes = vec![
        node("a", "10.0.0.1", &S),
        node("b", "10.0.0.2", &S),
        node("c", "10.0.0.3", &S),
    ];
    let agents: Vec<String> = (1..=30).map(|i| format!("agent-{i:02}")).collect();
    for (i, a) in agents.iter().enumerate() {
        nodes.push(node(a, &format!("10.0.1.{}", i + 1), &[Role::Agent]));
    }
    let t = topology(cluster("t"), nodes);
    let mut o = observed_matching(&t);
    for a in &agents[..25] {
        host_refused(&mut o, a, "ssh: connection refused");
    }
    // 12 accepted, 13 not.
    let opts = PlanOptions {
        allow_unreachable: agents[..12].iter().cloned().collect(),
        ..PlanOptions::default()
    };
    let p = ok(plan(&t, &o, &opts));
    assert_eq!(p.unknown.len(), 25);
    let text = render::text(&Ok(p.clone()), TextOptions::default());
    let named = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(named("  - host.agent-"), 10, "{text}");
    assert!(
        text.contains("the plan is incomplete: 13 declared sources could not be read."),
        "{text}"
    );
    assert!(
        text.contains("  - and 3 more (3 unreachable); `k3splan plan --json` lists every one"),
        "{text}"
    );
    assert!(
        text.contains("or accept each with --allow-unreachable NODE."),
        "{text}"
    );
    assert_eq!(named("Warning: host.agent-"), 10, "{text}");
    assert!(
        text.contains(
            "Warning: 2 more sources could not be read (2 unreachable), each accepted with --allow-unreachable"
        ),
        "{text}"
    );
    assert!(text.lines().count() < 120, "{} lines", text.lines().count());
    // JSON keeps every one.
    let json = render::json_value(&Ok(p));
    assert_eq!(json["unknown"].as_array().map(Vec::len), Some(25));

    // Ten or fewer: each named, with the exact flags to accept them.
    let mut o = observed_matching(&t);
    for a in &agents[..2] {
        host_refused(&mut o, a, "ssh: connection refused");
    }
    let text = render::text(
        &plan(&t, &o, &PlanOptions::default()),
        TextOptions::default(),
    );
    assert!(
        text.contains("--allow-unreachable agent-01 --allow-unreachable agent-02."),
        "{text}"
    );
}
