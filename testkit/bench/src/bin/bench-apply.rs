//! Apply overhead in the lab (issue 9, figure 4): the seed 004 replacement; and (issue 15)
//! a rolling k3s upgrade.
//!
//! ```text
//! bench-apply [--rounds 2] [--scenario seed-004|upgrade]
//! ```
//! `--scenario upgrade`: each round starts a fresh lab (3 servers, 2 agents) at the lab's
//! k3s version and applies the topology with the next minor (`v1.29.0+k3s1`): an etcd
//! snapshot, then per node cordon, drain, installer run with the new version (k3s restarts),
//! the wait until it runs the new version (healthy voter, HashKV equal, Node Ready), uncordon;
//! then the verification. The installer run with its restart, the wait, pod evictions and
//! the snapshot are the inherent waits, as below.
//!
//! `--scenario seed-004` (the default): each round starts a fresh lab (3 servers, 1 spare host, keepalived VIP, the seed 004
//! workloads: MinIO, monitor-MinIO, victoria-metrics on local-path volumes), kills
//! `server-1`, waits until its Node is NotReady, then runs `k3splan apply --auto-approve` (the
//! real binary, as a process) with the topology server-2 (primary), server-3, spare-1.
//! The apply prints one line per operation with its duration; operations that wait for the
//! cluster itself (learner catch-up and promotion, k3s service start on install/restart,
//! Node Ready, drains and pod reschedule after a volume rebind) are the inherent waits; the
//! rest of the wall time (process start, observe, plan, journal writes, SSH/API/etcd calls of
//! the other operations) is k3splan's overhead.

use std::process::Command;
use std::time::Duration;

use k3splan_bench::{arg, loadavg, min_median, run_measured, today};
use k3splan_lab::{LabSpec, TopologyNode};

/// Whether an operation line describes an inherent wait (time spent by the cluster, not by
/// k3splan), and which kind.
fn inherent(desc: &str) -> Option<&'static str> {
    if desc.starts_with("wait until") && desc.contains("learner") {
        Some("learner catch-up + promotion")
    } else if desc.starts_with("wait until Node") {
        Some("Node Ready")
    } else if desc.starts_with("install k3s") || desc.starts_with("restart k3s") {
        Some("service start (install/restart until healthy)")
    } else if desc.starts_with("drain") && desc.contains("(evict its pods)") {
        // Evictions wait for the pods to terminate. A drain "without eviction" (dead node)
        // and the PVC/pod deletions of a rebind are API calls: the apply does not wait for
        // the reschedule, so they count as k3splan's time.
        Some("pod eviction")
    } else if desc.starts_with("upgrade k3s on") {
        // Issue 15: the installer run (with the new binary) and the service restart.
        Some("k3s upgrade (installer run + restart)")
    } else if desc.starts_with("wait until") && desc.contains(" runs v") {
        Some("upgraded node healthy (voter, HashKV, Node Ready)")
    } else if desc.starts_with("take an etcd snapshot") {
        Some("etcd snapshot (remote work)")
    } else {
        None
    }
}

/// One operation of the apply: its description, the duration the apply printed (0.1 s
/// resolution), and the duration measured here from the arrival times of the lines.
struct Op {
    /// The step line it belongs to (`[2/6] node.server-1`).
    step: String,
    desc: String,
    printed: f64,
    measured: f64,
}

/// Operation lines (`      DESC … NOTE (1.2s)`) with their measured durations: from the
/// previous stdout line (the step header or the previous operation) to this one.
fn operations(lines: &[(f64, String)]) -> Vec<Op> {
    let mut out = Vec::new();
    let mut prev = 0.0;
    let mut step = String::new();
    for (t, l) in lines {
        if l.starts_with('[') {
            step = l.split(": ").next().unwrap_or(l).to_string();
        }
        let parsed = l.trim_start().split_once(" … ").and_then(|(desc, rest)| {
            let secs = rest.rsplit_once(" (")?.1.strip_suffix("s)")?.parse().ok()?;
            Some((desc.to_string(), secs))
        });
        if let Some((desc, printed)) = parsed {
            out.push(Op {
                step: step.clone(),
                desc,
                printed,
                measured: t - prev,
            });
        }
        prev = *t;
    }
    out
}

