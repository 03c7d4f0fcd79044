//! issue 19 point 4, end to end: an operator's kubeconfig names one server
//! (`https://SERVER_IP:6443`, as a kubeconfig copied from a server and edited), and that
//! server dies. `plan` and `apply` must still read the Kubernetes API through the VIP or
//! another declared server (the lab's API certificate names every server and the VIP, as k3s's
//! does with its node IPs and tls-san), and say which address answered; when nothing answers
//! the plan exits 1 listing every URL it tried; bad credentials stay an error naming the
//! server, never "unreachable". The compiled `k3splan` against the lab (real sshd, real etcd,
//! the in-memory API behind each server's `:6443` proxy and the VIP forwarder).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{lab_k3splan, streams};
use k3splan_lab::{Lab, LabSpec, TopologyNode};
use k3splan_testkit_caps::lab;

k3splan_testkit_caps::main! {
    issue19_kubeconfig_naming_a_dead_server_fails_over_to_the_vip_first needs [lab],
    issue19_without_a_vip_plan_and_apply_use_another_declared_server needs [lab],
}

fn servers() -> Vec<TopologyNode> {
    ["server-1", "server-2", "server-3"]
        .iter()
        .map(|n| TopologyNode::server(n))
        .collect()
}

fn url_of(lab: &Lab, host: &str) -> String {
    lab.host(host).unwrap().server_url()
}

/// The lab's topology in DIR/main.hcl, with `kubeconfig` pointing at `kubeconfig`.
fn topology_using(lab: &Lab, dir: &str, nodes: &[TopologyNode], kubeconfig: &Path) -> PathBuf {
    let text = lab.render_topology(nodes, "").unwrap();
    let from = lab.files().kubeconfig.display().to_string();
    assert!(text.contains(&from), "{text}");
    let path = lab.dir().join(dir).join("main.hcl");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        text.replace(&from, &kubeconfig.display().to_string()),
    )
    .unwrap();
    path
}

