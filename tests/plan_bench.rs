//! Plan computation alone for a large cluster: 1,000 nodes, 30,000 pods, 5,000 PVCs.
//!
//! Ignored by default (a figure, not a test): run with
//! `cargo test --release --test plan_bench -- --ignored --nocapture`.
//! Memory is measured with a counting global allocator: bytes allocated by `plan()` beyond
//! what was live before it (peak), and the size of the observed input.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use k3splan::config::{OnNodeLoss, Role, WorkloadKind};
use k3splan::observed::{Fact, MemberHealth, Pod, Pvc};
use k3splan::plan::testkit::*;
use k3splan::plan::{PlanOptions, plan};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

#[test]
#[ignore = "figure for docs/performance.md; run in release with --ignored --nocapture"]
fn plan_1000_nodes_30000_pods_5000_pvcs() {
    let base = LIVE.load(Ordering::Relaxed);
    // 5 servers (s0 dead and removed, s5 new), 995 agents.
    let mut before_nodes = Vec::new();
    for i in 0..5 {
        before_nodes.push(node(
            &format!("s{i}"),
            &format!("10.1.0.{}", i + 1),
            &[Role::Server],
        ));
    }
    for i in 0..995 {
        before_nodes.push(node(
            &format!("w{i:03}"),
            &format!("10.2.{}.{}", i / 250, i % 250 + 1),
            &[Role::Agent],
        ));
    }
    let mut c = cluster("big");
    c.api_endpoint = Some("https://10.1.0.100:6443".into());
    c.vip = Some(vip("10.1.0.100", "eth0", 9));
    let mut t = topology(c, before_nodes);
    t.nodes[1].primary = true;
    t.storage = (0..50)
        .map(|i| {
            storage(
                &format!("ns{i}/db{i}"),
                WorkloadKind::StatefulSet,
                OnNodeLoss::Rebind,
            )
        })
        .collect();
    t.addons = vec![addon("coredns", 3, Some("kubernetes.io/hostname"))];
    let mut o = observed_matching(&t);
    {
        let Fact::Known(k) = &mut o.kube else {
            unreachable!()
        };
        let names: Vec<String> = k.nodes.iter().map(|n| n.name.clone()).collect();
        for p in 0..30_000usize {
            let ns = format!("ns{}", p % 50);
            let node = names[p % names.len()].clone();
            let stateful = p < 5_000;
            k.pods.push(Pod {
                namespace: ns.clone(),
                name: format!("pod-{p}"),
                node: Some(node.clone()),
                owner_kind: Some(
                    if stateful {
                        "StatefulSet"
                    } else {
                        "Deployment"
                    }
                    .into(),
                ),
                owner_name: Some(if stateful {
                    format!("db{}", p % 50)
                } else {
                    format!("app{}", p % 300)
                }),
                phase: "Running".into(),
                pvcs: if stateful {
                    vec![format!("data-db{}-{p}", p % 50)]
                } else {
                    vec![]
                },
            });
            if stateful {
                k.pvcs.push(Pvc {
                    namespace: ns,
                    name: format!("data-db{}-{p}", p % 50),
                    uid: format!("uid-{p}"),
                    storage_class: Some("local-path".into()),
                    phase: "Bound".into(),
                    bound_node: Some(node),
                    volume: Some(format!("pvc-{p}")),
                });
            }
        }
        k.nodes[0].ready = false;
        let Fact::Known(e) = &mut o.etcd else {
            unreachable!()
        };
        e.members[0].health = MemberHealth::Unreachable {
            reason: "timeout".into(),
        };
    }
    o.hosts.insert("s0".into(), Fact::unknown("timeout"));
    o.hosts.insert("s5".into(), Fact::Known(Default::default()));
    let observed_bytes = LIVE.load(Ordering::Relaxed) - base;

    // Unchanged cluster: nothing to do.
    let same = observed_matching(&t);
    let start = Instant::now();
    let p = plan(&t, &same, &PlanOptions::default()).unwrap();
    let t_same = start.elapsed();
    assert!(p.steps.is_empty());
    drop(p);
    drop(same);

    // Desired: s0 removed, s5 joined.
    t.nodes.remove(0);
    t.nodes.insert(4, node("s5", "10.1.0.6", &[Role::Server]));
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let start = Instant::now();
    let p = plan(&t, &o, &PlanOptions::default()).unwrap();
    let elapsed = start.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let rebinds = p
        .steps
        .iter()
        .filter(|s| s.address.type_name() == "pvc")
        .count();
    let start = Instant::now();
    let text = k3splan::render::text(&Ok(p.clone()), Default::default());
    let json = k3splan::render::json(&Ok(p.clone()));
    let t_render = start.elapsed();
    println!(
        "observed input {:.1} MiB; no-change plan {:?}; replace plan {:?} ({} steps, {} PVC rebinds), peak extra memory {:.2} MiB; render text+json {:?} ({} + {} bytes)",
        mib(observed_bytes),
        t_same,
        elapsed,
        p.steps.len(),
        rebinds,
        mib(peak),
        t_render,
        text.len(),
        json.len()
    );
    assert!(rebinds >= 1);
}
