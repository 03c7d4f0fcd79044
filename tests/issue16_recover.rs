//! Issue 16 end to end in the lab: quorum-loss recovery as a reviewable plan
//! (`plan --recover`, `apply --recover`), with the real etcd members and the stand-in's
//! `--cluster-reset`. Each scenario ends with every declared server a healthy voter, the keys
//! written before the loss present up to the chosen revision and nothing after it, and a
//! second `apply --recover` that changes nothing.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{combined, lab_k3splan};
use k3splan_lab::{Lab, LabSpec, TopologyNode, hostcfg};
use k3splan_testkit_caps::lab;

k3splan_testkit_caps::main! {
    issue16_three_servers_two_dead_survivor_intact needs [lab],
    issue16_three_servers_all_data_lost_snapshot_restored needs [lab],
    issue16_five_servers_three_dead_most_advanced_survivor_chosen needs [lab],
    issue16_recover_flags_are_checked_before_anything_is_read,
    issue16_data_of_two_clusters_is_refused_unless_the_source_is_named needs [lab],
}

/// server-3 holds another cluster's etcd data (seed 002's planted dir, a real etcd's WAL):
/// the survey reads two cluster IDs and the recovery is refused until the source is named.
fn issue16_data_of_two_clusters_is_refused_unless_the_source_is_named() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    stop(&lab, "server-2");
    stop(&lab, "server-3");
    wipe(&lab, "server-2");
    wipe(&lab, "server-3");
    lab.plant_stale_etcd_data("server-3").unwrap();
    stop(&lab, "server-1");
    let t = topo(&lab, 3);
    let o = lab_k3splan(&lab, &t, &["plan", "--recover"]);
    let out = combined(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("different etcd clusters"), "{out}");
    // The refusal is shown with the survey it rests on.
    assert!(out.contains("Quorum-loss recovery: what survives"), "{out}");
    assert!(out.contains("--recover-from NODE"), "{out}");
    let o = lab_k3splan(
        &lab,
        &t,
        &[
            "plan",
            "--recover",
            "--recover-from",
            "server-1",
            "--detailed-exitcode",
        ],
    );
    let out = combined(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains("Source of truth: server-1's own etcd data"),
        "{out}"
    );
}

