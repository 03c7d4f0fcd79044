//! Benchmark: wall time of `EtcdProvider::observe` on a real 3-member TLS cluster.
//!
//! Cases: all healthy; one member SIGKILLed (connection refused); one member frozen with
//! SIGSTOP (connects, never answers: the case that costs the timeout).
//! Run: `cargo bench -p k3splan-etcd --bench observe` (prints a Markdown table).
//! `K3SPLAN_BENCH_ITERS` sets iterations per case (default 30; 5 for the frozen case).

use std::time::{Duration, Instant};

use k3splan_etcd::{EtcdConfig, EtcdProvider, TlsFiles};
use k3splan_testkit_etcd::EtcdCluster;

fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (p(0.5), p(0.95), *v.last().unwrap())
}

async fn run(
    p: &EtcdProvider,
    iters: usize,
    check: impl Fn(&k3splan_etcd::Observation),
) -> Vec<Duration> {
    // One warm-up (TLS session setup paths, allocator).
    let _ = p.observe().await;
    let mut out = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let o = p.observe().await;
        out.push(t.elapsed());
        check(&o);
    }
    out
}

fn row(name: &str, timeout: Duration, v: Vec<Duration>) {
    let n = v.len();
    let (p50, p95, max) = stats(v);
    println!(
        "| {name} | {timeout:?} | {n} | {:.1} ms | {:.1} ms | {:.1} ms |",
        p50.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let iters: usize = std::env::var("K3SPLAN_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut c = EtcdCluster::start(3).expect("etcd cluster");
    let tls = c.client_tls();
    let timeout = Duration::from_secs(5);
    let p = EtcdProvider::new(
        EtcdConfig::new(c.client_urls())
            .with_tls(TlsFiles {
                ca_file: tls.ca_file.clone(),
                cert_file: tls.cert_file.clone(),
                key_file: tls.key_file.clone(),
            })
            .with_timeout(timeout),
    )
    .unwrap();
    println!("| case | timeout | runs | p50 | p95 | max |");
    println!("|---|---|---|---|---|---|");
    rt.block_on(async {
        // Wait for a leader.
        for _ in 0..200 {
            if p.observe().await.health.quorum {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let v = run(&p, iters, |o| {
            assert!(o.health.quorum && o.health.healthy_voters == 3)
        })
        .await;
        row("3/3 healthy", timeout, v);
    });
    c.freeze(2);
    rt.block_on(async {
        let v = run(&p, (iters / 6).max(3), |o| {
            assert!(!o.endpoints[2].reachable());
            assert_eq!(o.members.len(), 3);
        })
        .await;
        row("1 of 3 frozen (SIGSTOP)", timeout, v);
    });
    c.thaw(2);
    c.kill(2);
    rt.block_on(async {
        for _ in 0..200 {
            if p.observe().await.health.quorum {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let v = run(&p, iters, |o| {
            assert!(!o.endpoints[2].reachable());
            assert_eq!(o.members.len(), 3);
        })
        .await;
        row("1 of 3 killed (refused)", timeout, v);
    });
}
