//! Tests of the lab itself: real sshd, real etcd, the k3s stand-in, the in-memory API.

use std::path::PathBuf;
use std::time::Duration;

use k3splan_lab::{Lab, LabSpec};

fn spec(servers: usize, spares: usize) -> Option<LabSpec> {
    if let Some(r) = k3splan_lab::skip_reason() {
        eprintln!("skipping: {r}");
        return None;
    }
    Some(LabSpec {
        servers,
        spare_hosts: spares,
        verbose: true,
        standin: Some(PathBuf::from(env!("CARGO_BIN_EXE_k3s-standin"))),
        ..Default::default()
    })
}

#[test]
fn lab_comes_up_with_three_voters_and_ready_nodes() {
    let Some(spec) = spec(3, 0) else { return };
    let lab = Lab::start(spec).expect("lab starts");
    let o = lab
        .wait_voters(3, Duration::from_secs(30))
        .expect("3 voters");
    assert!(
        o.health.quorum && o.health.leader.is_some(),
        "{}",
        k3splan_lab::describe_etcd(&o)
    );
    for n in ["server-1", "server-2", "server-3"] {
        assert!(lab.node_ready(n), "{n} Ready");
        let node = lab.node(n).expect("node");
        let labels = &node["metadata"]["labels"];
        for role in ["control-plane", "etcd", "master"] {
            assert_eq!(
                labels[format!("node-role.kubernetes.io/{role}")],
                "true",
                "{node}"
            );
        }
        assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.28.5+k3s1");
        let ip = lab.host(n).unwrap().address().to_string();
        assert_eq!(node["status"]["addresses"][0]["address"], ip.as_str());
        // etcd member matched by peer URL, named <hostname>-<8 hex> like k3s.
        let m = o
            .member_by_address(&ip)
            .expect("member for the node's address");
        assert!(
            m.name.starts_with(&format!("{n}-")) && m.name.len() == n.len() + 9,
            "{}",
            m.name
        );
    }
    // The stand-in answers like k3s.
    let (code, out) = lab
        .ssh("server-2", &[], "/var/lib/rancher/lab/bin/k3s --version")
        .unwrap();
    assert_eq!(code, 0);
    assert!(out.starts_with("k3s version v1.28.5+k3s1"), "{out}");
    let cfg = lab
        .read_file("server-2", "/var/lib/rancher/k3s/server/db/etcd/config")
        .unwrap();
    assert!(cfg.contains("initial-cluster-state: existing"), "{cfg}");
}
