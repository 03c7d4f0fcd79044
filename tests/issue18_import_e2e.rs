//! Issue 18: `k3splan import` end to end — the compiled binary against the lab (real sshd
//! hosts, real etcd members under the k3s stand-in, the in-memory Kubernetes API). The
//! round trip is the test: `import`, then `plan` of the imported topology = "No changes."
//! (exit 0 with `--detailed-exitcode`), on each lab shape.
//!
//! The topology given to `import` (`-c`) is an inventory only: every lab host (spares
//! included) as a plain `["server"]`, with its SSH port, and no `vip`, no `primary`, no
//! `disable-agent`, no `storage`: roles, VIP, primary, agent-less servers and storage must
//! come from the observation.

mod common;

use std::path::{Path, PathBuf};

use common::{k3splan_for, lab_k3splan, lab_state, stdout, text};
use k3splan_lab::{Lab, LabSpec, TopologyNode};
use k3splan_testkit_caps::lab;

k3splan_testkit_caps::main! {
    import_round_trip_vip_agent_spare_and_local_path_workloads needs [lab],
    import_round_trip_agentless_servers needs [lab],
    import_round_trip_after_an_apply_with_a_control_plane_only_server_and_an_addon needs [lab],
    import_of_a_cluster_whose_first_server_died_creates_and_destroys_nothing needs [lab],
}

/// The lab's inventory: every host as a server, with what the cluster is stripped out.
fn inventory(lab: &Lab, file: &str) -> PathBuf {
    let nodes: Vec<TopologyNode> = lab
        .hosts()
        .iter()
        .map(|h| TopologyNode::server(h.name()))
        .collect();
    let full = lab.render_topology(&nodes, "").unwrap();
    let mut out = String::new();
    let mut skip_block = false;
    for l in full.lines() {
        if l.starts_with("  vip {") {
            skip_block = true;
        }
        if l.starts_with("storage ") {
            break;
        }
        let drop = skip_block || l.contains("primary = true") || l.contains("disable-agent");
        if skip_block && l == "  }" {
            skip_block = false;
        }
        if !drop {
            out.push_str(l);
            out.push('\n');
        }
    }
    let p = lab.dir().join(file);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, out).unwrap();
    p
}

fn run(lab: &Lab, topo: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = lab_k3splan(lab, topo, args);
    (o.status.code(), stdout(&o), text(&o.stderr))
}

