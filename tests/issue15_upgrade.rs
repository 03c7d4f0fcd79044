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
/// server-3 is installed by hand with flags on the command line (they live only in its
/// unit's ExecStart=): the upgrade must keep them.
const EXEC: &str = "server --node-label=k3splan.test/pinned=yes --kubelet-arg=max-pods=120";
const ARGS: [&str; 2] = [
    "--node-label=k3splan.test/pinned=yes",
    "--kubelet-arg=max-pods=120",
];

/// The arguments of `host`'s k3s unit, and those of its running k3s process.
fn unit_and_process_args(lab: &Lab, host: &str) -> (Vec<String>, Vec<String>) {
    let unit = lab
        .read_file(host, &hostcfg::unit_file("k3s"))
        .unwrap_or_default();
    let unit = k3splan_host::unit::parse_exec_start(&unit)
        .map(|e| e.args)
        .unwrap_or_else(|e| panic!("{host}'s unit: {e}\n{unit}"));
    let pid = lab
        .read_file(host, &hostcfg::pid_file("k3s"))
        .unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
    let process = cmdline
        .split(|b| *b == 0)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .skip(2)
        .filter(|w| !w.is_empty())
        .collect();
    (unit, process)
}
const AGENTS: [&str; 2] = ["agent-1", "agent-2"];

/// `k3s --version` on a lab host, first line.
fn host_version(lab: &Lab, host: &str) -> String {
    let (code, out) = lab
        .ssh(host, &[], &format!("{} --version", hostcfg::K3S_BIN))
        .unwrap();
    assert_eq!(code, 0, "{host}: {out}");
    out.lines().next().unwrap_or_default().to_string()
}

/// Every server's etcd snapshot files, by host.
fn snapshots(lab: &Lab) -> Vec<(String, String)> {
    SERVERS
        .iter()
        .map(|h| {
            let (_, ls) = lab
                .ssh(
                    h,
                    &[],
                    "ls /var/lib/rancher/k3s/server/db/snapshots 2>/dev/null",
                )
                .unwrap();
            (h.to_string(), ls)
        })
        .collect()
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
                ("INSTALL_K3S_EXEC", EXEC),
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
    // install.sh's unit: the flags are in ExecStart= and the running k3s has them.
    let args: Vec<String> = ARGS.map(String::from).to_vec();
    assert_eq!(
        unit_and_process_args(&lab, "server-3"),
        (args.clone(), args.clone())
    );

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

    // An argument install.sh could not carry unchanged (a blank, hand-edited into server-3's
    // unit) stops server-3's upgrade before its installer runs; nothing on it changes.
    let unit_path = hostcfg::unit_file("k3s");
    let good_unit = lab.read_file("server-3", &unit_path).unwrap();
    let snapshots_before = snapshots(&lab);
    lab.write_file(
        "server-3",
        &unit_path,
        &good_unit.replace("'--kubelet-arg=max-pods=120'", "'--node-label=team=a b'"),
    )
    .unwrap();
    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    assert!(!o.status.success(), "{}", combined(&o));
    assert!(
        combined(&o).contains("argument 2 of ExecStart contains a blank or a control character")
            && combined(&o).contains("nothing was changed on server-3"),
        "{}",
        combined(&o)
    );
    // Refused before its step cordoned or drained anything: schedulable, at its old version.
    assert!(host_version(&lab, "server-3").contains(OLD));
    // Every upgrade's unit is checked before the first step: nothing else ran either — no
    // snapshot taken, no other node upgraded.
    for h in SERVERS.iter().chain(&AGENTS) {
        assert!(
            host_version(&lab, h).contains(OLD),
            "{h} upgraded by a refused apply"
        );
    }
    assert_eq!(
        snapshots(&lab),
        snapshots_before,
        "a snapshot taken by a refused apply"
    );
    assert!(
        !lab.node("server-3").unwrap()["spec"]["unschedulable"]
            .as_bool()
            .unwrap_or(false),
        "server-3 cordoned by a refused upgrade"
    );
    lab.write_file("server-3", &unit_path, &good_unit).unwrap();

    let o = lab_k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    assert!(o.status.success(), "{}", combined(&o));
    // server-3's flags survived the installer's unit rewrite, and its new k3s runs with them.
    assert_eq!(
        unit_and_process_args(&lab, "server-3"),
        (args.clone(), args)
    );

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
