//! A server whose join is in progress is not "stale etcd data" (found by the repeated-kill
//! crash test: an apply killed while spare-1 was joining; the next plan moved spare-1's fresh
//! etcd dir aside, stopping the join, and a second member was added for the same host).
//!
//! Real k3s writes `<data-dir>/server/db/etcd/name` when the server starts (`ETCD.Register` →
//! `setName`), seconds before its join adds the member (`ETCD.join`, after AgentReady;
//! k3s-io/k3s pkg/etcd/etcd.go), and the lab's stand-in does the same. A plan that looks in
//! between sees an etcd dir holding only that name file. That is not etcd data (k3s's own
//! `IsInitialized` looks for `member/wal`): the plan must join the node, not move the dir
//! aside, and the joining server keeps the name it wrote.

use k3splan_lab::{Lab, LabSpec, TopologyNode};

mod common;
use common::lab_k3splan as k3splan;

use k3splan_testkit_caps::lab;

k3splan_testkit_caps::main! {
    issue13_a_join_in_progress_is_joined_not_moved_aside needs [lab],
}

fn issue13_a_join_in_progress_is_joined_not_moved_aside() {
    let lab = Lab::start(LabSpec {
        servers: 3,
        spare_hosts: 1,
        ..LabSpec::default()
    })
    .expect("lab");
    // What spare-1 looks like between k3s's start and its member add.
    let etcd_dir = "/var/lib/rancher/k3s/server/db/etcd";
    lab.write_file("spare-1", &format!("{etcd_dir}/name"), "spare-1-0badcafe")
        .unwrap();
    let topo = lab
        .write_topology(
            "join/main.hcl",
            &[
                TopologyNode::server("server-1"),
                TopologyNode::server("server-2"),
                TopologyNode::server("server-3"),
                TopologyNode::server("spare-1"),
            ],
            "",
        )
        .unwrap();

    let plan = k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    let out = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(2), "{out}");
    assert!(out.contains("node.spare-1 will be created"), "{out}");
    assert!(
        !out.contains(&format!("host_file.spare-1:{etcd_dir}")) && !out.contains("aside"),
        "a name file alone is not stale etcd data: nothing is moved aside\n{out}"
    );

    let apply = k3splan(&lab, &topo, &["apply", "--auto-approve"]);
    assert_eq!(apply.status.code(), Some(0));
    let obs = lab.etcd();
    let spare = lab.host("spare-1").unwrap().address().to_string();
    let spare_members: Vec<_> = obs
        .members
        .iter()
        .filter(|m| m.peer_urls.iter().any(|u| u.contains(&spare)))
        .collect();
    assert_eq!(spare_members.len(), 1, "{:?}", obs.members);
    assert_eq!(
        spare_members[0].name, "spare-1-0badcafe",
        "k3s joins under the name it wrote before the join"
    );
    let again = k3splan(&lab, &topo, &["plan", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0));
}