/// The lab of one round and the topology to apply, for the scenario.
fn prepare(scenario: &str) -> (k3splan_lab::Lab, std::path::PathBuf) {
    match scenario {
        "upgrade" => {
            let lab = k3splan_bench::start_lab(LabSpec {
                servers: 3,
                agents: 2,
                ..LabSpec::default()
            });
            let mut nodes: Vec<TopologyNode> = ["server-1", "server-2", "server-3"]
                .iter()
                .map(|s| TopologyNode::server(s))
                .collect();
            nodes.extend(
                ["agent-1", "agent-2"]
                    .iter()
                    .map(|a| TopologyNode::agent(a)),
            );
            let topo = lab
                .write_topology("bench/main.hcl", &nodes, "")
                .expect("topology");
            let text = std::fs::read_to_string(&topo).expect("topology");
            let from = k3splan_lab::K3S_VERSION;
            assert!(text.contains(from), "the lab's topology names {from}");
            std::fs::write(&topo, text.replace(from, UPGRADE_TO)).expect("topology");
            (lab, topo)
        }
        "seed-004" => {
            let lab = k3splan_bench::start_lab(LabSpec {
                servers: 3,
                spare_hosts: 1,
                vip: true,
                seed_workloads: true,
                ..LabSpec::default()
            });
            lab.kill_host("server-1").expect("kill server-1");
            lab.wait_node_ready("server-1", false, Duration::from_secs(90))
                .expect("server-1 NotReady");
            let topo = lab
                .write_topology(
                    "bench/main.hcl",
                    &[
                        TopologyNode::server("server-2").primary(),
                        TopologyNode::server("server-3"),
                        TopologyNode::server("spare-1"),
                    ],
                    "",
                )
                .expect("topology");
            (lab, topo)
        }
        other => panic!("--scenario {other}: expected seed-004 or upgrade"),
    }
}

/// The version the upgrade scenario goes to: the next minor after the lab's.
const UPGRADE_TO: &str = "v1.29.0+k3s1";

