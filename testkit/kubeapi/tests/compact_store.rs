//! A compact store (`ServerOptions::compact`, `Store::set_compact`) answers every request with
//! the same bytes as a normal store: lists with label and field selectors (on the head and
//! beyond it), pages, get, patch, delete, cascading and collection deletes.

use k3splan_testkit_kubeapi::{KubeApiServer, SEED004_YAML, ServerOptions, synthetic};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// seed004 plus a small synthetic cluster, each object with a fixed `creationTimestamp` so
/// that two stores loaded a second apart hold the same bytes.
fn docs() -> Vec<Value> {
    let mut docs: Vec<Value> = serde_yaml::Deserializer::from_str(SEED004_YAML)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect();
    docs.extend(synthetic::objects(12, 360, 40));
    for d in &mut docs {
        if d["metadata"].get("creationTimestamp").is_none() {
            d["metadata"]["creationTimestamp"] = json!("2024-01-01T00:00:00Z");
        }
    }
    docs
}

async fn server(compact: bool) -> KubeApiServer {
    let s = KubeApiServer::start(ServerOptions {
        tls: false,
        compact,
        ..Default::default()
    })
    .await
    .unwrap();
    s.load_values(docs()).unwrap();
    s
}

/// One HTTP/1.1 exchange: (status code, body). Checks that `Content-Length` is the body's length.
async fn call(s: &KubeApiServer, method: &str, path: &str, body: &str, ct: &str) -> (u16, String) {
    let addr = s.url().trim_start_matches("http://").to_string();
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    c.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let code = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no Content-Length for {method} {path}: {head}"));
    assert_eq!(len, body.len(), "Content-Length of {method} {path}");
    // Timestamps the server writes itself (`now()`, seconds) may differ between two stores
    // called a moment apart: mask today's.
    let today = &jiff::Timestamp::now().to_string()[..10];
    let mut masked = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = rest.find(&format!("\"{today}T")) {
        masked.push_str(&rest[..i]);
        masked.push_str("\"NOW\"");
        rest = &rest[i + 1..];
        rest = &rest[rest.find('"').map_or(rest.len(), |j| j + 1)..];
    }
    masked.push_str(rest);
    (code, masked)
}