fn import_round_trip_vip_agent_spare_and_local_path_workloads() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        agents: 1,
        spare_hosts: 1,
        vip: true,
        seed_workloads: true,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let inv = inventory(&lab, "import/inventory.hcl");
    let out = lab.dir().join("imported");
    let out_s = out.to_str().unwrap();
    let (code, so, se) = run(&lab, &inv, &["import", "--out", out_s]);
    assert_eq!(code, Some(0), "{so}{se}");
    assert!(so.contains("(serial 1, lineage "), "{so}");
    let file = out.join("cluster.hcl");
    let hcl = std::fs::read_to_string(&file).unwrap();
    // Attribute alignment aside (`k3splan fmt` aligns the `=`).
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let hcl_flat = flat(&hcl);
    // What the observation told.
    let vip = lab.vip().unwrap().to_string();
    assert!(
        hcl_flat.contains(&format!("vip {{ address = \"{vip}\"")),
        "{hcl}"
    );
    assert!(
        hcl_flat.contains(&format!("api_endpoint = \"https://{vip}:6443\"")),
        "{hcl}"
    );
    let block = |name: &str| {
        let start = hcl
            .find(&format!("node \"{name}\" {{"))
            .unwrap_or_else(|| panic!("node {name}:\n{hcl}"));
        flat(&hcl[start..start + hcl[start..].find("\n}\n").unwrap()])
    };
    assert!(block("server-1").contains("primary = true"), "{hcl}");
    assert!(block("server-1").contains("roles = [\"server\"]"), "{hcl}");
    assert!(!block("server-2").contains("primary"), "{hcl}");
    assert!(block("agent-1").contains("roles = [\"agent\"]"), "{hcl}");
    assert!(
        !hcl.contains("node \"spare-1\""),
        "a host without k3s: {hcl}"
    );
    assert!(se.contains("spare-1 has no k3s installed"), "{se}");
    for w in [
        "onecloud-minio/minio",
        "onecloud-monitoring/monitor-minio",
        "onecloud/default-victoria-metrics",
    ] {
        assert!(hcl.contains(&format!("storage \"{w}\"")), "{hcl}");
        assert!(
            se.contains(&format!("TODO: storage.{w}.on_node_loss")),
            "{se}"
        );
    }
    assert!(hcl_flat.contains("token = env(\"K3S_TOKEN\")"), "{hcl}");
    // No secret in the topology nor in the state.
    let state = std::fs::read_to_string(lab_state(&lab)).unwrap();
    assert!(!hcl.contains(lab.token()) && !state.contains(lab.token()));

    // The round trip.
    let (code, so, se) = run(&lab, &file, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{so}{se}\n{hcl}");
    assert!(
        so.starts_with("No changes. The cluster matches the configuration."),
        "{so}"
    );
    let (code, so, _) = run(
        &lab,
        &file,
        &["plan", "-format=markdown", "--detailed-exitcode"],
    );
    assert_eq!(code, Some(0));
    assert!(so.starts_with("### k3splan plan: no changes\n"), "{so}");

    // The state records what was imported, at serial 1.
    let (code, so, _) = run(&lab, &file, &["state", "list"]);
    assert_eq!(code, Some(0));
    for a in ["node.server-1", "node.agent-1", "etcd_member.server-3"] {
        assert!(so.lines().any(|l| l == a), "{a}: {so}");
    }
    assert!(
        so.lines().any(|l| l.starts_with("pvc.onecloud-minio/")),
        "{so}"
    );
    let v: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(v["serial"], 1);
    let lineage = v["lineage"].as_str().unwrap().to_string();

    // Again: refused (the state exists), nothing changed.
    let (code, _, se) = run(&lab, &inv, &["import", "--out", out_s]);
    assert_eq!(code, Some(1));
    assert!(se.contains("exists"), "{se}");
    let (code, _, se) = run(
        &lab,
        &inv,
        &["import", "--out", lab.dir().join("other").to_str().unwrap()],
    );
    assert_eq!(code, Some(1));
    assert!(
        se.contains("a state exists at") && se.contains("--force"),
        "{se}"
    );
    assert_eq!(std::fs::read_to_string(lab_state(&lab)).unwrap(), state);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), hcl);
    // --force: a new state, a new lineage, serial 1.
    let (code, so, se) = run(&lab, &inv, &["import", "--out", out_s, "--force"]);
    assert_eq!(code, Some(0), "{so}{se}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab_state(&lab)).unwrap()).unwrap();
    assert_eq!(v["serial"], 1);
    assert_ne!(v["lineage"].as_str().unwrap(), lineage);
}

