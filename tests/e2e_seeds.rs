//! The seed scenarios end to end: the compiled `k3splan` binary, run as a process, against
//! the lab (real sshd hosts, real etcd members driven by a k3s stand-in, the in-memory
//! Kubernetes API). Each test breaks the lab, plans, applies, checks the cluster is healthy
//! and that a second plan reports no changes.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use k3splan_lab::{Lab, LabSpec, TopologyNode};

fn k3splan(lab: &Lab, topo: &Path, args: &[&str]) -> Output {
    let state = lab.dir().join("state/k3splan.state.json");
    let mut c = Command::new(env!("CARGO_BIN_EXE_k3splan"));
    c.args(args)
        .arg("-c")
        .arg(topo)
        .arg("--state")
        .arg(&state)
        .env_remove("NO_COLOR")
        .env_remove("K3SPLAN_CONFIG");
    for (k, v) in lab.k3splan_env() {
        c.env(k, v);
    }
    let o = c.output().expect("run k3splan");
    eprintln!(
        "$ k3splan {}\n--- exit {:?}\n{}{}",
        args.join(" "),
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn seed000_first_server_dies_and_is_replaced() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        spare_hosts: 1,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    lab.kill_host("server-1").unwrap();
    lab.wait_node_ready("server-1", false, Duration::from_secs(60)).unwrap();
    let topo = lab
        .write_topology(
            "seed000/main.hcl",
            &[
                TopologyNode::server("server-2"),
                TopologyNode::server("server-3"),
                TopologyNode::server("spare-1"),
            ],
            "",
        )
        .unwrap();
    let o = k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2));
    let plan = stdout(&o);
    assert!(plan.contains("node.server-1 will be destroyed"), "{plan}");
    assert!(plan.contains("node.spare-1 will be created"), "{plan}");
    assert!(!plan.contains("cluster-init: true"), "{plan}");
    assert!(plan.contains("without cluster-init"), "{plan}");

    let o = k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0));
    let obs = lab.wait_voters(3, Duration::from_secs(60)).unwrap();
    assert_eq!(obs.health.healthy_voters, 3);
    assert!(lab.node_ready("spare-1"));
    assert!(!lab.nodes().contains(&"server-1".to_string()));

    let o = k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "second plan: no changes");
    assert!(stdout(&o).contains("No changes."));
}
