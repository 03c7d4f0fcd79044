//! `k3splan plan` at scale next to the read floor (issue 9, figures 1 and 2).
//!
//! ```text
//! bench-scale [--nodes 100,1000,5000] [--rounds 3] [--servers 5] [--pods-per-node 30]
//!             [--pvcs-per-node 5] [--parallel-floor-ssh 16]
//! bench-scale --kubeconfig FILE [--context NAME] [--rounds 3] [--page-size 500]
//! ```
//! With `--kubeconfig`: only plan's Kubernetes reads (`KubeProvider::observe` with all pods,
//! as `plan` reads them for a whole-cluster observation) against that cluster, unpaged
//! (`resourceVersion=0`, the watch cache) and paged (`limit`/`continue`, consistent reads),
//! each round in its own process: wall time, peak RSS, objects read. Read-only: nothing is
//! written to the cluster. Run it against a real API server to take the figures of
//! docs/performance.md there.
//!
//! For each size: a synthetic cluster (`N` nodes, `30·N` pods of ~8 KB JSON, `5·N` local-path
//! PVCs and their PVs) served over HTTPS by the in-memory API in a child process; a real
//! 3-member etcd 3.4 with TLS; one real sshd per server (`node-0000` … `node-0004`) with a
//! `config.yaml`, a `k3s` binary that reports its version, and an active service. The topology
//! declares every node: the servers at their sshd addresses, the `N − 5` agents at
//! `127.88.x.y` addresses where no sshd listens (their SSH connect is refused at once; see
//! docs/performance.md for why). Each round runs, as separate processes, the read floor
//! (`bench-scale floor`) and `k3splan plan`, alternately; wall time from spawn to reap and
//! peak RSS from `wait4`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use futures::{AsyncReadExt, StreamExt};
use k3splan_bench::{
    Measured, arg, exponent, hcl_str, k3splan_bin, loadavg, min_median, run_measured, today,
};
use k3splan_lab::{Lab, LabSpec, TopologyNode};
use serde_json::{Value, json};

/// Address of agent `n` (no sshd listens there: connect is refused at once).
fn agent_addr(n: usize) -> String {
    format!("127.88.{}.{}", n / 250, n % 250 + 1)
}

fn node_name(n: usize) -> String {
    format!("node-{n:04}")
}

/// The synthetic cluster with the servers at their sshd addresses, server role labels, and
/// agents at their `127.88.x.y` addresses; built one object at a time as it is consumed.
fn objects(
    nodes: usize,
    pods: usize,
    pvcs: usize,
    servers: &[String],
) -> impl Iterator<Item = Value> + '_ {
    // Nodes 0..servers carry the lab hosts' names (server-1, …, spare-1, …) everywhere.
    let renames: Vec<(String, String)> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (name, _) = s.split_once('=').expect("name=addr");
            (format!("\"{}\"", node_name(i)), format!("\"{name}\""))
        })
        .collect();
    let statefulsets = STORAGE_NAMESPACES.iter().map(|ns| statefulset(ns));
    k3splan_testkit_kubeapi::synthetic::objects(nodes, pods, pvcs)
        .chain(statefulsets)
        .map(move |mut o| {
            if o["kind"] == "Pod" {
                own_by_statefulset(&mut o, pvcs);
            }
            let mut text = o.to_string();
            if renames.iter().any(|(a, _)| text.contains(a.as_str())) {
                for (a, b) in &renames {
                    text = text.replace(a.as_str(), b);
                }
                o = serde_json::from_str(&text).expect("json");
            }
            if o["kind"] == "Node" {
                node_addresses(&mut o, servers);
            }
            o
        })
}

/// The label that selects a storage block's StatefulSet pods (its `spec.selector`).
const STS_LABEL: &str = "bench.k3splan.io/statefulset";

