//! Figure: observe 50 simulated hosts (real sshd each) one by one vs in parallel.
//!
//! `cargo bench -p k3splan-host --bench observe_fanout` (as root). Prints the table and
//! rewrites the `## SSH observe fan-out` section of `docs/performance.md` (other sections of
//! that file are left alone). Set `K3SPLAN_BENCH_HOSTS` to change the host count and
//! `K3SPLAN_BENCH_NO_WRITE=1` to only print.

use std::time::{Duration, Instant};

use k3splan_host::{HostPool, K3sLayout, ObserveSpec, ServiceManager, SshSettings};
use k3splan_testkit_sshd::{HostOptions, SshdFleet};

const ROUNDS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() {
    if let Some(r) = k3splan_testkit_sshd::skip_reason() {
        eprintln!("SKIP: {r}");
        return;
    }
    let n: usize = std::env::var("K3SPLAN_BENCH_HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let t0 = Instant::now();
    let fleet = SshdFleet::start_with(
        (0..n)
            .map(|i| HostOptions::new(format!("bench-{i:02}")))
            .collect(),
    )
    .expect("start sshd fleet");
    let startup = t0.elapsed();
    for (i, h) in fleet.hosts.iter().enumerate() {
        h.write(
            "/etc/rancher/k3s/config.yaml",
            format!("server: https://10.0.0.1:6443\ntoken: t\nnode-name: bench-{i:02}\nnode-label: [a=b]\n"),
        )
        .unwrap();
        h.write(
            "/var/lib/rancher/k3s/server/db/etcd/name",
            format!("bench-{i:02}-0000000{i}"),
        )
        .unwrap();
    }
    let spec = ObserveSpec {
        layout: K3sLayout {
            services: ServiceManager::single_program("/bin/false"),
            ..K3sLayout::default()
        },
        keepalived_manifest: Some(
            "/var/lib/rancher/k3s/agent/pod-manifests/keepalived.yaml".into(),
        ),
        raw_files: false,
    };
    let hosts: Vec<(String, SshSettings)> = fleet
        .hosts
        .iter()
        .map(|h| {
            let mut s = SshSettings::new(h.addr().ip().to_string());
            s.port = h.addr().port();
            s.private_key_file = Some(fleet.client.private_key());
            s.known_hosts_file = fleet.client.known_hosts();
            s.agent_socket = None;
            s.connect_timeout = Duration::from_secs(60);
            (h.hostname().to_string(), s)
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // (label, parallelism, reuse connections?)
    let cases = [
        ("one by one, connect + observe", 1, false),
        ("parallel 16 (default), connect + observe", 16, false),
        (&*format!("parallel {n}, connect + observe"), n, false),
        ("one by one, reused connections", 1, true),
        ("parallel 16, reused connections", 16, true),
    ]
    .map(|(l, p, r)| (l.to_string(), p, r));
    let mut rows = Vec::new();
    for (label, par, reuse) in &cases {
        let mut times = Vec::new();
        let warm = HostPool::new(hosts.clone(), *par);
        if *reuse {
            let obs = rt.block_on(warm.observe_all(&spec));
            assert!(obs.values().all(|o| o.facts().is_some()), "warm-up failed");
        }
        for _ in 0..ROUNDS {
            let fresh;
            let pool = if *reuse {
                &warm
            } else {
                fresh = HostPool::new(hosts.clone(), *par);
                &fresh
            };
            let t = Instant::now();
            let obs = rt.block_on(pool.observe_all(&spec));
            times.push(t.elapsed());
            let bad: Vec<_> = obs.iter().filter(|(_, o)| o.facts().is_none()).collect();
            assert!(bad.is_empty(), "unreachable in {label}: {bad:?}");
            if !*reuse {
                rt.block_on(pool.close_all());
            }
        }
        let m = median(times.clone());
        eprintln!("{label}: median {} of {:?}", secs(m), times);
        rows.push((label.clone(), m, times));
    }
    let seq = rows[0].1.as_secs_f64();
    let seq_reuse = rows[3].1.as_secs_f64();
    let mut table = String::new();
    table.push_str("| case | median wall time | speed-up | runs |\n|---|---|---|---|\n");
    for (i, (label, m, times)) in rows.iter().enumerate() {
        let base = if i < 3 { seq } else { seq_reuse };
        let runs: Vec<String> = times
            .iter()
            .map(|t| format!("{:.2}", t.as_secs_f64()))
            .collect();
        table.push_str(&format!(
            "| {label} | {} | {:.1}× | {} |\n",
            secs(*m),
            base / m.as_secs_f64(),
            runs.join(", ")
        ));
    }
    let section = format!(
        "## SSH observe fan-out\n\n\
         Observe {n} simulated hosts (each a real OpenSSH sshd on its own 127.0.x.y address, in its \
         own mount/UTS namespace; key exchange curve25519, ed25519 keys) with `HostPool::observe_all`: \
         one exec of the observe script per host. \"connect + observe\" starts from a fresh pool \
         (TCP + SSH handshake + publickey auth + the script); \"reused\" keeps the connections. \
         Median of {ROUNDS} runs; speed-up against the one-by-one run of the same kind. Machine: 2 cores \
         shared with other builds, client and all sshd on the same cores, release build. \
         Fleet start-up ({n} sshd, keys generated): {}.\n\n{table}\n\
         Reading: the client is cheap; the cost per host is sshd's (a fork + re-exec per connection, \
         key exchange, a login shell running the script) on the same 2 cores, so parallelism pays \
         off as long as there is latency to hide; against real hosts over a network the work \
         happens on the remote machines, so the speed-up should approach the parallelism bound (not measured here: no real fleet). \
         Regenerate with `cargo bench -p k3splan-host --bench observe_fanout` (as root).\n",
        secs(startup)
    );
    println!("{section}");
    if std::env::var_os("K3SPLAN_BENCH_NO_WRITE").is_none() {
        write_section(&section);
    }
    drop(fleet);
}

/// Replaces (or appends) our section of docs/performance.md, leaving other sections intact.
fn write_section(section: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/performance.md");
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Performance\n".into());
    let heading = "## SSH observe fan-out";
    let new = match old.find(heading) {
        Some(start) => {
            let after = start + heading.len();
            let end = old[after..]
                .find("\n## ")
                .map(|i| after + i + 1)
                .unwrap_or(old.len());
            format!(
                "{}{}{}",
                &old[..start],
                section,
                if end < old.len() {
                    format!("\n{}", &old[end..])
                } else {
                    String::new()
                }
            )
        }
        None => format!(
            "{}\n{}",
            old.trim_end_matches('\n').to_string() + "\n",
            section
        ),
    };
    std::fs::write(&path, new).expect("write docs/performance.md");
    eprintln!("wrote {}", path.display());
}
