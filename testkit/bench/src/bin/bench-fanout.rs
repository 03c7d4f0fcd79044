//! SSH fan-out: k3splan's host provider vs `ansible -m setup` on the same hosts (issue 9,
//! figure 3).
//!
//! ```text
//! bench-fanout [--hosts 100[,300,1000]] [--rounds 3] [--ansible-rounds 2] [--forks 16] [--no-ansible]
//! ```
//! `--hosts` takes a comma-separated series: each size gets its own fleet and its own
//! measurements (the OpenSSH loop at every size, ansible only at the first).
//! Starts `--hosts` real sshd hosts (`testkit/sshd`: own 127.0.0.x address, own `/root`,
//! `/etc/rancher`, `/var/lib/rancher`), one client key and one known_hosts file. Then, each as
//! a separate process (wall from spawn to reap, peak RSS from `wait4`):
//! - `bench-fanout observe`: `HostPool::observe_all` from a fresh pool (TCP + SSH handshake +
//!   publickey auth + the observe script on every host), at parallelism `--forks`;
//! - a parallel OpenSSH loop: `xargs -P FORKS` running one `ssh` per host (same key, same
//!   known_hosts, strict host key checking, `BatchMode`) with the very command the provider
//!   sends (`k3splan_host::observe_command`), so that the provider is compared with the
//!   floor of "the same work over OpenSSH";
//! - `ansible all -i INVENTORY -m setup -f FORKS` (ansible-core, same key, same known_hosts,
//!   strict host key checking, `/usr/bin/python3` on the hosts), output to /dev/null.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use k3splan_bench::{arg, flag, loadavg, min_median, run_measured, today};
use k3splan_host::{
    HostObservation, HostPool, K3sLayout, ObserveSpec, SshSettings, observe_command,
};
use serde_json::{Value, json};

async fn observe(dir: &Path) {
    let spec: Value =
        serde_json::from_slice(&std::fs::read(dir.join("hosts.json")).expect("hosts.json"))
            .expect("hosts.json");
    let t = Instant::now();
    let key = PathBuf::from(spec["key"].as_str().expect("key"));
    let kh = PathBuf::from(spec["known_hosts"].as_str().expect("known_hosts"));
    let hosts = spec["hosts"].as_array().expect("hosts").iter().map(|h| {
        let mut s = SshSettings::new(h[1].as_str().expect("addr"));
        s.port = h[2].as_u64().expect("port") as u16;
        s.private_key_file = Some(key.clone());
        s.known_hosts_file = kh.clone();
        s.agent_socket = None;
        (h[0].as_str().expect("name").to_string(), s)
    });
    let pool = HostPool::new(hosts, spec["forks"].as_u64().unwrap_or(16) as usize);
    let obs = pool
        .observe_all(&ObserveSpec {
            layout: K3sLayout::default(),
            keepalived_manifest: None,
            raw_files: false,
        })
        .await;
    let ok = obs
        .values()
        .filter(|o| matches!(o, HostObservation::Reachable(_)))
        .count();
    let bad: Vec<String> = obs
        .iter()
        .filter_map(|(n, o)| match o {
            HostObservation::Reachable(_) => None,
            other => Some(format!("{n}: {other:?}")),
        })
        .take(3)
        .collect();
    println!(
        "{}",
        json!({"wall_s": t.elapsed().as_secs_f64(), "reachable": ok, "failed": obs.len() - ok, "errors": bad})
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("observe") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio");
        return rt.block_on(observe(Path::new(&args[2])));
    }
    let sizes: Vec<usize> = arg("--hosts", "100")
        .split(',')
        .map(|v| v.trim().parse().expect("--hosts: numbers, comma-separated"))
        .collect();
    for (i, n) in sizes.iter().enumerate() {
        bench_size(*n, i == 0 && !flag("--no-ansible"));
    }
}

