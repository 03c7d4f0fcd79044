//! `apply --json` end to end: the compiled `k3splan` against the lab. Its stdout is a
//! line-delimited JSON event stream (docs/cli.md, "apply --json"): every line parses, the
//! plan comes first, each step starts and finishes in order, and the result comes last.

use std::process::Output;

use k3splan_lab::{Lab, LabSpec, TopologyNode};

mod common;
use common::lab_k3splan as k3splan;

use k3splan_testkit_caps::lab;

k3splan_testkit_caps::main! {
    apply_json_is_a_line_delimited_event_stream needs [lab],
}

/// Every stdout line as JSON (a line that is not JSON fails the test).
fn lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn apply_json_is_a_line_delimited_event_stream() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        seed_workloads: true,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let nodes: Vec<TopologyNode> = ["server-1", "server-2", "server-3"]
        .iter()
        .map(|n| TopologyNode::server(n))
        .collect();
    let addon = "addon \"coredns\" {\n  replicas = 2\n}\n";
    let topo = lab.write_topology("json/main.hcl", &nodes, addon).unwrap();

    // It cannot prompt: without --auto-approve (or a saved plan) it is a usage error, and
    // the stream says so in its one line.
    let o = k3splan(&lab, &topo, &["apply", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let l = lines(&o);
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0]["event"], "error");

    let o = k3splan(&lab, &topo, &["apply", "--json", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0));
    let l = lines(&o);
    let event = |v: &serde_json::Value| v["event"].as_str().unwrap_or("").to_string();
    assert_eq!(event(&l[0]), "plan");
    assert_eq!(l[0]["plan"]["format_version"], "1.0");
    let steps = l[0]["plan"]["resource_changes"].as_array().unwrap().len();
    assert!(steps > 0, "the addon change is planned");
    let last = l.last().unwrap();
    assert_eq!(event(last), "apply_complete");
    assert_eq!(last["applied"], true);
    // Steps start in order, each done before the next starts.
    let mut expected = 1;
    let mut open = None;
    for v in &l[1..l.len() - 1] {
        match event(v).as_str() {
            "step_started" => {
                assert_eq!(open, None, "a step starts while one runs: {v}");
                assert_eq!(v["index"], expected);
                assert_eq!(v["total"], steps);
                open = Some(expected);
            }
            "step_done" => {
                assert_eq!(open.take(), Some(v["index"].as_u64().unwrap() as usize));
                expected += 1;
            }
            "operation_done" | "heartbeat" | "note" => {}
            other => panic!("unexpected event {other}: {v}"),
        }
    }
    assert_eq!(expected, steps + 1, "every step ran");

    // A saved plan is the approval; the stream still starts with the plan.
    let addon = "addon \"coredns\" {\n  replicas = 3\n}\n";
    let topo = lab.write_topology("json/main.hcl", &nodes, addon).unwrap();
    let saved = lab.dir().join("json/p.json");
    let o = k3splan(&lab, &topo, &["plan", &format!("-out={}", saved.display())]);
    assert_eq!(o.status.code(), Some(0));
    let o = k3splan(&lab, &topo, &["apply", "--json", saved.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let l = lines(&o);
    assert_eq!(event(&l[0]), "plan");
    assert_eq!(
        l[0]["plan"]["resource_changes"].as_array().unwrap().len(),
        1
    );
    assert_eq!(l.last().unwrap()["applied"], true);

    // Converged: the stream is the plan and the result, nothing applied.
    let o = k3splan(&lab, &topo, &["apply", "-json", "-auto-approve"]);
    assert_eq!(o.status.code(), Some(0));
    let l = lines(&o);
    assert_eq!(l.len(), 2, "{l:?}");
    assert_eq!(l[1]["applied"], false);
}
