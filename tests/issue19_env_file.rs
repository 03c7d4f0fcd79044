//! Issue 19, point 3: the installer's env file (`/etc/systemd/system/k3s.service.env`).
//!
//! install.sh writes `K3S_URL` and `K3S_TOKEN` there; systemd loads it as the unit's
//! environment at every start, and k3s takes `K3S_URL` as the join URL when config.yaml has
//! no `server:` (config.yaml's keys are command-line flags to k3s, which beat the
//! environment). A `K3S_URL` naming a dead server (seed 001) must be observed, shown (token
//! masked) and rewritten with config.yaml, the other lines of the file kept.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{lab_k3splan, stdout};
use k3splan_lab::{Lab, LabSpec, TopologyNode};
use k3splan_testkit_caps::lab;

k3splan_testkit_caps::main! {
    issue19_seed001_k3s_url_in_env_file_and_config_yaml_both_rewritten needs [lab],
    issue19_only_the_env_file_names_the_dead_server needs [lab],
}

const ENV: &str = "/etc/systemd/system/k3s.service.env";
const CONFIG: &str = "/etc/rancher/k3s/config.yaml";

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

/// A lab with three servers and `spare-1` installed as a control-plane-only server (k3s
/// `disable-etcd`, whose datastore is the etcd of the server it names) joining through
/// server-1 as an operator would: `K3S_URL` and `K3S_TOKEN` for install.sh, and a
/// config.yaml with `server:` or without. An operator's comment and variable are added to
/// the env file. Then server-1 dies.
fn lab_with_cp_joined_through_server1(server_in_config: bool) -> (Lab, String) {
    let lab = Lab::start(LabSpec {
        servers: 3,
        spare_hosts: 1,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let first = lab.host("server-1").unwrap().server_url();
    let addr = lab.host("spare-1").unwrap().address();
    let server_line = if server_in_config {
        format!("server: {first}\n")
    } else {
        String::new()
    };
    lab.write_file(
        "spare-1",
        CONFIG,
        &format!(
            "{server_line}token: {}\nnode-name: spare-1\nnode-ip: {addr}\ndisable-etcd: true\n",
            lab.token()
        ),
    )
    .unwrap();
    let (status, log) = lab
        .ssh(
            "spare-1",
            &[
                ("INSTALL_K3S_VERSION", k3splan_lab::K3S_VERSION),
                ("INSTALL_K3S_EXEC", "server"),
                ("K3S_TOKEN", lab.token()),
                ("K3S_URL", &first),
            ],
            &lab.install_command(),
        )
        .unwrap();
    assert_eq!(status, 0, "{log}");
    lab.wait_node_ready("spare-1", true, Duration::from_secs(90))
        .unwrap();
    let env = lab
        .read_file("spare-1", ENV)
        .expect("install.sh's env file");
    assert!(
        env.contains(&format!("K3S_URL='{first}'\n"))
            && env.contains(&format!("K3S_TOKEN='{}'\n", lab.token())),
        "the installer's format: {env}"
    );
    lab.write_file(
        "spare-1",
        ENV,
        &format!("# added by ops, keep me\n{env}CONTAINERD_LOG_LEVEL=\"info\"\n"),
    )
    .unwrap();
    lab.kill_host("server-1").unwrap();
    lab.wait_node_ready("server-1", false, Duration::from_secs(60))
        .unwrap();
    (lab, first)
}

fn topology(lab: &Lab) -> std::path::PathBuf {
    let nodes = vec![
        TopologyNode::server("server-2"),
        TopologyNode::server("server-3"),
        TopologyNode {
            name: "spare-1".into(),
            roles: vec!["control-plane".into()],
            primary: false,
        },
    ];
    lab.write_topology("issue19/main.hcl", &nodes, "").unwrap()
}

/// After apply: the env file names a live server, every other line is kept byte for byte
/// (the token, the operator's comment and variable), spare-1 runs, and a second plan has
/// nothing to do.
fn assert_rewritten_and_converged(lab: &Lab, topo: &std::path::Path, first: &str) {
    let env = lab.read_file("spare-1", ENV).unwrap();
    assert!(!env.contains(first), "{env}");
    assert!(
        env.starts_with("# added by ops, keep me\n")
            && env.contains(&format!("K3S_TOKEN='{}'\n", lab.token()))
            && env.ends_with("CONTAINERD_LOG_LEVEL=\"info\"\n"),
        "the other lines are kept: {env}"
    );
    let live = [
        lab.host("server-2").unwrap().server_url(),
        lab.host("server-3").unwrap().server_url(),
    ];
    assert!(
        live.iter()
            .any(|u| env.contains(&format!("K3S_URL='{u}'\n"))),
        "K3S_URL names a live server, in the installer's quotes: {env}"
    );
    lab.wait_node_ready("spare-1", true, Duration::from_secs(60))
        .unwrap();
    let o = lab_k3splan(lab, topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), Some(0), "second plan: no changes\n{}", stdout(&o));
}

/// Seed 001's shape: config.yaml's `server:` and the env file's `K3S_URL` both name the dead
/// server-1. The plan shows both diffs, token masked, and restarts spare-1 once.
fn issue19_seed001_k3s_url_in_env_file_and_config_yaml_both_rewritten() {
    let (lab, first) = lab_with_cp_joined_through_server1(true);
    let topo = topology(&lab);
    let o = lab_k3splan(&lab, &topo, &["plan"]);
    let plan = stdout(&o);
    assert_eq!(code(&o), Some(0), "{plan}");
    assert!(
        plan.contains(&format!(
            "host_file.spare-1:{CONFIG} will be updated in-place"
        )),
        "{plan}"
    );
    assert!(
        plan.contains(&format!("write {CONFIG} on spare-1")),
        "{plan}"
    );
    assert!(plan.contains(&format!("write {ENV} on spare-1")), "{plan}");
    assert!(plan.contains(&format!("-server: {first}")), "{plan}");
    assert!(plan.contains(&format!("-K3S_URL='{first}'")), "{plan}");
    assert!(plan.contains("K3S_TOKEN=(sensitive)"), "{plan}");
    assert_eq!(
        plan.matches("restart k3s on spare-1").count(),
        1,
        "one restart for both files: {plan}"
    );
    assert!(!plan.contains(lab.token()), "no token in the plan: {plan}");
    let o = lab_k3splan(&lab, &topo, &["plan", "--json"]);
    assert!(
        !stdout(&o).contains(lab.token()),
        "no token in the JSON plan"
    );

    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    let (out, err) = common::streams(&o);
    assert_eq!(code(&o), Some(0), "{out}\n{err}");
    assert!(!out.contains(lab.token()) && !err.contains(lab.token()));
    let cfg = lab.read_file("spare-1", CONFIG).unwrap();
    assert!(!cfg.contains(&first), "{cfg}");
    assert_rewritten_and_converged(&lab, &topo, &first);
}

/// config.yaml has no `server:`: k3s joins through the env file's `K3S_URL` (here the dead
/// server-1), so a restart fails. Before this fix k3splan read only config.yaml and said "No
/// changes"; now it rewrites the env file and restarts spare-1.
fn issue19_only_the_env_file_names_the_dead_server() {
    let (lab, first) = lab_with_cp_joined_through_server1(false);
    // What the env file does today: k3s takes K3S_URL, and cannot start.
    let (status, out) = lab.service("spare-1", "restart", "k3s").unwrap();
    assert_ne!(
        status,
        0,
        "spare-1 must not start through dead server-1: {out}\n{}",
        lab.k3s_log("spare-1")
    );
    let topo = topology(&lab);
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    let plan = stdout(&o);
    assert_eq!(code(&o), Some(2), "drift, not \"No changes\": {plan}");
    assert!(
        plan.contains(&format!("host_file.spare-1:{ENV} will be updated in-place")),
        "{plan}"
    );
    assert!(
        !plan.contains(&format!("write {CONFIG} on spare-1")),
        "{plan}"
    );
    assert!(plan.contains(&format!("-K3S_URL='{first}'")), "{plan}");
    assert!(plan.contains("restart k3s on spare-1"), "{plan}");
    assert!(!plan.contains(lab.token()), "no token in the plan: {plan}");

    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    let (out, err) = common::streams(&o);
    assert_eq!(code(&o), Some(0), "{out}\n{err}");
    let cfg = lab.read_file("spare-1", CONFIG).unwrap();
    assert!(
        !cfg.lines().any(|l| l.starts_with("server:")),
        "config.yaml gets no `server:` line"
    );
    assert_rewritten_and_converged(&lab, &topo, &first);
}
