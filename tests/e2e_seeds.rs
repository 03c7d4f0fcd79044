//! The seed scenarios end to end: the compiled `k3splan` binary, run as a process, against
//! the lab (real sshd hosts, real etcd members driven by a k3s stand-in, the in-memory
//! Kubernetes API). Each test breaks the lab, plans, applies, checks the cluster is healthy
//! and that a second plan reports no changes.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{combined, k3splan_for, lab_k3splan, stdout};
use k3splan_lab::{Lab, LabSpec, TopologyNode};

use k3splan_testkit_caps::lab;

k3splan_testkit_caps::main! {
    seed000_first_server_dies_and_is_replaced needs [lab],
    seed000_agentless_first_server_dies_and_is_replaced needs [lab],
    seed001_split_roles_join_urls_rewritten needs [lab],
    seed001_agentless_split_roles_join_urls_rewritten needs [lab],
    seed002_scale_out_with_stale_data needs [lab],
    seed002_agentless_scale_out_with_stale_data needs [lab],
    seed003_addons_scaled_and_spread needs [lab],
    seed004_control_node_replacement_with_vip_and_volumes needs [lab],
    unreachable_but_alive_host_is_not_removed_without_the_flag needs [lab],
    quorum_lost_plan_refuses_with_recovery_advice needs [lab],
    two_applies_at_once_one_runs_the_other_is_told_who_holds_the_etcd_lock needs [lab],
    issue9_removed_live_agent_is_uninstalled_at_the_port_the_state_recorded needs [lab],
    issue13_verify_fails_on_an_undeclared_node needs [lab],
}

fn seed000_first_server_dies_and_is_replaced() {
    seed000(false)
}

/// Seed 000 with agent-less servers (`disable-agent`: no kubelet, no Node; issue 19): the
/// rebuild joins through a live agent-less server, waits for its member and supervisor
/// port instead of a Node, and verifies without counting Nodes.
fn seed000_agentless_first_server_dies_and_is_replaced() {
    seed000(true)
}

fn seed000(agentless: bool) {
    let lab = Lab::start(LabSpec {
        servers: 3,
        spare_hosts: 1,
        agentless,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    lab.kill_host("server-1").unwrap();
    wait_server_1_dead(&lab, agentless);
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
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2));
    let plan = stdout(&o);
    if agentless {
        // No Node to delete: the dead server is its etcd member.
        assert!(plan.contains("etcd_member.server-1-"), "{plan}");
        assert!(!plan.contains("node.server-1 will be destroyed"), "{plan}");
    } else {
        assert!(plan.contains("node.server-1 will be destroyed"), "{plan}");
    }
    assert!(plan.contains("node.spare-1 will be created"), "{plan}");
    assert!(!plan.contains("cluster-init: true"), "{plan}");
    assert!(plan.contains("without cluster-init"), "{plan}");
    // The rendered topology's api_endpoint names server-2 (no VIP): server-2's own join
    // URL, naming dead server-1, must go to another live server, never to itself (issue 19).
    let own2 = lab.host("server-2").unwrap().server_url();
    let url3 = lab.host("server-3").unwrap().server_url();
    assert!(
        plan.contains(&format!("+server: {url3}")),
        "server-2 rejoins through server-3, not itself: {plan}"
    );
    if agentless {
        assert!(
            plan.contains("wait until spare-1 is healthy: its etcd member a healthy voter and its supervisor port answering"),
            "{plan}"
        );
        assert!(!plan.contains("wait until Node spare-1 is Ready"), "{plan}");
        assert!(plan.contains("; 0 nodes Ready"), "{plan}");
    }

    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0));
    let obs = lab.wait_voters(3, Duration::from_secs(60)).unwrap();
    assert_eq!(obs.health.healthy_voters, 3);
    if agentless {
        assert!(
            lab.nodes().is_empty(),
            "agent-less servers have no Node: {:?}",
            lab.nodes()
        );
    } else {
        assert!(lab.node_ready("spare-1"));
    }
    assert!(!lab.nodes().contains(&"server-1".to_string()));
    let cfg2 = lab
        .read_file("server-2", "/etc/rancher/k3s/config.yaml")
        .unwrap();
    assert!(
        !cfg2.contains(&format!("server: {own2}")) && cfg2.contains(&format!("server: {url3}")),
        "server-2 joins through itself: {cfg2}"
    );

    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "second plan: no changes");
    assert!(stdout(&o).contains("No changes."));
}

