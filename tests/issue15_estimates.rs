//! Issue 15: time estimates from the durations earlier applies recorded in the state.
//!
//! A first upgrade (v1.28 → v1.29) of a 3-server + 1-agent lab cluster, with the compiled
//! `k3splan` binary, records how long each kind of operation took; the plan of the next
//! upgrade (v1.29 → v1.30) then shows an estimate per step and in total that is exactly the
//! medians of those recorded durations (computed here apart, from the state file), and a
//! plan with operations no apply recorded says it has no estimate for them. Before any
//! apply, the plan shows no estimate at all. The recorded history holds operation kinds
//! and numbers only: no token, no node name. Each server's wait after its restart compares
//! the HashKV of every voter (real etcd).

mod common;

use std::collections::BTreeMap;

use common::{combined, lab_k3splan, lab_state, stdout};
use k3splan::plan::estimate::DURATION_KINDS;
use k3splan_lab::{Lab, LabSpec, TopologyNode};
use k3splan_testkit_caps::lab;

k3splan_testkit_caps::main! {
    issue15_lab_second_plan_estimates_from_the_first_apply needs [lab],
}

const OLD: &str = "v1.28.5+k3s1";
const NEW: &str = "v1.29.0+k3s1";
const NEXT: &str = "v1.30.2+k3s1";
const SERVERS: [&str; 3] = ["server-1", "server-2", "server-3"];
const AGENT: &str = "agent-1";

fn set_version(topo: &std::path::Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(topo).unwrap();
    assert!(text.contains(from), "{text}");
    std::fs::write(topo, text.replace(from, to)).unwrap();
}

/// The median as the estimate defines it (mean of the two middle ones, rounded up),
/// computed here apart from the implementation.
fn median(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]).div_ceil(2)
    }
}

fn plan_json(lab: &Lab, topo: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["plan", "--json"];
    args.extend_from_slice(extra);
    let o = lab_k3splan(lab, topo, &args);
    assert_eq!(o.status.code(), Some(0), "{}", combined(&o));
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

fn issue15_lab_second_plan_estimates_from_the_first_apply() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        agents: 1,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let mut nodes: Vec<TopologyNode> = SERVERS.iter().map(|s| TopologyNode::server(s)).collect();
    nodes.push(TopologyNode::agent(AGENT));
    let topo = lab
        .write_topology("estimates/main.hcl", &nodes, "")
        .unwrap();

    // No earlier apply: the plan shows no estimate, in text or JSON.
    set_version(&topo, OLD, NEW);
    let o = lab_k3splan(&lab, &topo, &["plan"]);
    assert!(o.status.success(), "{}", combined(&o));
    assert!(!stdout(&o).contains("estimate"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("Estimate"), "{}", stdout(&o));
    let j = plan_json(&lab, &topo, &[]);
    assert!(j.get("estimate").is_none(), "{j:#}");

    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    assert!(o.status.success(), "{}", combined(&o));
    // Each server's wait after its restart compared HashKV (real etcd), not only the final
    // verify: one line per server.
    assert_eq!(
        stdout(&o)
            .matches("HashKV of every voter equal at revision")
            .count(),
        SERVERS.len(),
        "{}",
        stdout(&o)
    );

    // The state recorded durations, by kind: kinds and numbers only.
    let state_text = std::fs::read_to_string(lab_state(&lab)).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state_text).unwrap();
    assert_eq!(state["version"], 2, "{state_text}");
    assert!(
        !state_text.contains(lab.token()),
        "the token is in the state"
    );
    let durations: BTreeMap<String, Vec<u64>> =
        serde_json::from_value(state["durations_ms"].clone())
            .unwrap_or_else(|e| panic!("durations_ms: {e}: {state_text}"));
    for k in durations.keys() {
        assert!(DURATION_KINDS.contains(&k.as_str()), "unknown kind {k}");
    }
    let history_text = state["durations_ms"].to_string();
    for n in SERVERS.iter().chain([&AGENT]) {
        assert!(!history_text.contains(n), "{n} in {history_text}");
    }
    for k in [
        "snapshot",
        "upgrade_k3s",
        "wait_upgraded",
        "cordon",
        "uncordon",
        "verify",
    ] {
        assert!(
            durations.contains_key(k),
            "{k} not recorded: {history_text}"
        );
    }
    // One upgrade per node (servers and agents apart) and one wait per node.
    assert_eq!(durations["upgrade_k3s"].len(), 3, "{history_text}");
    assert_eq!(durations["upgrade_k3s_agent"].len(), 1, "{history_text}");
    assert_eq!(durations["wait_upgraded"].len(), 4, "{history_text}");

    // Operations no apply recorded: no figure, and the plan says so.
    let o = lab_k3splan(&lab, &topo, &["plan", "-replace=node.agent-1"]);
    assert!(o.status.success(), "{}", combined(&o));
    let text = stdout(&o);
    assert!(
        text.contains("      no estimate: no earlier apply recorded "),
        "{text}"
    );
    assert!(
        text.contains("Estimate: at least ") || text.contains("Estimate: unknown: "),
        "{text}"
    );

    // The next upgrade: an estimate per step, exactly the medians of what was recorded.
    set_version(&topo, NEW, NEXT);
    let o = lab_k3splan(&lab, &topo, &["plan"]);
    assert!(o.status.success(), "{}", combined(&o));
    let text = stdout(&o);
    assert!(text.contains("      estimate: "), "{text}");
    assert!(
        text.contains("in total (the sum of the steps' estimates, which run one after another; from the durations earlier applies recorded in the state)."),
        "{text}"
    );
    let j = plan_json(&lab, &topo, &[]);
    let e = &j["estimate"];
    assert_eq!(e["complete"], true, "{e:#}");
    let changes = j["resource_changes"].as_array().unwrap();
    let steps = e["steps"].as_array().unwrap();
    assert_eq!(steps.len(), changes.len(), "{e:#}");
    let mut total_ms = 0u64;
    for (s, c) in steps.iter().zip(changes) {
        let want_ms: u64 = c["operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|op| {
                let kind = match op["op"].as_str().unwrap() {
                    "upgrade_k3s" if op["agent"] == true => "upgrade_k3s_agent",
                    k => k,
                };
                median(&durations[kind])
            })
            .sum();
        total_ms += want_ms;
        let got = s["seconds"].as_f64().unwrap();
        assert!(
            (got - want_ms as f64 / 1000.0).abs() < 0.051,
            "step {}: {got} s, expected {want_ms} ms from the recorded medians",
            s["step"]
        );
    }
    let got_total = e["total_seconds"].as_f64().unwrap();
    assert!(
        (got_total - total_ms as f64 / 1000.0).abs() < 0.051,
        "total {got_total} s, expected {total_ms} ms"
    );
}