fn main() {
    let rounds: usize = arg("--rounds", "2").parse().expect("--rounds");
    let scenario = arg("--scenario", "seed-004");
    let k3splan = k3splan_bench::k3splan_bin();
    println!(
        "bench-apply: scenario {scenario} · {} · k3splan {} · load average {}",
        today(),
        k3splan.display(),
        loadavg()
    );
    let mut totals = Vec::new();
    let mut overheads = Vec::new();
    let mut overheads_with_snapshot = Vec::new();
    for round in 1..=rounds {
        let (lab, topo) = prepare(&scenario);
        let mut c = Command::new(&k3splan);
        c.args(["apply", "--auto-approve", "--no-color", "-c"])
            .arg(&topo)
            .arg("--state")
            .arg(lab.dir().join("state/k3splan.state.json"))
            .env_remove("K3SPLAN_CONFIG");
        for (k, v) in lab.k3splan_env() {
            c.env(k, v);
        }
        let m = run_measured(&mut c);
        // For profiling: K3SPLAN_LOG=debug BENCH_APPLY_STDERR=/tmp/apply.log keeps each
        // round's log (timestamped SSH, etcd and API calls).
        if let Some(p) = std::env::var_os("BENCH_APPLY_STDERR") {
            let mut p = p;
            p.push(format!(".{round}"));
            std::fs::write(&p, &m.stderr).expect("write the apply log");
        }
        if m.code != Some(0) {
            panic!("apply exited {:?}:\n{}\n{}", m.code, m.stdout, m.stderr);
        }
        let ops = operations(&m.stdout_lines);
        let first_step = m
            .stdout_lines
            .iter()
            .find(|(_, l)| l.starts_with("[1/"))
            .map(|(t, _)| *t)
            .unwrap_or(0.0);
        let last_line = m.stdout_lines.last().map(|(t, _)| *t).unwrap_or(0.0);
        let total = m.wall.as_secs_f64();
        println!(
            "\n## round {round}: apply wall {total:.1}s, peak RSS {:.0} MB, {} operations, load average {}",
            m.max_rss_mb,
            ops.len(),
            loadavg()
        );
        println!("| operation | printed (s) | measured (s) | inherent wait |\n|---|---|---|---|");
        let mut inherent_s = 0.0;
        let mut snapshot_s = 0.0;
        for o in &ops {
            let kind = inherent(&o.desc);
            match kind {
                Some(k) if k.starts_with("etcd snapshot") => snapshot_s += o.measured,
                Some(_) => inherent_s += o.measured,
                None => {}
            }
            println!(
                "| {} | {:.1} | {:.3} | {} |",
                o.desc,
                o.printed,
                o.measured,
                kind.unwrap_or("— (k3splan)")
            );
        }
        // Per step: its operations' measured time and how much of it is inherent.
        println!(
            "\n| step | operations (s) | inherent waits (s) | k3splan (s) |\n|---|---|---|---|"
        );
        let mut steps: Vec<(&str, f64, f64)> = Vec::new();
        for o in &ops {
            let inh = if inherent(&o.desc).is_some() {
                o.measured
            } else {
                0.0
            };
            match steps.last_mut() {
                Some(s) if s.0 == o.step => {
                    s.1 += o.measured;
                    s.2 += inh;
                }
                _ => steps.push((&o.step, o.measured, inh)),
            }
        }
        for (step, all, inh) in &steps {
            println!("| {step} | {all:.3} | {inh:.3} | {:.3} |", all - inh);
        }
        let ops_sum: f64 = ops.iter().map(|o| o.measured).sum();
        println!(
            "before the first step (process start, observe, plan, lock, journal): {first_step:.3}s; after the last line until exit: {:.3}s",
            total - last_line
        );
        let overhead = total - inherent_s - snapshot_s;
        println!(
            "total {total:.1}s = inherent waits {inherent_s:.1}s + etcd snapshot {snapshot_s:.1}s + other operations {:.1}s + outside operations (start, observe, plan, journal) {:.1}s",
            ops_sum - inherent_s - snapshot_s,
            total - ops_sum
        );
        println!(
            "overhead: {overhead:.1}s = {:.1}% of the total ({:.1}% counting the snapshot as overhead)",
            100.0 * overhead / total,
            100.0 * (overhead + snapshot_s) / total
        );
        totals.push(total);
        overheads.push(100.0 * overhead / total);
        overheads_with_snapshot.push(100.0 * (overhead + snapshot_s) / total);
    }
    let (tmin, tmed) = min_median(&totals);
    let (omin, omed) = min_median(&overheads);
    let (_, osmed) = min_median(&overheads_with_snapshot);
    println!(
        "\nsummary: apply wall min {tmin:.1}s median {tmed:.1}s; overhead min {omin:.1}% median {omed:.1}% ({osmed:.1}% with the snapshot); load average {}",
        loadavg()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_operation_lines() {
        let lines: Vec<(f64, String)> = [
            (
                0.5,
                "[1/3] etcd_snapshot: take an etcd snapshot on server-2 (k3s etcd-snapshot save)",
            ),
            (
                1.8,
                "      take an etcd snapshot on server-2 (k3s etcd-snapshot save) … saved x (1.3s)",
            ),
            (1.81, "      done (1.3s)"),
            (
                5.81,
                "      wait until spare-1's etcd learner is promoted to voter … done (4.0s)",
            ),
        ]
        .into_iter()
        .map(|(t, l)| (t, l.to_string()))
        .collect();
        let ops = operations(&lines);
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].printed, 1.3);
        assert!((ops[0].measured - 1.3).abs() < 1e-9);
        assert!((ops[1].measured - 4.0).abs() < 1e-9);
        assert_eq!(inherent(&ops[1].desc), Some("learner catch-up + promotion"));
        assert_eq!(inherent("write /etc/x on a"), None);
        assert_eq!(ops[0].step, "[1/3] etcd_snapshot");
        assert_eq!(
            inherent(
                "upgrade k3s on server-1 from v1.28.5+k3s1 to v1.29.0+k3s1: re-run the installer"
            ),
            Some("k3s upgrade (installer run + restart)")
        );
        assert_eq!(
            inherent("wait until server-1 runs v1.29.0+k3s1: k3s --version says it"),
            Some("upgraded node healthy (voter, HashKV, Node Ready)")
        );
        assert_eq!(inherent("cordon server-1"), None);
    }
}
