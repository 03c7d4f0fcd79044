//! Issue 16: the recovery apply is resumable. `apply --recover` is SIGKILLed in the middle of
//! `k3s server --cluster-reset`, then right after the reset (before the normal start), then
//! after the recovered server runs and the first rejoin's config is written; each time
//! `apply --recover` is run again. It must converge: every declared server a healthy voter,
//! the keys written before the loss present, the journal closed, and a last
//! `apply --recover` with nothing to do.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{combined, lab_cmd, lab_state};
use k3splan_lab::{Lab, LabSpec, TopologyNode};
use k3splan_testkit_caps::lab;

k3splan_testkit_caps::main! {
    issue16_recovery_killed_mid_reset_and_between_steps_converges needs [lab],
}

const ARGS: &[&str] = &[
    "apply",
    "--recover",
    "--auto-approve",
    "--lock-timeout",
    "30s",
];

/// Runs `apply --recover` and SIGKILLs it: at the hold point `point`, or (`None`) one second
/// after step `mid` starts. Returns its stdout.
fn killed(lab: &Lab, topo: &Path, point: Option<&str>, mid: usize) -> String {
    let mut cmd = lab_cmd(lab, topo, ARGS);
    if let Some(p) = point {
        cmd.env("K3SPLAN_TEST_HOLD_AT", p);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut seen = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        let hit = match point {
            Some(p) => line.contains(&format!("k3splan-test-hold: {p}")),
            None => line.starts_with(&format!("[{mid}/")),
        };
        if hit {
            if point.is_none() {
                std::thread::sleep(Duration::from_secs(1));
            }
            // SAFETY: killing the child we spawned.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "apply ended before the kill point {point:?}/{mid}:\n{seen}"
    );
    eprintln!("--- killed at {point:?}/{mid}\n{seen}");
    seen
}

fn issue16_recovery_killed_mid_reset_and_between_steps_converges() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    for i in 0..10 {
        lab.etcdctl("server-1", &["put", &format!("/k16/crash/{i}"), "v"])
            .unwrap();
    }
    for s in ["server-2", "server-3"] {
        let (st, out) = lab.service(s, "stop", "k3s").unwrap();
        assert_eq!(st, 0, "{out}");
        let (st, out) = lab
            .ssh(s, &[], "rm -rf /var/lib/rancher/k3s/server/db/etcd")
            .unwrap();
        assert_eq!(st, 0, "{out}");
    }
    let nodes: Vec<TopologyNode> = (1..=3)
        .map(|i| TopologyNode::server(&format!("server-{i}")))
        .collect();
    let topo = lab.write_topology("issue16c/main.hcl", &nodes, "").unwrap();

    // Steps: 1-3 stop k3s, 4 reset + start server-1, 5-6 rejoin server-2/3, 7 verify.
    // 1. In the middle of the reset.
    killed(&lab, &topo, None, 4);
    // 2. Reset done, k3s not started normally yet.
    let out = killed(&lab, &topo, Some("step-4-op-1"), 0);
    assert!(out.contains("previous apply"), "{out}");
    // 3. server-1 runs; server-2's config written, its join not started.
    killed(&lab, &topo, Some("step-5-op-1"), 0);

    // Quorum is back (server-1 alone): the resumed recovery finishes with the normal plan.
    let o = lab_cmd(&lab, &topo, ARGS).output().unwrap();
    let out = combined(&o);
    eprintln!("--- final apply\n{out}");
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("finishing the interrupted recovery"), "{out}");
    lab.wait_voters(3, Duration::from_secs(60)).unwrap();
    for i in 0..10 {
        let v = lab
            .etcdctl(
                "server-3",
                &["get", &format!("/k16/crash/{i}"), "--print-value-only"],
            )
            .unwrap();
        assert_eq!(v.trim(), "v");
    }
    // One member per server: nobody was added twice.
    let members = lab.etcdctl("server-1", &["member", "list"]).unwrap();
    assert_eq!(
        members.lines().filter(|l| !l.is_empty()).count(),
        3,
        "{members}"
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab_state(&lab)).unwrap()).unwrap();
    assert!(
        state["journal"]["finished_at"].is_string(),
        "journal closed: {}",
        state["journal"]
    );
    let o = lab_cmd(&lab, &topo, ARGS).output().unwrap();
    let out = combined(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("No changes"), "{out}");
}