/// After `server-1` was killed: its Node NotReady (with agents), or (agent-less: no Node to
/// watch) the two survivors healthy voters with a leader, so that the plan does not observe
/// the election in progress.
fn wait_server_1_dead(lab: &Lab, agentless: bool) {
    if agentless {
        lab.wait_etcd(
            "2 of 3 voters healthy with a leader",
            Duration::from_secs(60),
            |o| o.health.healthy_voters == 2 && o.health.leader.is_some(),
        )
        .unwrap();
    } else {
        lab.wait_node_ready("server-1", false, Duration::from_secs(60))
            .unwrap();
    }
}

fn names(nodes: &[&str]) -> Vec<TopologyNode> {
    nodes.iter().map(|n| TopologyNode::server(n)).collect()
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

/// Seed 001: control-plane-only servers join through the first server; it dies. Their join
/// URLs are rewritten to a live server and they restart one at a time.
fn seed001_split_roles_join_urls_rewritten() {
    seed001(false)
}

/// Seed 001 with agent-less servers (issue 19): no server has a Node; the rewritten
/// control-plane servers are waited for by their supervisor port.
fn seed001_agentless_split_roles_join_urls_rewritten() {
    seed001(true)
}

fn seed001(agentless: bool) {
    let lab = Lab::start(LabSpec {
        servers: 3,
        spare_hosts: 2,
        agentless,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    // Two control-plane-only servers (k3s --disable-etcd) joining through server-1.
    let first = lab.host("server-1").unwrap().server_url();
    for cp in ["spare-1", "spare-2"] {
        let addr = lab.host(cp).unwrap().address();
        lab.write_file(
            cp,
            "/etc/rancher/k3s/config.yaml",
            &format!(
                "server: {first}\ntoken: {}\nnode-name: {cp}\nnode-ip: {addr}\ndisable-etcd: true\n{}",
                lab.token(),
                if agentless { "disable-agent: true\n" } else { "" }
            ),
        )
        .unwrap();
        // Installed as an operator would, with this config.yaml (the lab's install_server
        // would write its own).
        let (status, log) = lab
            .ssh(
                cp,
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
        if agentless {
            // The installer's `service restart` returned once k3s was ready; no Node.
            assert!(lab.node(cp).is_none(), "{cp} has no kubelet, so no Node");
        } else {
            lab.wait_node_ready(cp, true, Duration::from_secs(90))
                .unwrap();
        }
    }
    lab.kill_host("server-1").unwrap();
    wait_server_1_dead(&lab, agentless);

    let mut nodes = names(&["server-2", "server-3"]);
    for cp in ["spare-1", "spare-2"] {
        nodes.push(TopologyNode {
            name: cp.into(),
            roles: vec!["control-plane".into()],
            primary: false,
        });
    }
    let topo = lab.write_topology("seed001/main.hcl", &nodes, "").unwrap();
    let o = lab_k3splan(&lab, &topo, &["plan"]);
    assert_eq!(code(&o), Some(0));
    let plan = stdout(&o);
    for cp in ["spare-1", "spare-2"] {
        assert!(
            plan.contains(&format!(
                "host_file.{cp}:/etc/rancher/k3s/config.yaml will be updated in-place"
            )),
            "{plan}"
        );
        assert!(plan.contains(&format!("restart k3s on {cp}")), "{plan}");
    }
    assert!(plan.contains(&format!("-server: {first}")), "{plan}");

    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    assert_eq!(code(&o), Some(0));
    for cp in ["spare-1", "spare-2"] {
        let cfg = lab.read_file(cp, "/etc/rancher/k3s/config.yaml").unwrap();
        assert!(!cfg.contains(&first), "{cp}: {cfg}");
        assert!(
            cfg.contains("disable-etcd: true"),
            "{cp} keeps its role: {cfg}"
        );
        assert!(
            cfg.contains(&format!("token: {}", lab.token())),
            "{cp} keeps its token"
        );
        if agentless {
            assert!(cfg.contains("disable-agent: true"), "{cp}: {cfg}");
            assert!(lab.node(cp).is_none(), "{cp} has no Node");
        } else {
            assert!(lab.node_ready(cp));
        }
    }
    let obs = lab.wait_voters(2, Duration::from_secs(30)).unwrap();
    assert_eq!(obs.health.healthy_voters, 2);
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), Some(0), "second plan: no changes");
}

/// Seed 002: etcd from 3 to 5 members; one new host holds another cluster's etcd data. The
/// stale dir is moved aside (kept), the members join one at a time.
fn seed002_scale_out_with_stale_data() {
    seed002(false)
}

/// Seed 002 with agent-less servers (issue 19): the new members are waited for by their
/// member and supervisor port, not a Node.
fn seed002_agentless_scale_out_with_stale_data() {
    seed002(true)
}

fn seed002(agentless: bool) {
    let lab = Lab::start(LabSpec {
        servers: 3,
        spare_hosts: 2,
        agentless,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    lab.plant_stale_etcd_data("spare-2").unwrap();
    let topo = lab
        .write_topology(
            "seed002/main.hcl",
            &names(&["server-1", "server-2", "server-3", "spare-1", "spare-2"]),
            "",
        )
        .unwrap();
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), Some(2));
    let plan = stdout(&o);
    let aside = plan
        .find("move /var/lib/rancher/k3s/server/db/etcd aside")
        .expect(&plan);
    let join5 = plan
        .find("install k3s v1.28.5+k3s1 on spare-2")
        .expect(&plan);
    let join4 = plan
        .find("install k3s v1.28.5+k3s1 on spare-1")
        .expect(&plan);
    assert!(
        aside < join5,
        "stale data moved aside before the join: {plan}"
    );
    let promote4 = plan
        .find("wait until spare-1's etcd learner is promoted")
        .expect(&plan);
    assert!(
        join4 < promote4 && promote4 < join5,
        "one member at a time: {plan}"
    );

    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    assert_eq!(code(&o), Some(0));
    let obs = lab.wait_voters(5, Duration::from_secs(60)).unwrap();
    assert_eq!(obs.health.healthy_voters, 5);
    if agentless {
        assert!(lab.nodes().is_empty(), "{:?}", lab.nodes());
    } else {
        assert!(lab.node_ready("spare-1") && lab.node_ready("spare-2"));
    }
    let (_, ls) = lab
        .ssh("spare-2", &[], "ls /var/lib/rancher/k3s/server/db/")
        .unwrap();
    assert!(
        ls.contains("etcd-backup-"),
        "the stale dir is kept aside: {ls}"
    );
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), Some(0), "second plan: no changes");
}

