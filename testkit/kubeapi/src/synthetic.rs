//! Synthetic large clusters for benchmarks: `nodes` nodes, `pods` pods spread evenly, `pvcs`
//! local-path PVCs (each with its PV pinned to a node) mounted by the first `pvcs` pods.
//! Pods carry realistic bulk (an init container, two containers with env, args and probes,
//! five volumes, `managedFields`) so that one pod is 26–30 KB of JSON, the size a real
//! kube-apiserver 1.36 stored per pod in the measurement quoted by issue 20 (until then they
//! were 8.2 KB, which made the in-memory figures optimistic about decoding).

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
    (0..nodes)
        .map(node)
        .chain((0..pods).map(move |i| pod(i, nodes, pvcs)))
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

/// One container of a synthetic pod and its `managedFields` entry (`k:{"name":…}` key and
/// body), shaped as kube-apiserver records them: every env var, port, probe, resource and
/// mount appears once in the spec and once, as a field path, in the manager's `fieldsV1`.
fn container(
    name: &str,
    image: &str,
    env: usize,
    args: usize,
    probes: bool,
) -> (Value, String, Value) {
    let env_vars: Vec<Value> = (0..env)
        .map(|k| {
            if k % 5 == 4 {
                json!({"name": format!("{}_SECRET_{k:02}", name.to_uppercase()),
                       "valueFrom": {"secretKeyRef": {"name": format!("{name}-credentials"), "key": format!("key-{k:02}")}}})
            } else {
                json!({"name": format!("{}_ENV_VAR_{k:02}", name.to_uppercase()), "value": format!("value-of-environment-variable-{k:02}-for-{name}")})
            }
        })
        .collect();
    let mut managed_env = serde_json::Map::new();
    managed_env.insert(".".into(), json!({}));
    for e in &env_vars {
        let key = format!(
            "k:{{\"name\":\"{}\"}}",
            e["name"].as_str().unwrap_or_default()
        );
        let body = if e.get("valueFrom").is_some() {
            json!({".": {}, "f:name": {}, "f:valueFrom": {".": {}, "f:secretKeyRef": {}}})
        } else {
            json!({".": {}, "f:name": {}, "f:value": {}})
        };
        managed_env.insert(key, body);
    }
    let probe = |path: &str, period: u32| {
        json!({"httpGet": {"path": path, "port": 8080, "scheme": "HTTP"}, "initialDelaySeconds": 10,
               "periodSeconds": period, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3})
    };
    let mut c = json!({"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
        "args": (0..args).map(|a| format!("--{name}-option-{a:02}=setting-value-{a:02}")).collect::<Vec<_>>(),
        "env": env_vars,
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}, {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
        "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true, "runAsUser": 10001,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
                         {"name": "config", "mountPath": format!("/etc/{name}"), "readOnly": true},
                         {"name": "certs", "mountPath": format!("/etc/{name}/tls"), "readOnly": true},
                         {"name": "tmp", "mountPath": "/tmp"}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"});
    if probes {
        c["livenessProbe"] = probe("/healthz", 10);
        c["readinessProbe"] = probe("/readyz", 5);
        c["startupProbe"] = probe("/startupz", 2);
    }
    let probe_fields = json!({".": {}, "f:failureThreshold": {}, "f:httpGet": {".": {}, "f:path": {}, "f:port": {}, "f:scheme": {}},
        "f:initialDelaySeconds": {}, "f:periodSeconds": {}, "f:successThreshold": {}, "f:timeoutSeconds": {}});
    let mut managed = json!({".": {}, "f:args": {}, "f:env": Value::Object(managed_env), "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
        "f:ports": {".": {}, "k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {}},
                    "k:{\"containerPort\":9090,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {}}},
        "f:resources": {".": {}, "f:limits": {".": {}, "f:cpu": {}, "f:memory": {}}, "f:requests": {".": {}, "f:cpu": {}, "f:memory": {}}},
        "f:securityContext": {".": {}, "f:allowPrivilegeEscalation": {}, "f:capabilities": {".": {}, "f:drop": {}}, "f:readOnlyRootFilesystem": {},
                              "f:runAsNonRoot": {}, "f:runAsUser": {}, "f:seccompProfile": {".": {}, "f:type": {}}},
        "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {},
        "f:volumeMounts": {".": {}, "k:{\"mountPath\":\"/tmp\"}": {".": {}, "f:mountPath": {}, "f:name": {}},
                           format!("k:{{\"mountPath\":\"/etc/{name}\"}}"): {".": {}, "f:mountPath": {}, "f:name": {}, "f:readOnly": {}},
                           format!("k:{{\"mountPath\":\"/etc/{name}/tls\"}}"): {".": {}, "f:mountPath": {}, "f:name": {}, "f:readOnly": {}}}});
    if probes {
        managed["f:livenessProbe"] = probe_fields.clone();
        managed["f:readinessProbe"] = probe_fields.clone();
        managed["f:startupProbe"] = probe_fields;
    }
    (c, format!("k:{{\"name\":\"{name}\"}}"), managed)
}

/// A container's status, as the kubelet reports it.
fn container_status(name: &str, image: &str, i: usize) -> Value {
    json!({"name": name, "ready": true, "restartCount": 0, "started": true, "image": image,
        "imageID": format!("{}@sha256:4c1e1d1b3f0a2e8f9d7c6b5a4e3d2c1b0a9f8e7d6c5b4a3e2d1c0b9a8f7e6d5c", image.split(':').next().unwrap_or(image)),
        "containerID": format!("containerd://{:064x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
        "state": {"running": {"startedAt": "2024-01-01T00:00:03Z"}}, "lastState": {}})
}

/// A pod of about 26–30 KB of JSON, the size a real kube-apiserver stores for a typical
/// workload pod (measured on a real kube-apiserver 1.36, issue 20): an init container, the
/// application and a sidecar, each with env (some from secrets), args, probes, a security
/// context and mounts; five volumes; and the two `managedFields` entries (the controller's
/// spec and the kubelet's status) that list every one of those fields again.
fn pod(i: usize, nodes: usize, pvcs: usize) -> Value {
    let node = format!("node-{:04}", i % nodes.max(1));
    let ns = format!("ns-{:03}", i % 100);
    let app_image = "registry.example.com/team/app:v1.2.3";
    let proxy_image = "registry.example.com/platform/proxy:v2.7.1";
    let init_image = "registry.example.com/platform/init-config:v0.9.0";
    let (init, init_key, init_managed) = container("init-config", init_image, 12, 6, false);
    let (app, app_key, app_managed) = container("app", app_image, 40, 10, true);
    let (proxy, proxy_key, proxy_managed) = container("proxy", proxy_image, 28, 16, true);
    let mut volumes = vec![
        json!({"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}),
        json!({"name": "config", "configMap": {"name": format!("app-{}-config", i % 500), "defaultMode": 420}}),
        json!({"name": "certs", "secret": {"secretName": format!("app-{}-tls", i % 500), "defaultMode": 420}}),
        json!({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}),
    ];
    if i < pvcs {
        volumes.push(
            json!({"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{i:05}")}}),
        );
    }
    let spec_managed = json!({"f:metadata": {"f:annotations": {".": {}, "f:checksum/config": {}, "f:checksum/secret": {}, "f:kubectl.kubernetes.io/restartedAt": {},
                                                     "f:prometheus.io/port": {}, "f:prometheus.io/scrape": {}},
            "f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:app.kubernetes.io/component": {}, "f:app.kubernetes.io/instance": {},
                                               "f:app.kubernetes.io/managed-by": {}, "f:app.kubernetes.io/name": {}, "f:app.kubernetes.io/version": {}, "f:pod-template-hash": {}},
            "f:ownerReferences": {".": {}, format!("k:{{\"uid\":\"rs-{i}\"}}"): {}}},
        "f:spec": {"f:affinity": {".": {}, "f:podAntiAffinity": {".": {}, "f:preferredDuringSchedulingIgnoredDuringExecution": {}}},
            "f:containers": {app_key: app_managed, proxy_key: proxy_managed},
            "f:initContainers": {init_key: init_managed},
            "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {".": {}, "f:fsGroup": {}},
            "f:serviceAccountName": {}, "f:terminationGracePeriodSeconds": {}, "f:tolerations": {},
            "f:volumes": {".": {}, "k:{\"name\":\"config\"}": {".": {}, "f:configMap": {".": {}, "f:defaultMode": {}, "f:name": {}}, "f:name": {}},
                          "k:{\"name\":\"certs\"}": {".": {}, "f:name": {}, "f:secret": {".": {}, "f:defaultMode": {}, "f:secretName": {}}},
                          "k:{\"name\":\"tmp\"}": {".": {}, "f:emptyDir": {".": {}, "f:sizeLimit": {}}, "f:name": {}}}}});
    let status_managed = json!({"f:status": {"f:conditions": {
            "k:{\"type\":\"ContainersReady\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
            "k:{\"type\":\"Initialized\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
            "k:{\"type\":\"PodReadyToStartContainers\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
            "k:{\"type\":\"Ready\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}},
        "f:containerStatuses": {}, "f:hostIP": {}, "f:hostIPs": {}, "f:initContainerStatuses": {}, "f:phase": {}, "f:podIP": {},
        "f:podIPs": {".": {}, "k:{\"ip\":\"10.42.0.1\"}": {".": {}, "f:ip": {}}}, "f:startTime": {}}});
    let app_label = format!("app-{}", i % 500);
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("app-{i:05}-7d9f8b6c5d-x{:04}", i % 10000), "generateName": format!("app-{i:05}-7d9f8b6c5d-"), "namespace": ns,
            "uid": format!("{:08x}-0000-4000-8000-{i:012}", i), "resourceVersion": format!("{}", 100_000 + i), "creationTimestamp": "2024-01-01T00:00:00Z",
            "labels": {"app": app_label, "app.kubernetes.io/name": app_label, "app.kubernetes.io/instance": format!("{app_label}-prod"),
                       "app.kubernetes.io/component": "server", "app.kubernetes.io/version": "1.2.3", "app.kubernetes.io/managed-by": "Helm",
                       "pod-template-hash": "7d9f8b6c5d"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z", "prometheus.io/scrape": "true", "prometheus.io/port": "9090",
                            "checksum/config": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                            "checksum/secret": "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("app-{i:05}-7d9f8b6c5d"), "uid": format!("rs-{i}"), "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2024-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": spec_managed},
                {"manager": "k3s", "operation": "Update", "apiVersion": "v1", "time": "2024-01-01T00:00:05Z", "fieldsType": "FieldsV1", "subresource": "status", "fieldsV1": status_managed}]},
        "spec": {"nodeName": node, "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler", "serviceAccountName": "default",
            "serviceAccount": "default", "terminationGracePeriodSeconds": 30, "enableServiceLinks": true, "priority": 0, "preemptionPolicy": "PreemptLowerPriority",
            "securityContext": {"fsGroup": 10001},
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
                "labelSelector": {"matchLabels": {"app": app_label}}, "topologyKey": "kubernetes.io/hostname"}}]}},
            "initContainers": [init],
            "containers": [app, proxy],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "volumes": volumes},
        "status": {"phase": "Running", "hostIP": "10.0.0.1", "hostIPs": [{"ip": "10.0.0.1"}], "podIP": "10.42.0.1", "podIPs": [{"ip": "10.42.0.1"}],
            "startTime": "2024-01-01T00:00:00Z", "qosClass": "Burstable",
            "conditions": [{"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2024-01-01T00:00:02Z"},
                           {"type": "Initialized", "status": "True", "lastTransitionTime": "2024-01-01T00:00:02Z"},
                           {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:05Z"},
                           {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2024-01-01T00:00:05Z"},
                           {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}],
            "initContainerStatuses": [{"name": "init-config", "ready": true, "restartCount": 0, "started": false, "image": init_image,
                "imageID": "registry.example.com/platform/init-config@sha256:0a9f8e7d6c5b4a3e2d1c0b9a8f7e6d5c4c1e1d1b3f0a2e8f9d7c6b5a4e3d2c1b",
                "containerID": format!("containerd://{:064x}", i as u128 * 0x2545_f491_4f6c_dd1d),
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": "2024-01-01T00:00:01Z", "finishedAt": "2024-01-01T00:00:02Z"}}, "lastState": {}}],
            "containerStatuses": [container_status("app", app_image, i), container_status("proxy", proxy_image, i + 1)]}})
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark's pods are the size a real API server stores (26–30 KB of JSON each),
    /// so its decode figures predict a real server's; the PVC-mounting ones too.
    #[test]
    fn pods_are_26_to_30_kb_like_a_real_servers() {
        let pods: Vec<Value> = objects(10, 40, 20).filter(|o| o["kind"] == "Pod").collect();
        assert_eq!(pods.len(), 40);
        for p in &pods {
            let len = serde_json::to_vec(p).unwrap().len();
            assert!(
                (26_000..=30_000).contains(&len),
                "pod {} is {len} bytes",
                p["metadata"]["name"]
            );
        }
        // The fields the planner reads are still where it reads them.
        assert_eq!(pods[3]["spec"]["nodeName"], "node-0003");
        assert_eq!(
            pods[3]["spec"]["volumes"][4]["persistentVolumeClaim"]["claimName"],
            "data-00003"
        );
    }
}
