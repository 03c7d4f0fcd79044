//! Issue 19, point 6: every wait of apply is sized in the topology (`cluster { timeouts { … } }`,
//! durations as strings, bad values rejected at file:line:col), and a wait that runs out says
//! what its polls last saw and what to check.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{combined, lab_k3splan};
use k3splan::apply::Waits;
use k3splan::config::{Timeouts, load_str};
use k3splan_lab::{Lab, LabSpec, TopologyNode, hostcfg};
use k3splan_testkit_caps::lab;

k3splan_testkit_caps::main! {
    timeouts_block_sets_each_wait_and_unset_ones_keep_their_defaults,
    bad_durations_are_rejected_at_file_line_col,
    validate_names_the_bad_timeout_in_the_file,
    issue19_a_learner_never_promoted_fails_after_the_configured_wait_saying_what_was_seen needs [lab],
}

const HEAD: &str = "cluster \"lab\" {\n  token = \"K10-test-token\"\n";
const NODE: &str = "node \"s1\" {\n  address = \"10.0.0.1\"\n  roles   = [\"server\"]\n}\n";

fn with_timeouts(body: &str) -> String {
    format!("{HEAD}  timeouts {{\n{body}  }}\n}}\n\n{NODE}")
}

fn timeouts_block_sets_each_wait_and_unset_ones_keep_their_defaults() {
    let src = with_timeouts(
        "    learner_promoted = \"45s\"\n    node_ready       = \"1m30s\"\n    drain            = \"1h\"\n",
    );
    let l = load_str("main.hcl", &src);
    let t = l.topology.unwrap_or_else(|| panic!("{:?}", l.diagnostics));
    assert_eq!(
        t.cluster.timeouts,
        Timeouts {
            learner_promoted: Some(Duration::from_secs(45)),
            node_ready: Some(Duration::from_secs(90)),
            drain: Some(Duration::from_secs(3600)),
            ..Timeouts::default()
        }
    );
    let w = Waits::from_timeouts(&t.cluster.timeouts);
    assert_eq!(w.learner_promoted, Duration::from_secs(45));
    assert_eq!(w.node_ready, Duration::from_secs(90));
    assert_eq!(w.drain, Duration::from_secs(3600));
    // Unset: the documented defaults (docs/configuration.md).
    assert_eq!(w.pod_rescheduled, Duration::from_secs(180));
    assert_eq!(w.verify, Duration::from_secs(120));
    let d = Waits::default();
    assert_eq!(d.learner_promoted, Duration::from_secs(180));
    assert_eq!(d.node_ready, Duration::from_secs(180));
    assert_eq!(d.drain, Duration::from_secs(300));
    // No block at all: the defaults.
    let l = load_str("main.hcl", &format!("{HEAD}}}\n\n{NODE}"));
    assert_eq!(l.topology.unwrap().cluster.timeouts, Timeouts::default());
}

fn bad_durations_are_rejected_at_file_line_col() {
    for (value, why) in [
        (
            "\"3 minutes\"",
            "has ' ' where a digit or a unit (s, m, h) belongs",
        ),
        ("\"180\"", "ends with \"180\" without a unit (s, m, h)"),
        ("\"0s\"", "is zero"),
        ("\"25h\"", "is longer than 24h"),
        ("\"m\"", "has the unit 'm' without a number before it"),
        ("\"\"", "is empty"),
    ] {
        let src = with_timeouts(&format!("    node_ready = {value}\n"));
        let l = load_str("main.hcl", &src);
        assert!(l.topology.is_none(), "{value} accepted");
        let text = format!("{:?}", l.diagnostics).replace("\\\"", "\"");
        assert!(
            text.contains("`timeouts.node_ready` must be a duration"),
            "{value}: {text}"
        );
        assert!(text.contains(why), "{value}: {text}");
    }
    // A number where a string belongs, and an unknown attribute: the schema's checks.
    let l = load_str("main.hcl", &with_timeouts("    node_ready = 180\n"));
    assert!(l.topology.is_none());
    let l = load_str("main.hcl", &with_timeouts("    node_redy = \"3m\"\n"));
    assert!(l.topology.is_none());
    assert!(
        format!("{:?}", l.diagnostics).contains("node_ready"),
        "did you mean"
    );
}

fn validate_names_the_bad_timeout_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("main.hcl");
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(with_timeouts("    learner_promoted = \"3 min\"\n").as_bytes())
        .unwrap();
    let o = common::k3splan()
        .args(["validate", "-c"])
        .arg(&p)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    // Line 4, column 24: the value's position in the file.
    assert!(err.contains("main.hcl:4:24"), "{err}");
    assert!(
        err.contains("`timeouts.learner_promoted` must be a duration from \"1s\" to \"24h\""),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// The leader's stand-in promotes learners every `promote_secs` (k3s: a 15 s loop). With it
/// set to an hour on every server, a joined server stays a learner, and apply's wait runs
/// out after the configured 5 s with what its polls saw.
fn issue19_a_learner_never_promoted_fails_after_the_configured_wait_saying_what_was_seen() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        spare_hosts: 1,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    for s in ["server-1", "server-2", "server-3"] {
        let text = lab.read_file(s, hostcfg::HOST_CONFIG).expect("lab.json");
        let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
        cfg["promote_secs"] = serde_json::json!(3600);
        lab.write_file(s, hostcfg::HOST_CONFIG, &cfg.to_string())
            .unwrap();
        let (status, out) = lab.service(s, "restart", "k3s").unwrap();
        assert_eq!(status, 0, "restart {s}: {out}");
        lab.wait_voters(3, Duration::from_secs(60)).unwrap();
    }
    let nodes: Vec<TopologyNode> = ["server-1", "server-2", "server-3", "spare-1"]
        .iter()
        .map(|n| TopologyNode::server(n))
        .collect();
    let extra = "";
    let topo = lab
        .write_topology("issue19w/main.hcl", &nodes, extra)
        .unwrap();
    // The lab's topology renders the cluster block: add the timeouts block to it.
    let text = std::fs::read_to_string(&topo).unwrap();
    let close = text.find("\n}\n").expect("end of the cluster block");
    let text = format!(
        "{}\n  timeouts {{\n    learner_promoted = \"5s\"\n  }}{}",
        &text[..close],
        &text[close..]
    );
    std::fs::write(&topo, text).unwrap();
    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    let out = combined(&o);
    assert_ne!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("learner spare-1 not promoted after 5s: last seen learner spare-1-"),
        "{out}"
    );
    assert!(out.contains("healthy"), "{out}");
    assert!(out.contains("raft index"), "{out}");
    assert!(
        out.contains("check the leader's k3s log for \"Promoted etcd learner\""),
        "{out}"
    );
}
