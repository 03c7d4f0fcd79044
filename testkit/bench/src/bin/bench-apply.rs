//! Apply overhead in the lab (issue 9, figure 4): the seed 004 replacement.
//!
//! ```text
//! bench-apply [--rounds 2]
//! ```
//! Each round starts a fresh lab (3 servers, 1 spare host, keepalived VIP, the seed 004
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
    } else if desc.starts_with("take an etcd snapshot") {
        Some("etcd snapshot (remote work)")
    } else {
        None
    }
}

/// One operation of the apply: its description, the duration the apply printed (0.1 s
/// resolution), and the duration measured here from the arrival times of the lines.
struct Op {
    desc: String,
    printed: f64,
    measured: f64,
}

/// Operation lines (`      DESC … NOTE (1.2s)`) with their measured durations: from the
/// previous stdout line (the step header or the previous operation) to this one.
fn operations(lines: &[(f64, String)]) -> Vec<Op> {
    let mut out = Vec::new();
    let mut prev = 0.0;
    for (t, l) in lines {
        let parsed = l.trim_start().split_once(" … ").and_then(|(desc, rest)| {
            let secs = rest.rsplit_once(" (")?.1.strip_suffix("s)")?.parse().ok()?;
            Some((desc.to_string(), secs))
        });
        if let Some((desc, printed)) = parsed {
            out.push(Op {
                desc,
                printed,
                measured: t - prev,
            });
        }
        prev = *t;
    }
    out
}

fn main() {
    let rounds: usize = arg("--rounds", "2").parse().expect("--rounds");
    let k3splan = k3splan_bench::k3splan_bin();
    println!(
        "bench-apply: {} · k3splan {} · load average {}",
        today(),
        k3splan.display(),
        loadavg()
    );
    let mut totals = Vec::new();
    let mut overheads = Vec::new();
    let mut overheads_with_snapshot = Vec::new();
    for round in 1..=rounds {
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
    }
}