/// The StatefulSet `app-0` of a storage namespace: 3 replicas, each with a local-path PVC.
fn statefulset(ns: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "app-0", "namespace": ns, "uid": format!("sts-{ns}")},
        "spec": {"replicas": 3, "serviceName": "app-0",
            "selector": {"matchLabels": {STS_LABEL: "app-0"}},
            "template": {"metadata": {"labels": {STS_LABEL: "app-0"}}, "spec": {"containers": [{"name": "app", "image": "app"}]}}},
        "status": {"replicas": 3, "readyReplicas": 3}})
}

/// Pods 0–4, 100–104 and 200–204 of the synthetic cluster (three in each storage namespace,
/// each mounting its own PVC) become the replicas of their namespace's StatefulSet `app-0`:
/// its label, its owner reference. The other pods of those namespaces belong to other
/// workloads, as in a shared namespace.
fn own_by_statefulset(o: &mut Value, pvcs: usize) {
    let name = o["metadata"]["name"].as_str().unwrap_or_default();
    let Some(i) = name.get(4..9).and_then(|d| d.parse::<usize>().ok()) else {
        return;
    };
    if i % 100 >= STORAGE_NAMESPACES.len() || i >= 300 || i >= pvcs {
        return;
    }
    o["metadata"]["labels"][STS_LABEL] = json!("app-0");
    let ns = o["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    o["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet",
        "name": "app-0", "uid": format!("sts-{ns}"), "controller": true, "blockOwnerDeletion": true}]);
}

/// Server role labels and the address of a node: the server's sshd address, or the agent's
/// `127.88.x.y`.
fn node_addresses(o: &mut Value, servers: &[String]) {
    {
        let name = o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let labels = o["metadata"]["labels"].as_object_mut().expect("labels");
        labels.remove("node-role.kubernetes.io/control-plane");
        let server = servers.iter().find_map(|s| {
            let (n, a) = s.split_once('=')?;
            (n == name).then_some(a)
        });
        let addr = if let Some(a) = server {
            let roles: &[&str] = if name.starts_with("server-") {
                &["control-plane", "etcd", "master"]
            } else {
                &["control-plane", "master"]
            };
            for r in roles {
                labels.insert(format!("node-role.kubernetes.io/{r}"), json!("true"));
            }
            a.to_string()
        } else {
            let n: usize = name.trim_start_matches("node-").parse().unwrap_or(0);
            agent_addr(n)
        };
        o["status"]["addresses"][0]["address"] = json!(addr);
    }
}

/// Child role: serve the API until stdin closes.
async fn serve_kube(dir: &Path, nodes: usize, pods: usize, pvcs: usize, servers: Vec<String>) {
    let t = Instant::now();
    // Compact store: at 5,000 nodes (150,000 pods of ~8 KB) the objects as parsed JSON
    // would take ~16 GB; as bytes plus a small head they take ~2.4 GB. Same responses.
    let server =
        k3splan_testkit_kubeapi::KubeApiServer::start(k3splan_testkit_kubeapi::ServerOptions {
            compact: true,
            ..Default::default()
        })
        .await
        .expect("start the API server");
    server
        .load_values(objects(nodes, pods, pvcs, &servers))
        .expect("load the synthetic cluster");
    server
        .write_kubeconfig(&dir.join("kubeconfig"))
        .expect("write kubeconfig");
    println!("ready {:.1}s", t.elapsed().as_secs_f64());
    std::io::stdout().flush().ok();
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await;
}

