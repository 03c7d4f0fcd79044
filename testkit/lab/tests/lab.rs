//! Tests of the lab itself: real sshd, real etcd, the k3s stand-in, the in-memory API.

use std::path::PathBuf;
use std::time::Duration;

use k3splan_lab::{Lab, LabSpec};
use k3splan_testkit_caps::lab;

k3splan_testkit_caps::main! {
    lab_comes_up_with_three_voters_and_ready_nodes needs [lab],
    server_joins_as_learner_then_voter_and_snapshot_and_kill_host needs [lab],
    join_fails_through_dead_server_and_with_stale_data needs [lab],
    service_stop_start_and_uninstall needs [lab],
    vip_follows_priority_and_seed_workloads_are_loaded needs [lab],
    agentless_servers_register_no_node_and_serve_cacerts needs [lab],
    a_k3s_that_exits_is_restarted_until_stopped needs [lab],
    a_k3s_exits_when_its_member_says_no_leader_not_when_etcdctl_times_out needs [lab],
}

fn spec(servers: usize, spares: usize) -> LabSpec {
    LabSpec {
        servers,
        spare_hosts: spares,
        verbose: true,
        standin: Some(PathBuf::from(env!("CARGO_BIN_EXE_k3s-standin"))),
        ..Default::default()
    }
}

fn lab_comes_up_with_three_voters_and_ready_nodes() {
    let spec = spec(3, 0);
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

fn server_joins_as_learner_then_voter_and_snapshot_and_kill_host() {
    let spec = spec(3, 1);
    let lab = Lab::start(spec).expect("lab starts");
    // Join the spare through a healthy server that is not the first one.
    let via = lab.host("server-2").unwrap().server_url();
    let out = lab
        .install_server("spare-1", Some(&via))
        .expect("join succeeds");
    assert!(out.contains("Starting k3s"), "{out}");
    let log = lab.k3s_log("spare-1");
    assert!(log.contains("to etcd cluster as a learner"), "{log}");
    let o = lab
        .wait_voters(4, Duration::from_secs(60))
        .expect("promoted to voter");
    let spare_ip = lab.host("spare-1").unwrap().address().to_string();
    let m = o
        .member_by_address(&spare_ip)
        .expect("spare is a member")
        .clone();
    assert!(!m.is_learner);
    let promoted = ["server-1", "server-2", "server-3"].iter().any(|s| {
        lab.k3s_log(s)
            .contains(&format!("Promoted etcd learner {}", m.name))
    });
    assert!(promoted, "a leader logged the promotion of {}", m.name);
    lab.wait_node_ready("spare-1", true, Duration::from_secs(30))
        .unwrap();

    // etcd-snapshot save writes a real snapshot and prints its path like k3s.
    let (code, out) = lab
        .ssh(
            "server-2",
            &[],
            "/var/lib/rancher/lab/bin/k3s etcd-snapshot save --data-dir /var/lib/rancher/k3s",
        )
        .unwrap();
    assert_eq!(code, 0, "{out}");
    let path = out
        .lines()
        .find_map(|l| l.split("Saving etcd snapshot to ").nth(1))
        .map(|p| p.trim_end_matches('"').to_string())
        .expect("path printed");
    assert!(
        path.starts_with("/var/lib/rancher/k3s/server/db/snapshots/on-demand-server-2-"),
        "{path}"
    );
    let real = lab.host("server-2").unwrap().path(&path);
    let st = std::process::Command::new("etcdctl")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&real)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "etcdctl snapshot status: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(String::from_utf8_lossy(&st.stdout).contains("\"totalKey\""));

    // The machine dies: member unreachable but listed, Node NotReady, quorum holds.
    lab.kill_host("server-1").unwrap();
    let s1 = lab.host("server-1").unwrap().address().to_string();
    let o = lab
        .wait_etcd(
            "server-1 unreachable, quorum kept",
            Duration::from_secs(60),
            |o| {
                o.member_by_address(&s1).is_some_and(|m| !m.is_healthy())
                    && o.health.quorum
                    && o.health.leader.is_some()
                    && o.health.healthy_voters == 3
            },
        )
        .unwrap();
    assert_eq!(o.health.voters, 4, "a killed member stays listed");
    lab.wait_node_ready("server-1", false, Duration::from_secs(60))
        .unwrap();
    let node = lab.node("server-1").unwrap();
    assert!(
        node["spec"]["taints"]
            .to_string()
            .contains("node.kubernetes.io/unreachable"),
        "{node}"
    );
    assert!(lab.node_ready("server-2") && lab.node_ready("spare-1"));
}

