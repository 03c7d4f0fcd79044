//! Issue 19, points 1, 2 and 7 (verify): servers without an agent (`disable-agent`: no
//! kubelet, so no Node), join targets that are never the node itself, and a verify that
//! expects what the plan leaves alone. Plans built from plain values (plan_safety style);
//! the lab e2e tests are in tests/e2e_seeds.rs.

use k3splan::config::{Role, Topology, load_str};
use k3splan::observed::{Fact, MemberHealth, Observed, Supervisor};
use k3splan::plan::testkit::*;
use k3splan::plan::{Operation, Plan, PlanOptions, Refusal, config_yaml_for, plan};
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

/// Three servers, each with `k3s_config = { "disable-agent" = true }`.
fn three_agentless() -> Topology {
    let mut t = three();
    for n in &mut t.nodes {
        n.k3s_config
            .insert("disable-agent".into(), serde_json::Value::Bool(true));
    }
    t
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

fn dead() -> MemberHealth {
    MemberHealth::Unreachable {
        reason: "connection refused".into(),
    }
}

fn ok(r: Result<Plan, Refusal>) -> Plan {
    match r {
        Ok(p) => p,
        Err(e) => panic!("expected a plan, got a refusal: {e:?}"),
    }
}

fn ops(p: &Plan) -> Vec<&Operation> {
    p.steps.iter().flat_map(|s| &s.operations).collect()
}

fn join_via<'a>(p: &'a Plan, node: &str) -> &'a str {
    ops(p)
        .into_iter()
        .find_map(|op| match op {
            Operation::JoinServer { node: n, via, .. } if n == node => Some(via.as_str()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no join of {node}:\n{}", text(p)))
}

fn text(p: &Plan) -> String {
    render::text(&Ok(p.clone()), TextOptions::default())
}

fn replace(n: &str) -> PlanOptions {
    let mut o = PlanOptions::default();
    o.replace.insert(n.to_string());
    o
}

#[test]
fn issue19_agentless_cluster_with_first_server_dead_joins_through_a_live_agentless_server() {
    let t = three_agentless();
    let mut o = observed_matching(&t);
    // No server runs an agent: the API lists no Node at all.
    assert!(o.kube.known().unwrap().nodes.is_empty());
    set_member(&mut o, "a", dead());
    o.supervisors.insert(
        "a".into(),
        Supervisor::Refused {
            reason: "connection refused".into(),
        },
    );
    o.supervisors.insert("b".into(), Supervisor::Answering);
    o.supervisors.insert("c".into(), Supervisor::Answering);
    let p = ok(plan(&t, &o, &replace("a")));
    assert_eq!(join_via(&p, "a"), "https://10.0.0.2:6443", "{}", text(&p));
    let all = ops(&p);
    assert!(
        all.iter()
            .any(|op| matches!(op, Operation::WaitServerHealthy { node } if node == "a")),
        "an agent-less server is waited for by member + supervisor:\n{}",
        text(&p)
    );
    assert!(
        !all.iter()
            .any(|op| matches!(op, Operation::WaitNodeReady { .. })),
        "no Node is ever awaited in an agent-less cluster:\n{}",
        text(&p)
    );
    let verify = all
        .iter()
        .find_map(|op| match op {
            Operation::Verify { expect_nodes, .. } => Some(*expect_nodes),
            _ => None,
        })
        .unwrap();
    assert_eq!(verify, 0, "no Node is expected Ready:\n{}", text(&p));
    // The config written for the rebuilt server keeps it agent-less.
    let cfg = all
        .iter()
        .find_map(|op| match op {
            Operation::WriteFile { node, after, .. } if node == "a" => Some(after.clone()),
            _ => None,
        })
        .unwrap();
    assert!(cfg.contains("\ndisable-agent: true\n"), "{cfg}");
}

#[test]
fn issue19_server_whose_supervisor_port_refuses_is_not_a_join_target() {
    let t = three_agentless();
    let mut o = observed_matching(&t);
    set_member(&mut o, "a", dead());
    o.supervisors.insert(
        "b".into(),
        Supervisor::Refused {
            reason: "connection refused".into(),
        },
    );
    o.supervisors.insert("c".into(), Supervisor::Answering);
    let p = ok(plan(&t, &o, &replace("a")));
    assert_eq!(join_via(&p, "a"), "https://10.0.0.3:6443", "{}", text(&p));
    // An unknown probe (a timeout) of an agent-less server does not vouch for it either.
    o.supervisors.insert(
        "c".into(),
        Supervisor::Unknown {
            reason: "timed out".into(),
        },
    );
    let r = plan(&t, &o, &replace("a"));
    let e = r.expect_err("no server is known to serve");
    assert!(
        format!("{e:?}").contains("no healthy server to join through"),
        "{e:?}"
    );
}

#[test]
fn issue19_server_with_an_agent_still_needs_its_node_ready() {
    let t = three();
    let mut o = observed_matching(&t);
    set_member(&mut o, "a", dead());
    let Fact::Known(k) = &mut o.kube else {
        unreachable!()
    };
    k.nodes.iter_mut().find(|n| n.name == "b").unwrap().ready = false;
    let p = ok(plan(&t, &o, &replace("a")));
    assert_eq!(join_via(&p, "a"), "https://10.0.0.3:6443", "{}", text(&p));
    assert!(
        ops(&p)
            .iter()
            .any(|op| matches!(op, Operation::WaitNodeReady { node } if node == "a"))
    );
}

#[test]
fn issue19_api_endpoint_naming_the_node_itself_is_never_its_join_url() {
    let mut t = three_agentless();
    t.cluster.api_endpoint = Some("https://10.0.0.1:6443".into());
    let mut o = observed_matching(&t);
    set_member(&mut o, "a", dead());
    let p = ok(plan(&t, &o, &replace("a")));
    let via = join_via(&p, "a");
    assert_ne!(via, "https://10.0.0.1:6443", "a joins through itself");
    assert_eq!(via, "https://10.0.0.2:6443", "{}", text(&p));
}

#[test]
fn issue19_join_url_rewrite_never_points_a_server_at_itself() {
    // The field case: api_endpoint names server a; c is dead; a's and b's config.yaml name
    // c. Before issue 19, a's `server:` was rewritten to api_endpoint, a itself.
    let mut t = three();
    t.cluster.api_endpoint = Some("https://10.0.0.1:6443".into());
    let mut o = observed_matching(&t);
    set_member(&mut o, "c", dead());
    let Fact::Known(k) = &mut o.kube else {
        unreachable!()
    };
    k.nodes.iter_mut().find(|n| n.name == "c").unwrap().ready = false;
    for n in ["a", "b"] {
        let Some(Fact::Known(h)) = o.hosts.get_mut(n) else {
            unreachable!()
        };
        let node = t.node(n).unwrap().clone();
        h.config = Some(config_file(&t, &node, Some("https://10.0.0.3:6443")));
    }
    let p = ok(plan(&t, &o, &PlanOptions::default()));
    let rewrites: Vec<(String, String)> = ops(&p)
        .into_iter()
        .filter_map(|op| match op {
            Operation::WriteFile { node, after, .. } => Some((node.clone(), after.clone())),
            _ => None,
        })
        .collect();
    let a = rewrites
        .iter()
        .find(|(n, _)| n == "a")
        .expect("a rewritten");
    assert!(
        !a.1.contains("server: https://10.0.0.1:6443"),
        "a's join URL names a itself:\n{}",
        text(&p)
    );
    assert!(a.1.contains("server: https://10.0.0.2:6443"), "{}", a.1);
    let b = rewrites
        .iter()
        .find(|(n, _)| n == "b")
        .expect("b rewritten");
    assert!(b.1.contains("server: https://10.0.0.1:6443"), "{}", b.1);
    // A config that already names the node itself is drift, and is rewritten.
    let Some(Fact::Known(h)) = o.hosts.get_mut("a") else {
        unreachable!()
    };
    let node = t.node("a").unwrap().clone();
    h.config = Some(config_file(&t, &node, Some("https://10.0.0.1:6443")));
    let p = ok(plan(&t, &o, &PlanOptions::default()));
    assert!(
        p.drift.iter().any(|d| d.address.starts_with("host_file.a")
            && d.note.as_deref().is_some_and(|n| n.contains("itself"))
            && d.declared.as_deref() == Some("https://10.0.0.2:6443")),
        "{:?}\n{}",
        p.drift,
        text(&p)
    );
}

#[test]
fn issue19_verify_does_not_expect_a_dead_member_the_plan_leaves_alone_to_be_healthy() {
    let mut t = three();
    t.cluster.api_endpoint = Some("https://10.0.0.100:6443".into());
    let mut o = observed_matching(&t);
    set_member(&mut o, "c", dead());
    // b's config names c (dead): rewritten; c itself is left alone.
    let Some(Fact::Known(h)) = o.hosts.get_mut("b") else {
        unreachable!()
    };
    let node = t.node("b").unwrap().clone();
    h.config = Some(config_file(&t, &node, Some("https://10.0.0.3:6443")));
    let p = ok(plan(&t, &o, &PlanOptions::default()));
    let v = ops(&p)
        .into_iter()
        .find(|op| matches!(op, Operation::Verify { .. }))
        .expect("a verify step")
        .clone();
    let Operation::Verify {
        expect_members,
        unhealthy_left,
        ..
    } = &v
    else {
        unreachable!()
    };
    assert_eq!(*expect_members, 3);
    assert_eq!(unhealthy_left, &vec![member_name("c")]);
    let d = v.describe();
    assert!(
        d.contains("2 of them healthy") && d.contains("not expected healthy"),
        "{d}"
    );
    assert!(!d.contains("3 etcd members healthy"), "{d}");
}

#[test]
fn issue19_k3s_config_passthrough_is_validated_and_written() {
    let src = r#"cluster "t" {
  token = env("K3S_TOKEN")
}

node "s1" {
  address = "10.0.0.1"
  roles   = ["server"]
  k3s_config = {
    "disable-agent"      = true
    "kube-apiserver-arg" = ["audit-log-maxage=30"]
  }
}
"#;
    let l = load_str("t.hcl", src);
    assert!(!l.diagnostics.has_errors(), "{:?}", l.diagnostics);
    let t = l.topology.unwrap();
    let n = t.node("s1").unwrap();
    assert!(!n.runs_agent());
    let (yaml, _) = config_yaml_for(&t, n, "https://10.0.0.2:6443");
    assert!(
        yaml.ends_with("disable-agent: true\nkube-apiserver-arg:\n  - audit-log-maxage=30\n"),
        "{yaml}"
    );
    // A key k3splan owns: refused, naming the attribute that owns it, at the key.
    let owned = src.replace(
        "\"disable-agent\"      = true",
        "\"node-ip\" = \"10.9.9.9\"",
    );
    let l = load_str("t.hcl", &owned);
    let d = l
        .diagnostics
        .iter()
        .find(|d| d.message.contains("node-ip"))
        .unwrap_or_else(|| panic!("{:?}", l.diagnostics));
    assert!(d.message.contains("node.address"), "{}", d.message);
    assert_eq!((d.line, d.col), (9, 5), "{}", d.render(false));
    // An unknown key: k3s would exit on it.
    let unknown = src.replace("\"disable-agent\"", "\"disable-agnet\"");
    let l = load_str("t.hcl", &unknown);
    let d = l
        .diagnostics
        .iter()
        .find(|d| d.message.contains("disable-agnet"))
        .unwrap_or_else(|| panic!("{:?}", l.diagnostics));
    assert!(
        d.message.contains("flag provided but not defined")
            && d.message.contains("did you mean `disable-agent`"),
        "{}",
        d.message
    );
    assert_eq!((d.line, d.col), (9, 5), "{}", d.render(false));
    // A value that is no flag value.
    let bad = src.replace("= true", "= { x = 1 }");
    assert!(load_str("t.hcl", &bad).diagnostics.has_errors());
}