/// Child role: the read floor. The same reads k3splan's observe makes, bare and in
/// parallel: the same 19 API requests (nodes, PVCs, PVs, ReplicaSets, each storage block's
/// StatefulSet and then its pods by its label selector, the HelmCharts and HelmChartConfigs of kube-system — `resourceVersion=0`, gzip,
/// bodies read and dropped, nothing parsed — and a GET of each default add-on Deployment), a
/// member list from every etcd endpoint (TLS), and one SSH round per declared host running
/// the command `plan` sends (16 at a time, k3splan's default).
async fn floor(dir: &Path) {
    let spec: Value =
        serde_json::from_slice(&std::fs::read(dir.join("floor.json")).expect("floor.json"))
            .expect("floor.json");
    let t = Instant::now();
    let kube_fut = async {
        let kc = kube::config::Kubeconfig::read_from(dir.join("kubeconfig")).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("kube config");
        let client = kube::Client::try_from(cfg).expect("kube client");
        let get = |p: String| {
            let client = client.clone();
            async move {
                let sep = if p.contains('?') { '&' } else { '?' };
                let req = http::Request::get(format!("{p}{sep}resourceVersion=0"))
                    .body(Vec::new())
                    .expect("request");
                let mut body = Box::pin(client.request_stream(req).await.expect("list"));
                let mut buf = vec![0u8; 1 << 16];
                let mut n = 0usize;
                loop {
                    let k = body.read(&mut buf).await.expect("read body");
                    if k == 0 {
                        break n;
                    }
                    n += k;
                }
            }
        };
        // As `plan`: each storage block's workload read, then its pods listed by its label
        // selector.
        let pods = futures::future::join_all(STORAGE_NAMESPACES.iter().map(|ns| {
            let client = client.clone();
            let get = &get;
            async move {
                let req =
                    http::Request::get(format!("/apis/apps/v1/namespaces/{ns}/statefulsets/app-0"))
                        .body(Vec::new())
                        .expect("request");
                let sts = client.request_text(req).await.expect("the StatefulSet");
                sts.len()
                    + get(format!(
                        "/api/v1/namespaces/{ns}/pods?labelSelector={}%3Dapp-0",
                        STS_LABEL.replace('/', "%2F")
                    ))
                    .await
            }
        }));
        // The add-on Deployments are fetched one by one (404 in this cluster: counted as 0).
        let addon = |name: &'static str| {
            let client = client.clone();
            async move {
                let req = http::Request::get(format!(
                    "/apis/apps/v1/namespaces/kube-system/deployments/{name}"
                ))
                .body(Vec::new())
                .expect("request");
                client.request_text(req).await.map(|t| t.len()).unwrap_or(0)
            }
        };
        let (a, b, c, d, e, f, g, h) = tokio::join!(
            get("/api/v1/nodes".into()),
            pods,
            get("/api/v1/persistentvolumeclaims".into()),
            get("/api/v1/persistentvolumes".into()),
            get("/apis/apps/v1/replicasets".into()),
            get("/apis/helm.cattle.io/v1/namespaces/kube-system/helmcharts".into()),
            get("/apis/helm.cattle.io/v1/namespaces/kube-system/helmchartconfigs".into()),
            futures::future::join_all(
                ["coredns", "metrics-server", "local-path-provisioner"].map(addon)
            ),
        );
        a + b.iter().sum::<usize>() + c + d + e + f + g + h.iter().sum::<usize>()
    };
    let etcd_fut = async {
        let tls = &spec["etcd_tls"];
        let rd = |k: &str| std::fs::read(tls[k].as_str().expect("tls file")).expect("read tls");
        let opts = etcd_client::ConnectOptions::new().with_tls(
            etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(rd("ca")))
                .identity(etcd_client::Identity::from_pem(rd("cert"), rd("key"))),
        );
        let eps: Vec<String> = spec["etcd_endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .map(|e| e.as_str().expect("endpoint").to_string())
            .collect();
        let lists = futures::future::join_all(eps.into_iter().map(|ep| {
            let opts = opts.clone();
            async move {
                let mut c = etcd_client::Client::connect([ep], Some(opts))
                    .await
                    .expect("etcd connect");
                c.member_list().await.expect("member list").members().len()
            }
        }))
        .await;
        lists.iter().sum::<usize>()
    };
    let ssh_fut = async {
        let key = PathBuf::from(spec["ssh_key"].as_str().expect("key"));
        let kh = PathBuf::from(spec["known_hosts"].as_str().expect("known_hosts"));
        let par = spec["ssh_parallelism"].as_u64().unwrap_or(16) as usize;
        let hosts: Vec<(String, String, u16)> = spec["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_string(),
                    h[1].as_str().unwrap().to_string(),
                    h[2].as_u64().unwrap() as u16,
                )
            })
            .collect();
        // The same remote command `k3splan plan` runs on each host (its observe script),
        // output read and dropped; or `true` with `--floor-ssh-true` (connect + auth only).
        let cmd = spec["ssh_command"].as_str().expect("ssh_command");
        let results: Vec<bool> = futures::stream::iter(hosts)
            .map(|(name, addr, port)| {
                let (key, kh) = (key.clone(), kh.clone());
                async move {
                    let mut s = k3splan_host::SshSettings::new(addr);
                    s.port = port;
                    s.private_key_file = Some(key);
                    s.known_hosts_file = kh;
                    s.agent_socket = None;
                    match k3splan_host::HostSession::connect(&name, &s).await {
                        Ok(sess) => sess.exec("observe", cmd, b"").await.is_ok(),
                        Err(_) => false,
                    }
                }
            })
            .buffer_unordered(par)
            .collect()
            .await;
        (
            results.iter().filter(|r| **r).count(),
            results.iter().filter(|r| !**r).count(),
        )
    };
    let (bytes, members, (ok, refused)) = tokio::join!(kube_fut, etcd_fut, ssh_fut);
    println!(
        "{}",
        json!({"wall_s": t.elapsed().as_secs_f64(), "kube_bytes": bytes, "etcd_members_listed": members,
               "ssh_ok": ok, "ssh_failed": refused})
    );
}

