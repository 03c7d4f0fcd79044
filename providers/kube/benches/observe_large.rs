//! Figure: observing 1,000 nodes / 30,000 pods / 5,000 PVCs (+5,000 PVs) served by the
//! in-memory API server over HTTPS on loopback, next to the bare list calls (the floor).
//!
//! `cargo bench -p k3splan-kube --bench observe_large` (release). Sizes can be changed with
//! `K3SPLAN_BENCH_SIZE=nodes,pods,pvcs`. The server runs in a child process and every client
//! mode in its own child process, so that each peak RSS (VmHWM) is the client's alone.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use k3splan_kube::{AddonRef, KubeProvider, KubeSettings, ObserveRequest, PodScope};

const MODES: &[(&str, &str)] = &[
    (
        "bare",
        "4 raw list calls at once (rv=0, gzip), bodies read, nothing parsed: the floor",
    ),
    (
        "typed",
        "4 lists into k8s-openapi objects (kube Api::list, rv=0, gzip)",
    ),
    (
        "observe",
        "KubeProvider::observe, all pods, one page per kind",
    ),
    (
        "observe-paged",
        "KubeProvider::observe, all pods, limit=500",
    ),
    (
        "observe-nodes",
        "KubeProvider::observe, pods of 3 nodes (field selector) + add-ons",
    ),
];

fn hwm_mb() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn size() -> (usize, usize, usize) {
    let s = std::env::var("K3SPLAN_BENCH_SIZE").unwrap_or_else(|_| "1000,30000,5000".into());
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse().expect("size"))
        .collect();
    (v[0], v[1], v[2])
}

async fn server_role() {
    let (n, p, c) = size();
    let t = Instant::now();
    let server = k3splan_testkit_kubeapi::KubeApiServer::start(Default::default())
        .await
        .expect("server");
    server
        .load_values(k3splan_testkit_kubeapi::synthetic::cluster(n, p, c))
        .expect("load");
    let dir = std::env::var("K3SPLAN_BENCH_DIR").expect("dir");
    let kc = std::path::Path::new(&dir).join("kubeconfig");
    server.write_kubeconfig(&kc).expect("kubeconfig");
    println!("ready {:.1}s", t.elapsed().as_secs_f64());
    std::io::stdout().flush().ok();
    // Serve until the parent closes stdin.
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await;
}

async fn client_role(mode: &str) {
    let dir = std::env::var("K3SPLAN_BENCH_DIR").expect("dir");
    let kubeconfig = std::path::Path::new(&dir).join("kubeconfig");
    let settings = KubeSettings {
        kubeconfig: Some(kubeconfig.clone()),
        page_size: if mode == "observe-paged" {
            Some(500)
        } else {
            None
        },
        ..Default::default()
    };
    let kube = KubeProvider::connect(settings).await.expect("connect");
    let t = Instant::now();
    let summary = match mode {
        "bare" | "typed" => {
            let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
            let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .unwrap();
            let client = kube::Client::try_from(cfg).unwrap();
            if mode == "bare" {
                let get = |p: &'static str| {
                    let client = client.clone();
                    async move {
                        let req = http::Request::get(format!("{p}?resourceVersion=0"))
                            .body(Vec::new())
                            .unwrap();
                        client.request_text(req).await.unwrap().len()
                    }
                };
                let (a, b, c, d) = tokio::join!(
                    get("/api/v1/nodes"),
                    get("/api/v1/pods"),
                    get("/api/v1/persistentvolumeclaims"),
                    get("/api/v1/persistentvolumes")
                );
                format!(
                    "{:.0} MB of JSON (pods {:.0} MB, {:.1} KB/pod)",
                    (a + b + c + d) as f64 / 1e6,
                    b as f64 / 1e6,
                    b as f64 / size().1.max(1) as f64 / 1e3
                )
            } else {
                use k8s_openapi::api::core::v1::{
                    Node, PersistentVolume, PersistentVolumeClaim, Pod,
                };
                use kube::api::{Api, ListParams};
                let lp = ListParams {
                    resource_version: Some("0".into()),
                    ..Default::default()
                };
                let (na, pa) = (
                    Api::<Node>::all(client.clone()),
                    Api::<Pod>::all(client.clone()),
                );
                let (ca, va) = (
                    Api::<PersistentVolumeClaim>::all(client.clone()),
                    Api::<PersistentVolume>::all(client.clone()),
                );
                let (a, b, c, d) =
                    tokio::join!(na.list(&lp), pa.list(&lp), ca.list(&lp), va.list(&lp));
                format!(
                    "{} objects",
                    a.unwrap().items.len()
                        + b.unwrap().items.len()
                        + c.unwrap().items.len()
                        + d.unwrap().items.len()
                )
            }
        }
        _ => {
            let req = ObserveRequest {
                addons: AddonRef::k3s_defaults(),
                nodes_of_interest: vec!["node-0000".into(), "node-0001".into(), "node-0002".into()],
                pods: if mode == "observe-nodes" {
                    PodScope::NodesOfInterest
                } else {
                    PodScope::All
                },
                ..Default::default()
            };
            let obs = kube.observe(&req).await.expect("observe");
            format!(
                "{} nodes, {} pods, {} PVCs, {} PVs",
                obs.nodes.len(),
                obs.pods.len(),
                obs.pvcs.len(),
                obs.pvs.len()
            )
        }
    };
    println!(
        "{{\"wall_s\": {:.2}, \"hwm_mb\": {:.0}, \"summary\": \"{summary}\"}}",
        t.elapsed().as_secs_f64(),
        hwm_mb()
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match std::env::var("K3SPLAN_BENCH_ROLE").as_deref() {
        Ok("server") => return rt.block_on(server_role()),
        Ok(mode) if mode.starts_with("client:") => return rt.block_on(client_role(&mode[7..])),
        _ => {}
    }
    let (n, p, c) = size();
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut server = Command::new(&exe)
        .env("K3SPLAN_BENCH_ROLE", "server")
        .env("K3SPLAN_BENCH_DIR", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    println!(
        "server: {n} nodes, {p} pods, {c} PVCs + {c} PVs loaded ({})",
        line.trim()
    );
    println!("| mode | what | wall (s) | client peak RSS (MB) | result |\n|---|---|---|---|---|");
    let rounds: usize = std::env::var("K3SPLAN_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    for (mode, what) in MODES {
        for _ in 0..rounds {
            let out = Command::new(&exe)
                .env("K3SPLAN_BENCH_ROLE", format!("client:{mode}"))
                .env("K3SPLAN_BENCH_DIR", dir.path())
                .output()
                .expect("client");
            let text = String::from_utf8_lossy(&out.stdout);
            let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| {
                panic!(
                    "client {mode}: {text} {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
            println!(
                "| {mode} | {what} | {} | {} | {} |",
                v["wall_s"],
                v["hwm_mb"],
                v["summary"].as_str().unwrap_or("")
            );
        }
    }
    drop(server.stdin.take());
    let _ = server.wait();
}
