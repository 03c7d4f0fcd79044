//! The lab's Kubernetes API through curl: the Node object and its heartbeat.

use super::*;

pub(super) fn kube(
    lab: &HostConfig,
    method: &str,
    path: &str,
    ct: &str,
    body: &Value,
) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "5", "-X", method])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", lab.kube_token))
        .arg("-H")
        .arg(format!("Content-Type: {ct}"))
        .args(["-w", "\n%{http_code}"]);
    if !lab.kube_ca_file.is_empty() {
        cmd.arg("--cacert").arg(&lab.kube_ca_file);
    }
    if !body.is_null() {
        cmd.args(["--data-binary", "@-"]);
    }
    cmd.arg(format!("{}{path}", lab.kube_url))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let Ok(mut child) = cmd.spawn() else {
        return (0, Value::Null);
    };
    if let Some(mut si) = child.stdin.take()
        && !body.is_null()
    {
        let _ = si.write_all(body.to_string().as_bytes());
    }
    let Ok(out) = child.wait_with_output() else {
        return (0, Value::Null);
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let (b, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(b).unwrap_or(Value::Null),
    )
}

pub(super) struct NodeInfo {
    pub(super) name: String,
    pub(super) ip: String,
    pub(super) hostname: String,
    pub(super) labels: serde_json::Map<String, Value>,
    pub(super) annotations: serde_json::Map<String, Value>,
    pub(super) version: String,
    pub(super) ready_since: String,
}

pub(super) fn ready_condition(n: &NodeInfo) -> Value {
    json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
           "message": "kubelet is posting ready status", "lastHeartbeatTime": now_rfc3339(),
           "lastTransitionTime": n.ready_since})
}

pub(super) fn register_node(lab: &HostConfig, n: &NodeInfo) -> Result<(), String> {
    let status = json!({
        "conditions": [ready_condition(n)],
        "addresses": [{"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.hostname}],
        "nodeInfo": {"kubeletVersion": n.version, "kubeProxyVersion": n.version,
                     "osImage": "k3splan lab (Debian GNU/Linux 12)", "kernelVersion": "lab",
                     "containerRuntimeVersion": "containerd://1.7.11-k3s2", "architecture": "amd64",
                     "operatingSystem": "linux", "machineID": "", "systemUUID": "", "bootID": ""}
    });
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": n.name, "labels": n.labels, "annotations": n.annotations},
        "spec": {"podCIDR": "10.42.0.0/24"}, "status": status});
    let (code, body) = kube(lab, "POST", "/api/v1/nodes", "application/json", &node);
    match code {
        200 | 201 => Ok(()),
        409 => {
            let patch = json!({"metadata": {"labels": n.labels, "annotations": n.annotations}});
            let (c1, b1) = kube(
                lab,
                "PATCH",
                &format!("/api/v1/nodes/{}", n.name),
                "application/merge-patch+json",
                &patch,
            );
            let (c2, b2) = kube(
                lab,
                "PATCH",
                &format!("/api/v1/nodes/{}/status", n.name),
                "application/merge-patch+json",
                &json!({"status": status}),
            );
            if c1 / 100 == 2 && c2 / 100 == 2 {
                Ok(())
            } else {
                Err(format!(
                    "updating Node {}: HTTP {c1} {b1} / {c2} {b2}",
                    n.name
                ))
            }
        }
        c => Err(format!(
            "creating Node {} at {}: HTTP {c} {body}",
            n.name, lab.kube_url
        )),
    }
}

pub(super) fn heartbeat(lab: &HostConfig, n: &NodeInfo) {
    let (code, _) = kube(
        lab,
        "PATCH",
        &format!("/api/v1/nodes/{}/status", n.name),
        "application/merge-patch+json",
        &json!({"status": {"conditions": [ready_condition(n)]}}),
    );
    if code == 404 {
        log(
            "info",
            &format!("Node {} not found in the API; registering it again", n.name),
        );
        if let Err(e) = register_node(lab, n) {
            log("error", &e);
        }
    }
}
