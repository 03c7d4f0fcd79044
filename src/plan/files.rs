//! Contents of the host files the planner writes: k3s `config.yaml` and the keepalived
//! static pod manifest. Secrets are written as `(sensitive)` placeholders; the apply engine
//! substitutes them (see [`SensitiveValue`]).

use crate::config::{Node, Topology};
use crate::observed::KeepalivedManifest;
use crate::plan::SensitiveValue;

/// The placeholder written where a secret goes.
pub const SENSITIVE: &str = "(sensitive)";

/// Path of the k3s config file.
pub const K3S_CONFIG_PATH: &str = "/etc/rancher/k3s/config.yaml";

/// Keys whose values are secret, in config.yaml (`key: value`) or keepalived env.
const SECRET_YAML_KEYS: [&str; 3] = ["token", "agent-token", "password"];
const SECRET_ENV_NAMES: [&str; 1] = ["KEEPALIVED_PASSWORD"];

/// Replace secret values in a config.yaml or keepalived manifest by `(sensitive)`, line by
/// line, so that the text can be shown in a plan.
pub fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut mask_next_value = false;
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let trimmed = body.trim_start();
        let indent = &body[..body.len() - trimmed.len()];
        let mut masked = None;
        if mask_next_value {
            if let Some(rest) = trimmed.strip_prefix("value:") {
                if rest.trim() != SENSITIVE {
                    masked = Some(format!("{indent}value: {SENSITIVE}"));
                }
                mask_next_value = false;
            } else if trimmed.starts_with("- ") {
                mask_next_value = false;
            }
        }
        let t = trimmed.trim_start_matches("- ");
        if SECRET_ENV_NAMES.iter().any(|n| {
            t.strip_prefix("name:")
                .is_some_and(|v| v.trim().trim_matches('"') == *n)
        }) {
            mask_next_value = true;
        }
        for k in SECRET_YAML_KEYS {
            if let Some(rest) = trimmed.strip_prefix(k).and_then(|r| r.strip_prefix(':'))
                && !rest.trim().is_empty()
                && rest.trim() != SENSITIVE
            {
                masked = Some(format!("{indent}{k}: {SENSITIVE}"));
            }
        }
        out.push_str(masked.as_deref().unwrap_or(body));
        out.push_str(nl);
    }
    out
}

/// The config.yaml of a server or agent joining through `join_url`. Never contains
/// `cluster-init` (rule 10). Returns the text and the secrets to substitute.
pub fn config_yaml_for(t: &Topology, node: &Node, join_url: &str) -> (String, Vec<SensitiveValue>) {
    let mut s = String::from("# Managed by k3splan.\n");
    s.push_str(&format!("server: {join_url}\n"));
    let mut sensitive = Vec::new();
    if let Some(tok) = &t.cluster.token {
        s.push_str(&format!("token: {SENSITIVE}\n"));
        sensitive.push(SensitiveValue {
            key: "token".into(),
            source: tok.source().to_string(),
        });
    }
    s.push_str(&format!("node-name: {}\n", node.name));
    s.push_str(&format!("node-ip: {}\n", node.address));
    if t.cluster.data_dir != crate::config::DEFAULT_DATA_DIR {
        s.push_str(&format!("data-dir: {}\n", t.cluster.data_dir));
    }
    let r = &node.roles;
    if r.is_server() {
        if !r.runs_etcd() {
            s.push_str("disable-etcd: true\n");
        }
        if !r.runs_control_plane() {
            s.push_str("disable-apiserver: true\n");
            s.push_str("disable-controller-manager: true\n");
            s.push_str("disable-scheduler: true\n");
        }
        let mut sans = Vec::new();
        if let Some(v) = &t.cluster.vip {
            sans.push(v.address.to_string());
        }
        if let Some(h) = t
            .cluster
            .api_endpoint
            .as_deref()
            .and_then(crate::observed::url_host)
            && !sans.iter().any(|x| x == h)
        {
            sans.push(h.to_string());
        }
        if !sans.is_empty() {
            s.push_str("tls-san:\n");
            for x in sans {
                s.push_str(&format!("  - {x}\n"));
            }
        }
    }
    if !node.labels.is_empty() {
        s.push_str("node-label:\n");
        for (k, v) in &node.labels {
            s.push_str(&format!("  - {k}={v}\n"));
        }
    }
    if !node.taints.is_empty() {
        s.push_str("node-taint:\n");
        for x in &node.taints {
            s.push_str(&format!("  - {x}\n"));
        }
    }
    (s, sensitive)
}