/// `--from-snapshot`/`--recover-from` need `--recover`; a recovery cannot be saved. Both are
/// usage errors (exit 1) before any host is dialled.
fn issue16_recover_flags_are_checked_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("main.hcl");
    std::fs::write(
        &topo,
        "cluster \"lab\" {\n  token = \"K10-test-token\"\n}\n\nnode \"s1\" {\n  address = \"10.255.255.1\"\n  roles   = [\"server\", \"etcd\"]\n}\n",
    )
    .unwrap();
    let state = dir.path().join("state.json");
    for (args, want) in [
        (vec!["plan", "--from-snapshot", "x"], "--recover"),
        (vec!["apply", "--recover-from", "s1"], "--recover"),
        (
            vec![
                "plan",
                "--recover",
                "--from-snapshot",
                "x",
                "--recover-from",
                "s1",
            ],
            "cannot be used with",
        ),
        (
            vec!["plan", "--recover", "-out=plan.json"],
            "--recover cannot be combined with a saved plan",
        ),
    ] {
        let o = common::k3splan()
            .args(&args)
            .arg("-c")
            .arg(&topo)
            .arg("--state")
            .arg(&state)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_ne!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

const ETCD_DIR: &str = "/var/lib/rancher/k3s/server/db/etcd";

fn get(lab: &Lab, host: &str, key: &str) -> String {
    lab.etcdctl(host, &["get", key, "--print-value-only"])
        .unwrap_or_else(|e| panic!("get {key} on {host}: {e}"))
        .trim()
        .to_string()
}

fn topo(lab: &Lab, n: usize) -> PathBuf {
    let nodes: Vec<TopologyNode> = (1..=n)
        .map(|i| TopologyNode::server(&format!("server-{i}")))
        .collect();
    lab.write_topology("issue16/main.hcl", &nodes, "").unwrap()
}

fn stop(lab: &Lab, host: &str) {
    let (st, out) = lab.service(host, "stop", "k3s").unwrap();
    assert_eq!(st, 0, "stop {host}: {out}");
}

fn wipe(lab: &Lab, host: &str) {
    let (st, out) = lab.ssh(host, &[], &format!("rm -rf {ETCD_DIR}")).unwrap();
    assert_eq!(st, 0, "{out}");
}

/// `plan --recover`, then `apply --recover`, then checks the cluster and that a second
/// `apply --recover` changes nothing. Returns the plan's output.
fn recover(lab: &Lab, n: usize, extra: &[&str]) -> String {
    let t = topo(lab, n);
    let mut args = vec!["plan", "--recover", "--detailed-exitcode"];
    args.extend_from_slice(extra);
    let o = lab_k3splan(lab, &t, &args);
    let plan = combined(&o);
    assert_eq!(o.status.code(), Some(2), "{plan}");
    let mut args = vec!["apply", "--recover", "--auto-approve"];
    args.extend_from_slice(extra);
    let o = lab_k3splan(lab, &t, &args);
    let out = combined(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    lab.wait_voters(n, Duration::from_secs(60)).unwrap();
    for i in 1..=n {
        lab.wait_node_ready(&format!("server-{i}"), true, Duration::from_secs(60))
            .unwrap();
    }
    // A healthy cluster: nothing to recover.
    let o = lab_k3splan(lab, &t, &["apply", "--recover", "--auto-approve"]);
    let again = combined(&o);
    assert_eq!(o.status.code(), Some(0), "{again}");
    assert!(again.contains("nothing to recover"), "{again}");
    assert!(again.contains("No changes"), "{again}");
    plan
}

/// (a) 3 servers, server-2's data corrupt and server-3's gone: server-1 is reset.
fn issue16_three_servers_two_dead_survivor_intact() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    for i in 0..20 {
        lab.etcdctl("server-1", &["put", &format!("/k16/a/{i:02}"), "v"])
            .unwrap();
    }
    stop(&lab, "server-2");
    stop(&lab, "server-3");
    lab.corrupt_data_dir("server-2").unwrap();
    wipe(&lab, "server-3");
    assert!(
        lab.etcdctl("server-1", &["put", "/k16/a/lost", "x"])
            .is_err()
    );

    let plan = recover(&lab, 3, &[]);
    assert!(
        plan.contains("Quorum-loss recovery: what survives"),
        "{plan}"
    );
    assert!(
        plan.contains("Source of truth: server-1's own etcd data"),
        "{plan}"
    );
    assert!(plan.contains("DATA LOSS"), "{plan}");
    assert!(plan.contains("unreadable"), "server-2's corrupt db: {plan}");
    assert!(plan.contains("k3s server --cluster-reset"), "{plan}");
    for i in 0..20 {
        assert_eq!(get(&lab, "server-3", &format!("/k16/a/{i:02}")), "v");
    }
    assert_eq!(get(&lab, "server-2", "/k16/a/lost"), "");
    // Nothing deleted: server-2's corrupt data is kept aside.
    let (_, ls) = lab
        .ssh("server-2", &[], "ls /var/lib/rancher/k3s/server/db/")
        .unwrap();
    assert!(ls.contains("etcd-backup-"), "{ls}");
}

/// (b) 3 servers, every etcd data dir lost; server-2 has a snapshot: it is restored, and the
/// key written after it is gone.
fn issue16_three_servers_all_data_lost_snapshot_restored() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    lab.etcdctl("server-1", &["put", "/k16/b/in", "yes"])
        .unwrap();
    let (st, out) = lab
        .ssh(
            "server-2",
            &[],
            &format!("{} etcd-snapshot save --name k16b 2>&1", hostcfg::K3S_BIN),
        )
        .unwrap();
    assert_eq!(st, 0, "{out}");
    lab.etcdctl("server-1", &["put", "/k16/b/after", "lost"])
        .unwrap();
    for s in ["server-1", "server-2", "server-3"] {
        stop(&lab, s);
        wipe(&lab, s);
    }
    let plan = recover(&lab, 3, &[]);
    assert!(
        plan.contains("Source of truth: snapshot k16b-server-2-"),
        "{plan}"
    );
    assert!(
        plan.contains("everything written after snapshot k16b-server-2-"),
        "{plan}"
    );
    assert!(plan.contains("--cluster-reset-restore-path="), "{plan}");
    assert_eq!(get(&lab, "server-3", "/k16/b/in"), "yes");
    assert_eq!(
        get(&lab, "server-3", "/k16/b/after"),
        "",
        "written after the snapshot"
    );
}

/// (c) 5 servers, 3 dead; of the two survivors, server-2 saw one more write than server-1
/// (server-1 stopped first): server-2 is chosen, and the plan says what server-1 lacks.
fn issue16_five_servers_three_dead_most_advanced_survivor_chosen() {
    let lab = Lab::start(LabSpec {
        servers: 5,
        verbose: true,
        ..LabSpec::default()
    })
    .expect("lab");
    for i in 0..10 {
        lab.etcdctl("server-2", &["put", &format!("/k16/c/{i}"), "v"])
            .unwrap();
    }
    stop(&lab, "server-1");
    lab.etcdctl("server-2", &["put", "/k16/c/late", "only-on-2-to-5"])
        .unwrap();
    for s in ["server-3", "server-4", "server-5"] {
        stop(&lab, s);
    }
    wipe(&lab, "server-3");
    wipe(&lab, "server-4");
    lab.corrupt_data_dir("server-5").unwrap();
    let plan = recover(&lab, 5, &[]);
    assert!(
        plan.contains("Source of truth: server-2's own etcd data"),
        "{plan}"
    );
    assert_eq!(get(&lab, "server-1", "/k16/c/late"), "only-on-2-to-5");
    for i in 0..10 {
        assert_eq!(get(&lab, "server-5", &format!("/k16/c/{i}")), "v");
    }
}
