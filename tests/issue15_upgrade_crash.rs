//! Issue 15: an interrupted upgrade resumes with the node in flight and never restarts two
//! servers at once. The kill -9 pattern of tests/e2e_crash.rs (`K3SPLAN_TEST_HOLD_AT` holds
//! apply at an exact journal boundary, the test SIGKILLs it there) applied to the upgrade
//! plan of a 3-server + 1-agent lab cluster:
//! 1. killed right after the second server's installer restarted k3s (before the wait): the
//!    next plan waits for that server first and restarts nothing before it;
//! 2. killed again in the middle of the resumed apply;
//! 3. a last apply converges: every node at the new version, none cordoned, 3 healthy voters,
//!    and a second plan says "No changes.".
//!
//! While each apply runs, the test polls etcd and fails if two voters are ever unhealthy at
//! once (two servers restarting together: quorum lost in a 3-member cluster).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{combined, lab_cmd, lab_k3splan, stdout};
use k3splan_lab::{Lab, LabSpec, TopologyNode, hostcfg};
use k3splan_testkit_caps::lab;

k3splan_testkit_caps::main! {
    issue15_killed_upgrade_resumes_with_the_node_in_flight needs [lab],
}

const OLD: &str = "v1.28.5+k3s1";
const NEW: &str = "v1.29.0+k3s1";
const NODES: [&str; 4] = ["server-1", "server-2", "server-3", "agent-1"];

/// Unhealthy voters right now.
fn unhealthy_voters(lab: &Lab) -> usize {
    let o = lab.etcd();
    o.members
        .iter()
        .filter(|m| !m.is_learner && !m.is_healthy())
        .count()
}

/// Runs `apply --auto-approve` (held at `hold` and SIGKILLed there when given) while polling
/// etcd; returns the output, whether it was killed, and the most voters seen unhealthy at once.
fn apply_watched(lab: &Lab, topo: &Path, hold: Option<&str>) -> (String, bool, usize) {
    let out_path = lab.dir().join("issue15-apply.out");
    let out_file = std::fs::File::create(&out_path).unwrap();
    let mut cmd = lab_cmd(
        lab,
        topo,
        &["apply", "--auto-approve", "--lock-timeout", "30s"],
    );
    if let Some(h) = hold {
        cmd.env("K3SPLAN_TEST_HOLD_AT", h);
    }
    let mut child = cmd
        .stdout(out_file.try_clone().unwrap())
        .stderr(out_file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let marker = hold.map(|h| format!("k3splan-test-hold: {h}"));
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut worst = 0;
    let mut killed = false;
    loop {
        worst = worst.max(unhealthy_voters(lab));
        if let Some(m) = &marker
            && std::fs::read_to_string(&out_path)
                .unwrap_or_default()
                .contains(m)
        {
            // SAFETY: killing the child we spawned.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            killed = true;
            let _ = child.wait();
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "apply hung");
        std::thread::sleep(Duration::from_millis(200));
    }
    (
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        killed,
        worst,
    )
}

fn issue15_killed_upgrade_resumes_with_the_node_in_flight() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        agents: 1,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let nodes = [
        TopologyNode::server("server-1"),
        TopologyNode::server("server-2"),
        TopologyNode::server("server-3"),
        TopologyNode::agent("agent-1"),
    ];
    let topo = lab
        .write_topology("upgrade-crash/main.hcl", &nodes, "")
        .unwrap();
    let text = std::fs::read_to_string(&topo).unwrap();
    std::fs::write(&topo, text.replace(OLD, NEW)).unwrap();

    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", combined(&o));
    let plan = stdout(&o);
    // Step 1 the snapshot, steps 2-4 the servers; the second server's operation 3 is its
    // installer re-run (cordon, drain, upgrade, wait, uncordon).
    let second: String = plan
        .lines()
        .filter_map(|l| {
            let i = l.find("upgrade k3s on ")?;
            l[i + "upgrade k3s on ".len()..]
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .nth(1)
        .unwrap_or_else(|| panic!("{plan}"));

    // 1. Killed with `second` restarting.
    let (out, killed, worst) = apply_watched(&lab, &topo, Some("step-3-op-3"));
    assert!(killed, "never reached step-3-op-3:\n{out}");
    assert!(worst <= 1, "{worst} voters unhealthy at once:\n{out}");
    let (code, v) = lab
        .ssh(&second, &[], &format!("{} --version", hostcfg::K3S_BIN))
        .unwrap();
    assert!(code == 0 && v.contains(NEW), "{second}: {v}");

    // The next plan waits for it first, without restarting it again.
    let o = lab_k3splan(&lab, &topo, &["plan"]);
    let plan = stdout(&o);
    let first_upgrade_step = plan
        .lines()
        .position(|l| l.contains("will be updated in-place"))
        .unwrap_or_else(|| panic!("{plan}"));
    let heading = plan.lines().nth(first_upgrade_step).unwrap();
    assert!(
        heading.contains(&format!("node.{second}")),
        "the node in flight first: {heading}\n{plan}"
    );
    assert!(
        !plan.contains(&format!("upgrade k3s on {second} ")),
        "{second} restarted again:\n{plan}"
    );

    // 2. Killed again, in the middle of the resumed apply (the next server restarting).
    let (out, killed, worst) = apply_watched(&lab, &topo, Some("step-3-op-3"));
    assert!(worst <= 1, "{worst} voters unhealthy at once:\n{out}");
    let _ = killed;

    // 3. Converges.
    let (out, killed, worst) = apply_watched(&lab, &topo, None);
    assert!(!killed);
    assert!(worst <= 1, "{worst} voters unhealthy at once:\n{out}");
    assert!(out.contains("Apply complete"), "{out}");
    for h in NODES {
        let (_, v) = lab
            .ssh(h, &[], &format!("{} --version", hostcfg::K3S_BIN))
            .unwrap();
        assert!(v.contains(NEW), "{h}: {v}");
        let n = lab.node(h).unwrap();
        assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], NEW, "{h}");
        assert!(
            !n["spec"]["unschedulable"].as_bool().unwrap_or(false),
            "{h} left cordoned"
        );
    }
    lab.wait_voters(3, Duration::from_secs(30))
        .expect("3 voters");
    let o = lab_k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", combined(&o));
}