fn join_fails_through_dead_server_and_with_stale_data() {
    let spec = spec(3, 2);
    let lab = Lab::start(spec).expect("lab starts");
    lab.kill_host("server-1").unwrap();
    // Seed 001: the join URL names a dead server.
    let dead = lab.host("server-1").unwrap().server_url();
    let err = lab
        .install_server("spare-1", Some(&dead))
        .expect_err("join through a dead server fails");
    let msg = err.to_string();
    assert!(
        msg.contains("failed to get CA certs") && msg.contains("connection refused"),
        "{msg}"
    );
    assert!(msg.contains(&dead), "names the URL: {msg}");
    let (code, _) = lab.service("spare-1", "is-active", "k3s").unwrap();
    assert_ne!(code, 0, "k3s is not active on spare-1");

    // Seed 002: a data dir holding another cluster's etcd data never joins.
    lab.plant_stale_etcd_data("spare-2").unwrap();
    let via = lab.host("server-2").unwrap().server_url();
    let err = lab
        .install_server("spare-2", Some(&via))
        .expect_err("stale data dir does not join");
    let msg = err.to_string();
    assert!(msg.contains("belongs to another cluster"), "{msg}");
    let o = lab.etcd();
    assert_eq!(
        o.health.voters + o.health.learners,
        3,
        "no member was added: {}",
        k3splan_lab::describe_etcd(&o)
    );
    assert!(lab.node("spare-1").is_none() && lab.node("spare-2").is_none());
    // Never a second cluster: the stale member has no leader, so it is not healthy.
    let s2 = lab.host("spare-2").unwrap().address().to_string();
    assert!(o.member_by_address(&s2).is_none());
}

fn service_stop_start_and_uninstall() {
    let spec = spec(3, 0);
    let lab = Lab::start(spec).expect("lab starts");
    let (code, out) = lab.service("server-3", "is-active", "k3s").unwrap();
    assert_eq!(code, 0, "{out}");
    // stop is idempotent; the member becomes unhealthy, quorum holds.
    assert_eq!(lab.service("server-3", "stop", "k3s").unwrap().0, 0);
    assert_eq!(lab.service("server-3", "stop", "k3s").unwrap().0, 0);
    assert_ne!(lab.service("server-3", "is-active", "k3s").unwrap().0, 0);
    let ep3 = lab.host("server-3").unwrap().address().to_string();
    lab.wait_etcd("server-3 down", Duration::from_secs(30), |o| {
        o.member_by_address(&ep3).is_some_and(|m| !m.is_healthy()) && o.health.quorum
    })
    .unwrap();
    // start (twice: idempotent) brings the member back from its data dir.
    let (code, out) = lab.service("server-3", "start", "k3s").unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(lab.service("server-3", "start", "k3s").unwrap().0, 0);
    lab.wait_voters(3, Duration::from_secs(60)).unwrap();
    assert!(
        lab.k3s_log("server-3")
            .contains("bootstrap already complete")
    );

    // The installer's env file (issue 19): K3S_URL/K3S_TOKEN as install.sh writes them.
    let env = lab
        .read_file("server-3", "/etc/systemd/system/k3s.service.env")
        .expect("install.sh's env file");
    assert!(env.contains("K3S_URL='https://"), "{}", env.lines().count());
    // uninstall: stops k3s, removes the binary, the data dir, /etc/rancher/k3s and the env
    // file (k3s-uninstall.sh: `rm -f ${FILE_K3S_ENV}`).
    let (code, out) = lab
        .ssh("server-3", &[], "/var/lib/rancher/lab/bin/k3s uninstall")
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert_ne!(lab.service("server-3", "is-active", "k3s").unwrap().0, 0);
    assert!(
        lab.read_file("server-3", "/var/lib/rancher/lab/bin/k3s")
            .is_none()
    );
    assert!(
        !lab.host("server-3")
            .unwrap()
            .path("/var/lib/rancher/k3s")
            .exists()
    );
    assert!(
        !lab.host("server-3")
            .unwrap()
            .path("/etc/rancher/k3s")
            .exists()
    );
    assert!(
        lab.read_file("server-3", "/etc/systemd/system/k3s.service.env")
            .is_none()
    );
    let addr: std::net::SocketAddr = format!("{ep3}:2379").parse().unwrap();
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "etcd stopped"
    );
    // A start without k3s installed fails like systemd with no unit.
    let (code, out) = lab.service("server-3", "start", "k3s").unwrap();
    assert_eq!(code, 5, "{out}");
}

