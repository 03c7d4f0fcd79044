//! Golden plans (text and JSON) for the five seed scenarios.
//!
//! Each scenario is a hand-built topology (the desired state) and an observed fixture in
//! `tests/fixtures/observed/` (JSON, editable by hand). The rendered plans are compared with
//! `tests/golden/plan/`. Regenerate the goldens with `K3SPLAN_BLESS=1 cargo nextest run
//! -p k3splan --test plan_golden`; regenerate the fixtures from the builders below too with
//! `K3SPLAN_BLESS=fixtures` (this overwrites hand edits). See tests/common/golden.rs.

mod common;

use std::path::PathBuf;

use common::golden;

use k3splan::config::{OnNodeLoss, Role, Topology, WorkloadKind};
use k3splan::observed::{EtcdDataDir, Fact, HostState, MemberHealth, Observed, Pod, Pvc, url_host};
use k3splan::plan::testkit::*;
use k3splan::plan::{Plan, PlanOptions, Refusal, plan};
use k3splan::render::{self, TextOptions};

const S: [Role; 1] = [Role::Server];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_fixture(name: &str, build: impl FnOnce() -> Observed) -> Observed {
    let path = root().join(format!("tests/fixtures/observed/{name}.json"));
    let text = golden::fixture(&path, || {
        serde_json::to_string_pretty(&build()).unwrap() + "\n"
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check_golden(name: &str, result: &Result<Plan, Refusal>) {
    let dir = root().join("tests/golden/plan");
    let text = render::text(result, TextOptions { color: false });
    let json = render::json(result);
    for (ext, got) in [("txt", &text), ("json", &json)] {
        golden::assert_matches(&dir.join(format!("{name}.{ext}")), got);
    }
    // Issue 18: the merge-request comment and the step graph (their structure is checked by
    // tests/issue18_markdown.rs and tests/issue18_graph.rs).
    let md = render::markdown(result, render::MarkdownOptions::default());
    golden::assert_matches(
        &root().join(format!("tests/golden/markdown/{name}.md")),
        &md,
    );
    if let Ok(p) = result {
        let dot = render::dot(p, render::GraphOptions::default());
        golden::assert_matches(&root().join(format!("tests/golden/graph/{name}.dot")), &dot);
    }
    // Secrets never appear in any output (rule 7).
    for secret in ["K10secret-token", "MTkyLjE2"] {
        assert!(
            !text.contains(secret) && !json.contains(secret) && !md.contains(secret),
            "{name}: secret leaked"
        );
    }
}

fn set_host(o: &mut Observed, name: &str, h: Fact<HostState>) {
    o.hosts.insert(name.into(), h);
}

fn kube_mut(o: &mut Observed) -> &mut k3splan::observed::KubeState {
    match &mut o.kube {
        Fact::Known(k) => k,
        _ => unreachable!(),
    }
}

fn etcd_mut(o: &mut Observed) -> &mut k3splan::observed::EtcdState {
    match &mut o.etcd {
        Fact::Known(e) => e,
        _ => unreachable!(),
    }
}

fn host_mut<'a>(o: &'a mut Observed, name: &str) -> &'a mut HostState {
    match o.hosts.get_mut(name) {
        Some(Fact::Known(h)) => h,
        _ => unreachable!(),
    }
}

fn fresh_host(addr: &str) -> Fact<HostState> {
    Fact::Known(HostState {
        address: Some(addr.parse().unwrap()),
        ..Default::default()
    })
}

fn mark_dead(o: &mut Observed, name: &str, why: &str) {
    let k = kube_mut(o);
    let n = k.nodes.iter_mut().find(|n| n.name == name).unwrap();
    n.ready = false;
    n.ready_since = Some("2026-11-21T23:10:00Z".into());
    let e = etcd_mut(o);
    let m = e
        .members
        .iter_mut()
        .find(|m| m.name == member_name(name))
        .unwrap();
    m.health = MemberHealth::Unreachable {
        reason: format!(
            "dial tcp {}: {why}",
            url_host(&m.client_urls[0]).unwrap().to_owned() + ":2379"
        ),
    };
    if e.leader == Some(m.id) {
        e.leader = e
            .members
            .iter()
            .find(|x| x.name != member_name(name))
            .map(|x| x.id);
    }
}

fn pod(ns: &str, name: &str, node: &str, kind: &str, owner: &str, pvc: &str) -> Pod {
    Pod {
        namespace: ns.into(),
        name: name.into(),
        node: Some(node.into()),
        owner_kind: Some(kind.into()),
        owner_name: Some(owner.into()),
        phase: "Running".into(),
        pvcs: vec![pvc.into()],
    }
}

fn pvc(ns: &str, name: &str, uid: &str, node: Option<&str>) -> Pvc {
    Pvc {
        namespace: ns.into(),
        name: name.into(),
        uid: uid.into(),
        storage_class: Some("local-path".into()),
        phase: if node.is_some() { "Bound" } else { "Pending" }.into(),
        bound_node: node.map(String::from),
        volume: node.map(|_| format!("pvc-{uid}")),
    }
}

// ------------------------------------------------------------------ seed 004

fn seed004_desired() -> Topology {
    let mut c = cluster("cloudpods");
    c.api_endpoint = Some("https://192.168.0.66:6443".into());
    c.vip = Some(vip("192.168.0.66", "eth0", 66));
    let mut n2 = node("lzx-ha-env-2", "192.168.0.244", &S);
    n2.primary = true;
    let mut t = topology(
        c,
        vec![
            n2,
            node("lzx-ha-env-3", "192.168.0.243", &S),
            node("lzx-test-add-node", "192.168.0.239", &S),
        ],
    );
    let mut minio = storage(
        "onecloud-minio/minio",
        WorkloadKind::StatefulSet,
        OnNodeLoss::Rebind,
    );
    minio.prefer_nodes = vec!["lzx-test-add-node".into()];
    t.storage = vec![
        minio,
        storage(
            "onecloud-monitoring/monitor-minio",
            WorkloadKind::StatefulSet,
            OnNodeLoss::Rebind,
        ),
        storage(
            "onecloud/default-victoria-metrics",
            WorkloadKind::Deployment,
            OnNodeLoss::Recreate,
        ),
    ];
    t.addons = vec![addon("coredns", 3, Some("kubernetes.io/hostname"))];
    t
}

/// The cluster before the change: lzx-ha-env (primary, the first server) died.
fn seed004_observed() -> Observed {
    let mut c = cluster("cloudpods");
    c.api_endpoint = Some("https://192.168.0.66:6443".into());
    c.vip = Some(vip("192.168.0.66", "eth0", 66));
    let mut n1 = node("lzx-ha-env", "192.168.0.254", &S);
    n1.primary = true;
    let mut before = topology(
        c,
        vec![
            n1,
            node("lzx-ha-env-2", "192.168.0.244", &S),
            node("lzx-ha-env-3", "192.168.0.243", &S),
        ],
    );
    before.addons = vec![addon("coredns", 1, None)];
    let mut o = observed_matching(&before);
    // ocboot joined the others through the VIP.
    for n in ["lzx-ha-env-2", "lzx-ha-env-3"] {
        let cfg = host_mut(&mut o, n).config.as_mut().unwrap();
        cfg.raw = cfg
            .raw
            .replace("https://192.168.0.254:6443", "https://192.168.0.66:6443");
        cfg.server = Some("https://192.168.0.66:6443".into());
    }
    mark_dead(&mut o, "lzx-ha-env", "i/o timeout");
    // A dead VM does not answer at all: the connect times out (unknown, not refused).
    host_silent(
        &mut o,
        "lzx-ha-env",
        "ssh 192.168.0.254:22: connect timed out after 10s",
    );
    set_host(&mut o, "lzx-test-add-node", fresh_host("192.168.0.239"));
    let k = kube_mut(&mut o);
    k.addons[0].pod_nodes = vec!["lzx-ha-env".into()];
    k.addons[0].ready_replicas = 0;
    k.pods = vec![
        pod(
            "onecloud-minio",
            "minio-2",
            "lzx-ha-env-3",
            "StatefulSet",
            "minio",
            "export-minio-2",
        ),
        pod(
            "onecloud-minio",
            "minio-3",
            "lzx-ha-env-3",
            "StatefulSet",
            "minio",
            "export-minio-3",
        ),
        pod(
            "onecloud-monitoring",
            "monitor-minio-0",
            "lzx-ha-env-2",
            "StatefulSet",
            "monitor-minio",
            "export-monitor-minio-0",
        ),
        pod(
            "onecloud-minio",
            "minio-0",
            "lzx-ha-env-2",
            "StatefulSet",
            "minio",
            "export-minio-0",
        ),
        pod(
            "onecloud-minio",
            "minio-1",
            "lzx-ha-env",
            "StatefulSet",
            "minio",
            "export-minio-1",
        ),
        pod(
            "onecloud-monitoring",
            "monitor-minio-1",
            "lzx-ha-env",
            "StatefulSet",
            "monitor-minio",
            "export-monitor-minio-1",
        ),
        pod(
            "onecloud",
            "default-victoria-metrics-774fc8499b-4rjzx",
            "lzx-ha-env",
            "Deployment",
            "default-victoria-metrics",
            "default-victoria-metrics",
        ),
    ];
    k.pvcs = vec![
        pvc(
            "onecloud-minio",
            "export-minio-2",
            "aae12617-3e12-4a27-9cd8-fef84e609b12",
            Some("lzx-ha-env-3"),
        ),
        pvc(
            "onecloud-minio",
            "export-minio-3",
            "721329f0-c961-43f4-a7cc-ccd0f650dbd0",
            Some("lzx-ha-env-3"),
        ),
        pvc(
            "onecloud-monitoring",
            "export-monitor-minio-0",
            "9b2c4065-ea17-415c-bbec-840db89cf88e",
            Some("lzx-ha-env-2"),
        ),
        pvc(
            "onecloud-minio",
            "export-minio-0",
            "9c052647-73c2-4eb8-a5f0-69abf6cfc898",
            Some("lzx-ha-env-2"),
        ),
        pvc(
            "onecloud-minio",
            "export-minio-1",
            "aaded012-d6ca-42b9-bc3a-c03da7c66ec8",
            Some("lzx-ha-env"),
        ),
        pvc(
            "onecloud-monitoring",
            "export-monitor-minio-1",
            "9cd740c2-0044-49df-8cfb-1ead09127b4a",
            Some("lzx-ha-env"),
        ),
        pvc(
            "onecloud",
            "default-victoria-metrics",
            "b0d78630-b4fd-4521-898d-e76b4b1f8e1b",
            Some("lzx-ha-env"),
        ),
        pvc(
            "onecloud",
            "default-baremetal-agent",
            "5e1f0a2b-0000-4000-8000-000000000001",
            None,
        ),
    ];
    o
}

#[test]
fn seed004_replace_dead_primary_with_vip_and_local_path() {
    let t = seed004_desired();
    let o = load_fixture("seed004", seed004_observed);
    // The host times out (it may be alive behind a partition): without the operator's
    // --allow-unreachable nothing of it is destroyed (issue 13).
    assert!(plan(&t, &o, &PlanOptions::default()).is_err());
    let r = plan(
        &t,
        &o,
        &PlanOptions {
            allow_unreachable: ["lzx-ha-env".to_string()].into(),
            ..PlanOptions::default()
        },
    );
    let p = r.as_ref().unwrap_or_else(|e| panic!("{e}"));
    let order: Vec<String> = p.steps.iter().map(|s| s.address.to_string()).collect();
    let pos = |a: &str| {
        order
            .iter()
            .position(|x| x == a)
            .unwrap_or_else(|| panic!("{a} not in {order:?}"))
    };
    // DESIGN's seed 004 order.
    assert_eq!(order[0], "etcd_snapshot");
    assert!(pos("node.lzx-ha-env") < pos("etcd_member.lzx-ha-env"));
    assert!(pos("etcd_member.lzx-ha-env") < pos("node.lzx-test-add-node"));
    assert!(
        pos("node.lzx-test-add-node")
            < pos(
                "host_file.lzx-ha-env-2:/var/lib/rancher/k3s/agent/pod-manifests/keepalived.yaml"
            )
    );
    assert!(pos("pvc.onecloud-minio/export-minio-1") > pos("node.lzx-test-add-node"));
    assert!(
        !order.iter().any(|a| a.contains("export-minio-0")),
        "PVC on a healthy node touched"
    );
    assert_eq!(order.last().unwrap(), "verify");
    let q: Vec<String> = p
        .steps
        .iter()
        .flat_map(|s| {
            s.quorum
                .iter()
                .map(|q| format!("{}/{}", q.quorum.healthy_voters, q.quorum.voters))
        })
        .collect();
    assert_eq!(
        q,
        ["2/2", "2/2", "3/3"],
        "quorum after removal, join (learner), promotion"
    );
    check_golden("seed004", &r);
}

// ------------------------------------------------------------------ seed 001

fn seed001_desired() -> Topology {
    topology(
        cluster("split"),
        vec![
            node("etcd-1", "10.0.1.1", &[Role::Etcd]),
            node("etcd-2", "10.0.1.2", &[Role::Etcd]),
            node("etcd-3", "10.0.1.3", &[Role::Etcd]),
            node("cp-1", "10.0.1.11", &[Role::ControlPlane]),
            node("cp-2", "10.0.1.12", &[Role::ControlPlane]),
        ],
    )
}

fn seed001_observed() -> Observed {
    let mut o = observed_matching(&seed001_desired());
    mark_dead(&mut o, "etcd-1", "connection refused");
    host_refused(&mut o, "etcd-1", "ssh 10.0.1.1:22: connection refused");
    o
}

#[test]
fn seed001_split_roles_join_urls_naming_dead_etcd_node() {
    let t = seed001_desired();
    let o = load_fixture("seed001", seed001_observed);
    // etcd-1 is declared and its host was not read: the plan is incomplete (exit 1) until
    // the operator accepts it (issue 13).
    assert!(!plan(&t, &o, &PlanOptions::default()).unwrap().is_complete());
    let r = plan(
        &t,
        &o,
        &PlanOptions {
            allow_unreachable: ["etcd-1".to_string()].into(),
            ..PlanOptions::default()
        },
    );
    let p = r.as_ref().unwrap_or_else(|e| panic!("{e}"));
    let rewritten: Vec<String> = p
        .steps
        .iter()
        .filter(|s| s.address.type_name() == "host_file")
        .map(|s| s.address.to_string())
        .collect();
    assert_eq!(rewritten.len(), 4, "{rewritten:?}");
    // Control-plane-only nodes restart; etcd nodes cannot (2/3 healthy, rule 9).
    for s in &p.steps {
        let restarts = s
            .operations
            .iter()
            .any(|op| matches!(op, k3splan::plan::Operation::RestartService { .. }));
        let is_etcd = s.address.name().starts_with("etcd");
        if s.address.type_name() == "host_file" {
            assert_eq!(restarts, !is_etcd, "{}", s.address);
        }
    }
    check_golden("seed001", &r);
}

// ------------------------------------------------------------------ seed 002

fn seed002_desired() -> Topology {
    let mut c = cluster("scaleout");
    c.api_endpoint = Some("https://10.0.2.100:6443".into());
    topology(
        c,
        vec![
            node("s1", "10.0.2.1", &S),
            node("s2", "10.0.2.2", &S),
            node("s3", "10.0.2.3", &S),
            node("s4", "10.0.2.4", &S),
            node("s5", "10.0.2.5", &S),
        ],
    )
}

fn seed002_observed() -> Observed {
    let mut before = seed002_desired();
    before.nodes.truncate(3);
    let mut o = observed_matching(&before);
    set_host(&mut o, "s4", fresh_host("10.0.2.4"));
    set_host(&mut o, "s5", fresh_host("10.0.2.5"));
    host_mut(&mut o, "s4").etcd_data = Some(EtcdDataDir {
        path: "/var/lib/rancher/k3s/server/db/etcd".into(),
        member_name: Some("s4-0a1b2c3d".into()),
        cluster_id: Some("5d8a1e0f".into()),
        belongs_to_cluster: Some(false),
        tombstone: false,
        initial_cluster: None,
    });
    o
}

#[test]
fn seed002_stale_data_dir_moved_aside_before_join_one_member_at_a_time() {
    let t = seed002_desired();
    let o = load_fixture("seed002", seed002_observed);
    let r = plan(&t, &o, &PlanOptions::default());
    let p = r.as_ref().unwrap_or_else(|e| panic!("{e}"));
    let order: Vec<String> = p.steps.iter().map(|s| s.address.to_string()).collect();
    let pos = |a: &str| order.iter().position(|x| x == a).unwrap();
    assert!(pos("host_file.s4:/var/lib/rancher/k3s/server/db/etcd") < pos("node.s4"));
    assert!(pos("node.s4") < pos("node.s5"));
    assert!(
        !order
            .iter()
            .any(|a| a.starts_with("host_file.s5:/var/lib/rancher/k3s/server"))
    );
    let q: Vec<String> = p
        .steps
        .iter()
        .flat_map(|s| s.quorum.iter().map(|q| q.quorum.to_string()))
        .collect();
    assert_eq!(
        q,
        [
            "3/3 voters healthy (quorum needs 2), 1 learner",
            "4/4 voters healthy (quorum needs 3)",
            "4/4 voters healthy (quorum needs 3), 1 learner",
            "5/5 voters healthy (quorum needs 3)"
        ]
    );
    check_golden("seed002", &r);
}

// ------------------------------------------------------------------ seed 003

fn seed003_desired() -> Topology {
    let mut t = topology(
        cluster("addons"),
        vec![
            node("s1", "10.0.3.1", &S),
            node("s2", "10.0.3.2", &S),
            node("s3", "10.0.3.3", &S),
        ],
    );
    t.addons = vec![
        addon("coredns", 3, Some("kubernetes.io/hostname")),
        addon("local-path-provisioner", 2, Some("kubernetes.io/hostname")),
        addon("metrics-server", 2, Some("kubernetes.io/hostname")),
    ];
    t
}

fn seed003_observed() -> Observed {
    let mut before = seed003_desired();
    for a in &mut before.addons {
        a.replicas = 1;
        a.spread = None;
    }
    observed_matching(&before)
}

#[test]
fn seed003_single_replica_addons() {
    let t = seed003_desired();
    let o = load_fixture("seed003", seed003_observed);
    let r = plan(&t, &o, &PlanOptions::default());
    let p = r.as_ref().unwrap_or_else(|e| panic!("{e}"));
    // Issue 19: the three are packaged by k3s, so before each is scaled every server gets
    // its `.skip` file (k3s would re-apply its manifest at the next start).
    assert_eq!(
        p.steps.len(),
        12,
        "nine .skip files and the three add-ons; nothing destructive, no snapshot"
    );
    assert_eq!(
        p.steps
            .iter()
            .filter(|s| s.reason == k3splan::plan::ActionReason::PackagedAddonSkip)
            .count(),
        9
    );
    assert_eq!(render::detailed_exitcode(&r), 2);
    check_golden("seed003", &r);
}

// ------------------------------------------------------------------ seed 000

fn seed000_desired() -> Topology {
    let mut s1 = node("s1", "10.0.0.1", &S);
    s1.replace = true;
    topology(
        cluster("rebuild"),
        vec![s1, node("s2", "10.0.0.2", &S), node("s3", "10.0.0.3", &S)],
    )
}

fn seed000_observed() -> Observed {
    let mut before = seed000_desired();
    before.nodes[0].replace = false;
    let mut o = observed_matching(&before);
    mark_dead(&mut o, "s1", "connection refused");
    // The host was rebuilt: reachable, no k3s, no data.
    set_host(&mut o, "s1", fresh_host("10.0.0.1"));
    o
}

#[test]
fn seed000_first_server_rebuilt_joins_without_cluster_init() {
    let t = seed000_desired();
    let o = load_fixture("seed000", seed000_observed);
    let r = plan(&t, &o, &PlanOptions::default());
    let p = r.as_ref().unwrap_or_else(|e| panic!("{e}"));
    let cfg = p
        .steps
        .iter()
        .flat_map(|s| &s.operations)
        .find_map(|op| match op {
            k3splan::plan::Operation::WriteFile { node, after, .. } if node == "s1" => {
                Some(after.clone())
            }
            _ => None,
        })
        .expect("config.yaml for s1");
    assert!(!cfg.contains("cluster-init"), "{cfg}");
    assert!(cfg.contains("server: https://10.0.0.2:6443"), "{cfg}");
    check_golden("seed000", &r);
}

#[test]
fn every_seed_desired_state_reached_yields_no_changes() {
    for t in [
        seed004_desired(),
        seed001_desired(),
        seed002_desired(),
        seed003_desired(),
    ] {
        let o = observed_matching(&t);
        let r = plan(&t, &o, &PlanOptions::default());
        let p = r
            .as_ref()
            .unwrap_or_else(|e| panic!("{}: {e}", t.cluster.name));
        assert!(p.steps.is_empty(), "{}: {:?}", t.cluster.name, p.steps);
        assert_eq!(render::detailed_exitcode(&r), 0);
        assert!(
            render::text(&r, TextOptions::default())
                .starts_with("No changes. The cluster matches the configuration.")
        );
    }
}

/// Regression (issue 7, found by the crash test): an apply killed after it deleted the dead
/// Node and removed its member, but before the rebinds. The next plan no longer sees the
/// node at all; the PVCs still pinned to it must still be rebound per their policy, and no
/// PVC of a healthy node may be touched.
#[test]
fn issue7_pvcs_of_an_already_deleted_node_are_still_rebound() {
    let t = seed004_desired();
    let mut o = load_fixture("seed004", seed004_observed);
    if let Fact::Known(k) = &mut o.kube {
        k.nodes.retain(|n| n.name != "lzx-ha-env");
        for p in k.pods.iter_mut() {
            if p.node.as_deref() == Some("lzx-ha-env") {
                p.node = None;
                p.phase = "Pending".into();
            }
        }
    }
    if let Fact::Known(e) = &mut o.etcd {
        e.members.retain(|m| {
            !m.peer_urls
                .iter()
                .any(|u| url_host(u) == Some("192.168.0.254"))
        });
    }
    o.hosts.remove("lzx-ha-env");
    let p = plan(&t, &o, &PlanOptions::default()).expect("plan");
    let ops: Vec<String> = p
        .steps
        .iter()
        .flat_map(|s| s.operations.iter().map(|op| op.describe()))
        .collect();
    let all = ops.join("\n");
    assert!(
        all.contains("delete PVC onecloud-minio/export-minio-1"),
        "{all}"
    );
    assert!(
        all.contains("delete PVC onecloud-monitoring/export-monitor-minio-1"),
        "{all}"
    );
    assert!(
        all.contains("delete PVC onecloud/default-victoria-metrics"),
        "{all}"
    );
    assert!(
        !all.contains("export-minio-0"),
        "healthy node's PVC untouched: {all}"
    );
    assert!(
        !all.contains("export-minio-2"),
        "healthy node's PVC untouched: {all}"
    );
}

// ---------------------------------------------------------------- issue 13

use k3splan::plan::Operation;

/// Position of the first operation matching `f`, as (step index, operation index).
fn op_pos(p: &Plan, f: impl Fn(&Operation) -> bool) -> Option<(usize, usize)> {
    p.steps
        .iter()
        .enumerate()
        .find_map(|(i, s)| s.operations.iter().position(&f).map(|j| (i, j)))
}

/// Issue 13, point 2: a live node leaving the configuration is drained, k3s is uninstalled
/// on its host, and only then is its Node object deleted: deleted first, the kubelet still
/// running there registers it again.
#[test]
fn issue13_removal_uninstalls_k3s_before_deleting_the_node() {
    let t = topology(
        cluster("scalein"),
        vec![
            node("s1", "10.0.3.1", &S),
            node("s2", "10.0.3.2", &S),
            node("s3", "10.0.3.3", &S),
        ],
    );
    let mut before = t.clone();
    before.nodes.push(node("a1", "10.0.3.4", &[Role::Agent]));
    before.nodes.push(node("s4", "10.0.3.5", &S));
    let o = observed_matching(&before);
    let p = plan(&t, &o, &PlanOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let text = render::text(&Ok(p.clone()), TextOptions { color: false });
    for n in ["a1", "s4"] {
        let drain = op_pos(
            &p,
            |op| matches!(op, Operation::Drain { node, .. } if node == n),
        );
        let uninstall = op_pos(
            &p,
            |op| matches!(op, Operation::UninstallK3s { node } if node == n),
        );
        let delete = op_pos(
            &p,
            |op| matches!(op, Operation::DeleteNode { node } if node == n),
        );
        let (Some(drain), Some(uninstall), Some(delete)) = (drain, uninstall, delete) else {
            panic!("{n}: drain, uninstall and delete planned:\n{text}");
        };
        assert!(
            drain < uninstall && uninstall < delete,
            "{n}: drain {drain:?} → uninstall {uninstall:?} → delete Node {delete:?}:\n{text}"
        );
    }
    // The server's member is removed while its k3s still runs (quorum simulated), before
    // the uninstall.
    let member = op_pos(
        &p,
        |op| matches!(op, Operation::RemoveEtcdMember { name, .. } if *name == member_name("s4")),
    )
    .unwrap();
    let uninstall = op_pos(
        &p,
        |op| matches!(op, Operation::UninstallK3s { node } if node == "s4"),
    )
    .unwrap();
    assert!(member < uninstall, "{text}");
    // The rendered plan shows the order too.
    let i = text.find("uninstall k3s on a1").expect("uninstall shown");
    let j = text.find("delete Node a1").expect("delete shown");
    assert!(i < j, "{text}");
}

/// Issue 13, point 5: the rebind operations carry the plan's evidence that the host is gone,
/// which the provider checks again before it deletes anything.
#[test]
fn issue13_rebind_operations_carry_the_evidence_that_the_host_is_gone() {
    let t = seed004_desired();
    let o = load_fixture("seed004", seed004_observed);
    // The dead host times out: the operator accepts it (issue 13.3).
    let allow = || ["lzx-ha-env".to_string()].into();
    let p = plan(
        &t,
        &o,
        &PlanOptions {
            allow_unreachable: allow(),
            ..PlanOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ev: Vec<_> = p
        .steps
        .iter()
        .flat_map(|s| &s.operations)
        .filter_map(|op| match op {
            Operation::RebindVolume { evidence, .. }
            | Operation::RecreateWorkload { evidence, .. } => Some(evidence.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ev.len(), 3);
    for e in &ev {
        assert!(
            e.host_unreachable && e.member_dead && !e.uninstalled_by_plan,
            "{e:?}"
        );
        assert!(e.host_gone());
        assert_eq!(e.not_ready_since.as_deref(), Some("2026-11-21T23:10:00Z"));
        assert_eq!(e.min_not_ready_secs, 300);
    }
    // The threshold is the operator's to set (--rebind-min-not-ready).
    let opts = PlanOptions {
        rebind_min_not_ready_secs: Some(900),
        allow_unreachable: allow(),
        ..PlanOptions::default()
    };
    let p = plan(&t, &o, &opts).unwrap();
    assert!(
        p.steps
            .iter()
            .flat_map(|s| &s.operations)
            .any(|op| matches!(op,
        Operation::RebindVolume { evidence, .. } if evidence.min_not_ready_secs == 900))
    );
}

/// The stale data dir step's reason for host s4 of seed 002, with `dir` as its data dir.
fn stale_reason(dir: EtcdDataDir, s2_initial_cluster: Option<&str>) -> String {
    let t = seed002_desired();
    let mut o = seed002_observed();
    host_mut(&mut o, "s4").etcd_data = Some(dir);
    if let Some(ic) = s2_initial_cluster {
        host_mut(&mut o, "s2")
            .etcd_data
            .as_mut()
            .unwrap()
            .initial_cluster = Some(ic.into());
    }
    let p = plan(&t, &o, &PlanOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    p.steps
        .iter()
        .find(|s| matches!(s.operations[..], [Operation::MoveAsideDataDir { ref node, .. }] if node == "s4"))
        .map(|s| s.why.clone())
        .expect("the stale data dir is moved aside")
}

/// Issue 13, point 8a: a removed member's own data dir (same cluster) was described as
/// "belongs to another cluster". Each case says which it is, and why.
#[test]
fn issue13_stale_data_dir_says_whether_it_is_this_clusters_or_another() {
    // As the live observation gives it: no cluster ID read, a tombstone (k3s removed the
    // member), so belongs_to_cluster = false.
    let removed = |initial_cluster: &str| EtcdDataDir {
        path: "/var/lib/rancher/k3s/server/db/etcd".into(),
        member_name: Some("s4-0a1b2c3d".into()),
        cluster_id: None,
        belongs_to_cluster: Some(false),
        tombstone: true,
        initial_cluster: Some(initial_cluster.into()),
    };
    // It joined this cluster: its peers then are members now.
    let why = stale_reason(
        removed(&format!(
            "{}=https://10.0.2.1:2380,{}=https://10.0.2.2:2380,s4-0a1b2c3d=https://10.0.2.4:2380",
            member_name("s1"),
            member_name("s2")
        )),
        None,
    );
    assert!(
        why.contains("this cluster's: a removed member's own data"),
        "{why}"
    );
    assert!(!why.contains("another cluster"), "{why}");
    // It was the first server (created alone): a current member lists it as a peer.
    let why = stale_reason(
        removed("s4-0a1b2c3d=https://10.0.2.4:2380"),
        Some(&format!(
            "s4-0a1b2c3d=https://10.0.2.4:2380,{}=https://10.0.2.2:2380",
            member_name("s2")
        )),
    );
    assert!(
        why.contains("this cluster's") && why.contains("s4-0a1b2c3d"),
        "{why}"
    );
    assert!(!why.contains("another cluster"), "{why}");
    // Created with peers none of which is a member here: another cluster.
    let why = stale_reason(
        removed("s4-0a1b2c3d=https://10.0.2.4:2380,old-1=https://10.9.9.1:2380"),
        None,
    );
    assert!(
        why.contains("belongs to another cluster") && why.contains("old-1"),
        "{why}"
    );
    // Nothing to tell by: it says so rather than guess.
    let why = stale_reason(removed("s4-0a1b2c3d=https://10.0.2.4:2380"), None);
    assert!(
        why.contains("unknown") && !why.contains("another cluster"),
        "{why}"
    );
}

/// Issue 13, point 8b: a returning ex-primary still holds its old keepalived manifest
/// (priority 100, MASTER), a static pod that k3s starts with it: the manifest is rewritten
/// before k3s starts on it, so it cannot take the VIP.
#[test]
fn issue13_returning_ex_primary_keepalived_manifest_is_rewritten_before_k3s_starts() {
    let mut t = seed004_desired();
    // lzx-ha-env comes back as a backup; lzx-ha-env-2 stays primary.
    t.nodes.retain(|n| n.name != "lzx-test-add-node");
    t.nodes.push(node("lzx-ha-env", "192.168.0.254", &S));
    t.storage.clear();
    t.addons.clear();
    let mut before = t.clone();
    before.nodes.retain(|n| n.name != "lzx-ha-env");
    let mut o = observed_matching(&before);
    // The host answers, k3s stopped, its member and Node removed; its old manifest says
    // priority 100.
    let mut old = seed004_desired();
    old.nodes.iter_mut().for_each(|n| n.primary = false);
    let mut ex = node("lzx-ha-env", "192.168.0.254", &S);
    ex.primary = true;
    old.nodes.push(ex.clone());
    let manifest = keepalived_file(&old, &ex).expect("manifest");
    assert_eq!(
        manifest.priority,
        Some(100),
        "premise: the old manifest is the primary's"
    );
    set_host(
        &mut o,
        "lzx-ha-env",
        Fact::Known(HostState {
            address: Some("192.168.0.254".parse().unwrap()),
            keepalived: Some(manifest),
            ..Default::default()
        }),
    );
    let p = plan(&t, &o, &PlanOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let text = render::text(&Ok(p.clone()), TextOptions { color: false });
    let write = op_pos(&p, |op| {
        matches!(op, Operation::WriteFile { node, path, .. } if node == "lzx-ha-env" && path.ends_with("keepalived.yaml"))
    })
    .unwrap_or_else(|| panic!("the manifest is rewritten:\n{text}"));
    let start = op_pos(
        &p,
        |op| matches!(op, Operation::JoinServer { node, .. } if node == "lzx-ha-env"),
    )
    .unwrap_or_else(|| panic!("the node joins:\n{text}"));
    assert!(
        write < start,
        "keepalived written {write:?} before k3s starts {start:?}:\n{text}"
    );
    let after = p.steps[write.0].operations.iter().find_map(|op| match op {
        Operation::WriteFile { after, .. } => Some(after.clone()),
        _ => None,
    });
    assert!(
        after.is_some_and(|a| !a.contains("\"100\"") && a.contains("90")),
        "{text}"
    );
    // Written once.
    let writes = p
        .steps
        .iter()
        .flat_map(|s| &s.operations)
        .filter(|op| matches!(op, Operation::WriteFile { node, path, .. } if node == "lzx-ha-env" && path.ends_with("keepalived.yaml")))
        .count();
    assert_eq!(writes, 1, "{text}");
}