fn issue19_kubeconfig_naming_a_dead_server_fails_over_to_the_vip_first() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        vip: true,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let mut nodes = servers();
    nodes[0] = TopologyNode::server("server-1").primary();
    let (s1, s2, s3) = (
        url_of(&lab, "server-1"),
        url_of(&lab, "server-2"),
        url_of(&lab, "server-3"),
    );
    let vip = format!("https://{}:6443", lab.vip().unwrap());
    let kc = lab
        .write_kubeconfig_for("operator/kubeconfig", &s1, None)
        .unwrap();
    let topo = topology_using(&lab, "operator", &nodes, &kc);

    // Premise: the kubeconfig's server answers; nothing is said about the API's address.
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    let (out, err) = streams(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("No changes."), "{out}");
    assert!(!out.contains("Kubernetes API:"), "{out}");

    // server-1 dies; the VIP moves to server-2 (priority 90, as server-3; the first wins).
    lab.kill_host("server-1").unwrap();
    let holder = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match lab.vip_holder() {
                Some(h) if h != "server-1" => break h,
                _ => {
                    assert!(Instant::now() < deadline, "the VIP never left server-1");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    };
    let line = format!(
        "Kubernetes API: the kubeconfig's {s1} did not answer (connection refused); using {vip} (the VIP)"
    );
    let o = lab_k3splan(
        &lab,
        &topo,
        &[
            "plan",
            "--detailed-exitcode",
            "--allow-unreachable",
            "server-1",
        ],
    );
    let (out, err) = streams(&o);
    assert_ne!(o.status.code(), Some(1), "the plan is made: {out}{err}");
    assert!(!out.contains("Kubernetes API unknown"), "{out}");
    // The VIP comes before the other servers (which answer too).
    assert!(out.contains(&format!("Warning: {line}")), "{out}");
    let o = lab_k3splan(
        &lab,
        &topo,
        &["plan", "--json", "--allow-unreachable", "server-1"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON plan");
    assert_eq!(v["complete"], true, "{v}");
    assert!(
        v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str() == Some(line.as_str())),
        "{v}"
    );

    // Bad credentials: a 401 is an answer. It stays an error naming the server that gave it,
    // and the failover that led there is said too; never "unreachable", never another server.
    for (file, server, named, via) in [
        ("bad-s2/kubeconfig", &s2, &s2, None),
        ("bad-s1/kubeconfig", &s1, &vip, Some(&s1)),
    ] {
        let kc = lab
            .write_kubeconfig_for(file, server, Some("not-the-token"))
            .unwrap();
        let topo = topology_using(&lab, file.split('/').next().unwrap(), &nodes, &kc);
        let o = lab_k3splan(
            &lab,
            &topo,
            &[
                "plan",
                "--detailed-exitcode",
                "--allow-unreachable",
                "server-1",
            ],
        );
        let (out, err) = streams(&o);
        let all = format!("{out}{err}");
        assert_eq!(o.status.code(), Some(1), "{all}");
        assert!(!out.contains("No changes."), "{all}");
        assert!(
            all.contains(&format!("Kubernetes API {named}: ")) && all.contains("401 Unauthorized"),
            "the error names {named} and the 401: {all}"
        );
        assert!(!all.contains("no Kubernetes API server answered"), "{all}");
        assert!(!all.contains(&format!("{named} unreachable")), "{all}");
        if let Some(dead) = via {
            assert!(
                all.contains(&format!(
                    "the kubeconfig's {dead} did not answer (connection refused); using {vip} (the VIP)"
                )),
                "{all}"
            );
        }
    }

    // Every server dies: nothing answers. The plan is incomplete (exit 1, never "No
    // changes") and lists every URL it tried, in order, each with its error.
    lab.kill_host(&holder).unwrap();
    let other = if holder == "server-2" {
        "server-3"
    } else {
        "server-2"
    };
    lab.kill_host(other).unwrap();
    let o = lab_k3splan(
        &lab,
        &topo,
        &[
            "plan",
            "--detailed-exitcode",
            "--allow-unreachable",
            "server-1",
        ],
    );
    let (out, err) = streams(&o);
    let all = format!("{out}{err}");
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(!out.contains("No changes."), "{all}");
    assert!(
        all.contains("no Kubernetes API server answered; tried "),
        "{all}"
    );
    let mut at = 0;
    for (u, what) in [
        (&s1, "the kubeconfig's server"),
        (&vip, "the VIP"),
        (&s2, "server server-2"),
        (&s3, "server server-3"),
    ] {
        let tried = format!("{u} ({what}): ");
        let i = all[at..]
            .find(&tried)
            .unwrap_or_else(|| panic!("{tried} in order in: {all}"));
        at += i + tried.len();
    }
}

fn issue19_without_a_vip_plan_and_apply_use_another_declared_server() {
    // Seed 000 with an operator's kubeconfig naming the dead first server: the replacement
    // is planned and applied (Node deleted, member removed, spare joined) through the API
    // of another server, and every run says which address answered.
    let lab = Lab::start(LabSpec {
        servers: 3,
        spare_hosts: 1,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let (s1, s2) = (url_of(&lab, "server-1"), url_of(&lab, "server-2"));
    let kc = lab
        .write_kubeconfig_for("operator/kubeconfig", &s1, None)
        .unwrap();
    lab.kill_host("server-1").unwrap();
    lab.wait_node_ready("server-1", false, Duration::from_secs(60))
        .unwrap();
    let nodes = [
        TopologyNode::server("server-2"),
        TopologyNode::server("server-3"),
        TopologyNode::server("spare-1"),
    ];
    let topo = topology_using(&lab, "operator", &nodes, &kc);
    // No VIP: api_endpoint is server-2's URL (the lab renders the first declared server's).
    let line = format!(
        "Kubernetes API: the kubeconfig's {s1} did not answer (connection refused); using {s2} (api_endpoint)"
    );
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    let (out, err) = streams(&o);
    assert_eq!(o.status.code(), Some(2), "the plan is made: {out}{err}");
    assert!(out.contains("node.server-1 will be destroyed"), "{out}");
    assert!(out.contains("node.spare-1 will be created"), "{out}");
    assert!(out.contains(&format!("Warning: {line}")), "{out}");

    // apply observes again, through the same failover, says so, and acts through it.
    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    let (out, err) = streams(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains(&format!("Warning: {line}")), "{out}");
    let obs = lab.wait_voters(3, Duration::from_secs(60)).unwrap();
    assert_eq!(obs.health.healthy_voters, 3);
    assert!(lab.node_ready("spare-1"));
    assert!(!lab.nodes().contains(&"server-1".to_string()));

    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    let (out, err) = streams(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "second plan: no changes: {out}{err}"
    );
    assert!(out.contains("No changes."), "{out}");
    assert!(out.contains(&format!("Warning: {line}")), "{out}");
}
