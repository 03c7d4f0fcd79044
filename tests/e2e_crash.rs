//! Crash safety of `apply` (issue 7): the seed 004 replacement is applied by a process that
//! is SIGKILLed again and again — right after a step finishes, or in the middle of one —
//! and re-run each time. The cluster must converge, no PVC of a healthy node may be
//! deleted, no etcd member may be added twice, and the state journal must be consistent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k3splan_lab::{Lab, LabSpec, TopologyNode};

fn apply_cmd(lab: &Lab, topo: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_k3splan"));
    c.args(["apply", "--auto-approve", "--lock-timeout", "30s", "-c"])
        .arg(topo)
        .arg("--state")
        .arg(lab.dir().join("state/k3splan.state.json"));
    for (k, v) in lab.k3splan_env() {
        c.env(k, v);
    }
    c
}

fn pvc_uids(lab: &Lab) -> BTreeMap<String, String> {
    let store = lab.kube().store();
    store
        .all(
            k3splan_testkit_kubeapi::store::ty("PersistentVolumeClaim"),
            None,
        )
        .iter()
        .map(|p| {
            (
                format!(
                    "{}/{}",
                    p["metadata"]["namespace"].as_str().unwrap_or(""),
                    p["metadata"]["name"].as_str().unwrap_or("")
                ),
                p["metadata"]["uid"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Runs apply and SIGKILLs it: `mid_step` kills 300 ms after the second step starts,
/// otherwise right after the first step reports "done". Returns the process output and
/// whether it completed before being killed.
fn apply_and_kill(lab: &Lab, topo: &Path, mid_step: bool) -> (String, bool) {
    let mut child = apply_cmd(lab, topo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let out = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut starts = 0;
    let mut killed = false;
    for line in BufReader::new(out).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with('[') && line.contains("] ") {
            starts += 1;
            if mid_step && starts == 2 {
                std::thread::sleep(Duration::from_millis(300));
                // SAFETY: killing the child we spawned.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                killed = true;
                break;
            }
        }
        if !mid_step && line.trim_start().starts_with("done") {
            // SAFETY: killing the child we spawned.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
            break;
        }
    }
    let status = child.wait().unwrap();
    let completed = !killed && status.success();
    (seen, completed)
}

#[test]
fn seed004_apply_killed_repeatedly_converges_without_double_actions() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        spare_hosts: 1,
        vip: true,
        seed_workloads: true,
        ..LabSpec::default()
    })
    .expect("lab");
    let healthy_before = pvc_uids(&lab);
    lab.kill_host("server-1").unwrap();
    lab.wait_node_ready("server-1", false, Duration::from_secs(60))
        .unwrap();
    let topo = lab
        .write_topology(
            "crash/main.hcl",
            &[
                TopologyNode::server("server-2").primary(),
                TopologyNode::server("server-3"),
                TopologyNode::server("spare-1"),
            ],
            "",
        )
        .unwrap();

    let start = Instant::now();
    let mut runs = 0;
    let mut completed = false;
    let mut spare_member_ids = std::collections::BTreeSet::new();
    while !completed && runs < 30 {
        runs += 1;
        let (out, done) = apply_and_kill(&lab, &topo, runs % 2 == 0);
        eprintln!("--- run {runs} (completed: {done})\n{out}");
        completed = done;
        // Never more than one member for the new node, whatever the kill point.
        let spare = lab.host("spare-1").unwrap().address().to_string();
        let obs = lab.etcd();
        let spare_members: Vec<_> = obs
            .members
            .iter()
            .filter(|m| m.peer_urls.iter().any(|u| u.contains(&spare)))
            .collect();
        assert!(
            spare_members.len() <= 1,
            "member added twice: {:?}",
            obs.members
        );
        spare_member_ids.extend(spare_members.iter().map(|m| m.id));
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "did not converge in time"
        );
    }
    assert!(completed, "apply never completed in {runs} runs");
    assert!(
        runs >= 3,
        "the test killed apply at least twice ({runs} runs)"
    );
    assert_eq!(
        spare_member_ids.len(),
        1,
        "spare-1 joined once: {spare_member_ids:?}"
    );

    // Converged: a final plan is clean, 3 healthy voters.
    let mut c = Command::new(env!("CARGO_BIN_EXE_k3splan"));
    c.args(["plan", "--detailed-exitcode", "-c"])
        .arg(&topo)
        .arg("--state")
        .arg(lab.dir().join("state/k3splan.state.json"));
    for (k, v) in lab.k3splan_env() {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let obs = lab.wait_voters(3, Duration::from_secs(60)).unwrap();
    assert_eq!(obs.health.healthy_voters, 3);

    // PVCs of healthy nodes were never deleted: same UIDs. Those of the lost node changed.
    let after = pvc_uids(&lab);
    for (pvc, uid) in &healthy_before {
        let lost = pvc.ends_with("-1") || pvc.contains("victoria-metrics");
        if lost {
            assert_ne!(after.get(pvc), Some(uid), "{pvc} was rebound");
        } else {
            assert_eq!(
                after.get(pvc),
                Some(uid),
                "{pvc} of a healthy node was deleted"
            );
        }
    }

    // The state journal is consistent: the last apply finished every step.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab.dir().join("state/k3splan.state.json")).unwrap())
            .unwrap();
    let steps = state["journal"]["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .all(|s| s["status"] == "done" || s["status"] == "superseded"),
        "{steps:?}"
    );
    assert!(state["journal"]["finished_at"].is_string());
    assert!(
        state["last_snapshot"]["sha256"]
            .as_str()
            .is_some_and(|s| s.len() == 64)
    );
}
