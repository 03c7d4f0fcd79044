//! The seed 004 runbook against the Kubernetes API: observe, cordon, drain, delete, rebind.
//! Each test runs against the in-memory API server over HTTPS with the real `kube` client; the
//! `*_e2e` variants run the same body against `K3SPLAN_E2E_KUBECONFIG`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{DEAD, N2, N3, NEW, Target, quick_drain};
use k3splan_kube::*;
use k3splan_testkit_kubeapi::Controllers;

/// The planner's evidence for seed 004's dead server: host unreachable, etcd member dead.
fn host_gone() -> HostGoneEvidence {
    HostGoneEvidence {
        host_unreachable: true,
        member_dead: true,
        ..HostGoneEvidence::default()
    }
}

fn request() -> ObserveRequest {
    ObserveRequest {
        addons: AddonRef::k3s_defaults(),
        nodes_of_interest: vec![DEAD.into()],
        pods: PodScope::All,
        ..ObserveRequest::default()
    }
}

fn stateful_summary(obs: &ClusterObservation, node: &str) -> BTreeSet<(String, String, String)> {
    obs.stateful_on(node)
        .into_iter()
        .flat_map(|(p, pvcs)| {
            pvcs.into_iter().map(move |c| {
                (
                    format!("{}/{}", p.namespace, p.name),
                    c.name.clone(),
                    format!("{:?}", p.owner.as_ref().map(|o| (&o.kind, &o.name))),
                )
            })
        })
        .collect()
}

async fn observe_seed004_body(t: Target) {
    let obs = t.kube.observe(&request()).await.expect("observe");
    let dead = obs.node(DEAD).expect("dead node listed");
    assert_eq!(dead.ready, Readiness::Unknown);
    assert_eq!(dead.internal_ip.as_deref(), Some("192.168.0.254"));
    assert_eq!(dead.roles, vec!["control-plane", "etcd", "master"]);
    assert_eq!(dead.kubelet_version, "v1.28.5+k3s1");
    assert!(dead.ready_since.is_some());
    assert!(
        dead.taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable")
    );
    assert!(obs.node(N2).unwrap().schedulable() && obs.node(N3).unwrap().schedulable());

    // Exactly the stateful pods and their local-path PVCs on the dead node.
    let pod_name = obs
        .pods_on(DEAD)
        .find(|p| p.name.starts_with("default-victoria-metrics-"))
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .expect("victoria-metrics pod on the dead node");
    let expected: BTreeSet<(String, String, String)> = [
        (
            "onecloud-minio/minio-1".to_string(),
            "export-minio-1",
            "Some((StatefulSet, \"minio\"))",
        ),
        (
            "onecloud-monitoring/monitor-minio-1".to_string(),
            "export-monitor-minio-1",
            "Some((StatefulSet, \"monitor-minio\"))",
        ),
        (
            pod_name,
            "default-victoria-metrics",
            "Some((Deployment, \"default-victoria-metrics\"))",
        ),
    ]
    .into_iter()
    .map(|(a, b, c)| (a, b.to_string(), c.to_string()))
    .collect();
    assert_eq!(stateful_summary(&obs, DEAD), expected);
    let on_dead: BTreeSet<&str> = obs.pvcs_on(DEAD).map(|p| p.name.as_str()).collect();
    assert_eq!(
        on_dead,
        BTreeSet::from([
            "export-minio-1",
            "export-monitor-minio-1",
            "default-victoria-metrics"
        ])
    );
    let vm = obs
        .pvcs
        .iter()
        .find(|p| p.name == "default-victoria-metrics")
        .unwrap();
    assert_eq!(
        (
            vm.storage_class.as_deref(),
            vm.capacity.as_deref(),
            vm.phase.as_str()
        ),
        (Some("local-path"), Some("20G"), "Bound")
    );
    let pending = obs
        .pvcs
        .iter()
        .find(|p| p.name == "default-baremetal-agent")
        .unwrap();
    assert_eq!(
        (pending.phase.as_str(), pending.local_node.as_deref()),
        ("Pending", None)
    );
    // DaemonSet and mirror pods are recognised as such.
    let ds = obs
        .pods_on(DEAD)
        .find(|p| p.name.starts_with("default-host-health-"))
        .unwrap();
    assert_eq!(ds.owner.as_ref().unwrap().kind, WorkloadKind::DaemonSet);
    assert!(
        obs.pods_on(DEAD)
            .any(|p| p.mirror && p.name == "keepalived-lzx-ha-env")
    );

    // Add-ons: one replica each; local-path-provisioner sits on the dead node (seed 003).
    let addon = |n: &str| obs.addons.iter().find(|a| a.name == n).unwrap();
    assert_eq!(addon("coredns").replicas, 1);
    assert_eq!(addon("coredns").pod_nodes, vec![N2]);
    assert_eq!(addon("coredns").k3s_manifest.as_deref(), Some("coredns"));
    assert!(addon("coredns").spread_topology_keys.is_empty());
    assert_eq!(addon("local-path-provisioner").pod_nodes, vec![DEAD]);
    assert_eq!(addon("local-path-provisioner").ready_replicas, 0);
    assert_eq!(addon("metrics-server").pod_nodes, vec![N3]);
    assert!(obs.all_pods);
}
dual_test!(
    observe_seed004_finds_stateful_pods_and_pvcs_on_dead_node,
    observe_seed004_finds_stateful_pods_and_pvcs_on_dead_node_e2e,
    Controllers::default(),
    observe_seed004_body
);

#[tokio::test]
async fn observe_nodes_of_interest_uses_field_selector_and_pages() {
    let settings = KubeSettings {
        page_size: Some(3),
        ..Default::default()
    };
    let t = Target::memory_with(Controllers::default(), settings).await;
    let full = t.kube.observe(&request()).await.unwrap();
    let scoped = t
        .kube
        .observe(&ObserveRequest {
            pods: PodScope::NodesOfInterest,
            ..request()
        })
        .await
        .unwrap();
    assert_eq!(
        stateful_summary(&scoped, DEAD),
        stateful_summary(&full, DEAD)
    );
    assert!(!scoped.all_pods);
    assert!(scoped.pods.iter().all(|p| p.node.as_deref() == Some(DEAD)
        || p.node.is_none()
        || p.namespace == "kube-system"));
    assert!(scoped.pods.len() < full.pods.len());
    // Every pod of the cluster came back across pages of 3.
    assert_eq!(full.pods.len(), 19);
    let reqs = t.server().requests();
    assert_eq!(
        t.server().gzip_requests(),
        reqs.len(),
        "every request asks for gzip"
    );
    assert!(
        reqs.iter()
            .any(|r| r.contains("fieldSelector=spec.nodeName%3Dlzx-ha-env")),
        "{reqs:#?}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("GET /api/v1/pods?limit=3&continue=")),
        "{reqs:#?}"
    );
    assert!(
        reqs.iter().any(|r| r == "GET /api/v1/pods?limit=3"),
        "a paged first page is a consistent read, without resourceVersion=0: {reqs:#?}"
    );
}