/// Seed 003: CoreDNS, metrics-server and local-path-provisioner at one replica; the topology
/// asks for 3 / 2 / 2 spread over hosts.
fn seed003_addons_scaled_and_spread() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        seed_workloads: true,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let extra = "addon \"coredns\" {\n  replicas = 3\n  spread   = \"kubernetes.io/hostname\"\n}\n\naddon \"metrics-server\" {\n  replicas = 2\n  spread   = \"kubernetes.io/hostname\"\n}\n\naddon \"local-path-provisioner\" {\n  replicas = 2\n}\n";
    let topo = lab
        .write_topology(
            "seed003/main.hcl",
            &names(&["server-1", "server-2", "server-3"]),
            extra,
        )
        .unwrap();
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), Some(2));
    let plan = stdout(&o);
    for a in ["coredns", "metrics-server", "local-path-provisioner"] {
        assert!(
            plan.contains(&format!("addon.{a} will be updated in-place")),
            "{plan}"
        );
    }
    assert!(
        !plan.contains("etcd_snapshot"),
        "no destructive step, no snapshot: {plan}"
    );
    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    assert_eq!(code(&o), Some(0));
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), Some(0), "second plan: no changes");
    let coredns: Vec<_> = lab
        .pods(Some("kube-system"))
        .into_iter()
        .filter(|(name, _, _)| name.starts_with("kube-system/coredns"))
        .collect();
    assert_eq!(coredns.len(), 3, "{coredns:?}");
    let mut hosts: Vec<&str> = coredns.iter().map(|(_, _, node)| node.as_str()).collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), 3, "spread over the three hosts: {coredns:?}");
}