fn vip_follows_priority_and_seed_workloads_are_loaded() {
    let mut spec = spec(3, 0);
    spec.vip = true;
    spec.seed_workloads = true;
    let lab = Lab::start(spec).expect("lab starts");
    assert_eq!(lab.vip_holder().as_deref(), Some("server-1"));
    let pods = lab.pods(Some("onecloud-minio"));
    assert!(
        pods.iter()
            .any(|(n, phase, node)| n == "onecloud-minio/minio-1"
                && phase == "Running"
                && node == "server-1"),
        "{pods:?}"
    );
    // The VIP serves the API (through the holder's :6443).
    let vip = lab.vip().unwrap();
    let addr: std::net::SocketAddr = format!("{vip}:6443").parse().unwrap();
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    // Priority moves: server-3 becomes primary.
    lab.write_keepalived("server-1", 90).unwrap();
    lab.write_keepalived("server-3", 100).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lab.vip_holder().as_deref() != Some("server-3") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(lab.vip_holder().as_deref(), Some("server-3"));
    // The holder dies: the VIP moves to a live server.
    lab.kill_host("server-3").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lab.vip_holder().as_deref() == Some("server-3") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let h = lab.vip_holder();
    assert!(
        matches!(h.as_deref(), Some("server-1" | "server-2")),
        "{h:?}"
    );
    // The topology helper renders VIP, primary, ports and storage blocks.
    let hcl = lab
        .render_topology(
            &[
                k3splan_lab::TopologyNode::server("server-1").primary(),
                k3splan_lab::TopologyNode::server("server-2"),
            ],
            "",
        )
        .unwrap();
    assert!(
        hcl.contains(&format!("address       = \"{vip}\"")) && hcl.contains("primary = true"),
        "{hcl}"
    );
    assert!(hcl.contains("storage \"onecloud-minio/minio\""), "{hcl}");
}

/// Issue 19: with `disable-agent` (LabSpec::agentless) a server, like k3s's, registers no
/// Node; its `:6443` serves `/cacerts` (the API's CA) and `/readyz` without credentials, as
/// k3s's supervisor and kube-apiserver do.
fn agentless_servers_register_no_node_and_serve_cacerts() {
    let lab = Lab::start(LabSpec {
        agentless: true,
        ..spec(3, 0)
    })
    .expect("lab starts");
    let o = lab
        .wait_voters(3, Duration::from_secs(30))
        .expect("3 voters");
    assert!(
        o.health.leader.is_some(),
        "{}",
        k3splan_lab::describe_etcd(&o)
    );
    assert!(lab.nodes().is_empty(), "no Node: {:?}", lab.nodes());
    let log = lab.k3s_log("server-2");
    assert!(
        log.contains("agent disabled (disable-agent): no kubelet, no Node"),
        "{log}"
    );
    let cfg = lab
        .read_file("server-2", "/etc/rancher/k3s/config.yaml")
        .unwrap();
    assert!(cfg.contains("disable-agent: true"), "{cfg}");
    let url = lab.host("server-2").unwrap().server_url();
    let (status, body) = lab
        .ssh("server-1", &[], &format!("curl -sfk {url}/cacerts"))
        .unwrap();
    assert_eq!(status, 0, "{body}");
    let ca = lab.kube().ca_pem().expect("a TLS API").to_string();
    assert_eq!(body.trim(), ca.trim(), "/cacerts serves the API's CA");
    let (status, body) = lab
        .ssh("server-1", &[], &format!("curl -sfk {url}/readyz"))
        .unwrap();
    assert_eq!((status, body.trim()), (0, "ok"));
}

/// k3s's unit restarts it whatever way it exits (`Restart=always`, `RestartSec=5s`; k3s-io/k3s
/// install.sh): a killed k3s (and its in-process etcd) comes back as a voter by itself, and
/// only `service stop` keeps it down.
fn a_k3s_that_exits_is_restarted_until_stopped() {
    let lab = Lab::start(spec(3, 0)).expect("lab starts");
    lab.wait_voters(3, Duration::from_secs(60))
        .expect("3 voters");
    let pid_of = |f: &str| -> i32 {
        lab.read_file("server-2", f)
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("{f} on server-2"))
    };
    let daemon = pid_of("/var/lib/rancher/lab/k3s.pid");
    let etcd = pid_of("/var/lib/rancher/lab/k3s.etcd.pid");
    // SAFETY: SIGKILL of two processes of this lab (k3s dies with its embedded etcd).
    unsafe {
        libc::kill(etcd, libc::SIGKILL);
        libc::kill(daemon, libc::SIGKILL);
    }
    let ep2 = lab.host("server-2").unwrap().address().to_string();
    lab.wait_etcd("server-2's member down", Duration::from_secs(30), |o| {
        o.member_by_address(&ep2).is_some_and(|m| !m.is_healthy())
    })
    .unwrap();
    // Back by itself: a healthy voter again, the unit active, a new daemon.
    lab.wait_voters(3, Duration::from_secs(90))
        .expect("server-2 restarted by its unit");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while lab.service("server-2", "is-active", "k3s").unwrap().0 != 0 {
        assert!(std::time::Instant::now() < deadline, "k3s active again");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_ne!(pid_of("/var/lib/rancher/lab/k3s.pid"), daemon);
    assert!(
        lab.k3s_log("server-2")
            .contains("k3s.service: Scheduled restart job, restart counter is at 1."),
        "{}",
        lab.k3s_log("server-2")
    );
    // `service stop` is final: nothing starts it again after RestartSec.
    assert_eq!(lab.service("server-2", "stop", "k3s").unwrap().0, 0);
    std::thread::sleep(Duration::from_secs(
        2 * k3splan_lab::hostcfg::RESTART_SECS + 1,
    ));
    let (code, out) = lab.service("server-2", "is-active", "k3s").unwrap();
    assert_eq!((code, out.trim()), (3, "inactive"));
}