/// Issue 19, point 9: `page_size` pages for real. A real API server serves a list with
/// `resourceVersion=0` from its watch cache and ignores `limit` there, so paged lists must be
/// consistent reads (no resourceVersion) that follow `continue`. The in-memory API imitates
/// the real server: with rv=0 it ignores `limit`.
#[tokio::test]
async fn page_size_pages_for_real_and_rv0_lists_are_whole() {
    // Unpaged: one request per kind, from the watch cache.
    let t = Target::memory(Controllers::default()).await;
    let obs = t.kube.observe(&request()).await.unwrap();
    let pod_lists: Vec<String> = t
        .server()
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /api/v1/pods"))
        .collect();
    assert_eq!(
        pod_lists,
        vec!["GET /api/v1/pods?resourceVersion=0"],
        "unpaged: one list from the watch cache"
    );
    let all = obs.pods.len();
    assert_eq!(all, 19, "premise: the seed 004 cluster has 19 pods");

    // The server's side of it: rv=0 with a limit answers the whole list, no continue token.
    let client = raw_client(&t).await;
    let rv0: serde_json::Value = client
        .request(
            http::Request::get("/api/v1/pods?limit=3&resourceVersion=0")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(rv0["items"].as_array().unwrap().len(), all);
    assert!(rv0["metadata"]["continue"].is_null(), "{}", rv0["metadata"]);

    // Paged by 3: ceil(19 / 3) = 7 requests for the pods, every one of them 3 items or fewer.
    let t = Target::memory_with(
        Controllers::default(),
        KubeSettings {
            page_size: Some(3),
            ..Default::default()
        },
    )
    .await;
    let obs = t.kube.observe(&request()).await.unwrap();
    assert_eq!(obs.pods.len(), all, "every pod came back across the pages");
    let pod_lists: Vec<String> = t
        .server()
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /api/v1/pods"))
        .collect();
    assert_eq!(pod_lists.len(), 7, "{pod_lists:#?}");
    assert_eq!(pod_lists[0], "GET /api/v1/pods?limit=3");
    assert!(
        pod_lists[1..]
            .iter()
            .all(|r| r.starts_with("GET /api/v1/pods?limit=3&continue=")),
        "{pod_lists:#?}"
    );
    assert!(
        !t.server()
            .requests()
            .iter()
            .any(|r| r.contains("limit=") && r.contains("resourceVersion=0")),
        "limit is never combined with resourceVersion=0"
    );
}

/// A continue token that expires between pages (410 Gone, etcd compacted the revision) restarts
/// the list from its first page; when it keeps expiring, the error says so.
#[tokio::test]
async fn an_expired_continue_token_restarts_the_list_then_fails_clearly() {
    let settings = KubeSettings {
        page_size: Some(5),
        ..Default::default()
    };
    let t = Target::memory_with(Controllers::default(), settings).await;
    t.server().expire_continue_tokens(1);
    let obs = t
        .kube
        .observe(&ObserveRequest {
            pods: PodScope::All,
            ..ObserveRequest::default()
        })
        .await
        .expect("a list restarted after one expired token");
    assert_eq!(obs.pods.len(), 19, "the restarted list is whole");
    // The lists run concurrently: whichever met the expired token was read twice from its
    // first page; every other list once.
    let firsts: Vec<String> = t
        .server()
        .requests()
        .into_iter()
        .filter(|r| r.ends_with("?limit=5"))
        .collect();
    let distinct: BTreeSet<&String> = firsts.iter().collect();
    assert_eq!(
        firsts.len(),
        distinct.len() + 1,
        "exactly one list was restarted: {firsts:#?}"
    );

    t.server().expire_continue_tokens(100);
    let err = t
        .kube
        .observe(&ObserveRequest {
            pods: PodScope::All,
            ..ObserveRequest::default()
        })
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, KubeError::Api { code: 410, .. }), "{msg}");
    assert!(
        msg.contains("continue token expired 3 times") && msg.contains("page_size"),
        "{msg}"
    );
}

async fn raw_client(t: &Target) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&t.kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

async fn cordon_body(t: Target) {
    let obs = t.kube.observe(&ObserveRequest::default()).await.unwrap();
    assert!(
        obs.node(N2).is_some_and(|n| n.schedulable()),
        "premise: {N2} exists and is schedulable"
    );
    assert_eq!(t.kube.cordon(N2).await.unwrap(), ActOutcome::Changed);
    assert_eq!(t.kube.cordon(N2).await.unwrap(), ActOutcome::AlreadyDone);
    let obs = t.kube.observe(&ObserveRequest::default()).await.unwrap();
    assert!(obs.node(N2).unwrap().unschedulable);
    assert_eq!(t.kube.uncordon(N2).await.unwrap(), ActOutcome::Changed);
    assert_eq!(t.kube.uncordon(N2).await.unwrap(), ActOutcome::AlreadyDone);
    let obs = t.kube.observe(&ObserveRequest::default()).await.unwrap();
    assert!(!obs.node(N2).unwrap().unschedulable);
    assert!(matches!(
        t.kube.cordon("no-such-node").await,
        Err(KubeError::NotFound { .. })
    ));
}
dual_test!(
    cordon_and_uncordon_are_idempotent,
    cordon_and_uncordon_are_idempotent_e2e,
    Controllers::default(),
    cordon_body
);