/// Seed 004: the full replacement of the first control node, VIP primary moving, MinIO,
/// monitor-MinIO and victoria-metrics volumes rebound on the new node.
fn seed004_control_node_replacement_with_vip_and_volumes() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        spare_hosts: 1,
        vip: true,
        seed_workloads: true,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    lab.kill_host("server-1").unwrap();
    lab.wait_node_ready("server-1", false, Duration::from_secs(60))
        .unwrap();
    let topo = lab
        .write_topology(
            "seed004/main.hcl",
            &[
                TopologyNode::server("server-2").primary(),
                TopologyNode::server("server-3"),
                TopologyNode::server("spare-1"),
            ],
            "",
        )
        .unwrap();
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), Some(2));
    let plan = stdout(&o);
    let order = [
        "# 1. etcd_snapshot",
        "node.server-1 will be destroyed",
        "etcd_member.server-1 will be destroyed",
        "node.spare-1 will be created",
        "pvc.onecloud-minio/export-minio-1 will be replaced",
    ];
    let mut last = 0;
    for marker in order {
        let at = plan
            .find(marker)
            .unwrap_or_else(|| panic!("{marker} missing:\n{plan}"));
        assert!(at >= last, "{marker} out of order:\n{plan}");
        last = at;
    }
    assert!(plan.contains("quorum after: 2/2 voters healthy"), "{plan}");
    assert!(plan.contains("quorum after: 3/3 voters healthy"), "{plan}");

    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    assert_eq!(code(&o), Some(0));
    let obs = lab.wait_voters(3, Duration::from_secs(60)).unwrap();
    assert_eq!(obs.health.healthy_voters, 3);
    // Volumes of the dead node now live on the new node; the others did not move.
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), Some(0), "second plan: no changes");
    let pods = lab.pods(None);
    let node_of = |p: &str| {
        pods.iter()
            .find(|(name, _, _)| name == p)
            .map(|(_, _, node)| node.clone())
            .unwrap_or_default()
    };
    assert_eq!(node_of("onecloud-minio/minio-1"), "spare-1", "{pods:?}");
    assert_eq!(
        node_of("onecloud-monitoring/monitor-minio-1"),
        "spare-1",
        "{pods:?}"
    );
    assert_eq!(
        node_of("onecloud-minio/minio-0"),
        "server-2",
        "healthy volumes stay: {pods:?}"
    );
    let prio = |h: &str| {
        lab.read_file(h, k3splan_lab::KEEPALIVED_MANIFEST)
            .unwrap_or_default()
    };
    assert!(prio("server-2").contains("\"100\""), "{}", prio("server-2"));
    assert!(prio("spare-1").contains("\"90\""), "{}", prio("spare-1"));
    assert_eq!(lab.vip_holder().as_deref(), Some("server-2"));
}

/// Safety: a host that only lost SSH (its Node is still Ready) is never planned for removal
/// without --allow-unreachable.
fn unreachable_but_alive_host_is_not_removed_without_the_flag() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let topo = lab
        .write_topology("alive/main.hcl", &names(&["server-2", "server-3"]), "")
        .unwrap();
    lab.cut_network("server-1").unwrap();
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    let plan = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert!(!plan.contains("node.server-1 will be destroyed"), "{plan}");
    assert!(
        !plan.contains("etcd_member.server-1 will be destroyed"),
        "{plan}"
    );
    assert!(
        plan.contains("--allow-unreachable"),
        "tells the operator the way out: {plan}"
    );
    lab.heal_network("server-1").unwrap();
}

/// Safety: with two of three members dead, quorum is lost; the plan refuses and says how to
/// recover instead of planning steps that cannot succeed.
fn quorum_lost_plan_refuses_with_recovery_advice() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        spare_hosts: 2,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    lab.kill_host("server-1").unwrap();
    lab.kill_host("server-2").unwrap();
    let topo = lab
        .write_topology(
            "lost/main.hcl",
            &names(&["server-3", "spare-1", "spare-2"]),
            "",
        )
        .unwrap();
    let o = lab_k3splan(&lab, &topo, &["plan"]);
    assert_eq!(code(&o), Some(1));
    let out = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("quorum"), "{out}");
    assert!(
        out.contains("cluster-reset") || out.contains("snapshot"),
        "{out}"
    );
    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    assert_eq!(code(&o), Some(1));
    let out = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("Nothing will be changed") || out.contains("nothing was changed"),
        "{out}"
    );
    assert!(!out.contains("Apply complete"), "{out}");
    // The survivor's k3s exits ~10 s after it loses quorum (as k3s does, lab.md), so the
    // member list may no longer be readable; when it is, no member was removed.
    let members = lab.etcd().members;
    assert!(
        members.is_empty() || members.len() == 3,
        "nothing was changed: {members:?}"
    );
}