/// The quorum-loss exit (docs/lab.md "Quorum lost") counts only etcd's own "no leader"
/// answer. An `etcdctl endpoint status` that fails (a timeout of the forked client on a
/// loaded machine) for longer than `no_leader_exit_secs` leaves a healthy server up; losing
/// two of three members makes the survivor exit with "leaderelection lost".
fn a_k3s_exits_when_its_member_says_no_leader_not_when_etcdctl_times_out() {
    use std::time::Instant;
    const LAB: &str = "/var/lib/rancher/lab";
    let lab = Lab::start(spec(3, 0)).expect("lab starts");
    lab.wait_voters(3, Duration::from_secs(60))
        .expect("3 voters");
    // server-3's etcdctl fails `endpoint status` while a marker file exists, and notes when.
    let cfg_text = lab
        .read_file("server-3", k3splan_lab::hostcfg::HOST_CONFIG)
        .expect("host config");
    let mut cfg: serde_json::Value = serde_json::from_str(&cfg_text).unwrap();
    let real = cfg["etcdctl_bin"].as_str().unwrap().to_string();
    let wrapper = format!("{LAB}/bin/etcdctl-flaky");
    lab.write_file(
        "server-3",
        &wrapper,
        &format!(
            "#!/bin/sh\ncase \"$*\" in *'endpoint status'*)\n  if [ -e {LAB}/etcdctl-fail ]; then\n    date +%s >> {LAB}/etcdctl-failed\n    echo 'context deadline exceeded' >&2; exit 1\n  fi;;\nesac\nexec {real} \"$@\"\n"
        ),
    )
    .unwrap();
    let (code, out) = lab
        .ssh("server-3", &[], &format!("chmod 755 {wrapper}"))
        .unwrap();
    assert_eq!(code, 0, "{out}");
    cfg["etcdctl_bin"] = serde_json::Value::String(wrapper);
    lab.write_file(
        "server-3",
        k3splan_lab::hostcfg::HOST_CONFIG,
        &serde_json::to_string_pretty(&cfg).unwrap(),
    )
    .unwrap();
    let (code, out) = lab.service("server-3", "restart", "k3s").unwrap();
    assert_eq!(code, 0, "restart server-3: {out}");
    lab.wait_voters(3, Duration::from_secs(90))
        .expect("3 voters after the restart");

    // Unanswered status calls spanning more than no_leader_exit_secs (10 s): still up.
    lab.write_file("server-3", &format!("{LAB}/etcdctl-fail"), "")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let failed: Vec<u64> = lab
            .read_file("server-3", &format!("{LAB}/etcdctl-failed"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if let (Some(first), Some(last)) = (failed.first(), failed.last())
            && last - first >= 13
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stand-in stopped asking for status: {failed:?}\n{}",
            lab.k3s_log("server-3")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (code, out) = lab.service("server-3", "is-active", "k3s").unwrap();
    let log = lab.k3s_log("server-3");
    assert!(
        code == 0 && !log.contains("leaderelection lost"),
        "a failing etcdctl took server-3 down ({code}, {out}):\n{log}"
    );

    // Two of three members gone: server-3's member answers leader 0 and k3s exits.
    lab.ssh("server-3", &[], &format!("rm -f {LAB}/etcdctl-fail"))
        .unwrap();
    for h in ["server-1", "server-2"] {
        let (code, out) = lab.service(h, "stop", "k3s").unwrap();
        assert_eq!(code, 0, "stop {h}: {out}");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while !lab.k3s_log("server-3").contains("leaderelection lost") {
        assert!(
            Instant::now() < deadline,
            "server-3 never exited after losing quorum:\n{}",
            lab.k3s_log("server-3")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