fn import_round_trip_agentless_servers() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        agents: 1,
        agentless: true,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let inv = inventory(&lab, "import/inventory.hcl");
    let out = lab.dir().join("imported");
    let (code, so, se) = run(&lab, &inv, &["import", "--out", out.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{so}{se}");
    let file = out.join("cluster.hcl");
    let hcl = std::fs::read_to_string(&file).unwrap();
    // No Node for the servers: they come from etcd's member list and their config.yaml.
    for n in ["server-1", "server-2", "server-3"] {
        let start = hcl.find(&format!("node \"{n}\" {{")).expect(n);
        let b = &hcl[start..start + hcl[start..].find("\n}\n").unwrap()];
        assert!(b.contains("\"disable-agent\" = true"), "{hcl}");
    }
    let (code, so, se) = run(&lab, &file, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{so}{se}\n{hcl}");
}

/// Seed 001's roles and seed 003's add-on, reached by an apply: a control-plane-only server
/// (joined by k3splan with `disable-etcd`) and CoreDNS scaled to 2 (its `.skip` files on
/// every server). Imported into a state of its own, the topology has the control-plane-only
/// role and the add-on as an active block (k3splan already took it over from k3s), and
/// plans to no changes.
fn import_round_trip_after_an_apply_with_a_control_plane_only_server_and_an_addon() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        spare_hosts: 1,
        // The lab's CoreDNS Deployment comes with the seed workloads.
        seed_workloads: true,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let nodes = [
        TopologyNode::server("server-1"),
        TopologyNode::server("server-2"),
        TopologyNode::server("server-3"),
        TopologyNode {
            name: "spare-1".into(),
            roles: vec!["control-plane".into()],
            primary: false,
        },
    ];
    let extra = "addon \"coredns\" {\n  replicas = 2\n  spread   = \"kubernetes.io/hostname\"\n}\n";
    let topo = lab.write_topology("apply/main.hcl", &nodes, extra).unwrap();
    // Before the apply: the live plan as a merge-request comment, and as a graph.
    let (code, so, se) = run(
        &lab,
        &topo,
        &["plan", "-format=markdown", "--detailed-exitcode"],
    );
    assert_eq!(code, Some(2), "{so}{se}");
    assert!(so.starts_with("### k3splan plan: "), "{so}");
    assert!(
        so.contains("<details>") && so.contains("`node.spare-1` will be created"),
        "{so}"
    );
    assert!(so.contains("```diff\n"), "{so}");
    let (code, so, se) = run(&lab, &topo, &["graph"]);
    assert_eq!(code, Some(0), "{so}{se}");
    assert!(so.starts_with("digraph k3splan_plan {"), "{so}");
    assert!(
        so.contains("spare-1's file is written before k3s starts there"),
        "{so}"
    );
    let (code, so, se) = run(&lab, &topo, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{so}{se}");

    let inv = inventory(&lab, "import/inventory.hcl");
    let out = lab.dir().join("imported");
    let state = lab.dir().join("state/imported.state.json");
    let k = |args: &[&str], topo: &Path| {
        let o = k3splan_for(&lab)
            .args(args)
            .arg("-c")
            .arg(topo)
            .arg("--state")
            .arg(&state)
            .output()
            .unwrap();
        eprintln!(
            "$ k3splan {}\n{}{}",
            args.join(" "),
            stdout(&o),
            text(&o.stderr)
        );
        (o.status.code(), stdout(&o), text(&o.stderr))
    };
    let (code, so, se) = k(&["import", "--out", out.to_str().unwrap()], &inv);
    assert_eq!(code, Some(0), "{so}{se}");
    let file = out.join("cluster.hcl");
    let hcl = std::fs::read_to_string(&file).unwrap();
    let flat: String = hcl.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("node \"spare-1\" { address = ")
            && flat.contains("roles = [\"control-plane\"]"),
        "{hcl}"
    );
    assert!(
        flat.contains("addon \"coredns\" { replicas = 2 spread = \"kubernetes.io/hostname\" }"),
        "{hcl}"
    );
    let (code, so, se) = k(&["plan", "--detailed-exitcode"], &file);
    assert_eq!(code, Some(0), "{so}{se}\n{hcl}");
}

/// Seed 000's lab: the first server (`cluster-init`, the one the others joined through) is
/// dead when the cluster is imported. It is still a Node and an etcd member, so it is
/// imported (its host could not be read, and import says so); the plan of the imported
/// topology creates and destroys nothing. It is not "No changes": k3splan rewrites the
/// join URLs that name the dead server whatever the topology says, and reports its member.
fn import_of_a_cluster_whose_first_server_died_creates_and_destroys_nothing() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    lab.kill_host("server-1").unwrap();
    lab.wait_etcd(
        "2 of 3 voters healthy with a leader",
        std::time::Duration::from_secs(60),
        |o| o.health.healthy_voters == 2 && o.health.leader.is_some(),
    )
    .unwrap();
    let inv = inventory(&lab, "import/inventory.hcl");
    let out = lab.dir().join("imported");
    let (code, so, se) = run(&lab, &inv, &["import", "--out", out.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{so}{se}");
    assert!(
        se.contains("host of node server-1 could not be read"),
        "{se}"
    );
    let file = out.join("cluster.hcl");
    let hcl = std::fs::read_to_string(&file).unwrap();
    assert!(hcl.contains("node \"server-1\""), "{hcl}");
    // Unknown is never "no changes": without accepting the dead host the plan is incomplete.
    let (code, so, _) = run(&lab, &file, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(1), "{so}");
    let (code, so, se) = run(
        &lab,
        &file,
        &[
            "plan",
            "--detailed-exitcode",
            "--allow-unreachable",
            "server-1",
        ],
    );
    assert_eq!(code, Some(2), "{so}{se}");
    assert!(
        so.contains("Plan: 0 to add, ") && so.contains(", 0 to remove."),
        "{so}"
    );
    assert!(
        !so.contains("will be destroyed") && !so.contains("will be created"),
        "{so}"
    );
    assert!(so.contains("names an unavailable server"), "{so}");
}