fn bench_size(n: usize, with_ansible: bool) {
    let rounds: usize = arg("--rounds", "3").parse().expect("--rounds");
    let arounds: usize = arg("--ansible-rounds", "2")
        .parse()
        .expect("--ansible-rounds");
    let forks: usize = arg("--forks", "16").parse().expect("--forks");
    let exe = std::env::current_exe().expect("exe");
    let dir = tempfile::Builder::new()
        .prefix("k3splan-bench-fanout-")
        .tempdir()
        .expect("tempdir");
    println!(
        "bench-fanout: {} · {n} hosts · parallelism {forks} · load average {}",
        today(),
        loadavg()
    );
    let t = Instant::now();
    let names: Vec<String> = (1..=n).map(|i| format!("host-{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let fleet = k3splan_testkit_sshd::SshdFleet::start(&refs).expect("sshd fleet");
    println!(
        "fleet: {n} sshd started in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let key = fleet.client.private_key();
    // A fresh known_hosts from each host's key: the fleet's shared file is appended to by
    // parallel start threads and was seen with interleaved (corrupt) lines at 100 hosts.
    let kh = dir.path().join("known_hosts");
    let lines: Vec<String> = fleet
        .hosts
        .iter()
        .map(|h| {
            h.known_hosts_line()
                .expect("host key")
                .trim_end()
                .to_string()
        })
        .collect();
    std::fs::write(&kh, lines.join("\n") + "\n").expect("known_hosts");
    let hosts: Vec<Value> = fleet
        .hosts
        .iter()
        .map(|h| json!([h.hostname(), h.addr().ip().to_string(), h.addr().port()]))
        .collect();
    std::fs::write(
        dir.path().join("hosts.json"),
        json!({"key": key, "known_hosts": kh, "hosts": hosts, "forks": forks}).to_string(),
    )
    .expect("hosts.json");
    let mut inv = String::from("[lab]\n");
    for h in &fleet.hosts {
        inv += &format!(
            "{} ansible_host={} ansible_port={}\n",
            h.hostname(),
            h.addr().ip(),
            h.addr().port()
        );
    }
    inv += &format!(
        "\n[lab:vars]\nansible_user=root\nansible_ssh_private_key_file={}\n\
         ansible_ssh_common_args='-o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes'\n\
         ansible_python_interpreter=/usr/bin/python3\n",
        key.display(),
        kh.display()
    );
    let inventory = dir.path().join("inventory.ini");
    std::fs::write(&inventory, inv).expect("inventory");

    let run_observe = || {
        let m =
            run_measured(Command::new(&exe).args(["observe", &dir.path().display().to_string()]));
        let v: Value = serde_json::from_str(m.stdout.trim())
            .unwrap_or_else(|_| panic!("observe: {} {}", m.stdout, m.stderr));
        assert_eq!(v["reachable"], n, "observe: {v}");
        m
    };
    let _ = run_observe(); // warm-up
    let mut ours = Vec::new();
    for _ in 0..rounds {
        ours.push(run_observe());
    }
    let (omin, omed) = min_median(
        &ours
            .iter()
            .map(|m| m.wall.as_secs_f64())
            .collect::<Vec<_>>(),
    );
    let orss = min_median(&ours.iter().map(|m| m.max_rss_mb).collect::<Vec<_>>()).1;
    println!(
        "k3splan host provider observe ({n} hosts, parallelism {forks}): min {omin:.2}s, median {omed:.2}s, peak RSS {orss:.0} MB; runs {:?}",
        ours.iter()
            .map(|m| format!("{:.2}", m.wall.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    let (smin, smed) = openssh_loop(&fleet, &key, &kh, forks, rounds);
    println!(
        "k3splan vs the OpenSSH loop ({n} hosts): {:.2}× (medians), {:.2}× (minima) of its time",
        omed / smed,
        omin / smin
    );
    if !with_ansible {
        return;
    }
    let Ok(ansible) = which("ansible") else {
        println!("ansible not found (pip install ansible-core): comparison skipped");
        return;
    };
    let run_ansible = || {
        let mut c = Command::new(&ansible);
        c.args(["all", "-i"])
            .arg(&inventory)
            .args(["-m", "setup", "-f", &forks.to_string(), "-o"])
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env("ANSIBLE_LOCAL_TEMP", dir.path().join("ansible-local"))
            .env("ANSIBLE_SSH_CONTROL_PATH_DIR", dir.path().join("cp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env_remove("SSH_AUTH_SOCK");
        let m = run_measured(&mut c);
        let ok = m.stdout.lines().filter(|l| l.contains("| SUCCESS")).count();
        if ok != n {
            let fails: Vec<&str> = m
                .stdout
                .lines()
                .filter(|l| !l.contains("| SUCCESS"))
                .take(3)
                .collect();
            panic!(
                "ansible: {ok}/{n} SUCCESS (exit {:?}): {fails:?} {}",
                m.code,
                m.stderr.chars().take(2000).collect::<String>()
            );
        }
        m
    };
    let mut theirs = Vec::new();
    for _ in 0..arounds {
        theirs.push(run_ansible());
    }
    let (amin, amed) = min_median(
        &theirs
            .iter()
            .map(|m| m.wall.as_secs_f64())
            .collect::<Vec<_>>(),
    );
    println!(
        "ansible -m setup ({n} hosts, -f {forks}): min {amin:.2}s, median {amed:.2}s; runs {:?}",
        theirs
            .iter()
            .map(|m| format!("{:.2}", m.wall.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    println!(
        "speed-up k3splan vs ansible: {:.1}× (medians), {:.1}× (minima); load average {}",
        amed / omed,
        amin / omin,
        loadavg()
    );
}

fn which(name: &str) -> Result<PathBuf, ()> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map_err(|_| ())?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !p.is_empty() {
        Ok(PathBuf::from(p))
    } else {
        Err(())
    }
}

/// The same observe command over OpenSSH, `FORKS` at a time (`xargs -P`): min and median wall
/// over `rounds` runs (after one warm-up), each checked to have read every host.
fn openssh_loop(
    fleet: &k3splan_testkit_sshd::SshdFleet,
    key: &Path,
    kh: &Path,
    forks: usize,
    rounds: usize,
) -> (f64, f64) {
    let marker = "K3SPLAN-BENCH-OBSERVE";
    let spec = ObserveSpec {
        layout: K3sLayout::default(),
        keepalived_manifest: None,
        raw_files: false,
    };
    let remote = observe_command(&spec, marker);
    let input: String = fleet
        .hosts
        .iter()
        .map(|h| format!("{} {}\n", h.addr().ip(), h.addr().port()))
        .collect();
    let ssh = format!(
        "exec ssh -n -i {} -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null \
         -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes \
         -o ControlMaster=no -p \"$1\" root@\"$0\" \"$K3SPLAN_BENCH_CMD\"",
        key.display(),
        kh.display()
    );
    let n = fleet.hosts.len();
    let run = || {
        let mut c = Command::new("xargs");
        c.args(["-P", &forks.to_string(), "-n", "2", "sh", "-c", &ssh])
            .env("K3SPLAN_BENCH_CMD", &remote)
            .env_remove("SSH_AUTH_SOCK");
        let m = k3splan_bench::run_measured_with_stdin(&mut c, input.as_bytes());
        let read = m.stdout.matches(&format!("{marker} end")).count();
        assert!(
            m.code == Some(0) && read == n,
            "OpenSSH loop: exit {:?}, {read}/{n} hosts read: {}",
            m.code,
            m.stderr.chars().take(2000).collect::<String>()
        );
        m
    };
    let _ = run(); // warm-up
    let runs: Vec<f64> = (0..rounds).map(|_| run().wall.as_secs_f64()).collect();
    let (min, med) = min_median(&runs);
    println!(
        "OpenSSH loop (xargs -P {forks} ssh, the same observe command, {n} hosts): min {min:.2}s, median {med:.2}s; runs {:?}",
        runs.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>()
    );
    (min, med)
}
