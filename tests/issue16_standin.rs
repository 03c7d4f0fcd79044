//! Issue 16, the lab's k3s stand-in: `k3s server --cluster-reset` and
//! `--cluster-reset-restore-path=SNAPSHOT` behave as k3s's do (k3s-io/k3s
//! `pkg/cluster/managed.go` `Cluster.start`, `pkg/etcd/etcd.go` `ETCD.Reset`/`Restore`):
//! a one-member cluster from the member's own data or from a snapshot, the reset-flag
//! that refuses a second reset, removed by the next normal start.

mod common;

use k3splan_lab::{Lab, LabSpec, hostcfg};
use k3splan_testkit_caps::lab;

k3splan_testkit_caps::main! {
    issue16_standin_cluster_reset_keeps_the_survivors_data_and_refuses_a_second_reset needs [lab],
    issue16_standin_restore_path_restores_the_snapshot_and_nothing_after_it needs [lab],
}

const DONE: &str = "Etcd is running, restart without --cluster-reset flag now. Backup and delete ${datadir}/server/db on each peer etcd server and rejoin the nodes";

fn lose_quorum(lab: &Lab, survivor: &str, dead: &[&str]) {
    for d in dead {
        let (st, out) = lab.service(d, "stop", "k3s").unwrap();
        assert_eq!(st, 0, "stop {d}: {out}");
    }
    // The survivor has no leader: a write fails.
    assert!(
        lab.etcdctl(survivor, &["put", "/k16/after-loss", "x"])
            .is_err()
    );
    let (st, out) = lab.service(survivor, "stop", "k3s").unwrap();
    assert_eq!(st, 0, "stop {survivor}: {out}");
}

fn reset(lab: &Lab, host: &str, extra: &str) -> (i32, String) {
    lab.ssh(
        host,
        &[],
        &format!("{} server --cluster-reset {extra} 2>&1", hostcfg::K3S_BIN),
    )
    .unwrap()
}

fn members(lab: &Lab, host: &str) -> usize {
    lab.etcdctl(host, &["member", "list"])
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

fn issue16_standin_cluster_reset_keeps_the_survivors_data_and_refuses_a_second_reset() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    lab.etcdctl("server-2", &["put", "/k16/before", "kept"])
        .unwrap();
    lose_quorum(&lab, "server-2", &["server-1", "server-3"]);

    let (st, out) = reset(&lab, "server-2", "");
    assert_eq!(st, 0, "{out}");
    assert!(out.contains(DONE), "{out}");
    assert!(out.contains("force-new-cluster"), "{out}");
    let flag = "/var/lib/rancher/k3s/server/db/reset-flag";
    assert!(
        lab.read_file("server-2", flag).is_some(),
        "reset-flag written"
    );

    // A second reset is refused, with k3s's message naming the flag file.
    let (st, out) = reset(&lab, "server-2", "");
    assert_ne!(st, 0, "{out}");
    assert!(
        out.contains("Managed etcd cluster membership was previously reset, please remove the cluster-reset flag and start k3s normally. If you need to perform another cluster reset, you must first manually delete the /var/lib/rancher/k3s/server/db/reset-flag file"),
        "{out}"
    );

    // A normal start: one member, the data kept, the flag removed.
    let (st, out) = lab.service("server-2", "start", "k3s").unwrap();
    assert_eq!(st, 0, "{out}\n{}", lab.k3s_log("server-2"));
    assert_eq!(members(&lab, "server-2"), 1);
    assert_eq!(
        lab.etcdctl("server-2", &["get", "/k16/before", "--print-value-only"])
            .unwrap()
            .trim(),
        "kept"
    );
    lab.etcdctl("server-2", &["put", "/k16/after-reset", "ok"])
        .unwrap();
    assert!(
        lab.read_file("server-2", flag).is_none(),
        "reset-flag removed"
    );
}

fn issue16_standin_restore_path_restores_the_snapshot_and_nothing_after_it() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    lab.etcdctl("server-1", &["put", "/k16/in-snapshot", "yes"])
        .unwrap();
    let (st, out) = lab
        .ssh(
            "server-1",
            &[],
            &format!("{} etcd-snapshot save --name k16 2>&1", hostcfg::K3S_BIN),
        )
        .unwrap();
    assert_eq!(st, 0, "{out}");
    let snap = out
        .lines()
        .find_map(|l| l.split("Saving etcd snapshot to ").nth(1))
        .map(|p| p.trim_end_matches('"').to_string())
        .unwrap_or_else(|| panic!("{out}"));
    lab.etcdctl("server-1", &["put", "/k16/after-snapshot", "lost"])
        .unwrap();
    lose_quorum(&lab, "server-1", &["server-2", "server-3"]);

    // A missing snapshot: k3s's message, nothing moved.
    let (st, out) = reset(&lab, "server-1", "--cluster-reset-restore-path=/nope");
    assert_ne!(st, 0, "{out}");
    assert!(
        out.contains("etcd: snapshot path does not exist: /nope"),
        "{out}"
    );

    let (st, out) = reset(
        &lab,
        "server-1",
        &format!("--cluster-reset-restore-path={snap}"),
    );
    assert_eq!(st, 0, "{out}");
    assert!(
        out.contains("Pre-restore etcd database moved to /var/lib/rancher/k3s/server/db/etcd-old-"),
        "{out}"
    );
    assert!(out.contains(DONE), "{out}");
    let (st, out) = lab.service("server-1", "start", "k3s").unwrap();
    assert_eq!(st, 0, "{out}\n{}", lab.k3s_log("server-1"));
    assert_eq!(members(&lab, "server-1"), 1);
    let get = |k: &str| {
        lab.etcdctl("server-1", &["get", k, "--print-value-only"])
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(get("/k16/in-snapshot"), "yes");
    assert_eq!(get("/k16/after-snapshot"), "", "written after the snapshot");
}