async fn drain_pdb_body(t: Target) {
    // Premises: N3 is Ready and schedulable, and holds MinIO pods and metrics-server.
    let obs = t.kube.observe(&ObserveRequest::default()).await.unwrap();
    let n3 = obs.node(N3).expect("premise: node lzx-ha-env-3 exists");
    assert!(
        n3.ready == Readiness::Ready && n3.schedulable(),
        "premise: {N3} Ready and schedulable: {n3:?}"
    );
    for prefix in ["minio-2", "monitor-minio-2", "metrics-server-"] {
        assert!(
            obs.pods_on(N3)
                .any(|p| p.name.starts_with(prefix) && !p.terminating),
            "premise: a {prefix}* pod runs on {N3}"
        );
    }
    let report = t
        .kube
        .drain(N3, &quick_drain(DrainMode::Evict, 1500))
        .await
        .unwrap();
    assert_eq!(report.cordon, ActOutcome::Changed);
    assert_eq!(
        report.skipped_daemonset,
        vec!["onecloud/default-host-health-q9d4s"]
    );
    assert_eq!(
        report.skipped_mirror,
        vec!["kube-system/keepalived-lzx-ha-env-3"]
    );
    // metrics-server has no budget: evicted and gone.
    assert_eq!(report.evicted.len(), 1, "{report:#?}");
    assert!(report.evicted[0].starts_with("kube-system/metrics-server-"));
    // MinIO's budget (maxUnavailable 1, one replica already down on the dead node) refuses.
    let blocked: BTreeSet<&str> = report.blocked.iter().map(|b| b.pod.as_str()).collect();
    assert_eq!(
        blocked,
        BTreeSet::from([
            "onecloud-minio/minio-2",
            "onecloud-minio/minio-3",
            "onecloud-monitoring/monitor-minio-2",
            "onecloud-monitoring/monitor-minio-3"
        ])
    );
    assert!(
        report
            .blocked
            .iter()
            .all(|b| b.reason.contains("disruption budget")),
        "{report:#?}"
    );
    assert!(!report.complete());
    let obs = t.kube.observe(&ObserveRequest::default()).await.unwrap();
    assert!(obs.node(N3).unwrap().unschedulable);
    assert!(
        obs.pods
            .iter()
            .any(|p| p.name == "minio-2" && p.node.as_deref() == Some(N3))
    );
    // Evicted: gone, or (no kubelet on a real test cluster to confirm it) Terminating.
    assert!(
        !obs.pods
            .iter()
            .any(|p| p.name.starts_with("metrics-server-")
                && p.node.as_deref() == Some(N3)
                && !p.terminating),
        "{:#?}",
        obs.pods
    );
    assert_eq!(t.kube.uncordon(N3).await.unwrap(), ActOutcome::Changed);
}
dual_test!(
    drain_skips_daemonsets_and_stops_at_pdb,
    drain_skips_daemonsets_and_stops_at_pdb_e2e,
    Controllers::default(),
    drain_pdb_body
);

async fn drain_dead_body(t: Target) {
    // Premises: the lost node is not Ready, N2 is, minio-1 runs on the lost node.
    let obs = t.kube.observe(&ObserveRequest::default()).await.unwrap();
    assert_ne!(
        obs.node(DEAD).map(|n| n.ready),
        Some(Readiness::Ready),
        "premise: {DEAD} is not Ready"
    );
    assert_eq!(
        obs.node(N2).map(|n| n.ready),
        Some(Readiness::Ready),
        "premise: {N2} is Ready"
    );
    assert!(
        obs.pods_on(DEAD)
            .any(|p| p.name == "minio-1" && !p.terminating),
        "premise: minio-1 runs on {DEAD}"
    );
    // Evicting on a dead node: evictions are accepted but the pods stay Terminating
    // (no kubelet) — the seed 004 hang, bounded by the deadline.
    let started = std::time::Instant::now();
    let report = t
        .kube
        .drain(DEAD, &quick_drain(DrainMode::Evict, 1500))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        report
            .still_terminating
            .contains(&"onecloud-minio/minio-1".to_string()),
        "{report:#?}"
    );
    assert!(!report.complete());
    // Force deletion is refused on a Ready node...
    let err = t
        .kube
        .drain(N2, &quick_drain(DrainMode::ForceDeleteHostGone, 1000))
        .await
        .unwrap_err();
    assert!(matches!(err, KubeError::Refused { .. }), "{err}");
    assert!(err.to_string().contains(N2));
    // ...and clears the dead node.
    let report = t
        .kube
        .drain(DEAD, &quick_drain(DrainMode::ForceDeleteHostGone, 1000))
        .await
        .unwrap();
    assert_eq!(report.cordon, ActOutcome::AlreadyDone);
    assert!(
        report
            .force_deleted
            .contains(&"onecloud-minio/minio-1".to_string())
    );
    let obs = t.kube.observe(&ObserveRequest::default()).await.unwrap();
    let left: BTreeSet<&str> = obs.pods_on(DEAD).map(|p| p.name.as_str()).collect();
    assert_eq!(
        left,
        BTreeSet::from(["default-host-health-bxgbk", "keepalived-lzx-ha-env"]),
        "DaemonSet and mirror pods stay"
    );
    // Draining again does nothing more.
    let again = t
        .kube
        .drain(DEAD, &quick_drain(DrainMode::ForceDeleteHostGone, 1000))
        .await
        .unwrap();
    assert!(again.force_deleted.is_empty() && again.complete());
}
dual_test!(
    drain_of_dead_node_does_not_hang_and_force_delete_clears_it,
    drain_of_dead_node_does_not_hang_and_force_delete_clears_it_e2e,
    Controllers::default(),
    drain_dead_body
);

async fn delete_node_body(t: Target) {
    let before = t.kube.observe(&request()).await.unwrap();
    assert!(
        before.node(DEAD).is_some() && before.pods_on(DEAD).count() > 0,
        "premise: {DEAD} exists with pods"
    );
    assert_eq!(
        before.pvcs_on(DEAD).count(),
        3,
        "premise: three volumes on {DEAD}"
    );
    assert_eq!(t.kube.delete_node(DEAD).await.unwrap(), ActOutcome::Changed);
    assert_eq!(
        t.kube.delete_node(DEAD).await.unwrap(),
        ActOutcome::AlreadyDone
    );
    // The pod garbage collector removes the pods of a deleted node (a real one after its
    // quarantine of about 40 s).
    let obs = common::poll(Duration::from_secs(120), || async {
        let o = t.kube.observe(&request()).await.unwrap();
        (o.pods_on(DEAD).count() == 0).then_some(o)
    })
    .await
    .expect("the pods of the deleted node are removed");
    assert!(obs.node(DEAD).is_none());
    assert_eq!(obs.nodes.len(), 2);
    // Its local volumes remain, still pinned to the deleted node.
    assert_eq!(obs.pvcs_on(DEAD).count(), 3);
}
dual_test!(
    delete_node_is_idempotent_and_its_pods_go,
    delete_node_is_idempotent_and_its_pods_go_e2e,
    Controllers::default(),
    delete_node_body
);

