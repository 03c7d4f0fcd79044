//! Crash safety of `apply` (issue 7): the seed 004 replacement is applied by a process that
//! is SIGKILLed again and again — right after a step finishes, or in the middle of one —
//! and re-run each time. The cluster must converge, no PVC of a healthy node may be
//! deleted, no etcd member may be added twice, and the state journal must be consistent.
//!
//! Issue 13: an interrupted apply must converge to the *declared* state. The apply is held
//! at an exact journal boundary (`K3SPLAN_TEST_HOLD_AT`, see `k3splan::apply::test_hold`)
//! and SIGKILLed there — at every step boundary of the seed 004 plan, right after each
//! cordon's API call, and after the last step but before the final state write — then
//! re-applied: no node may stay cordoned, the state must be complete, a second plan must
//! say "No changes.", and the rebound PVCs must be on the new node.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{combined, lab_cmd, lab_state};
use k3splan_lab::{Lab, LabSpec, TopologyNode};
use k3splan_testkit_caps::lab;

k3splan_testkit_caps::main! {
    seed004_apply_killed_repeatedly_converges_without_double_actions needs [lab],
    issue13_seed004_killed_at_every_step_boundary_converges needs [lab],
    issue13_replace_is_one_shot_and_resumed_from_the_journal needs [lab],
}

