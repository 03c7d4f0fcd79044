//! `k3splan-lab`: the lab for people.
//!
//! ```text
//! k3splan-lab demo --k3splan PATH [--keep]   # the README story (seed 000/004), then tear down
//! k3splan-lab up [--servers N] [--spares N] [--agents N] [--vip] [--workloads]
//!                                           # bring a lab up, print how to reach it, wait for Ctrl-C
//! ```
//! `down` is Ctrl-C (or SIGTERM) of `up`: the lab lives as long as that process.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k3splan_lab::{Lab, LabSpec, TopologyNode, describe_etcd};

fn usage() -> ! {
    eprintln!(
        "usage:\n  k3splan-lab demo --k3splan PATH [--keep]\n  k3splan-lab up [--servers N] [--spares N] [--agents N] [--vip] [--workloads]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("up") => up(&args[1..]),
        Some("down") => {
            eprintln!(
                "k3splan-lab: a lab lives as long as its `k3splan-lab up` process: stop that process (Ctrl-C) to tear it down"
            );
            std::process::exit(2)
        }
        _ => usage(),
    }
}

fn stage(n: u32, title: &str) {
    println!("\n\x1b[1m== {n}. {title}\x1b[0m");
}

fn show_cluster(lab: &Lab) {
    let o = lab.etcd();
    println!("etcd:  {}", describe_etcd(&o));
    let mut nodes = lab.nodes();
    nodes.sort();
    for n in nodes {
        println!(
            "node:  {n:<10} {}",
            if lab.node_ready(&n) {
                "Ready"
            } else {
                "NotReady"
            }
        );
    }
    if let Some(v) = lab.vip() {
        println!(
            "VIP:   {v} -> {}",
            lab.vip_holder().unwrap_or_else(|| "nobody".into())
        );
    }
    let mut stateful: Vec<_> = lab
        .pods(None)
        .into_iter()
        .filter(|(n, _, _)| {
            n.contains("minio-") || n.contains("victoria-metrics") || n.contains("coredns")
        })
        .collect();
    stateful.sort();
    for (n, phase, node) in stateful {
        println!("pod:   {n:<48} {phase:<10} {node}");
    }
}

fn run_k3splan(lab: &Lab, k3splan: &PathBuf, topo: &std::path::Path, args: &[&str]) -> i32 {
    let state = lab.dir().join("state/k3splan.state.json");
    let mut cmd = Command::new(k3splan);
    cmd.arg("-c")
        .arg(topo)
        .arg("--state")
        .arg(&state)
        .args(args)
        .envs(lab.k3splan_env());
    println!(
        "$ k3splan -c {} --state {} {}",
        topo.display(),
        state.display(),
        args.join(" ")
    );
    let t = Instant::now();
    match cmd.status() {
        Ok(s) => {
            let code = s.code().unwrap_or(-1);
            println!("(exit {code}, {:.1}s)", t.elapsed().as_secs_f64());
            code
        }
        Err(e) => {
            println!("cannot run {}: {e}", k3splan.display());
            -1
        }
    }
}

fn demo(args: &[String]) {
    let mut k3splan = None;
    let mut keep = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--k3splan" => k3splan = it.next().map(PathBuf::from),
            "--keep" => keep = true,
            _ => usage(),
        }
    }
    let Some(k3splan) = k3splan else { usage() };
    let t0 = Instant::now();
    stage(
        1,
        "bring up the lab: 3 servers + 1 spare host, keepalived VIP, seed 004 workloads",
    );
    let lab = Lab::start(LabSpec {
        servers: 3,
        spare_hosts: 1,
        vip: true,
        seed_workloads: true,
        verbose: true,
        ..Default::default()
    })
    .unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    println!("lab up in {:.1}s", t0.elapsed().as_secs_f64());
    show_cluster(&lab);

    stage(2, "server-1 (the cluster-init server and VIP primary) dies");
    lab.kill_host("server-1").expect("kill");
    let _ = lab.wait_node_ready("server-1", false, Duration::from_secs(60));
    let _ = lab.wait_etcd("server-1 unhealthy", Duration::from_secs(30), |o| {
        o.health.healthy_voters == 2 && o.health.leader.is_some()
    });
    show_cluster(&lab);

    stage(
        3,
        "the topology: server-1's block deleted, spare-1 added, server-2 primary",
    );
    let topo = lab
        .write_topology(
            "topology/main.hcl",
            &[
                TopologyNode::server("server-2").primary(),
                TopologyNode::server("server-3"),
                TopologyNode::server("spare-1"),
            ],
            "",
        )
        .expect("topology");
    print!("{}", std::fs::read_to_string(&topo).unwrap_or_default());
    let dir = topo.parent().expect("dir").to_path_buf();

    stage(4, "k3splan plan");
    let code = run_k3splan(&lab, &k3splan, &dir, &["plan"]);
    let mut ok = code == 0 || code == 2;
    if ok {
        stage(5, "k3splan apply --auto-approve");
        ok = run_k3splan(&lab, &k3splan, &dir, &["apply", "--auto-approve"]) == 0;
    }
    if ok {
        stage(6, "the cluster after apply");
        show_cluster(&lab);
        stage(7, "a second plan: no changes expected");
        let code = run_k3splan(&lab, &k3splan, &dir, &["plan", "--detailed-exitcode"]);
        ok = code == 0;
    }
    if keep {
        println!(
            "\n--keep: lab kept at {}; press Ctrl-C to tear down",
            lab.dir().display()
        );
        wait_for_signal();
    }
    stage(8, "tear down");
    drop(lab);
    println!(
        "done in {:.1}s: {}",
        t0.elapsed().as_secs_f64(),
        if ok { "success" } else { "FAILED (see above)" }
    );
    std::process::exit(if ok { 0 } else { 1 });
}

fn wait_for_signal() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
}

fn up(args: &[String]) {
    let mut spec = LabSpec {
        verbose: true,
        ..Default::default()
    };
    let mut it = args.iter();
    let num =
        |v: Option<&String>| -> usize { v.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage()) };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--servers" => spec.servers = num(it.next()),
            "--spares" => spec.spare_hosts = num(it.next()),
            "--agents" => spec.agents = num(it.next()),
            "--vip" => spec.vip = true,
            "--workloads" => spec.seed_workloads = true,
            _ => usage(),
        }
    }
    let lab = Lab::start(spec).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let servers: Vec<TopologyNode> = lab
        .hosts()
        .iter()
        .filter(|h| h.role() == k3splan_lab::HostRole::Server)
        .enumerate()
        .map(|(i, h)| {
            let n = TopologyNode::server(h.name());
            if i == 0 { n.primary() } else { n }
        })
        .collect();
    let topo = lab
        .write_topology("topology/main.hcl", &servers, "")
        .expect("topology");
    show_cluster(&lab);
    println!("\nlab dir:    {}", lab.dir().display());
    println!("topology:   {}", topo.display());
    for (k, v) in lab.k3splan_env() {
        println!("export {k}='{v}'");
    }
    for h in lab.hosts() {
        println!(
            "host {:<10} {}  ssh -i {} -o UserKnownHostsFile={} -p {} root@{}",
            h.name(),
            h.address(),
            lab.files().ssh_key.display(),
            lab.files().known_hosts.display(),
            h.ssh_port(),
            h.address()
        );
    }
    println!("\nCtrl-C tears the lab down.");
    wait_for_signal();
    drop(lab);
    println!("lab torn down");
}
