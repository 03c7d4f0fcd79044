//! Synthetic large clusters for benchmarks: `nodes` nodes, `pods` pods spread evenly, `pvcs`
//! local-path PVCs (each with its PV pinned to a node) mounted by the first `pvcs` pods.
//! Pods carry realistic bulk (containers, env, `managedFields`) so that one pod is about 8 KB
//! of JSON, as measured on a real kube-apiserver.

use serde_json::{Value, json};

/// Builds the objects of a synthetic cluster, all at once (the same objects, in the same
/// order, as [`objects`]). At thousands of nodes prefer [`objects`]: 150,000 pods as
/// [`Value`]s take several GB.
pub fn cluster(nodes: usize, pods: usize, pvcs: usize) -> Vec<Value> {
    objects(nodes, pods, pvcs).collect()
}

/// The objects of a synthetic cluster, built one at a time as the iterator is consumed:
/// the nodes, then the pods, then each PVC followed by its PV.
pub fn objects(nodes: usize, pods: usize, pvcs: usize) -> impl Iterator<Item = Value> {
    let env: Vec<Value> = (0..60).map(|k| json!({"name": format!("ENV_VAR_{k:02}"), "value": format!("value-of-environment-variable-{k:02}")})).collect();
    (0..nodes)
        .map(node)
        .chain((0..pods).map(move |i| pod(i, nodes, pvcs, &env)))
        .chain((0..pvcs).flat_map(move |i| claim_and_volume(i, nodes)))
}

fn node(n: usize) -> Value {
    {
        let name = format!("node-{n:04}");
        json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "node-role.kubernetes.io/control-plane": if n < 3 { "true" } else { "false" }}},
            "spec": {"podCIDR": format!("10.{}.{}.0/24", 42 + n / 256, n % 256)},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastTransitionTime": "2024-01-01T00:00:00Z"},
                                      {"type": "MemoryPressure", "status": "False"}, {"type": "DiskPressure", "status": "False"}],
                "addresses": [{"type": "InternalIP", "address": format!("10.0.{}.{}", n / 250, n % 250 + 1)}, {"type": "Hostname", "address": name}],
                "nodeInfo": {"kubeletVersion": "v1.28.5+k3s1", "osImage": "Debian GNU/Linux 12", "containerRuntimeVersion": "containerd://1.7.11-k3s2"}}})
    }
}

fn managed(i: usize) -> Value {
    {
        json!([{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2024-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}},
                    "f:ownerReferences": {".": {}, format!("k:{{\"uid\":\"rs-{i}\"}}"): {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:env": {".": {}, "k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}},
                        "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:ports": {".": {}, "k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}}},
                        "f:resources": {".": {}, "f:limits": {".": {}, "f:cpu": {}, "f:memory": {}}, "f:requests": {".": {}, "f:cpu": {}, "f:memory": {}}},
                        "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}, "f:volumeMounts": {}}},
                        "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}, "f:volumes": {}}}},
               {"manager": "k3s", "operation": "Update", "apiVersion": "v1", "time": "2024-01-01T00:00:05Z", "fieldsType": "FieldsV1", "subresource": "status",
                "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"ContainersReady\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                    "k:{\"type\":\"Initialized\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                    "k:{\"type\":\"Ready\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}},
                    "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {".": {}, "k:{\"ip\":\"10.42.0.1\"}": {".": {}, "f:ip": {}}}, "f:startTime": {}}}}])
    }
}

fn pod(i: usize, nodes: usize, pvcs: usize, env: &[Value]) -> Value {
    {
        let node = format!("node-{:04}", i % nodes.max(1));
        let ns = format!("ns-{:03}", i % 100);
        let mut volumes = vec![
            json!({"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}),
        ];
        if i < pvcs {
            volumes.push(json!({"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{i:05}")}}));
        }
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("app-{i:05}-7d9f8b6c5d-x{:04}", i % 10000), "namespace": ns,
                "labels": {"app": format!("app-{}", i % 500), "pod-template-hash": "7d9f8b6c5d"},
                "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z", "prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("app-{i:05}-7d9f8b6c5d"), "uid": format!("rs-{i}"), "controller": true, "blockOwnerDeletion": true}],
                "managedFields": managed(i)},
            "spec": {"nodeName": node, "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler", "serviceAccountName": "default",
                "terminationGracePeriodSeconds": 30, "enableServiceLinks": true, "priority": 0,
                "containers": [{"name": "app", "image": "registry.example.com/team/app:v1.2.3", "imagePullPolicy": "IfNotPresent", "env": env,
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
                    "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
                "volumes": volumes},
            "status": {"phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.42.0.1", "podIPs": [{"ip": "10.42.0.1"}], "startTime": "2024-01-01T00:00:00Z", "qosClass": "Burstable",
                "conditions": [{"type": "Initialized", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"},
                               {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:05Z"},
                               {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2024-01-01T00:00:05Z"},
                               {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "started": true, "image": "registry.example.com/team/app:v1.2.3",
                    "imageID": "registry.example.com/team/app@sha256:4c1e1d1b3f0a2e8f9d7c6b5a4e3d2c1b0a9f8e7d6c5b4a3e2d1c0b9a8f7e6d5c",
                    "containerID": "containerd://0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
                    "state": {"running": {"startedAt": "2024-01-01T00:00:03Z"}}, "lastState": {}}]}})
    }
}

fn claim_and_volume(i: usize, nodes: usize) -> [Value; 2] {
    {
        let ns = format!("ns-{:03}", i % 100);
        let node = format!("node-{:04}", i % nodes.max(1));
        let claim = format!("data-{i:05}");
        let pv = format!("pvc-00000000-0000-4000-8000-{i:012}");
        [
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": ns, "uid": format!("uid-{claim}"), "annotations": {"volume.kubernetes.io/selected-node": node}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}, "storageClassName": "local-path", "volumeName": pv},
            "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local-path",
                "hostPath": {"path": format!("/var/lib/rancher/k3s/storage/{pv}_{ns}_{claim}")},
                "claimRef": {"namespace": ns, "name": claim, "uid": format!("uid-{claim}")},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
            "status": {"phase": "Bound"}}),
        ]
    }
}