/// Issue 7: two applies started together — one runs, the other stops at once and names the
/// holder of the lock. The state lives in etcd (`backend "etcd"`, lease-held lock), on the
/// lab's own etcd cluster.
fn two_applies_at_once_one_runs_the_other_is_told_who_holds_the_etcd_lock() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        spare_hosts: 1,
        ..LabSpec::default()
    })
    .expect("lab");
    lab.kill_host("server-1").unwrap();
    lab.wait_node_ready("server-1", false, Duration::from_secs(60))
        .unwrap();
    let f = lab.files();
    let backend = format!(
        "backend \"etcd\" {{\n  endpoints = [\"{}\", \"{}\"]\n  prefix    = \"k3splan/lab/\"\n  ca_file   = \"{}\"\n  cert_file = \"{}\"\n  key_file  = \"{}\"\n}}\n",
        lab.host("server-2").unwrap().etcd_endpoint(),
        lab.host("server-3").unwrap().etcd_endpoint(),
        f.etcd_ca.display(),
        f.etcd_cert.display(),
        f.etcd_key.display()
    );
    let topo = lab
        .write_topology(
            "twice/main.hcl",
            &names(&["server-2", "server-3", "spare-1"]),
            &backend,
        )
        .unwrap();
    let cmd = || {
        let mut c = k3splan_for(&lab);
        c.args(["apply", "--auto-approve", "-c"]).arg(&topo);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };
    let first = cmd().spawn().unwrap();
    // Wait until the first run holds the lock (its plan is printed after the lock is taken).
    let etcd = lab.etcd_provider(None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let held = rt.block_on(async {
            let mut c = etcd
                .client(&lab.host("server-2").unwrap().etcd_endpoint())
                .await
                .ok()?;
            let r = c.get("k3splan/lab/lock", None).await.ok()?;
            Some(!r.kvs().is_empty())
        });
        if held == Some(true) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "first apply never took the lock"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = cmd().output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains("the state is locked"), "{err}");
    assert!(err.contains("operation apply"), "{err}");
    assert!(
        err.contains(&format!("pid {}", first.id())),
        "names the holder: {err}"
    );
    let first = first.wait_with_output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    // The state is in etcd, and a second apply now finds nothing to do.
    let o = cmd().output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("No changes."));
    let stored = rt.block_on(async {
        let mut c = etcd
            .client(&lab.host("server-3").unwrap().etcd_endpoint())
            .await
            .unwrap();
        c.get("k3splan/lab/state", None).await.unwrap()
    });
    let v: serde_json::Value = serde_json::from_slice(stored.kvs()[0].value()).unwrap();
    assert!(v["managed"]["nodes"]["spare-1"].is_object(), "{v}");
    assert!(!String::from_utf8_lossy(stored.kvs()[0].value()).contains(lab.token()));
}

/// Scale-in: an agent leaves the topology while its host is alive. It is drained, its Node
/// deleted and k3s uninstalled on it over SSH. The topology no longer says where its sshd
/// listens (the lab's are not on port 22): the port comes from the state, recorded by the
/// previous apply. Found while profiling for issue 9: the recorded ports were read from the
/// state but never used, so such a host was dialled on the cluster's default port.
/// A second agent leaves with its k3s-agent stopped: it is still an agent, so its
/// k3s-agent-uninstall.sh runs (choosing by the running unit ran k3s-uninstall.sh, which
/// an agent host does not have: "not found", exit 127). The first also has a server unit:
/// both uninstall scripts run.
fn issue9_removed_live_agent_is_uninstalled_at_the_port_the_state_recorded() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        agents: 2,
        seed_workloads: true,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    assert_ne!(lab.host("agent-1").unwrap().ssh_port(), 22);
    let addon = "addon \"coredns\" {\n  replicas = 2\n}\n";
    let mut all = names(&["server-1", "server-2", "server-3"]);
    all.push(TopologyNode::agent("agent-1"));
    all.push(TopologyNode::agent("agent-2"));
    let topo = lab
        .write_topology("scale-in/main.hcl", &all, addon)
        .unwrap();
    // A first apply with a change, so that the state records every node and its SSH port.
    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    assert_eq!(code(&o), Some(0));
    let state = std::fs::read_to_string(common::lab_state(&lab)).unwrap();
    assert!(
        state.contains("agent-1"),
        "the state records agent-1: {state}"
    );

    let topo = lab
        .write_topology(
            "scale-in/main.hcl",
            &names(&["server-1", "server-2", "server-3"]),
            addon,
        )
        .unwrap();
    let (rc, out) = lab.service("agent-2", "stop", "k3s-agent").unwrap();
    assert_eq!(rc, 0, "{out}");
    // agent-1 also has a (stopped) server unit and its uninstall script, as a host once
    // installed as a server and then as an agent: each script removes only its own unit while
    // the other is left, so both must run for k3s to go.
    use k3splan_lab::hostcfg;
    lab.write_file(
        "agent-1",
        &hostcfg::unit_file("k3s"),
        &hostcfg::render_unit("k3s", &["server".to_string()]),
    )
    .unwrap();
    lab.write_file("agent-1", &hostcfg::uninstall_script("k3s"), "#!/bin/sh\n")
        .unwrap();
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), Some(2));
    let plan = stdout(&o);
    for a in ["agent-1", "agent-2"] {
        assert!(
            plan.contains(&format!("node.{a} will be destroyed")),
            "{plan}"
        );
        assert!(plan.contains(&format!("uninstall k3s on {a}")), "{plan}");
    }
    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    assert_eq!(code(&o), Some(0), "{}", combined(&o));
    for a in ["agent-1", "agent-2"] {
        assert!(!lab.nodes().contains(&a.to_string()));
        let (rc, _) = lab
            .ssh(a, &[], "test -e /etc/rancher/k3s/config.yaml")
            .unwrap();
        assert_ne!(rc, 0, "k3s is uninstalled on {a} (its config is gone)");
        for unit in ["k3s", "k3s-agent"] {
            assert!(
                lab.read_file(a, &hostcfg::unit_file(unit)).is_none(),
                "{a}'s {unit} unit removed"
            );
        }
    }
    let obs = lab.etcd();
    assert_eq!(obs.health.healthy_voters, 3, "etcd untouched");
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), Some(0), "second plan: no changes");
}

