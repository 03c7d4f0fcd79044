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
use k3splan_lab::{Lab, LabSpec, TopologyNode};

/// Whether an operation line describes an inherent wait (time spent by the cluster, not by
/// k3splan), and which kind.
fn inherent(desc: &str) -> Option<&'static str> {
    if desc.starts_with("wait until") && desc.contains("learner") {
        Some("learner catch-up + promotion")
    } else if desc.starts_with("wait until Node") {
        Some("Node Ready")
    } else if desc.starts_with("install k3s") || desc.starts_with("restart k3s") {
        Some("service start (install/restart until healthy)")
    } else if desc.starts_with("drain") || desc.starts_with("delete PVC") {
        Some("pod eviction / reschedule")
    } else if desc.starts_with("take an etcd snapshot") {
        Some("etcd snapshot (remote work)")
    } else {
        None
    }
}

/// `(description, seconds)` of every operation line: `      DESC … NOTE (1.2s)`.
fn operations(out: &str) -> Vec<(String, f64)> {
    out.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let (desc, rest) = l.split_once(" … ")?;
            let secs = rest.rsplit_once(" (")?.1.strip_suffix("s)")?.parse().ok()?;
            Some((desc.to_string(), secs))
        })
        .collect()
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
        let lab = Lab::start(LabSpec {
            servers: 3,
            spare_hosts: 1,
            vip: true,
            seed_workloads: true,
            ..LabSpec::default()
        })
        .expect("lab");
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
        if m.code != Some(0) {
            panic!("apply exited {:?}:\n{}\n{}", m.code, m.stdout, m.stderr);
        }
        let ops = operations(&m.stdout);
        let total = m.wall.as_secs_f64();
        println!(
            "\n## round {round}: apply wall {total:.1}s, peak RSS {:.0} MB, {} operations, load average {}",
            m.max_rss_mb,
            ops.len(),
            loadavg()
        );
        println!("| operation | s | inherent wait |\n|---|---|---|");
        let mut inherent_s = 0.0;
        let mut snapshot_s = 0.0;
        for (d, s) in &ops {
            let kind = inherent(d);
            match kind {
                Some(k) if k.starts_with("etcd snapshot") => snapshot_s += s,
                Some(_) => inherent_s += s,
                None => {}
            }
            println!("| {d} | {s:.1} | {} |", kind.unwrap_or("— (k3splan)"));
        }
        let ops_sum: f64 = ops.iter().map(|o| o.1).sum();
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
        let out = "[1/3] etcd_snapshot: take an etcd snapshot on server-2 (k3s etcd-snapshot save)\n      take an etcd snapshot on server-2 (k3s etcd-snapshot save) … saved x (1.3s)\n      done (1.3s)\n      wait until spare-1's etcd learner is promoted to voter … done (4.0s)\n";
        let ops = operations(out);
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].1, 1.3);
        assert_eq!(inherent(&ops[1].0), Some("learner catch-up + promotion"));
        assert_eq!(inherent("write /etc/x on a"), None);
    }
}