/// `raw` with its `server:` line set to `url` and any `cluster-init` line removed
/// (a `server:` line is added at the top when missing).
pub fn rewrite_server_url(raw: &str, url: &str) -> String {
    let mut out = String::new();
    let mut done = false;
    for line in raw.lines() {
        let t = line.trim_start();
        if t.starts_with("server:") {
            if !done {
                out.push_str(&format!("server: {url}\n"));
                done = true;
            }
        } else if t.starts_with("cluster-init:") {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !done {
        out = format!("server: {url}\n{out}");
    }
    out
}

/// Desired keepalived settings for a node.
pub(crate) struct KeepalivedWant {
    pub priority: u8,
    pub vip: String,
    pub interface: String,
    pub router_id: u8,
    pub node_ip: String,
    pub master: bool,
}

pub(crate) fn keepalived_want(t: &Topology, node: &Node) -> Option<KeepalivedWant> {
    let vip = t.cluster.vip.as_ref()?;
    let priority = t.vip_priority(node)?;
    Some(KeepalivedWant {
        priority,
        vip: vip.address.to_string(),
        interface: vip.interface.clone(),
        router_id: vip.router_id,
        node_ip: node.address.to_string(),
        master: node.primary,
    })
}

pub(crate) fn keepalived_matches(m: &KeepalivedManifest, w: &KeepalivedWant) -> bool {
    m.priority == Some(w.priority)
        && m.vip.as_deref() == Some(w.vip.as_str())
        && m.interface.as_deref() == Some(w.interface.as_str())
        && m.router_id == Some(w.router_id)
}

/// The full keepalived static pod manifest for a server node (`None` without a VIP or for
/// an agent). The VRRP password is the `(sensitive)` placeholder.
pub fn keepalived_manifest_for(t: &Topology, node: &Node) -> Option<(String, Vec<SensitiveValue>)> {
    let w = keepalived_want(t, node)?;
    let vip = t.cluster.vip.as_ref()?;
    let mut sensitive = Vec::new();
    let mut env = vec![
        ("KEEPALIVED_PRIORITY", format!("\"{}\"", w.priority)),
        (
            "KEEPALIVED_VIRTUAL_IPS",
            format!("\"#PYTHON2BASH:['{}']\"", w.vip),
        ),
        (
            "KEEPALIVED_STATE",
            if w.master { "MASTER" } else { "BACKUP" }.to_string(),
        ),
    ];
    if let Some(p) = &vip.password {
        env.push(("KEEPALIVED_PASSWORD", SENSITIVE.to_string()));
        sensitive.push(SensitiveValue {
            key: "KEEPALIVED_PASSWORD".into(),
            source: p.source().to_string(),
        });
    }
    env.push(("KEEPALIVED_ROUTER_ID", format!("\"{}\"", w.router_id)));
    env.push(("KEEPALIVED_NODE_IP", format!("\"{}\"", w.node_ip)));
    env.push(("KEEPALIVED_INTERFACE", format!("\"{}\"", w.interface)));
    let mut s = String::from(
        "# Managed by k3splan.\napiVersion: v1\nkind: Pod\nmetadata:\n  name: keepalived\n  namespace: kube-system\nspec:\n  hostNetwork: true\n  containers:\n    - name: keepalived\n      image: osixia/keepalived:2.0.20\n      securityContext:\n        capabilities:\n          add: [\"NET_ADMIN\", \"NET_BROADCAST\", \"NET_RAW\"]\n      env:\n",
    );
    for (k, v) in env {
        s.push_str(&format!("        - name: {k}\n          value: {v}\n"));
    }
    Some((s, sensitive))
}

/// `raw` (an existing manifest) with its keepalived env values set as wanted; other lines
/// (image, password, probes) are kept.
pub(crate) fn rewrite_keepalived(raw: &str, w: &KeepalivedWant) -> String {
    let wanted: [(&str, String); 5] = [
        ("KEEPALIVED_PRIORITY", format!("\"{}\"", w.priority)),
        (
            "KEEPALIVED_VIRTUAL_IPS",
            format!("\"#PYTHON2BASH:['{}']\"", w.vip),
        ),
        (
            "KEEPALIVED_STATE",
            if w.master { "MASTER" } else { "BACKUP" }.to_string(),
        ),
        ("KEEPALIVED_ROUTER_ID", format!("\"{}\"", w.router_id)),
        ("KEEPALIVED_INTERFACE", format!("\"{}\"", w.interface)),
    ];
    let mut out = String::new();
    let mut pending: Option<&str> = None;
    for line in raw.lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        if let Some(key) = pending
            && let Some(_) = t.strip_prefix("value:")
        {
            let v = &wanted.iter().find(|(k, _)| *k == key).expect("key").1;
            out.push_str(&format!("{indent}value: {v}\n"));
            pending = None;
            continue;
        }
        if let Some(name) = t.trim_start_matches("- ").strip_prefix("name:") {
            let name = name.trim().trim_matches('"');
            pending = wanted.iter().find(|(k, _)| *k == name).map(|(k, _)| *k);
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_token_and_vrrp_password() {
        let raw = "server: https://a:6443\ntoken: K10abc::server:xyz\nenv:\n- name: KEEPALIVED_PASSWORD\n  value: \"MTkyLjE2\"\n- name: X\n  value: keep\n";
        let m = mask_secrets(raw);
        assert!(!m.contains("K10abc") && !m.contains("MTkyLjE2"), "{m}");
        assert!(m.contains("token: (sensitive)") && m.contains("value: keep"));
    }

    #[test]
    fn rewrite_server_drops_cluster_init() {
        let r = rewrite_server_url("cluster-init: true\ntoken: x\n", "https://v:6443");
        assert_eq!(r, "server: https://v:6443\ntoken: x\n");
        let r = rewrite_server_url("server: https://old:6443\ntoken: x\n", "https://v:6443");
        assert_eq!(r, "server: https://v:6443\ntoken: x\n");
    }
}