/// Issue 13, point 2: `verify` counted Ready Nodes only, so a removed node whose kubelet
/// registered it again ("3 Nodes Ready" while a fourth, undeclared Node existed) passed.
/// Every Node must be declared; an undeclared one is named.
fn issue13_verify_fails_on_an_undeclared_node() {
    use k3splan::apply::{Executor, Waits};
    use k3splan::config::load::{EnvSource, load_path};
    use k3splan::live::{Live, LiveOptions};
    use k3splan::plan::Operation;

    let lab = Lab::start(LabSpec {
        servers: 3,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let topo = lab
        .write_topology(
            "verify/main.hcl",
            &names(&["server-1", "server-2", "server-3"]),
            "",
        )
        .unwrap();
    let env = lab.k3splan_env().into_iter().collect();
    let loaded = load_path(&topo, EnvSource::Map(env)).expect("load topology");
    let mut t = loaded
        .topology
        .unwrap_or_else(|| panic!("topology: {:?}", loaded.diagnostics));
    t.cluster.kubeconfig = Some(lab.files().kubeconfig.clone());
    let live = Live::new(
        &t,
        LiveOptions {
            base_dir: topo.parent().unwrap().to_path_buf(),
            ..LiveOptions::default()
        },
    )
    .expect("live");
    let exec = Executor {
        live: &live,
        waits: Waits {
            verify: Duration::from_secs(3),
            ..Waits::default()
        },
        snapshot_dir: lab.dir().join("snapshots"),
    };
    let verify = Operation::Verify {
        expect_members: 3,
        expect_nodes: 3,
        unhealthy_left: vec![],
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Premise: the declared cluster verifies.
    let ok = rt.block_on(exec.run(&verify));
    assert!(ok.is_ok(), "premise: the declared cluster verifies: {ok:?}");

    // A fourth Node, Ready, that no block declares (as a removed agent re-registers itself).
    let ghost = serde_json::json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "agent-ghost", "labels": {"kubernetes.io/hostname": "agent-ghost"}},
        "status": {"conditions": [{"type": "Ready", "status": "True",
            "lastTransitionTime": "2026-12-01T00:00:00Z"}],
            "addresses": [{"type": "InternalIP", "address": "127.77.250.9"}],
            "nodeInfo": {"kubeletVersion": "v1.28.5+k3s1"}}});
    lab.kube()
        .load_values(vec![ghost])
        .expect("add the undeclared Node");
    assert!(lab.nodes().contains(&"agent-ghost".to_string()), "premise");
    let err = rt
        .block_on(exec.run(&verify))
        .expect_err("verify must fail on an undeclared Node")
        .to_string();
    assert!(
        err.contains("undeclared Node") && err.contains("agent-ghost"),
        "{err}"
    );
    rt.block_on(live.close_all());
}