/// Seed 004 steps 2 and 5 for a StatefulSet: delete the node, join a new one, cordon the
/// others, rebind `export-minio-1`: the controller recreates PVC and pod on the new node.
#[tokio::test]
async fn statefulset_rebind_recreates_pvc_and_pod_on_new_node() {
    let t = Target::memory(Controllers::all()).await;
    t.kube
        .drain(DEAD, &quick_drain(DrainMode::ForceDeleteHostGone, 1000))
        .await
        .unwrap();
    t.kube.delete_node(DEAD).await.unwrap();
    let before = t.kube.observe(&request()).await.unwrap();
    let old = before
        .pvcs
        .iter()
        .find(|p| p.name == "export-minio-1")
        .unwrap()
        .clone();
    // The StatefulSet recreated minio-1, Pending: its PVC is pinned to the deleted node.
    let minio1 = before.pods.iter().find(|p| p.name == "minio-1").unwrap();
    assert_eq!(
        (minio1.phase.as_str(), minio1.node.as_deref()),
        ("Pending", None)
    );
    assert_eq!(
        before.stateful_on(DEAD).len(),
        3,
        "pending pods still wait for the dead node's volumes"
    );

    t.add_node(NEW, "192.168.0.239");
    t.kube.cordon(N2).await.unwrap();
    t.kube.cordon(N3).await.unwrap();
    let req = RebindRequest {
        namespace: "onecloud-minio".into(),
        pvc: "export-minio-1".into(),
        lost_node: DEAD.into(),
        policy: RebindPolicy::StatefulSetRecreatePvcAndPod,
        expected_pvc_uid: Some(old.uid.clone()),
        deadline: Duration::from_secs(30),
        evidence: host_gone(),
        min_not_ready: DEFAULT_MIN_NOT_READY,
    };
    let report = t.kube.rebind_volume(&req).await.unwrap();
    assert_eq!(report.outcome, ActOutcome::Changed);
    assert!(report.deleted_pvc);
    assert_eq!(report.deleted_pods, vec!["onecloud-minio/minio-1"]);

    let after = t.kube.observe(&request()).await.unwrap();
    let new = after
        .pvcs
        .iter()
        .find(|p| p.name == "export-minio-1")
        .expect("PVC recreated by the StatefulSet");
    assert_ne!(new.uid, old.uid);
    assert_eq!(new.local_node.as_deref(), Some(NEW));
    let minio1 = after.pods.iter().find(|p| p.name == "minio-1").unwrap();
    assert_eq!(
        (minio1.phase.as_str(), minio1.node.as_deref()),
        ("Running", Some(NEW))
    );
    assert!(
        after
            .pvs
            .iter()
            .all(|pv| pv.name != old.volume.clone().unwrap()),
        "the old PV was reclaimed"
    );
    // Other MinIO volumes untouched.
    let m0 = after
        .pvcs
        .iter()
        .find(|p| p.name == "export-minio-0")
        .unwrap();
    assert_eq!(m0.local_node.as_deref(), Some(N2));
    // Idempotent.
    let again = t.kube.rebind_volume(&req).await.unwrap();
    assert_eq!(again.outcome, ActOutcome::AlreadyDone, "{again:#?}");
    assert_eq!(
        t.kube
            .observe(&request())
            .await
            .unwrap()
            .pvcs
            .iter()
            .find(|p| p.name == "export-minio-1")
            .unwrap()
            .uid,
        new.uid
    );
}

/// Seed 004 for victoria-metrics: delete PVC and Deployment; the operator recreates both.
#[tokio::test]
async fn deployment_rebind_for_operator_recreates_on_new_node() {
    let t = Target::memory(Controllers::all()).await;
    t.kube
        .drain(DEAD, &quick_drain(DrainMode::ForceDeleteHostGone, 1000))
        .await
        .unwrap();
    t.kube.delete_node(DEAD).await.unwrap();
    t.add_node(NEW, "192.168.0.239");
    t.kube.cordon(N2).await.unwrap();
    t.kube.cordon(N3).await.unwrap();
    let before = t.kube.observe(&request()).await.unwrap();
    let old = before
        .pvcs
        .iter()
        .find(|p| p.name == "default-victoria-metrics")
        .unwrap()
        .clone();
    let req = RebindRequest {
        namespace: "onecloud".into(),
        pvc: "default-victoria-metrics".into(),
        lost_node: DEAD.into(),
        policy: RebindPolicy::DeploymentDeleteForOperator,
        expected_pvc_uid: Some(old.uid.clone()),
        deadline: Duration::from_secs(30),
        evidence: host_gone(),
        min_not_ready: DEFAULT_MIN_NOT_READY,
    };
    let report = t.kube.rebind_volume(&req).await.unwrap();
    assert_eq!(
        report.deleted_deployment.as_deref(),
        Some("onecloud/default-victoria-metrics")
    );
    assert!(report.deleted_pvc);
    let after = t.kube.observe(&request()).await.unwrap();
    let new = after
        .pvcs
        .iter()
        .find(|p| p.name == "default-victoria-metrics")
        .expect("operator recreated the PVC");
    assert_ne!(new.uid, old.uid);
    assert_eq!(new.local_node.as_deref(), Some(NEW));
    let pod = after
        .pods
        .iter()
        .find(|p| p.pvcs.contains(&"default-victoria-metrics".to_string()))
        .unwrap();
    assert_eq!(pod.node.as_deref(), Some(NEW));
    assert_eq!(pod.owner.as_ref().unwrap().name, "default-victoria-metrics");
    assert_eq!(
        t.kube.rebind_volume(&req).await.unwrap().outcome,
        ActOutcome::AlreadyDone
    );
}

/// A plain Deployment (no operator): scale down, recreate the PVC empty, scale back up.
#[tokio::test]
async fn deployment_rebind_by_scaling_down_and_up() {
    let controllers = Controllers {
        operator_label: None,
        ..Controllers::all()
    };
    let t = Target::memory(controllers).await;
    t.add_node(NEW, "192.168.0.239");
    t.kube.cordon(N2).await.unwrap();
    t.kube.cordon(N3).await.unwrap();
    let before = t.kube.observe(&request()).await.unwrap();
    let old = before
        .pvcs
        .iter()
        .find(|p| p.name == "default-victoria-metrics")
        .unwrap()
        .clone();
    assert_eq!(old.local_node.as_deref(), Some(DEAD));
    let req = RebindRequest {
        namespace: "onecloud".into(),
        pvc: "default-victoria-metrics".into(),
        lost_node: DEAD.into(),
        policy: RebindPolicy::DeploymentScaleDownUp,
        expected_pvc_uid: Some(old.uid.clone()),
        deadline: Duration::from_secs(30),
        evidence: host_gone(),
        min_not_ready: DEFAULT_MIN_NOT_READY,
    };
    let report = t.kube.rebind_volume(&req).await.unwrap();
    assert_eq!(report.rescaled, Some((0, 1)));
    assert!(report.deleted_pvc);
    let after = t.kube.observe(&request()).await.unwrap();
    let new = after
        .pvcs
        .iter()
        .find(|p| p.name == "default-victoria-metrics")
        .unwrap();
    assert_ne!(new.uid, old.uid);
    assert_eq!(new.local_node.as_deref(), Some(NEW));
    let running: Vec<_> = after
        .pods
        .iter()
        .filter(|p| p.pvcs.contains(&"default-victoria-metrics".to_string()) && !p.terminating)
        .collect();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].node.as_deref(), Some(NEW));
    assert_eq!(
        t.kube.rebind_volume(&req).await.unwrap().outcome,
        ActOutcome::AlreadyDone
    );
}

