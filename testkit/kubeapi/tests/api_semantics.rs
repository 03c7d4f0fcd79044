//! The in-memory API server seen through the typed `kube` client (k8s-openapi types), over HTTPS.

use k3splan_testkit_kubeapi::{Controllers, KubeApiServer, ServerOptions};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::{
    Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy,
};
use kube::{Client, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn client(server: &KubeApiServer) -> Client {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path).unwrap();
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let mut cfg = Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    cfg.default_retry = false;
    Client::try_from(cfg).unwrap()
}

fn api_code<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> u16 {
    match r {
        Err(kube::Error::Api(s)) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn typed_client_reads_the_seed004_fixture_with_selectors_and_pages() {
    let server = KubeApiServer::seed004(Controllers::default())
        .await
        .unwrap();
    let c = client(&server).await;
    let nodes: Api<Node> = Api::all(c.clone());
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    let pods: Api<Pod> = Api::all(c.clone());
    let on_dead = pods
        .list(&ListParams::default().fields("spec.nodeName=lzx-ha-env"))
        .await
        .unwrap();
    assert_eq!(on_dead.items.len(), 6);
    let minio: Api<Pod> = Api::namespaced(c.clone(), "onecloud-minio");
    let l = minio
        .list(
            &ListParams::default()
                .labels("app=minio,statefulset.kubernetes.io/pod-name in (minio-1,minio-3)"),
        )
        .await
        .unwrap();
    let names: Vec<String> = l
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, vec!["minio-1", "minio-3"]);
    // Pagination: 19 pods in pages of 5, continue tokens, remainingItemCount.
    let mut seen = 0;
    let mut lp = ListParams::default().limit(5);
    let mut pages = 0;
    loop {
        let page = pods.list(&lp).await.unwrap();
        seen += page.items.len();
        pages += 1;
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!((seen, pages), (19, 4));
    let err = api_code(
        pods.list(
            &ListParams::default()
                .fields("spec.nodeName=x")
                .continue_token("%%%"),
        )
        .await,
    );
    assert_eq!(err, 400);
}

#[tokio::test]
async fn writes_follow_resource_version_uid_and_status_semantics() {
    let server = KubeApiServer::seed004(Controllers::default())
        .await
        .unwrap();
    let c = client(&server).await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), "onecloud");
    assert_eq!(api_code(pvcs.get("nope").await), 404);
    let mut pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"generateName": "data-"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path", "resources": {"requests": {"storage": "1Gi"}}}})).unwrap();
    let created = pvcs.create(&PostParams::default(), &pvc).await.unwrap();
    let name = created.metadata.name.clone().unwrap();
    assert!(name.starts_with("data-") && name.len() == 10);
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    assert_eq!(
        created.metadata.finalizers.as_deref(),
        Some(&["kubernetes.io/pvc-protection".to_string()][..])
    );
    pvc.metadata.name = Some(name.clone());
    pvc.metadata.generate_name = None;
    assert_eq!(
        api_code(pvcs.create(&PostParams::default(), &pvc).await),
        409
    );
    // Optimistic concurrency: a stale resourceVersion is a 409 Conflict.
    let mut stale = created.clone();
    let patched = pvcs
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_ne!(
        patched.metadata.resource_version,
        created.metadata.resource_version
    );
    stale.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
    assert_eq!(
        api_code(pvcs.replace(&name, &PostParams::default(), &stale).await),
        409
    );
    // Unused PVC: the protection finalizer is released at once on delete.
    pvcs.delete(&name, &DeleteParams::default()).await.unwrap();
    assert_eq!(api_code(pvcs.get(&name).await), 404);
    // A PVC in use stays Terminating until its pod is gone.
    let used: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), "onecloud-minio");
    used.delete("export-minio-0", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        used.get("export-minio-0")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    let pods: Api<Pod> = Api::namespaced(c.clone(), "onecloud-minio");
    pods.delete("minio-0", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(api_code(used.get("export-minio-0").await), 404);
}

#[tokio::test]
async fn garbage_collection_and_evictions() {
    let server = KubeApiServer::seed004(Controllers::default())
        .await
        .unwrap();
    let c = client(&server).await;
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "kube-system");
    let rs: Api<ReplicaSet> = Api::namespaced(c.clone(), "kube-system");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "kube-system");
    // Orphan keeps the ReplicaSet (without owner); Background removes ReplicaSet and pods.
    deps.delete(
        "metrics-server",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let orphan = rs.get("metrics-server-67c658944b").await.unwrap();
    assert!(
        orphan
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
    deps.delete("coredns", &DeleteParams::background())
        .await
        .unwrap();
    assert_eq!(api_code(rs.get("coredns-6799fbcd5").await), 404);
    assert_eq!(api_code(pods.get("coredns-6799fbcd5-xk2lq").await), 404);
    // Eviction: allowed without a budget, 429 when the PDB forbids it.
    let minio: Api<Pod> = Api::namespaced(c.clone(), "onecloud-minio");
    assert_eq!(
        api_code(minio.evict("minio-2", &EvictParams::default()).await),
        429
    );
    pods.evict("traefik-f4564c4f4-w8t6v", &EvictParams::default())
        .await
        .unwrap();
    assert_eq!(api_code(pods.get("traefik-f4564c4f4-w8t6v").await), 404);
    // Graceful deletion on a NotReady node leaves the pod Terminating; grace 0 removes it.
    minio
        .delete("minio-1", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        minio
            .get("minio-1")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    minio
        .delete(
            "minio-1",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(api_code(minio.get("minio-1").await), 404);
}

#[tokio::test]
async fn plain_http_serves_gzip_when_asked_and_discovery() {
    let server = KubeApiServer::start(ServerOptions {
        tls: false,
        ..Default::default()
    })
    .await
    .unwrap();
    server
        .load_yaml("seed004", k3splan_testkit_kubeapi::SEED004_YAML)
        .unwrap();
    let addr = server.url().trim_start_matches("http://").to_string();
    let get = |path: &str, gzip: bool| {
        let addr = addr.clone();
        let path = path.to_string();
        async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let enc = if gzip {
                "Accept-Encoding: gzip\r\n"
            } else {
                ""
            };
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\n{enc}Connection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            String::from_utf8_lossy(&out).to_string()
        }
    };
    let zipped = get("/api/v1/pods", true).await;
    assert!(
        zipped
            .to_ascii_lowercase()
            .contains("content-encoding: gzip"),
        "{}",
        &zipped[..300.min(zipped.len())]
    );
    let plain = get("/api/v1/pods", false).await;
    assert!(
        !plain
            .to_ascii_lowercase()
            .contains("content-encoding: gzip")
            && plain.contains("\"kind\":\"PodList\"")
    );
    assert!(get("/apis", false).await.contains("helm.cattle.io"));
    assert!(get("/apis/apps/v1", false).await.contains("statefulsets"));
    let missing = get("/api/v1/namespaces/x/pods/nope", false).await;
    assert!(
        missing.starts_with("HTTP/1.1 404") && missing.contains("\"reason\":\"NotFound\""),
        "{missing}"
    );
}

#[tokio::test]
async fn a_node_going_silent_blocks_scheduling_and_graceful_deletes() {
    let server = KubeApiServer::seed004(Controllers::all()).await.unwrap();
    let c = client(&server).await;
    server
        .store()
        .set_node_ready("lzx-ha-env-3", false)
        .unwrap();
    let nodes: Api<Node> = Api::all(c.clone());
    let n3 = nodes.get("lzx-ha-env-3").await.unwrap();
    let ready = n3
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "Unknown");
    assert!(
        n3.spec
            .unwrap()
            .taints
            .unwrap()
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute")
    );
    // A graceful delete of a pod there now hangs in Terminating; the StatefulSet does not
    // recreate it elsewhere while it exists.
    let minio: Api<Pod> = Api::namespaced(c.clone(), "onecloud-minio");
    minio
        .delete("minio-2", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        minio
            .get("minio-2")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    // Back to Ready: the kubelet confirms the deletion on its next status; the StatefulSet
    // recreates minio-2, and its local volume brings it back to lzx-ha-env-3.
    server.store().set_node_ready("lzx-ha-env-3", true).unwrap();
    let again = minio.get("minio-2").await.unwrap();
    assert!(again.metadata.deletion_timestamp.is_none());
    assert_ne!(
        again.metadata.uid.as_deref(),
        Some("uid-pod-onecloud-minio-minio-2"),
        "recreated"
    );
    assert_eq!(
        again.spec.unwrap().node_name.as_deref(),
        Some("lzx-ha-env-3")
    );
}

/// Issue 19, point 8: what a real API server does with status and uids written through the
/// API, so that tests cannot lean on a lenient stand-in. A created Pod starts Pending whatever
/// status it was sent (pod/strategy.go `PrepareForCreate`), a Node keeps its status (the
/// kubelet registers that way), the uid is the server's, an update of the object keeps its
/// status, and the `status` subresource changes the status only.
#[tokio::test]
async fn status_and_uids_follow_the_real_create_and_update_strategies() {
    let server = KubeApiServer::start(ServerOptions::default())
        .await
        .unwrap();
    let c = client(&server).await;
    // A Node keeps the status it is created with.
    let nodes: Api<Node> = Api::all(c.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "n1"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
    .unwrap();
    let n = nodes.create(&PostParams::default(), &node).await.unwrap();
    assert_eq!(n.status.unwrap().conditions.unwrap()[0].status, "True");

    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let sent: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "uid": "00000000-0000-0000-0000-000000000001", "labels": {"a": "1"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}))
    .unwrap();
    let created = pods.create(&PostParams::default(), &sent).await.unwrap();
    assert_ne!(
        created.metadata.uid.as_deref(),
        Some("00000000-0000-0000-0000-000000000001"),
        "the uid is the server's"
    );
    let status = created.status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"), "{status:?}");
    assert!(status.conditions.is_none(), "{status:?}");

    // Status through the object: ignored; labels change.
    let p = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"a": "2"}}, "status": {"phase": "Running"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    assert_eq!(p.metadata.labels.unwrap()["a"], "2");
    // Through the status subresource: the status changes, labels and spec do not.
    let p = pods
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"a": "3"}},
                "spec": {"nodeName": "elsewhere"}, "status": {"phase": "Running"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(p.metadata.labels.unwrap()["a"], "2");
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("n1"));

    // A PVC starts Pending.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.clone(), "default");
    let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "d"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound"}}))
    .unwrap();
    let created = pvcs.create(&PostParams::default(), &pvc).await.unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Pending"));
}
