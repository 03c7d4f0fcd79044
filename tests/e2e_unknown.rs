//! issue 13, "unknown must never read as no changes", end to end: the compiled `k3splan`
//! against the lab (real sshd hosts, real etcd with TLS, the in-memory Kubernetes API).
//! Each test breaks what k3splan can see (credentials, host keys, a partition, an undeclared
//! member) and checks what a cron drift check or an operator would see: the exit code, the
//! words, and that nothing was changed.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{lab_k3splan, streams};
use k3splan_lab::{Lab, LabSpec, TopologyNode};

use k3splan_testkit_caps::lab;

k3splan_testkit_caps::main! {
    issue13_unreadable_hosts_make_plan_exit_1_never_no_changes needs [lab],
    issue13_changed_host_key_stops_plan_and_apply_before_any_change needs [lab],
    issue13_undeclared_members_are_read_for_the_quorum needs [lab],
    issue13_partitioned_host_is_unknown_and_its_removal_needs_the_flag needs [lab],
}

fn three_servers() -> Lab {
    Lab::start(LabSpec {
        servers: 3,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab")
}

fn all_servers() -> Vec<TopologyNode> {
    ["server-1", "server-2", "server-3"]
        .iter()
        .map(|n| TopologyNode::server(n))
        .collect()
}

/// Writes the lab's topology with one textual substitution (e.g. another known_hosts path).
fn topology_with(lab: &Lab, file: &str, nodes: &[TopologyNode], from: &str, to: &str) -> PathBuf {
    let text = lab.render_topology(nodes, "").unwrap();
    assert!(text.contains(from), "{from} in {text}");
    let path = lab.dir().join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text.replace(from, to)).unwrap();
    path
}

/// A cron drift check must not stay green while it sees nothing: with the known_hosts file
/// missing, the private key missing or a key the hosts do not accept, every host is unknown
/// and `plan --detailed-exitcode` exits 1 naming each host and why, never "No changes.".
/// An `--allow-unreachable` name that matches nothing is a usage error.
fn issue13_unreadable_hosts_make_plan_exit_1_never_no_changes() {
    let lab = three_servers();
    let nodes = all_servers();
    let good = lab.write_topology("base/main.hcl", &nodes, "").unwrap();
    let o = lab_k3splan(&lab, &good, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "premise: the lab is converged");
    assert!(streams(&o).0.contains("No changes."));

    let kh = lab.files().known_hosts.display().to_string();
    let key = lab.files().ssh_key.display().to_string();
    let wrong_key = lab.dir().join("wrong_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&wrong_key)
        .status()
        .unwrap();
    assert!(st.success());
    let cases = [
        (
            "no-known-hosts",
            kh.clone(),
            format!("{kh}.missing"),
            "known_hosts",
        ),
        (
            "no-key",
            key.clone(),
            format!("{key}.missing"),
            "private key",
        ),
        (
            "wrong-key",
            key.clone(),
            wrong_key.display().to_string(),
            "authentication",
        ),
    ];
    for (name, from, to, why) in cases {
        let topo = topology_with(&lab, &format!("{name}/main.hcl"), &nodes, &from, &to);
        let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
        let (out, _) = streams(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: incomplete plan exits 1");
        assert!(!out.contains("No changes."), "{name}: {out}");
        assert!(
            out.contains("the plan is incomplete: 3 declared sources could not be read"),
            "{name}: {out}"
        );
        for n in ["server-1", "server-2", "server-3"] {
            assert!(
                out.contains(&format!("host.{n} is unknown")),
                "{name}: {out}"
            );
        }
        assert!(out.contains(why), "{name}: the reason names {why}: {out}");
        // JSON: complete = false, one unknown per host.
        let o = lab_k3splan(&lab, &topo, &["plan", "--json"]);
        assert_eq!(o.status.code(), Some(1));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON plan");
        assert_eq!(v["complete"], false);
        assert_eq!(v["unknown"].as_array().unwrap().len(), 3, "{v}");
    }
    // Accepting each unknown host explicitly makes the plan complete again.
    let topo = lab.dir().join("no-known-hosts/main.hcl");
    let o = lab_k3splan(
        &lab,
        &topo,
        &[
            "plan",
            "--detailed-exitcode",
            "--allow-unreachable",
            "server-1",
            "--allow-unreachable",
            "server-2",
            "--allow-unreachable",
            "server-3",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "every unknown accepted");
    assert!(streams(&o).0.contains("accepted with --allow-unreachable"));

    // A misspelt name accepts nothing: a usage error, before anything is planned.
    let o = lab_k3splan(
        &lab,
        &good,
        &[
            "plan",
            "--detailed-exitcode",
            "--allow-unreachable",
            "server-9",
        ],
    );
    let (out, err) = streams(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("--allow-unreachable server-9"), "{err}");
    assert!(!out.contains("No changes."), "{out}");
}

/// A changed SSH host key may be a man-in-the-middle: plan and apply stop before anything
/// is planned or changed, naming the host, the expected and the offered fingerprints.
fn issue13_changed_host_key_stops_plan_and_apply_before_any_change() {
    let lab = three_servers();
    // server-3 leaves the topology: apply would remove it, if it ran.
    let nodes = vec![
        TopologyNode::server("server-1"),
        TopologyNode::server("server-2"),
    ];
    let topo = lab.write_topology("main.hcl", &nodes, "").unwrap();
    lab.rotate_host_key("server-2").unwrap();
    for args in [
        vec!["plan", "--detailed-exitcode"],
        vec!["apply", "--auto-approve"],
    ] {
        let o = lab_k3splan(&lab, &topo, &args);
        let (out, err) = streams(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(err.contains("HOST KEY CHANGED"), "{err}");
        assert!(err.contains("server-2"), "{err}");
        assert!(err.contains("expected"), "{err}");
        assert_eq!(
            err.matches("SHA256:").count(),
            2,
            "both fingerprints: {err}"
        );
        assert!(err.contains("nothing was changed"), "{err}");
        assert!(!out.contains("Apply complete"), "{out}");
        assert!(!out.contains("will be destroyed"), "nothing planned: {out}");
    }
    // Nothing changed: server-3 is still a healthy voter, no state was written.
    let obs = lab.wait_voters(3, Duration::from_secs(30)).unwrap();
    assert_eq!(obs.health.healthy_voters, 3);
    assert!(!common::lab_state(&lab).exists());
}

/// The quorum simulation reads every member, declared or not: with server-2's block
/// removed, plan counts its healthy member; with server-3's k3s also stopped, 2 of 3 are
/// healthy and plan must not claim that quorum is already lost.
fn issue13_undeclared_members_are_read_for_the_quorum() {
    let lab = three_servers();
    let nodes = vec![
        TopologyNode::server("server-1"),
        TopologyNode::server("server-3"),
    ];
    let topo = lab.write_topology("main.hcl", &nodes, "").unwrap();
    let o = lab_k3splan(&lab, &topo, &["plan"]);
    let (out, _) = streams(&o);
    assert!(out.contains("3/3 voters healthy"), "{out}");

    let (code, log) = lab.service("server-3", "stop", "k3s").unwrap();
    assert_eq!(code, 0, "{log}");
    lab.wait_etcd("server-3 unhealthy", Duration::from_secs(60), |o| {
        o.health.healthy_voters == 2
    })
    .unwrap();
    let o = lab_k3splan(&lab, &topo, &["plan"]);
    let (out, err) = streams(&o);
    assert!(!out.contains("quorum is already lost"), "{out}{err}");
    assert!(out.contains("2/3 voters healthy"), "{out}");
}

/// A removed node whose host does not answer (alive behind a partition) is "unknown", not
/// "unreachable": removing it needs --allow-unreachable, and then the plan warns that k3s
/// on it will not be uninstalled.
fn issue13_partitioned_host_is_unknown_and_its_removal_needs_the_flag() {
    let lab = three_servers();
    let nodes = vec![
        TopologyNode::server("server-1"),
        TopologyNode::server("server-2"),
    ];
    // A node no longer declared is dialled with the cluster's SSH settings (or the port a
    // state recorded; there is no state here): give the cluster block server-3's port.
    let port = lab.host("server-3").unwrap().ssh_port();
    let topo = topology_with(
        &lab,
        "main.hcl",
        &nodes,
        "    user             = \"root\"\n",
        &format!("    user             = \"root\"\n    port             = {port}\n"),
    );
    lab.cut_network("server-3").unwrap();
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    let (out, err) = streams(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("host of server-3 is unknown"), "{out}");
    assert!(out.contains("partition"), "{out}");
    assert!(out.contains("--allow-unreachable server-3"), "{out}");
    assert!(!out.contains("will be destroyed"), "{out}");

    let o = lab_k3splan(&lab, &topo, &["plan", "--allow-unreachable", "server-3"]);
    let (out, _) = streams(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("node.server-3: host unknown") && out.contains("will not be uninstalled"),
        "{out}"
    );
    lab.heal_network("server-3").unwrap();
}