async fn refuse_body(t: Target) {
    let obs = t.kube.observe(&request()).await.unwrap();
    let m0 = obs
        .pvcs
        .iter()
        .find(|p| p.name == "export-minio-0")
        .expect("premise: export-minio-0 exists")
        .clone();
    assert_eq!(
        m0.local_node.as_deref(),
        Some(N2),
        "premise: export-minio-0 is on {N2}"
    );
    assert_eq!(
        obs.node(N2).map(|n| n.ready),
        Some(Readiness::Ready),
        "premise: {N2} is Ready"
    );
    for lost in [N2, DEAD] {
        let req = RebindRequest {
            namespace: "onecloud-minio".into(),
            pvc: "export-minio-0".into(),
            lost_node: lost.into(),
            policy: RebindPolicy::StatefulSetRecreatePvcAndPod,
            expected_pvc_uid: Some(m0.uid.clone()),
            deadline: Duration::from_secs(10),
            evidence: host_gone(),
            min_not_ready: DEFAULT_MIN_NOT_READY,
        };
        let err = t.kube.rebind_volume(&req).await.unwrap_err();
        assert!(matches!(err, KubeError::Refused { .. }), "{err}");
        assert!(
            err.to_string().contains("export-minio-0") && err.to_string().contains("Ready"),
            "{err}"
        );
    }
    let after = t.kube.observe(&request()).await.unwrap();
    let still = after
        .pvcs
        .iter()
        .find(|p| p.name == "export-minio-0")
        .unwrap();
    assert_eq!(
        (still.uid.as_str(), still.terminating),
        (m0.uid.as_str(), false)
    );
    assert!(
        after
            .pods
            .iter()
            .any(|p| p.name == "minio-0" && p.node.as_deref() == Some(N2) && !p.terminating)
    );
}
dual_test!(
    rebind_refuses_pvc_on_healthy_node,
    rebind_refuses_pvc_on_healthy_node_e2e,
    Controllers::all(),
    refuse_body
);

async fn policy_mismatch_body(t: Target) {
    let before = t.kube.observe(&request()).await.unwrap();
    let owner = before
        .pods
        .iter()
        .find(|p| p.pvcs.iter().any(|c| c == "default-victoria-metrics"))
        .and_then(|p| p.owner.clone());
    assert_eq!(
        owner.map(|o| o.kind),
        Some(WorkloadKind::Deployment),
        "premise: default-victoria-metrics is mounted by a Deployment's pod"
    );
    let req = RebindRequest {
        namespace: "onecloud".into(),
        pvc: "default-victoria-metrics".into(),
        lost_node: DEAD.into(),
        policy: RebindPolicy::StatefulSetRecreatePvcAndPod,
        expected_pvc_uid: None,
        deadline: Duration::from_secs(10),
        evidence: host_gone(),
        min_not_ready: DEFAULT_MIN_NOT_READY,
    };
    let err = t.kube.rebind_volume(&req).await.unwrap_err();
    assert!(matches!(err, KubeError::Refused { .. }), "{err}");
    let obs = t.kube.observe(&request()).await.unwrap();
    assert!(
        obs.pvcs
            .iter()
            .any(|p| p.name == "default-victoria-metrics" && !p.terminating)
    );
}
dual_test!(
    rebind_refuses_a_policy_that_does_not_match_the_owner,
    rebind_refuses_a_policy_that_does_not_match_the_owner_e2e,
    Controllers::default(),
    policy_mismatch_body
);