/// Child role: the pods list decoded into the slim struct, `buffered` (as k3splan-kube does
/// today through `kube::Client::request`) or `streamed` (the proposed fix).
async fn decode_pods(dir: &Path, how: &str) {
    let kc = kube::config::Kubeconfig::read_from(dir.join("kubeconfig")).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    let client = kube::Client::try_from(cfg).expect("kube client");
    let t = Instant::now();
    let path = "/api/v1/pods?resourceVersion=0";
    let pods = match how {
        "buffered" => k3splan_bench::slim::list_buffered(&client, path).await,
        _ => k3splan_bench::slim::list_streamed(&client, path).await,
    };
    let claims: usize = pods
        .iter()
        .map(|p| {
            p.spec
                .volumes
                .iter()
                .filter(|v| v.persistent_volume_claim.is_some())
                .count()
        })
        .sum();
    println!(
        "{}",
        json!({"wall_s": t.elapsed().as_secs_f64(), "pods": pods.len(), "claims": claims})
    );
}

/// Child role: plan's Kubernetes reads against a kubeconfig (`page_size` 0 = unpaged).
async fn observe_kube(kubeconfig: &Path, context: Option<String>, page_size: Option<u32>) {
    let kube = k3splan_kube::KubeProvider::connect(k3splan_kube::KubeSettings {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        context,
        page_size: page_size.filter(|n| *n > 0),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    let obs = kube
        .observe(&k3splan_kube::ObserveRequest {
            addons: k3splan_kube::AddonRef::k3s_defaults(),
            pods: k3splan_kube::PodScope::All,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{}",
        json!({"wall_s": t.elapsed().as_secs_f64(), "endpoint": kube.endpoint(),
               "nodes": obs.nodes.len(), "pods": obs.pods.len(), "pvcs": obs.pvcs.len(), "pvs": obs.pvs.len()})
    );
}

/// `bench-scale --kubeconfig FILE`: plan's Kubernetes reads against any cluster, unpaged and
/// paged, `--rounds` times each, each in its own process (peak RSS from `wait4`).
fn against_kubeconfig() {
    let kubeconfig = arg("--kubeconfig", "");
    let context = arg("--context", "");
    let rounds: usize = arg("--rounds", "3").parse().expect("--rounds");
    let page: u32 = arg("--page-size", "500").parse().expect("--page-size");
    let exe = std::env::current_exe().expect("exe");
    println!(
        "bench-scale --kubeconfig {kubeconfig}: {} · load average {}",
        today(),
        loadavg()
    );
    println!(
        "| client | wall min / median (s) | peak RSS min / median (MB) | nodes | pods | PVCs |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, size) in [
        (
            "`observe`, all pods, unpaged (`resourceVersion=0`)".to_string(),
            0,
        ),
        (
            format!("`observe`, all pods, `page_size = {page}` (consistent reads)"),
            page,
        ),
    ] {
        let (mut walls, mut rss, mut last) = (Vec::new(), Vec::new(), Value::Null);
        for _ in 0..rounds {
            let m = run_measured(
                Command::new(&exe)
                    .arg("observe-kube")
                    .arg(&kubeconfig)
                    .arg(&context)
                    .arg(size.to_string()),
            );
            if m.code != Some(0) {
                eprintln!("bench-scale: observe failed ({:?}):\n{}", m.code, m.stderr);
                std::process::exit(1);
            }
            last = serde_json::from_str(m.stdout.trim()).expect("child output");
            walls.push(m.wall.as_secs_f64());
            rss.push(m.max_rss_mb);
        }
        let (w0, w1) = min_median(&walls);
        let (r0, r1) = min_median(&rss);
        println!(
            "| {label} | {w0:.2} / {w1:.2} | {r0:.0} / {r1:.0} | {} | {} | {} |",
            last["nodes"], last["pods"], last["pvcs"]
        );
    }
}

struct Env {
    lab: Lab,
    /// (node name, address, ssh port, roles) of the hosts with sshd.
    servers: Vec<(String, String, u16, &'static str)>,
}

/// The shared part: the lab's hosts (real sshd, the k3s stand-in, a real etcd member with
/// TLS on each of the first 3 servers; the others control-plane-only servers, k3s
/// `disable-etcd`, joined through server-1), as an operator's cluster would be.
fn start_env(servers: usize) -> Env {
    let etcd = servers.min(3);
    let lab = k3splan_bench::start_lab(LabSpec {
        servers: etcd,
        spare_hosts: servers - etcd,
        ..LabSpec::default()
    });
    let first = lab.host("server-1").expect("server-1").server_url();
    for i in 1..=servers - etcd {
        let cp = format!("spare-{i}");
        let addr = lab.host(&cp).expect("spare").address();
        lab.write_file(
            &cp,
            "/etc/rancher/k3s/config.yaml",
            &format!(
                "server: {first}\ntoken: {}\nnode-name: {cp}\nnode-ip: {addr}\ndisable-etcd: true\n",
                lab.token()
            ),
        )
        .expect("config.yaml");
        let (status, log) = lab
            .ssh(
                &cp,
                &[
                    ("INSTALL_K3S_VERSION", k3splan_lab::K3S_VERSION),
                    ("INSTALL_K3S_EXEC", "server"),
                    ("K3S_TOKEN", lab.token()),
                    ("K3S_URL", &first),
                ],
                &lab.install_command(),
            )
            .expect("install control-plane server");
        assert_eq!(status, 0, "install on {cp}: {log}");
    }
    let servers = lab
        .hosts()
        .iter()
        .map(|h| {
            let roles = if h.name().starts_with("server-") {
                "[\"server\", \"etcd\"]"
            } else {
                "[\"control-plane\"]"
            };
            (
                h.name().to_string(),
                h.address().to_string(),
                h.ssh_port(),
                roles,
            )
        })
        .collect();
    Env { lab, servers }
}

/// Namespaces of the topology's `storage` blocks (5 of the synthetic cluster's 100).
const STORAGE_NAMESPACES: [&str; 5] = ["ns-000", "ns-001", "ns-002", "ns-003", "ns-004"];

fn topology(env: &Env, nodes: usize, dir: &Path) -> String {
    // The lab's own rendering for the cluster block (stand-in host block, etcd TLS, SSH key
    // and known_hosts), with this benchmark's kubeconfig.
    let lab_nodes: Vec<TopologyNode> = env
        .servers
        .iter()
        .map(|(n, _, _, r)| TopologyNode {
            name: n.clone(),
            roles: if r.contains("etcd") {
                vec!["server".into(), "etcd".into()]
            } else {
                vec!["control-plane".into()]
            },
            primary: false,
        })
        .collect();
    let lab_kc = hcl_str(&env.lab.files().kubeconfig.display().to_string());
    // Five stateful workloads under `storage` blocks (a 3-replica StatefulSet `app-0` in
    // each of ns-000..ns-004, namespaces it shares with 1.5 % of all pods): `plan` reads
    // each StatefulSet and its pods by its selector, and the floor makes the same requests.
    let storage: String = STORAGE_NAMESPACES
        .iter()
        .map(|ns| {
            format!(
                "storage \"{ns}/app-0\" {{\n  kind         = \"StatefulSet\"\n  on_node_loss = \"keep\"\n}}\n\n"
            )
        })
        .collect();
    let mut s = env
        .lab
        .render_topology(&lab_nodes, &storage)
        .expect("render topology")
        .replace(
            &lab_kc,
            &hcl_str(&dir.join("kubeconfig").display().to_string()),
        );
    for n in env.servers.len()..nodes {
        s += &format!(
            "\nnode {} {{\n  address = {}\n  roles   = [\"agent\"]\n}}\n",
            hcl_str(&node_name(n)),
            hcl_str(&agent_addr(n))
        );
    }
    s
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio")
    };
    match args.get(1).map(String::as_str) {
        Some("serve-kube") => {
            let n = |i: usize| args[i].parse::<usize>().expect("size");
            let servers = args[6].split(',').map(String::from).collect();
            return rt().block_on(serve_kube(Path::new(&args[2]), n(3), n(4), n(5), servers));
        }
        Some("floor") => return rt().block_on(floor(Path::new(&args[2]))),
        Some("decode-pods") => return rt().block_on(decode_pods(Path::new(&args[2]), &args[3])),
        Some("observe-kube") => {
            return rt().block_on(observe_kube(
                Path::new(&args[2]),
                Some(&args[3]).filter(|c| !c.is_empty()).cloned(),
                args[4].parse().ok(),
            ));
        }
        _ => {}
    }
    if args.iter().any(|a| a == "--kubeconfig") {
        return against_kubeconfig();
    }
    let sizes: Vec<usize> = arg("--nodes", "1000")
        .split(',')
        .map(|x| x.trim().parse().expect("--nodes"))
        .collect();
    let rounds: usize = arg("--rounds", "3").parse().expect("--rounds");
    let servers: usize = arg("--servers", "5").parse().expect("--servers");
    let ppn: usize = arg("--pods-per-node", "30")
        .parse()
        .expect("--pods-per-node");
    let cpn: usize = arg("--pvcs-per-node", "5")
        .parse()
        .expect("--pvcs-per-node");
    let k3splan = k3splan_bin();
    let dir = tempfile::Builder::new()
        .prefix("k3splan-bench-scale-")
        .tempdir()
        .expect("tempdir");
    let exe = std::env::current_exe().expect("exe");
    println!(
        "bench-scale: {} · k3splan {} · load average {}",
        today(),
        k3splan.display(),
        loadavg()
    );
    let t = Instant::now();
    let env = start_env(servers);
    println!(
        "environment (lab): {servers} servers with sshd and the k3s stand-in, 3 of them etcd members (TLS), in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let mut summary: Vec<(usize, usize, f64, f64, f64, f64)> = Vec::new();
    for &nodes in &sizes {
        let (pods, pvcs) = (nodes * ppn, nodes * cpn);
        let sdir = dir.path().join(format!("n{nodes}"));
        std::fs::create_dir_all(&sdir).expect("mkdir");
        let addrs: Vec<String> = env
            .servers
            .iter()
            .map(|s| format!("{}={}", s.0, s.1))
            .collect();
        let mut server = Command::new(&exe)
            .args(["serve-kube", &sdir.display().to_string()])
            .args([nodes, pods, pvcs].map(|x| x.to_string()))
            .arg(addrs.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn API server");
        let mut line = String::new();
        BufReader::new(server.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("API server ready line");
        assert!(line.starts_with("ready"), "API server: {line}");
        let topo = sdir.join("main.hcl");
        let topo_text = topology(&env, nodes, &sdir);
        std::fs::write(&topo, &topo_text).expect("topology");
        // The floor's SSH round: the exact command `plan` sends to each host.
        let ssh_command = if k3splan_bench::flag("--floor-ssh-true") {
            "true".to_string()
        } else {
            let t = k3splan::config::load::load_str("main.hcl", &topo_text)
                .topology
                .expect("the benchmark's topology is valid");
            k3splan_host::observe_command(&k3splan::live::observe_spec_of(&t), "@@floor@@")
        };
        let mut hosts: Vec<Value> = env
            .servers
            .iter()
            .map(|(n, a, p, _)| json!([n, a, p]))
            .collect();
        hosts.extend((servers..nodes).map(|n| json!([node_name(n), agent_addr(n), 22])));
        let f = env.lab.files();
        let eps: Vec<String> = env
            .servers
            .iter()
            .filter(|s| s.3.contains("etcd"))
            .map(|s| format!("https://{}:2379", s.1))
            .collect();
        std::fs::write(
            sdir.join("floor.json"),
            json!({
                "etcd_endpoints": eps,
                "etcd_tls": {"ca": f.etcd_ca, "cert": f.etcd_cert, "key": f.etcd_key},
                "ssh_key": f.ssh_key, "known_hosts": f.known_hosts, "hosts": hosts,
                "ssh_command": ssh_command,
                "ssh_parallelism": arg("--parallel-floor-ssh", "16").parse::<u64>().unwrap_or(16),
            })
            .to_string(),
        )
        .expect("floor.json");
        println!(
            "\n## {nodes} nodes, {pods} pods, {pvcs} PVCs + {pvcs} PVs (API loaded in {}); load average {}",
            line.trim().trim_start_matches("ready "),
            loadavg()
        );
        if k3splan_bench::flag("--hold") {
            // For profiling: keep the environment up and print how to reach it.
            println!(
                "holding: K3S_TOKEN={} KUBECONFIG={} {} plan --no-color -c {} --state {}\nfloor: {} floor {}\n(press Enter to stop)",
                env.lab.token(),
                sdir.join("kubeconfig").display(),
                k3splan.display(),
                topo.display(),
                sdir.join("state.json").display(),
                exe.display(),
                sdir.display()
            );
            let mut l = String::new();
            let _ = std::io::stdin().read_line(&mut l);
        }
        let plan_cmd = || {
            let mut c = Command::new(&k3splan);
            c.args(["plan", "--no-color", "-c"])
                .arg(&topo)
                .arg("--state")
                .arg(sdir.join("state.json"))
                .env("K3S_TOKEN", env.lab.token())
                .env("KUBECONFIG", sdir.join("kubeconfig"))
                .env_remove("K3SPLAN_CONFIG")
                .env_remove("SSH_AUTH_SOCK");
            // The synthetic agents have no sshd (their connect is refused): accepted, as an
            // operator would, or the plan is incomplete and exits 1 (issue 13).
            for n in servers..nodes {
                c.arg("--allow-unreachable").arg(node_name(n));
            }
            c
        };
        let mut floor_runs: Vec<Measured> = Vec::new();
        let mut plan_runs: Vec<Measured> = Vec::new();
        // One warm-up of each (page cache, sshd key files), not counted.
        let _ = run_measured(Command::new(&exe).args(["floor", &sdir.display().to_string()]));
        let warm = run_measured(&mut plan_cmd());
        let first_line = warm
            .stdout
            .lines()
            .rev()
            .find(|l| l.starts_with("Plan:") || l.contains("No changes"))
            .unwrap_or("")
            .to_string();
        if warm.code.is_none_or(|c| c == 1 || c > 2) || first_line.is_empty() {
            panic!(
                "k3splan plan exited {:?}:\n{}\n{}",
                warm.code,
                warm.stdout.lines().take(60).collect::<Vec<_>>().join("\n"),
                warm.stderr
            );
        }
        std::fs::write(sdir.join("plan.txt"), &warm.stdout).ok();
        println!(
            "plan exit {:?}: {} ({} lines of output)",
            warm.code,
            first_line,
            warm.stdout.lines().count()
        );
        for _ in 0..rounds {
            let f = run_measured(Command::new(&exe).args(["floor", &sdir.display().to_string()]));
            assert_eq!(f.code, Some(0), "floor failed: {}", f.stderr);
            floor_runs.push(f);
            plan_runs.push(run_measured(&mut plan_cmd()));
        }
        drop(server.stdin.take());
        let _ = server.wait();
        let fw: Vec<f64> = floor_runs.iter().map(|m| m.wall.as_secs_f64()).collect();
        let pw: Vec<f64> = plan_runs.iter().map(|m| m.wall.as_secs_f64()).collect();
        let fr: Vec<f64> = floor_runs.iter().map(|m| m.max_rss_mb).collect();
        let pr: Vec<f64> = plan_runs.iter().map(|m| m.max_rss_mb).collect();
        let detail: Value =
            serde_json::from_str(floor_runs[0].stdout.trim()).unwrap_or(Value::Null);
        let (fmin, fmed) = min_median(&fw);
        let (pmin, pmed) = min_median(&pw);
        let (_, frm) = min_median(&fr);
        let (_, prm) = min_median(&pr);
        println!(
            "floor: {:.0} MB of JSON read, {} etcd members listed, {} SSH rounds ok, {} refused",
            detail["kube_bytes"].as_f64().unwrap_or(0.0) / 1e6,
            detail["etcd_members_listed"],
            detail["ssh_ok"],
            detail["ssh_failed"]
        );
        println!("| run | wall min (s) | wall median (s) | peak RSS median (MB) | runs (s) |");
        println!("|---|---|---|---|---|");
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "| read floor | {fmin:.2} | {fmed:.2} | {frm:.0} | {} |",
            fmt(&fw)
        );
        println!(
            "| k3splan plan | {pmin:.2} | {pmed:.2} | {prm:.0} | {} |",
            fmt(&pw)
        );
        println!(
            "ratio plan/floor: {:.2}× (medians), {:.2}× (minima); plan exit codes {:?}",
            pmed / fmed,
            pmin / fmin,
            plan_runs.iter().map(|m| m.code).collect::<Vec<_>>()
        );
        summary.push((nodes, nodes + pods + 2 * pvcs, fmed, pmed, prm, pmin));
    }
    if summary.len() > 1 {
        println!(
            "\n## scaling\n| nodes | objects | floor median (s) | plan median (s) | plan min (s) | plan peak RSS (MB) | ratio |\n|---|---|---|---|---|---|---|"
        );
        for (n, o, f, p, r, pmin) in &summary {
            println!(
                "| {n} | {o} | {f:.2} | {p:.2} | {pmin:.2} | {r:.0} | {:.2}× |",
                p / f
            );
        }
        let pts: Vec<(f64, f64)> = summary.iter().map(|s| (s.1 as f64, s.3)).collect();
        let fpts: Vec<(f64, f64)> = summary.iter().map(|s| (s.1 as f64, s.2)).collect();
        let rpts: Vec<(f64, f64)> = summary.iter().map(|s| (s.1 as f64, s.4)).collect();
        println!(
            "exponent of plan time vs object count: {:.2} (floor: {:.2}; plan peak RSS: {:.2})",
            exponent(&pts),
            exponent(&fpts),
            exponent(&rpts)
        );
    }
    println!("load average at the end: {}", loadavg());
}