#[tokio::test]
async fn a_compact_store_answers_with_the_same_bytes_as_a_normal_one() {
    let normal = server(false).await;
    let compact = server(true).await;
    // A store switched to compact mode after loading converts what it holds.
    let switched = server(false).await;
    switched.store().set_compact(true);
    assert!(compact.store().is_compact() && switched.store().is_compact());
    assert!(!normal.store().is_compact());
    let all = [&normal, &compact, &switched];

    async fn check(
        all: &[&KubeApiServer; 3],
        method: &str,
        path: &str,
        body: &str,
        ct: &str,
    ) -> (u16, String) {
        let want = call(all[0], method, path, body, ct).await;
        for s in &all[1..] {
            let got = call(s, method, path, body, ct).await;
            assert_eq!(got.0, want.0, "status of {method} {path}");
            assert!(got.1 == want.1, "body of {method} {path} differs");
        }
        want
    }
    let get = |path: &'static str| check(&all, "GET", path, "", "application/json");
    let items = |body: &str| -> usize {
        serde_json::from_str::<Value>(body).unwrap()["items"]
            .as_array()
            .unwrap()
            .len()
    };

    // The lists k3splan makes, whole and selected.
    for (path, at_least) in [
        ("/api/v1/nodes", 12),
        ("/api/v1/pods", 360),
        ("/api/v1/persistentvolumeclaims", 40),
        ("/api/v1/persistentvolumes", 40),
        ("/apis/apps/v1/replicasets", 1),
        ("/api/v1/namespaces/ns-003/pods", 3),
        ("/api/v1/pods?labelSelector=app%3Dapp-7", 1),
        (
            "/api/v1/pods?labelSelector=app%20in%20(app-1,app-2),pod-template-hash",
            2,
        ),
        ("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-0003", 30),
        ("/api/v1/pods?fieldSelector=spec.nodeName%3Dlzx-ha-env-3", 1),
        (
            "/api/v1/namespaces/ns-004/pods?fieldSelector=status.phase%3DRunning",
            3,
        ),
        // Paths outside a compact object's head: the whole object is parsed.
        (
            "/api/v1/pods?fieldSelector=spec.schedulerName%3Ddefault-scheduler,spec.nodeName!%3Dnode-0001",
            300,
        ),
        (
            "/api/v1/pods?fieldSelector=spec.restartPolicy%3DAlways,metadata.namespace%3Dns-001",
            3,
        ),
        ("/api/v1/pods?limit=7", 7),
    ] {
        let (code, body) = get(path).await;
        assert_eq!(code, 200, "{path}: {body}");
        assert!(items(&body) >= at_least, "{path}: {} items", items(&body));
    }
    // Pages: the continue token of the first page leads to the same second page.
    let (_, first) = get("/api/v1/pods?limit=50").await;
    let token = serde_json::from_str::<Value>(&first).unwrap()["metadata"]["continue"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, next) = check(
        &all,
        "GET",
        &format!("/api/v1/pods?limit=50&continue={token}"),
        "",
        "application/json",
    )
    .await;
    assert_eq!((code, items(&next)), (200, 50));

    // Get.
    let pod = "/api/v1/namespaces/ns-005/pods/app-00005-7d9f8b6c5d-x0005";
    assert_eq!(get(pod).await.0, 200);
    assert_eq!(
        get("/api/v1/namespaces/ns-005/persistentvolumeclaims/data-00005")
            .await
            .0,
        200
    );
    assert_eq!(get("/api/v1/namespaces/ns-005/pods/nope").await.0, 404);

    // Patch: the response, the get and the label-selected list all change alike.
    let (code, patched) = check(
        &all,
        "PATCH",
        pod,
        r#"{"metadata":{"labels":{"tier":"gold"}},"spec":{"nodeName":"node-0007"}}"#,
        "application/merge-patch+json",
    )
    .await;
    assert_eq!(code, 200, "{patched}");
    assert!(patched.contains("\"tier\":\"gold\""));
    let (_, gold) = get("/api/v1/pods?labelSelector=tier%3Dgold").await;
    assert_eq!(items(&gold), 1);
    let (_, moved) = get("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-0007").await;
    assert!(moved.contains("app-00005-7d9f8b6c5d-x0005"));
    // Status through the status subresource (a PATCH of the pod itself keeps its status).
    let (code, _) = check(
        &all,
        "PATCH",
        &format!("{pod}/status"),
        r#"[{"op":"replace","path":"/status/phase","value":"Failed"}]"#,
        "application/json-patch+json",
    )
    .await;
    assert_eq!(code, 200);
    let (_, failed) =
        get("/api/v1/namespaces/ns-005/pods?fieldSelector=status.phase%3DFailed").await;
    assert_eq!(items(&failed), 1);
    // A stale resourceVersion conflicts in both.
    let (code, _) = check(
        &all,
        "PATCH",
        pod,
        r#"{"metadata":{"resourceVersion":"1"}}"#,
        "application/merge-patch+json",
    )
    .await;
    assert_eq!(code, 409);

    // Delete: a pod at once, a PVC in use stays (finalizer), a cascading ReplicaSet delete,
    // and a delete-collection by label.
    assert_eq!(
        check(&all, "DELETE", pod, "", "application/json").await.0,
        200
    );
    assert_eq!(get(pod).await.0, 404);
    let (code, pvc) = check(
        &all,
        "DELETE",
        "/api/v1/namespaces/ns-006/persistentvolumeclaims/data-00006",
        "",
        "application/json",
    )
    .await;
    assert!(code == 200 && pvc.contains("deletionTimestamp"), "{pvc}");
    let (_, rs) = get("/apis/apps/v1/replicasets").await;
    let rs: Value = serde_json::from_str(&rs).unwrap();
    let rs0 = &rs["items"][0]["metadata"];
    let (code, _) = check(
        &all,
        "DELETE",
        &format!(
            "/apis/apps/v1/namespaces/{}/replicasets/{}?propagationPolicy=Background",
            rs0["namespace"].as_str().unwrap(),
            rs0["name"].as_str().unwrap()
        ),
        "",
        "application/json",
    )
    .await;
    assert_eq!(code, 200);
    let (code, gone) = check(
        &all,
        "DELETE",
        "/api/v1/namespaces/ns-007/pods?labelSelector=app%3Dapp-7",
        "",
        "application/json",
    )
    .await;
    assert!(code == 200 && items(&gone) >= 1, "{gone}");
    // Every list still agrees after the writes.
    for path in [
        "/api/v1/pods",
        "/api/v1/persistentvolumeclaims",
        "/api/v1/persistentvolumes",
        "/apis/apps/v1/replicasets",
        "/api/v1/nodes",
    ] {
        assert_eq!(get(path).await.0, 200);
    }
}

/// `synthetic::objects` streams the same objects as `synthetic::cluster` builds at once.
#[test]
fn synthetic_objects_stream_what_cluster_builds() {
    let all = synthetic::cluster(7, 50, 9);
    let streamed: Vec<Value> = synthetic::objects(7, 50, 9).collect();
    assert_eq!(all.len(), 7 + 50 + 2 * 9);
    assert!(all == streamed);
}