async fn addon_body(t: Target) {
    let before = t.kube.observe(&request()).await.unwrap();
    let coredns = before.addons.iter().find(|a| a.name == "coredns");
    assert_eq!(
        coredns.map(|c| (c.found, c.replicas)),
        Some((true, 1)),
        "premise: kube-system/coredns runs one replica"
    );
    let change = AddonChange {
        namespace: "kube-system".into(),
        name: "coredns".into(),
        replicas: 3,
        spread_topology_key: Some("kubernetes.io/hostname".into()),
        method: AddonMethod::Patch,
    };
    assert_eq!(
        t.kube.set_addon_replicas_and_spread(&change).await.unwrap(),
        ActOutcome::Changed
    );
    assert_eq!(
        t.kube.set_addon_replicas_and_spread(&change).await.unwrap(),
        ActOutcome::AlreadyDone
    );
    let obs = t.kube.observe(&request()).await.unwrap();
    let c = obs.addons.iter().find(|a| a.name == "coredns").unwrap();
    assert_eq!(c.replicas, 3);
    assert_eq!(c.spread_topology_keys, vec!["kubernetes.io/hostname"]);

    let traefik = AddonChange {
        namespace: "kube-system".into(),
        name: "traefik".into(),
        replicas: 2,
        spread_topology_key: Some("kubernetes.io/hostname".into()),
        method: AddonMethod::HelmChartConfig {
            chart: "traefik".into(),
            values_content: Some("deployment:\n  replicas: 2\n".into()),
        },
    };
    assert_eq!(
        t.kube
            .set_addon_replicas_and_spread(&traefik)
            .await
            .unwrap(),
        ActOutcome::Changed
    );
    assert_eq!(
        t.kube
            .set_addon_replicas_and_spread(&traefik)
            .await
            .unwrap(),
        ActOutcome::AlreadyDone
    );
    let obs = t
        .kube
        .observe(&ObserveRequest {
            addons: vec![AddonRef::kube_system("traefik")],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(obs.addons[0].helm_chart.as_deref(), Some("traefik"));
    assert_eq!(obs.addons[0].helm_chart_config.as_deref(), Some("traefik"));
}
dual_test!(
    addon_replicas_and_spread,
    addon_replicas_and_spread_e2e,
    Controllers::all(),
    addon_body
);

#[tokio::test]
async fn unreachable_api_is_an_error_not_an_empty_cluster() {
    // A port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n"),
    )
    .unwrap();
    let kube = KubeProvider::connect(KubeSettings {
        kubeconfig: Some(path),
        ..Default::default()
    })
    .await
    .unwrap();
    let err = kube.observe(&request()).await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(kube.cordon(N2).await.unwrap_err().is_unreachable());

    // A server that goes away after a successful observation.
    let t = Target::memory(Controllers::default()).await;
    t.kube.observe(&request()).await.unwrap();
    let Target { kube, server, .. } = t;
    drop(server);
    let err = kube.observe(&request()).await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
}

#[tokio::test]
async fn kubeconfig_context_is_selected_like_kubectl() {
    let server = k3splan_testkit_kubeapi::KubeApiServer::seed004(Controllers::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    // Two contexts: the current one points nowhere, "lab" at the server.
    let good = server.kubeconfig_yaml();
    let yaml = good
        .replace("current-context: kubeapi-test", "current-context: broken")
        .replace(
            "contexts:\n",
            "contexts:\n- name: broken\n  context:\n    cluster: nowhere\n    user: kubeapi-test\n",
        )
        .replace(
            "clusters:\n",
            "clusters:\n- name: nowhere\n  cluster:\n    server: https://127.0.0.1:1\n",
        );
    std::fs::write(&path, yaml).unwrap();
    let current = KubeProvider::connect(KubeSettings {
        kubeconfig: Some(path.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(current.context(), Some("broken"));
    assert!(current.endpoint().ends_with(":1"));
    let chosen = KubeProvider::connect(KubeSettings {
        kubeconfig: Some(path.clone()),
        context: Some("kubeapi-test".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(chosen.endpoint(), server.url());
    assert_eq!(chosen.server_version().await.unwrap(), "v1.28.5+k3s1");
    let err = KubeProvider::connect(KubeSettings {
        kubeconfig: Some(path),
        context: Some("nope".into()),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, KubeError::Kubeconfig { .. }), "{err}");
    let err = KubeProvider::connect(KubeSettings {
        kubeconfig: Some(dir.path().join("missing")),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

async fn unmanaged_body(t: Target) {
    let obs = t.kube.observe(&ObserveRequest::default()).await.unwrap();
    assert_eq!(
        obs.node(N2).map(|n| (n.ready, n.unschedulable)),
        Some((Readiness::Ready, false)),
        "premise: {N2} Ready and schedulable"
    );
    // A bare pod, created through the API (status through /status), labelled as the fixture's
    // so that the e2e clean-up removes it.
    let (k, v) = k3splan_testkit_kubeapi::loader::FIXTURE_LABEL;
    let client = raw_client(&t).await;
    let bare = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "debug-shell", "namespace": "default", "labels": {k: v}},
        "spec": {"nodeName": N2, "containers": [{"name": "sh", "image": "busybox"}]}});
    client
        .request::<serde_json::Value>(
            http::Request::post("/api/v1/namespaces/default/pods")
                .header("content-type", "application/json")
                .body(bare.to_string().into_bytes())
                .unwrap(),
        )
        .await
        .expect("create the bare pod");
    client
        .request::<serde_json::Value>(
            http::Request::patch("/api/v1/namespaces/default/pods/debug-shell/status")
                .header("content-type", "application/merge-patch+json")
                .body(
                    serde_json::json!({"status": {"phase": "Running",
                        "conditions": [{"type": "Ready", "status": "True"}]}})
                    .to_string()
                    .into_bytes(),
                )
                .unwrap(),
        )
        .await
        .expect("set the bare pod's status");
    let report = t
        .kube
        .drain(N2, &quick_drain(DrainMode::Evict, 1500))
        .await
        .unwrap();
    let blocked: Vec<&str> = report
        .blocked
        .iter()
        .filter(|b| b.reason.contains("not managed"))
        .map(|b| b.pod.as_str())
        .collect();
    assert_eq!(blocked, vec!["default/debug-shell"]);
    assert!(!report.evicted.contains(&"default/debug-shell".to_string()));
    let opts = DrainOptions {
        remove_unmanaged: true,
        ..quick_drain(DrainMode::Evict, 1500)
    };
    let report = t.kube.drain(N2, &opts).await.unwrap();
    assert!(
        report.evicted.contains(&"default/debug-shell".to_string()),
        "{report:#?}"
    );
    t.kube.uncordon(N2).await.unwrap();
}
dual_test!(
    drain_leaves_unmanaged_pods_unless_asked,
    drain_leaves_unmanaged_pods_unless_asked_e2e,
    Controllers::default(),
    unmanaged_body
);

/// `PodScope::Namespaces` (what `k3splan plan` uses: the namespaces of its storage blocks)
/// lists only those namespaces' pods and still finds the stateful pods of the dead node.
#[tokio::test]
async fn observe_namespaces_lists_only_those_pods() {
    let t = Target::memory_with(Controllers::default(), KubeSettings::default()).await;
    let full = t.kube.observe(&request()).await.unwrap();
    let before = t.server().requests().len();
    let scoped = t
        .kube
        .observe(&ObserveRequest {
            pods: PodScope::Namespaces,
            namespaces: vec![
                "onecloud-minio".into(),
                "onecloud-monitoring".into(),
                "onecloud".into(),
            ],
            ..request()
        })
        .await
        .unwrap();
    assert_eq!(
        stateful_summary(&scoped, DEAD),
        stateful_summary(&full, DEAD)
    );
    assert!(
        scoped
            .pods
            .iter()
            .all(|p| p.namespace.starts_with("onecloud"))
    );
    assert!(scoped.pods.len() < full.pods.len());
    let reqs = t.server().requests()[before..].to_vec();
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("GET /api/v1/namespaces/onecloud-minio/pods")),
        "{reqs:#?}"
    );
    assert!(
        !reqs.iter().any(|r| r.starts_with("GET /api/v1/pods")),
        "no cluster-wide pod list: {reqs:#?}"
    );
}

/// `PodScope::Workloads` (what `k3splan plan` uses since issue 20: the workloads its
/// storage blocks name) reads each workload and lists its pods by the workload's own label
/// selector: the same stateful pods of the dead node as a full read, no pod of another
/// workload, and no unselected list of a namespace. An absent workload has no pods.
#[tokio::test]
async fn observe_workloads_lists_only_their_pods_by_selector() {
    let t = Target::memory_with(Controllers::default(), KubeSettings::default()).await;
    let full = t.kube.observe(&request()).await.unwrap();
    let w = |ns: &str, name: &str, kind| WorkloadPods {
        namespace: ns.into(),
        name: name.into(),
        kind,
    };
    let before = t.server().requests().len();
    let scoped = t
        .kube
        .observe(&ObserveRequest {
            pods: PodScope::Workloads,
            workloads: vec![
                w("onecloud-minio", "minio", WorkloadKind::StatefulSet),
                w(
                    "onecloud-monitoring",
                    "monitor-minio",
                    WorkloadKind::StatefulSet,
                ),
                w(
                    "onecloud",
                    "default-victoria-metrics",
                    WorkloadKind::Deployment,
                ),
                w("onecloud", "no-such-workload", WorkloadKind::StatefulSet),
            ],
            ..request()
        })
        .await
        .unwrap();
    assert_eq!(
        stateful_summary(&scoped, DEAD),
        stateful_summary(&full, DEAD)
    );
    let owners: BTreeSet<String> = scoped
        .pods
        .iter()
        .map(|p| format!("{:?}", p.owner.as_ref().map(|o| (&o.kind, &o.name))))
        .collect();
    assert_eq!(
        owners.len(),
        3,
        "only the three workloads' pods: {owners:#?}"
    );
    assert!(scoped.pods.len() < full.pods.len());
    let reqs = t.server().requests()[before..].to_vec();
    let pod_lists: Vec<&String> = reqs
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/namespaces/onecloud") && r.contains("/pods"))
        .collect();
    assert_eq!(
        pod_lists.len(),
        3,
        "one list per existing workload: {reqs:#?}"
    );
    assert!(
        pod_lists.iter().all(|r| r.contains("labelSelector=")),
        "every pod list selects by label: {reqs:#?}"
    );
    assert!(
        reqs.iter().any(
            |r| r.starts_with("GET /apis/apps/v1/namespaces/onecloud-minio/statefulsets/minio")
        ),
        "{reqs:#?}"
    );
}

/// Issue 13, point 5: `rebind_volume` deletes a PVC (the one irreversible step) only on the
/// planner's evidence that the host is gone *and* after the Node has been not Ready for the
/// threshold. Against a real API server a node NotReady for ~50 s (a kubelet restart or a
/// network blip looks the same) had its PVC and pod deleted on "not Ready" alone.
async fn issue13_rebind_guard_body(t: Target) {
    const PVC: &str = "export-minio-1";
    let since = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(50);
    // RFC 3339 in whole seconds, as the API server writes it.
    let since = since.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    t.patch_node_status(
        DEAD,
        &serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown",
            "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status.",
            "lastHeartbeatTime": since, "lastTransitionTime": since}]}}),
    )
    .await;

    // The premise, checked: the node is not Ready, for less than the threshold; the PVC is
    // there, bound to it; its pod too.
    let before = t.kube.observe(&request()).await.unwrap();
    let dead = before.node(DEAD).expect("the lost node is listed");
    assert_ne!(dead.ready, Readiness::Ready, "premise: {dead:?}");
    let at: jiff::Timestamp = dead
        .ready_since
        .as_deref()
        .expect("premise: a Ready lastTransitionTime")
        .parse()
        .unwrap();
    let age = jiff::Timestamp::now().duration_since(at).as_secs();
    assert!(
        (40..DEFAULT_MIN_NOT_READY.as_secs() as i64).contains(&age),
        "premise: NotReady for {age}s, between a heartbeat gap and the threshold"
    );
    let pvc = before
        .pvcs
        .iter()
        .find(|p| p.name == PVC)
        .expect("premise: the PVC exists")
        .clone();
    assert_eq!(pvc.local_node.as_deref(), Some(DEAD), "premise: {pvc:?}");
    assert!(!pvc.terminating, "premise: {pvc:?}");
    let pod = |o: &ClusterObservation| {
        o.pods
            .iter()
            .find(|p| p.pvcs.iter().any(|c| c == PVC))
            .map(|p| (p.name.clone(), p.terminating))
    };
    assert_eq!(pod(&before).map(|p| p.1), Some(false), "premise: its pod");

    let req = |evidence: HostGoneEvidence, min_not_ready: Duration| RebindRequest {
        namespace: "onecloud-minio".into(),
        pvc: PVC.into(),
        lost_node: DEAD.into(),
        policy: RebindPolicy::StatefulSetRecreatePvcAndPod,
        expected_pvc_uid: Some(pvc.uid.clone()),
        deadline: Duration::from_secs(10),
        evidence,
        min_not_ready,
    };
    // Host unreachable and member dead, but NotReady for 50 s only: refused.
    let err = t
        .kube
        .rebind_volume(&req(host_gone(), DEFAULT_MIN_NOT_READY))
        .await
        .unwrap_err();
    assert!(matches!(err, KubeError::Refused { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(PVC)
            && msg.contains(DEAD)
            && msg.contains("not Ready for")
            && msg.contains("300s"),
        "{msg}"
    );
    // Not Ready for longer than the threshold asked, but no evidence that the host is gone
    // (it answers over SSH, its member is healthy): refused.
    for evidence in [
        HostGoneEvidence::default(),
        HostGoneEvidence {
            host_unreachable: true,
            ..HostGoneEvidence::default()
        },
        HostGoneEvidence {
            member_dead: true,
            ..HostGoneEvidence::default()
        },
    ] {
        let err = t
            .kube
            .rebind_volume(&req(evidence.clone(), Duration::from_secs(10)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, KubeError::Refused { .. }),
            "{evidence:?}: {err}"
        );
        assert!(
            err.to_string().contains("no evidence that the host"),
            "{err}"
        );
    }
    // Nothing was touched.
    let after = t.kube.observe(&request()).await.unwrap();
    let still = after.pvcs.iter().find(|p| p.name == PVC).expect("PVC kept");
    assert_eq!(
        (still.uid.as_str(), still.terminating),
        (pvc.uid.as_str(), false)
    );
    assert_eq!(pod(&after), pod(&before), "its pod kept");

    // The control: with the evidence and a NotReady age above the threshold, it goes ahead.
    let ok = t
        .kube
        .rebind_volume(&req(host_gone(), Duration::from_secs(10)))
        .await
        .expect("rebind with evidence, past the threshold");
    assert!(ok.deleted_pvc, "{ok:?}");
}
dual_test!(
    issue13_rebind_refuses_a_recent_notready_node_and_missing_evidence,
    issue13_rebind_refuses_a_recent_notready_node_and_missing_evidence_e2e,
    Controllers::all(),
    issue13_rebind_guard_body
);

/// A drain blocked by a PodDisruptionBudget is explained: namespace/name, the API's reason
/// and what to do, not Rust Debug.
async fn pdb_message_body(t: Target) {
    let report = t
        .kube
        .drain(N3, &quick_drain(DrainMode::Evict, 800))
        .await
        .unwrap();
    // Premise: MinIO's budget blocks the drain.
    assert!(!report.complete(), "{report:#?}");
    let msg = report.incomplete_message();
    assert!(!msg.contains("BlockedPod"), "{msg}");
    assert!(!msg.contains(" {"), "no Debug braces: {msg}");
    assert!(
        msg.contains(&format!("drain of {N3} did not finish")),
        "{msg}"
    );
    for pod in [
        "onecloud-minio/minio-2",
        "onecloud-monitoring/monitor-minio-2",
    ] {
        let line = msg
            .lines()
            .find(|l| l.contains(pod))
            .unwrap_or_else(|| panic!("{pod} not named: {msg}"));
        assert!(line.contains("429"), "the API's code: {line}");
        assert!(
            line.contains("disruption budget"),
            "the API's reason: {line}"
        );
        assert!(line.contains("what to do:"), "{line}");
        assert!(line.contains("kubectl get pdb -n "), "{line}");
    }
    t.kube.uncordon(N3).await.unwrap();
}
dual_test!(
    issue13_a_drain_blocked_by_a_pdb_says_which_pod_why_and_what_to_do,
    issue13_a_drain_blocked_by_a_pdb_says_which_pod_why_and_what_to_do_e2e,
    Controllers::default(),
    pdb_message_body
);

/// Issue 19, point 8: after the 300 s `node.kubernetes.io/unreachable` toleration, the taint
/// eviction controller deletes the pods of the lost node; without a kubelet they stay
/// Terminating, and the ReplicaSet (which does not count terminating pods) creates a
/// replacement that mounts the same claim and stays Pending. That replacement is the same
/// stateful pod waiting for the same volume: `stateful_on` counts the workload once.
async fn eviction_replacement_body(t: Target) {
    const PVC: &str = "default-victoria-metrics";
    let before = t.kube.observe(&request()).await.unwrap();
    let old = before
        .pods_on(DEAD)
        .find(|p| p.pvcs.iter().any(|c| c == PVC))
        .expect("premise: the victoria-metrics pod is on the lost node")
        .clone();
    assert!(!old.terminating, "premise: {old:?}");
    assert_eq!(
        before.stateful_on(DEAD).len(),
        3,
        "premise: three stateful pods on the lost node"
    );

    // What the taint eviction controller does: a graceful DELETE.
    let client = raw_client(&t).await;
    client
        .request::<serde_json::Value>(
            http::Request::delete(format!(
                "/api/v1/namespaces/{}/pods/{}",
                old.namespace, old.name
            ))
            .body(Vec::new())
            .unwrap(),
        )
        .await
        .expect("delete the pod as the taint eviction controller does");
    let after = common::poll(Duration::from_secs(60), || async {
        let o = t.kube.observe(&request()).await.unwrap();
        let users = o
            .pods
            .iter()
            .filter(|p| p.pvcs.iter().any(|c| c == PVC))
            .count();
        (users == 2).then_some(o)
    })
    .await
    .expect("the ReplicaSet created a replacement pod beside the terminating one");
    let users: Vec<&PodInfo> = after
        .pods
        .iter()
        .filter(|p| p.pvcs.iter().any(|c| c == PVC))
        .collect();
    let terminating = users.iter().find(|p| p.name == old.name).unwrap();
    assert!(terminating.terminating, "{terminating:?}");
    let replacement = users.iter().find(|p| p.name != old.name).unwrap();
    assert_eq!(
        (replacement.node.as_deref(), replacement.phase.as_str()),
        (None, "Pending"),
        "{replacement:?}"
    );
    assert_eq!(replacement.owner, old.owner);

    let on_dead = after.stateful_on(DEAD);
    let vm: Vec<&str> = on_dead
        .iter()
        .filter(|(_, c)| c.iter().any(|c| c.name == PVC))
        .map(|(p, _)| p.name.as_str())
        .collect();
    assert_eq!(
        vm,
        vec![old.name.as_str()],
        "one stateful pod per workload and claim: the one on the node"
    );
    assert_eq!(on_dead.len(), 3, "still three stateful pods: {on_dead:#?}");
}
dual_test!(
    stateful_on_counts_an_eviction_replacement_once,
    stateful_on_counts_an_eviction_replacement_once_e2e,
    Controllers::all(),
    eviction_replacement_body
);

/// Issue 19, point 8: the fixture loader puts seed 004 on an API server through the API the
/// way a real server needs it (server uids, status through `/status`, adoption by the
/// controllers, volumes bound to the claims' real uids, revision labels), and the result
/// observes as the fixture written straight into storage does; cleaning removes all of it and
/// a second load works (the e2e tests' set-up and clean-up).
#[tokio::test]
async fn the_loader_puts_seed004_on_a_server_through_the_api_and_cleans_it() {
    // No operator: a real server has none, and it would recreate its Deployment while the
    // fixture is cleaned.
    let controllers = Controllers {
        operator_label: None,
        ..Controllers::all()
    };
    let bulk = Target::memory(controllers.clone()).await;
    let loaded = Target::memory_via_loader(controllers).await;
    let want = bulk.kube.observe(&request()).await.unwrap();
    let got = loaded.kube.observe(&request()).await.unwrap();
    assert_eq!(view(&got), view(&want));
    assert_eq!(stateful_summary(&got, DEAD), stateful_summary(&want, DEAD));
    // The uids are the server's: none of the fixture's `uid-...` survived.
    assert!(got.pods.iter().all(|p| !p.uid.starts_with("uid-")));
    assert!(got.pvcs.iter().all(|p| !p.uid.starts_with("uid-")));
    // Revision labels, as the controllers write them.
    let minio1 = got.pods.iter().find(|p| p.name == "minio-1").unwrap();
    let sts = loaded
        .server()
        .store()
        .get(
            k3splan_testkit_kubeapi::store::ty("StatefulSet"),
            "onecloud-minio",
            "minio",
        )
        .unwrap();
    assert_eq!(
        minio1
            .labels
            .get("controller-revision-hash")
            .map(String::as_str),
        sts["status"]["updateRevision"].as_str()
    );
    assert_eq!(
        minio1
            .labels
            .get("statefulset.kubernetes.io/pod-name")
            .map(String::as_str),
        Some("minio-1")
    );
    // The whole observe test holds on the loaded cluster too.
    observe_seed004_body(Target::memory_via_loader(Controllers::all()).await).await;

    // Clean, then load again: the same cluster.
    let loader = k3splan_testkit_kubeapi::loader::Loader::from_kubeconfig(&loaded.kubeconfig)
        .await
        .unwrap();
    let docs = k3splan_testkit_kubeapi::loader::fixture_docs(k3splan_testkit_kubeapi::SEED004_YAML)
        .unwrap();
    loaded.kube.cordon(N2).await.unwrap();
    loader.clean(&docs).await.expect("clean");
    let empty = loaded.kube.observe(&request()).await.unwrap();
    assert!(
        empty.nodes.is_empty() && empty.pods.is_empty() && empty.pvcs.is_empty(),
        "{empty:#?}"
    );
    loader.load(&docs).await.expect("a second load");
    let again = loaded.kube.observe(&request()).await.unwrap();
    assert_eq!(view(&again), view(&want), "the cordon did not survive");
    // Premises: no load over an earlier one, nor over objects the loader did not make.
    let err = loader.load(&docs).await.unwrap_err().to_string();
    assert!(err.contains("already there from an earlier load"), "{err}");
    let over_bulk = k3splan_testkit_kubeapi::loader::Loader::from_kubeconfig(&bulk.kubeconfig)
        .await
        .unwrap();
    let err = over_bulk.load(&docs).await.unwrap_err().to_string();
    assert!(
        err.contains("was not created by the fixture loader") && err.contains("lzx-ha-env"),
        "{err}"
    );
}

/// What the tests rely on, without uids and times.
fn view(o: &ClusterObservation) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for n in &o.nodes {
        v.push(format!(
            "node {} {:?} unschedulable={} taints={:?} ip={:?}",
            n.name,
            n.ready,
            n.unschedulable,
            n.taints.iter().map(|t| &t.key).collect::<Vec<_>>(),
            n.internal_ip
        ));
    }
    for p in &o.pods {
        v.push(format!(
            "pod {}/{} node={:?} phase={} ready={} terminating={} mirror={} owner={:?} pvcs={:?}",
            p.namespace, p.name, p.node, p.phase, p.ready, p.terminating, p.mirror, p.owner, p.pvcs
        ));
    }
    for c in &o.pvcs {
        v.push(format!(
            "pvc {}/{} {} node={:?} volume={:?} used_by={:?}",
            c.namespace, c.name, c.phase, c.local_node, c.volume, c.used_by
        ));
    }
    for a in &o.addons {
        v.push(format!("{a:?}"));
    }
    v
}