fn apply_cmd(lab: &Lab, topo: &Path) -> Command {
    lab_cmd(
        lab,
        topo,
        &["apply", "--auto-approve", "--lock-timeout", "30s"],
    )
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
                k3splan_lab::qualified_name(p),
                p["metadata"]["uid"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Runs apply and SIGKILLs it: `mid_step` kills 300 ms after the second step starts,
/// otherwise right after the first step reports "done". Returns the process output and
/// whether it completed before being killed.
fn apply_and_kill(lab: &Lab, topo: &Path, mid_step: bool) -> (String, bool) {
    // stderr goes to a file (a pipe nobody reads could fill and stall apply), shown after.
    let err_path = lab.dir().join("crash-apply.stderr");
    let err_file = std::fs::File::create(&err_path).unwrap();
    let mut child = apply_cmd(lab, topo)
        .stdout(Stdio::piped())
        .stderr(err_file)
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
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    if !err.is_empty() {
        seen.push_str(&format!("(stderr, exit {status:?})\n{err}"));
    }
    (seen, completed)
}

fn seed004_apply_killed_repeatedly_converges_without_double_actions() {
    let (lab, topo) = seed004_lab("repeat");
    let healthy_before = pvc_uids(&lab);
    // Each run's output is kept for the failure message (which names the broken promise
    // first, then the last runs), and written to the lab dir for a full post-mortem.
    let mut log = RunLog::new(lab.dir().join("crash-repeat.log"));

    let start = Instant::now();
    let mut runs = 0;
    let mut completed = false;
    let mut spare_member_ids = std::collections::BTreeSet::new();
    while !completed && runs < 30 {
        runs += 1;
        let (out, done) = apply_and_kill(&lab, &topo, runs % 2 == 0);
        log.push(format!("--- run {runs} (completed: {done})\n{out}"));
        completed = done;
        // Never more than one member for the new node, whatever the kill point.
        let spare = lab.host("spare-1").unwrap().address().to_string();
        let obs = lab.etcd();
        let spare_members: Vec<_> = obs
            .members
            .iter()
            .filter(|m| m.peer_urls.iter().any(|u| u.contains(&spare)))
            .collect();
        log.check(
            spare_members.len() <= 1,
            &format!("member added twice: {:?}", obs.members),
        );
        spare_member_ids.extend(spare_members.iter().map(|m| m.id));
        log.check(
            start.elapsed() < Duration::from_secs(600),
            "did not converge in time",
        );
    }
    log.check(completed, &format!("apply never completed in {runs} runs"));
    log.check(
        runs >= 3,
        &format!("the test killed apply at least twice ({runs} runs)"),
    );
    log.check(
        spare_member_ids.len() == 1,
        &format!("spare-1 joined once: {spare_member_ids:?}"),
    );

    // Converged: 3 healthy voters, and a final plan is clean. The voters are awaited first:
    // a k3s that exited under load (no leader seen for 10 s) is back after its unit's
    // RestartSec, as real k3s is, and a plan taken during that restart rightly shows drift.
    let voters = lab.wait_voters(3, Duration::from_secs(90));
    log.check(
        voters.as_ref().is_ok_and(|o| o.health.healthy_voters == 3),
        &format!("3 healthy voters after the last apply: {voters:?}"),
    );
    let (code, plan) = run(&lab, &topo, &["plan", "--detailed-exitcode"]);
    if code != Some(0) {
        // For the post-mortem: the end of each server's k3s log (a member that went away
        // says why there: etcd exited, quorum lost, stopped).
        let mut logs = String::new();
        for h in ["server-2", "server-3", "spare-1"] {
            let l = lab.k3s_log(h);
            let tail: Vec<_> = l.lines().rev().take(25).collect();
            let tail: Vec<_> = tail.into_iter().rev().collect();
            logs.push_str(&format!(
                "--- k3s log of {h} (last lines)\n{}\n",
                tail.join("\n")
            ));
        }
        log.push(logs);
    }
    log.check(
        code == Some(0),
        &format!("the plan after the last apply exits {code:?}, not 0:\n{plan}"),
    );
    let obs = lab.wait_voters(3, Duration::from_secs(60));
    log.check(
        obs.as_ref().is_ok_and(|o| o.health.healthy_voters == 3),
        &format!("3 healthy voters after the apply: {obs:?}"),
    );

    // PVCs of healthy nodes were never deleted: same UIDs. Those of the lost node changed.
    let after = pvc_uids(&lab);
    for (pvc, uid) in &healthy_before {
        let lost = pvc.ends_with("-1") || pvc.contains("victoria-metrics");
        if lost {
            log.check(
                after.get(pvc) != Some(uid),
                &format!("{pvc} was not rebound"),
            );
        } else {
            log.check(
                after.get(pvc) == Some(uid),
                &format!("{pvc} of a healthy node was deleted"),
            );
        }
    }

    // The state journal is consistent: the last apply finished every step.
    let state = state_json(&lab);
    let steps = state["journal"]["steps"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    log.check(
        steps
            .iter()
            .all(|s| s["status"] == "done" || s["status"] == "superseded"),
        &format!("every journal step done or superseded: {steps:?}"),
    );
    log.check(
        state["journal"]["finished_at"].is_string(),
        "the journal is finished",
    );
    log.check(
        state["last_snapshot"]["sha256"]
            .as_str()
            .is_some_and(|s| s.len() == 64),
        "the state records the snapshot's sha256",
    );
}

/// The outputs of a crash test's runs: a failed check panics with its message first and
/// the last two runs after it (CI shows the head of a failing test's output), and the
/// whole log is written to `path`.
struct RunLog {
    path: std::path::PathBuf,
    runs: Vec<String>,
}

impl RunLog {
    fn new(path: std::path::PathBuf) -> Self {
        Self { path, runs: vec![] }
    }

    fn push(&mut self, run: String) {
        self.runs.push(run);
        let _ = std::fs::write(&self.path, self.runs.join("\n"));
    }

    fn check(&self, ok: bool, what: &str) {
        if ok {
            return;
        }
        let tail = self.runs[self.runs.len().saturating_sub(2)..].join("\n");
        panic!(
            "{what}\n(after {} runs; full log: {})\n{tail}",
            self.runs.len(),
            self.path.display()
        );
    }
}

fn run(lab: &Lab, topo: &Path, args: &[&str]) -> (Option<i32>, String) {
    let o = lab_cmd(lab, topo, args).output().unwrap();
    (o.status.code(), combined(&o))
}

/// Runs `k3splan ARGS` held at `point` and SIGKILLs it there. Returns its output; panics
/// when the process ends without reaching the point.
fn apply_killed_at(lab: &Lab, topo: &Path, args: &[&str], point: &str) -> String {
    let mut child = lab_cmd(lab, topo, args)
        .env("K3SPLAN_TEST_HOLD_AT", point)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let out = child.stdout.take().unwrap();
    let mut seen = String::new();
    let marker = format!("k3splan-test-hold: {point}");
    let mut held = false;
    for line in BufReader::new(out).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.trim() == marker {
            // SAFETY: killing the child we spawned.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            held = true;
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        held,
        "apply never reached {point} (exit {status:?}):\n{seen}\n{}",
        k3s_log_tails(lab)
    );
    seen
}

/// The last lines of every host's k3s log: what the cluster was doing when a run failed.
fn k3s_log_tails(lab: &Lab) -> String {
    ["server-1", "server-2", "server-3", "spare-1"]
        .iter()
        .map(|h| {
            let log = lab.k3s_log(h);
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            format!("--- {h}: k3s log, last lines ---\n{tail}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn state_json(lab: &Lab) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(lab_state(lab)).unwrap()).unwrap()
}

fn cordoned(lab: &Lab, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|n| {
            lab.node(n)
                .is_some_and(|v| v["spec"]["unschedulable"].as_bool() == Some(true))
        })
        .map(|n| n.to_string())
        .collect()
}

/// The seed 004 lab: three servers with the VIP and the MinIO/victoria-metrics volumes,
/// server-1 dead, and the topology that replaces it with spare-1.
fn seed004_lab(tag: &str) -> (Lab, std::path::PathBuf) {
    let lab = Lab::start(LabSpec {
        servers: 3,
        spare_hosts: 1,
        vip: true,
        seed_workloads: true,
        ..LabSpec::default()
    })
    .expect("lab");
    lab.kill_host("server-1").unwrap();
    lab.wait_node_ready("server-1", false, Duration::from_secs(60))
        .unwrap();
    let topo = lab
        .write_topology(
            &format!("crash-{tag}/main.hcl"),
            &[
                TopologyNode::server("server-2").primary(),
                TopologyNode::server("server-3"),
                TopologyNode::server("spare-1"),
            ],
            "",
        )
        .unwrap();
    (lab, topo)
}

const DECLARED: [&str; 3] = ["server-2", "server-3", "spare-1"];

/// One kill point: apply held at `point` and SIGKILLed, `plan` says the apply was
/// interrupted, a re-apply converges, and everything the issue lists holds after it.
fn kill_at_and_converge(lab: &Lab, topo: &Path, point: &str) -> Result<(), String> {
    let killed = apply_killed_at(lab, topo, &["apply", "--auto-approve"], point);
    let (code, plan) = run(lab, topo, &["plan", "--detailed-exitcode"]);
    let mut errs = Vec::new();
    if !plan.contains("was interrupted") {
        errs.push(format!(
            "plan does not say the last apply was interrupted:\n{plan}"
        ));
    }
    if code != Some(2) {
        errs.push(format!("plan after the kill exits {code:?}, not 2"));
    }
    let (code, applied) = run(lab, topo, &["apply", "--auto-approve"]);
    if code != Some(0) {
        errs.push(format!("re-apply failed ({code:?}):\n{applied}"));
    }
    let left = cordoned(lab, &DECLARED);
    if !left.is_empty() {
        errs.push(format!("still cordoned after the re-apply: {left:?}"));
    }
    let st = state_json(lab);
    if !st["journal"]["finished_at"].is_string() {
        errs.push(format!("journal not finished: {}", st["journal"]));
    }
    if !st["config_digest"].is_string() {
        errs.push("no config_digest".into());
    }
    let mut managed: Vec<String> = st["managed"]["nodes"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    managed.sort();
    if managed != DECLARED {
        errs.push(format!("managed nodes: {managed:?}"));
    }
    if st["managed"]["cordons"]
        .as_object()
        .is_some_and(|m| !m.is_empty())
    {
        errs.push(format!("cordon records left: {}", st["managed"]["cordons"]));
    }
    for pvc in [
        "onecloud-minio/export-minio-1",
        "onecloud-monitoring/export-monitor-minio-1",
    ] {
        let node = st["managed"]["pvcs"][pvc]["node"].as_str().unwrap_or("");
        if node != "spare-1" {
            errs.push(format!("{pvc} bound to {node:?}, not spare-1"));
        }
    }
    let (code, second) = run(lab, topo, &["plan", "--detailed-exitcode"]);
    if code != Some(0) || !second.contains("No changes.") {
        errs.push(format!("second plan is not clean ({code:?}):\n{second}"));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "kill at {point}:\n- {}\n--- killed apply:\n{killed}--- re-apply:\n{applied}",
            errs.join("\n- ")
        ))
    }
}

/// Issue 13: SIGKILL at every step boundary of the seed 004 replacement (after the
/// journal is written and after each step's `done`), right after each cordon's API call,
/// and between the last step and the final state write; after each, a re-apply converges.
///
/// Each kill point needs its own freshly broken cluster, so each runs in its own lab; the
/// labs run `K3SPLAN_CRASH_PARALLEL` at a time (default 2: each lab runs three etcd members,
/// and with more labs at once on a loaded 2-core machine etcd lost its leader in the lab
/// itself) — about 8 minutes for the 21 kill points.
fn issue13_seed004_killed_at_every_step_boundary_converges() {
    // The plan, from a first lab (which then takes the first kill point).
    let (lab0, topo0) = seed004_lab("0");
    let o = lab_cmd(&lab0, &topo0, &["plan", "--json"])
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).expect("plan JSON");
    let steps = plan["resource_changes"].as_array().expect("steps").clone();
    let n = steps.len();
    assert!(n >= 10, "the seed 004 plan: {plan}");
    let mut points: Vec<String> = (0..=n).map(|k| format!("step-{k}-done")).collect();
    for s in &steps {
        let id = s["step"].as_u64().unwrap();
        if s["action_reason"] == "cordon_for_rebind" {
            points.push(format!("step-{id}-op-1"));
        }
    }
    points.push("before-final-write".into());
    assert!(
        points.iter().filter(|p| p.ends_with("-op-1")).count() >= 2,
        "the plan cordons the other servers: {points:?}"
    );
    // K3SPLAN_CRASH_POINTS=p1,p2 runs only those kill points (to debug one).
    if let Ok(only) = std::env::var("K3SPLAN_CRASH_POINTS") {
        let only: Vec<&str> = only.split(',').collect();
        points.retain(|p| only.contains(&p.as_str()));
        eprintln!("K3SPLAN_CRASH_POINTS: only {points:?}");
        assert!(!points.is_empty(), "no such kill point: {only:?}");
    }
    let started = Instant::now();
    let first = points.remove(0);
    let total = points.len() + 1;
    let queue = std::sync::Mutex::new(points);
    let failures = std::sync::Mutex::new(Vec::new());
    let parallel: usize = std::env::var("K3SPLAN_CRASH_PARALLEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
        .max(1);
    let check = |lab: &Lab, topo: &Path, point: &str| {
        let t0 = Instant::now();
        // A panic (the hold point never reached, a lab error) is this point's failure; the
        // other points still run and every failure is reported.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            kill_at_and_converge(lab, topo, point)
        }))
        .unwrap_or_else(|e| {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("kill at {point}: panicked: {msg}"))
        });
        eprintln!(
            "kill point {point}: {} in {:.0?}",
            if r.is_ok() { "converged" } else { "FAILED" },
            t0.elapsed()
        );
        if let Err(e) = r {
            failures.lock().unwrap().push(e);
        }
    };
    let next = || queue.lock().unwrap().pop();
    std::thread::scope(|sc| {
        // Worker 0 reuses the first lab for the first point, then takes from the queue.
        sc.spawn(|| {
            check(&lab0, &topo0, &first);
            drop(lab0);
            while let Some(point) = next() {
                let (lab, topo) = seed004_lab(&format!("0-{point}"));
                check(&lab, &topo, &point);
            }
        });
        for w in 1..parallel {
            let (check, next) = (&check, &next);
            sc.spawn(move || {
                while let Some(point) = next() {
                    let (lab, topo) = seed004_lab(&format!("{w}-{point}"));
                    check(&lab, &topo, &point);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "{} kill points in {:.0?}, {} failed",
        total,
        started.elapsed(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// etcd refuses a member removal ("unhealthy cluster") until every member has been
/// connected for its health interval (5 s): waits until all three members have been healthy
/// voters for 6 s in a row (a condition with a deadline, not a fixed sleep).
fn wait_etcd_settled(lab: &Lab) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut healthy_since: Option<Instant> = None;
    loop {
        let o = lab.etcd();
        let all = o.health.healthy_voters == 3 && o.members.len() == 3;
        healthy_since = if all {
            healthy_since.or(Some(Instant::now()))
        } else {
            None
        };
        if healthy_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(6)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "etcd did not settle: {:?}",
            o.members
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn member_ids_at(lab: &Lab, host: &str) -> Vec<u64> {
    let addr = lab.host(host).unwrap().address().to_string();
    lab.etcd()
        .members
        .iter()
        .filter(|m| m.peer_urls.iter().any(|u| u.contains(&format!("{addr}:"))))
        .map(|m| m.id.0)
        .collect()
}

/// Issue 13: a replacement is a one-shot command-line request (`-replace=node.NAME`),
/// recorded in the saved plan and in the journal. Killed half-way through the removal, the
/// next apply (without the flag) finishes it; killed after the rebuilt node rejoined, the
/// same command re-run (shell history) does not replace the healthy node again.
fn issue13_replace_is_one_shot_and_resumed_from_the_journal() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        ..LabSpec::default()
    })
    .expect("lab");
    let topo = lab
        .write_topology(
            "replace/main.hcl",
            &[
                TopologyNode::server("server-1").primary(),
                TopologyNode::server("server-2"),
                TopologyNode::server("server-3"),
            ],
            "",
        )
        .unwrap();
    let (code, out) = run(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "converged to begin with:\n{out}");

    // An unknown address is a usage error that names it.
    let (code, out) = run(&lab, &topo, &["plan", "-replace=node.nope"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("node.nope") && out.contains("is declared"),
        "{out}"
    );

    // The saved plan records the request.
    let saved = lab.dir().join("replace.plan.json");
    let (code, out) = run(
        &lab,
        &topo,
        &[
            "plan",
            "-replace=node.server-3",
            "--out",
            saved.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    let sp: serde_json::Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(sp["replace"], serde_json::json!(["server-3"]), "{sp}");
    let steps = sp["plan"]["steps"].as_array().unwrap().clone();
    let first_removal = steps
        .iter()
        .find(|s| {
            s["address"]["type"] == "node"
                && s["address"]["name"] == "server-3"
                && s["reason"] == "replace_by_request"
        })
        .unwrap_or_else(|| panic!("no removal step for server-3: {sp}"))["id"]
        .as_u64()
        .unwrap();
    let rejoin = steps
        .iter()
        .find(|s| {
            s["operations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|op| op["op"] == "join_server" && op["node"] == "server-3")
        })
        .unwrap_or_else(|| panic!("no rejoin step for server-3: {sp}"))["id"]
        .as_u64()
        .unwrap();
    let m0 = member_ids_at(&lab, "server-3");
    assert_eq!(m0.len(), 1, "{m0:?}");

    wait_etcd_settled(&lab);
    // 1. Killed right after the first removal step: the next apply, without the flag,
    // carries the replacement on (the journal says it started).
    apply_killed_at(
        &lab,
        &topo,
        &["apply", "--auto-approve", "-replace=node.server-3"],
        &format!("step-{first_removal}-done"),
    );
    let st = state_json(&lab);
    assert_eq!(st["journal"]["replace"][0]["node"], "server-3", "{st}");
    let (code, out) = run(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("was interrupted"), "{out}");
    assert!(out.contains("goes on where it stopped"), "{out}");
    let (code, out) = run(&lab, &topo, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{out}");
    let m1 = member_ids_at(&lab, "server-3");
    assert_eq!(m1.len(), 1, "{m1:?}");
    assert_ne!(m1, m0, "server-3 was rebuilt: a new member\n{out}");
    let (code, out) = run(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "the replacement is not repeated:\n{out}");

    wait_etcd_settled(&lab);

    // 2. Killed after the rebuilt node rejoined: the same command again finishes the apply
    // and does not replace the healthy, rejoined node a second time.
    apply_killed_at(
        &lab,
        &topo,
        &["apply", "--auto-approve", "-replace=node.server-3"],
        &format!("step-{rejoin}-done"),
    );
    let m2 = member_ids_at(&lab, "server-3");
    assert_eq!(m2.len(), 1, "{m2:?}");
    assert_ne!(m2, m1, "rebuilt again by the second request");
    let (code, out) = run(
        &lab,
        &topo,
        &["apply", "--auto-approve", "-replace=node.server-3"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("not replaced again"), "{out}");
    assert!(
        !out.contains("will be replaced") && !out.contains("will be destroyed"),
        "{out}"
    );
    assert_eq!(member_ids_at(&lab, "server-3"), m2, "not replaced again");
    let (code, out) = run(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("No changes."), "{out}");
    let st = state_json(&lab);
    assert!(st["journal"]["finished_at"].is_string(), "{st}");
    assert!(st["config_digest"].is_string(), "{st}");
    assert!(cordoned(&lab, &["server-1", "server-2", "server-3"]).is_empty());
}
