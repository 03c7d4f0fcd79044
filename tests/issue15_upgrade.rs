//! Issue 15 end to end: a rolling k3s upgrade of a 3-server + 2-agent lab cluster, one
//! minor version up, with the compiled `k3splan` binary; and the lab's k3s stand-in
//! behaving like k3s across versions (what `k3s --version` and the Node report, the skew
//! refusal of a server two minors ahead, the installer's env file rewrite).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{combined, lab_k3splan, stdout};
use k3splan_lab::{Lab, LabSpec, TopologyNode, hostcfg};
use k3splan_testkit_caps::lab;

k3splan_testkit_caps::main! {
    issue15_lab_upgrade_one_minor_then_no_changes needs [lab],
}

const OLD: &str = "v1.28.5+k3s1";
const NEW: &str = "v1.29.0+k3s1";
const SERVERS: [&str; 3] = ["server-1", "server-2", "server-3"];
const AGENTS: [&str; 2] = ["agent-1", "agent-2"];

/// `k3s --version` on a lab host, first line.
fn host_version(lab: &Lab, host: &str) -> String {
    let (code, out) = lab
        .ssh(host, &[], &format!("{} --version", hostcfg::K3S_BIN))
        .unwrap();
    assert_eq!(code, 0, "{host}: {out}");
    out.lines().next().unwrap_or_default().to_string()
}

fn kubelet_version(lab: &Lab, node: &str) -> String {
    lab.node(node).unwrap()["status"]["nodeInfo"]["kubeletVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn set_version(topo: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(topo).unwrap();
    assert!(text.contains(from), "{text}");
    std::fs::write(topo, text.replace(from, to)).unwrap();
}

fn issue15_lab_upgrade_one_minor_then_no_changes() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        agents: 2,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let mut nodes: Vec<TopologyNode> = SERVERS.iter().map(|s| TopologyNode::server(s)).collect();
    nodes.extend(AGENTS.iter().map(|a| TopologyNode::agent(a)));
    let topo = lab.write_topology("upgrade/main.hcl", &nodes, "").unwrap();

    // The stand-in: the installed version is what `k3s --version` and the Node report.
    for h in SERVERS.iter().chain(&AGENTS) {
        assert!(host_version(&lab, h).contains(OLD), "{h}");
        assert_eq!(kubelet_version(&lab, h), OLD, "{h}");
    }
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", combined(&o));

    // Two minors at once: refused with the reason, nothing changed.
    set_version(&topo, OLD, "v1.30.2+k3s1");
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(1), "{}", combined(&o));
    assert!(
        combined(&o).contains("skips 1 minor version"),
        "{}",
        combined(&o)
    );

    // The stand-in's skew rule: server-3 installed two minors ahead refuses to start (the
    // other servers' Nodes say v1.28); back at OLD it rejoins.
    let standin = lab.files().standin.display().to_string();
    let join = lab.host("server-1").unwrap().server_url();
    let install = |v: &str| {
        lab.ssh(
            "server-3",
            &[
                ("INSTALL_K3S_VERSION", v),
                ("INSTALL_K3S_EXEC", "server"),
                ("K3S_TOKEN", lab.token()),
                ("K3S_URL", join.as_str()),
            ],
            &format!("{standin} install"),
        )
        .unwrap()
    };
    let (code, out) = install("v1.30.2+k3s1");
    assert_ne!(code, 0, "a server two minors ahead started: {out}");
    assert!(
        lab.k3s_log("server-3")
            .contains("version skew: this server runs v1.30.2+k3s1"),
        "{}",
        lab.k3s_log("server-3")
    );
    let (code, out) = install(OLD);
    assert_eq!(code, 0, "{out}");
    lab.wait_voters(3, Duration::from_secs(60))
        .expect("server-3 back");
    lab.wait_node_ready("server-3", true, Duration::from_secs(60))
        .unwrap();

    // One minor: the plan shows the order (the etcd leader last), then apply.
    set_version(&topo, "v1.30.2+k3s1", NEW);
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", combined(&o));
    let plan = stdout(&o);
    let leader_id = lab.etcd().health.leader.expect("a leader");
    let leader = lab
        .etcd()
        .members
        .iter()
        .find(|m| m.id == leader_id)
        .map(|m| m.name.clone())
        .unwrap();
    let order: Vec<&str> = plan
        .lines()
        .filter_map(|l| {
            let i = l.find("upgrade k3s on ")?;
            l[i + "upgrade k3s on ".len()..].split_whitespace().next()
        })
        .collect();
    assert_eq!(order.len(), 5, "{plan}");
    assert!(
        leader.starts_with(order[2]),
        "leader {leader} upgraded last of the servers: {order:?}\n{plan}"
    );
    assert_eq!(&order[3..], &AGENTS, "{plan}");
    assert!(plan.contains("etcd snapshot"), "{plan}");

    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    assert!(o.status.success(), "{}", combined(&o));

    for h in SERVERS.iter().chain(&AGENTS) {
        assert!(host_version(&lab, h).contains(NEW), "{h}");
        assert_eq!(kubelet_version(&lab, h), NEW, "{h}");
        assert!(
            !lab.node(h).unwrap()["spec"]["unschedulable"]
                .as_bool()
                .unwrap_or(false),
            "{h} left cordoned"
        );
    }
    let e = lab
        .wait_voters(3, Duration::from_secs(30))
        .expect("3 voters");
    assert_eq!(e.members.len(), 3);
    // An agent's join options survived the installer's env file rewrite.
    let env = lab
        .read_file("agent-1", &hostcfg::env_file("k3s-agent"))
        .unwrap_or_default();
    assert!(env.contains("K3S_URL="), "{env}");

    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", combined(&o));
    assert!(stdout(&o).contains("No changes."), "{}", stdout(&o));
}
