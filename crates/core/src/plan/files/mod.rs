//! Contents of the host files the planner writes: k3s `config.yaml` and the keepalived
//! static pod manifest. Secrets are written as `(sensitive)` placeholders; the apply engine
//! substitutes them (see [`SensitiveValue`]).
//!
//! Guarantee: the text written for a given topology is byte-for-byte stable: hosts compare
//! these files by digest, so a byte change would show drift on every existing cluster. The
//! writers therefore build the text line by line (`format!`), and the rewriters of an
//! existing file ([`rewrite_server_url`], [`rewrite_keepalived`]) change only the lines they
//! own and keep every other byte. Reading (what a file's secrets are) parses the YAML.

mod env;
mod keepalived;
mod secrets;
mod yaml;

use crate::config::{Node, Topology};
use crate::plan::SensitiveValue;

pub use crate::observed::SecretDigests;
pub use env::{env_assignment_key, env_assignment_line, rewrite_env_var};
pub use keepalived::keepalived_manifest_for;
pub(crate) use keepalived::{
    KeepalivedWant, keepalived_matches, keepalived_want, rewrite_keepalived,
};
pub use secrets::{existing_secret, is_secret_key, mask_secrets, secret_digests};

/// The placeholder written where a secret goes.
pub const SENSITIVE: &str = "(sensitive)";

/// Path of the k3s config file.
pub const K3S_CONFIG_PATH: &str = "/etc/rancher/k3s/config.yaml";

/// The placeholder of a secret whose value on the host differs from the declared one (the
/// two are compared by a keyed digest, see [`SecretDigests`]). Filled like [`SENSITIVE`].
pub const SENSITIVE_CHANGED: &str = "(sensitive, changed)";

/// How a file that could not be parsed is shown: as one line starting with this, nothing
/// of its content (a secret could be anywhere in it). The apply engine refuses to write a
/// file whose planned content still holds this line.
pub const SENSITIVE_FILE: &str = "(sensitive: ";

/// The declared value of the secret read from `source` (`env("K3S_TOKEN")`), if set.
pub fn declared_secret<'a>(t: &'a Topology, source: &str) -> Option<&'a str> {
    let c = &t.cluster;
    [
        c.token.as_ref(),
        c.vip.as_ref().and_then(|v| v.password.as_ref()),
    ]
    .into_iter()
    .flatten()
    .find(|s| s.source() == source)
    .and_then(|s| s.expose())
}

/// `after` with the placeholder of each declared secret whose value on the host (`host`)
/// differs written as [`SENSITIVE_CHANGED`], so that the diff shows the change and the
/// file is rewritten.
pub fn mark_changed_secrets(
    t: &Topology,
    after: &str,
    sensitive: &[SensitiveValue],
    host: Option<&SecretDigests>,
) -> String {
    let Some(host) = host else {
        return after.to_string();
    };
    let changed: Vec<&str> = sensitive
        .iter()
        .filter(|sv| declared_secret(t, &sv.source).is_some_and(|v| host.differs(&sv.key, v)))
        .map(|sv| sv.key.as_str())
        .collect();
    if changed.is_empty() {
        return after.to_string();
    }
    let mut out = String::with_capacity(after.len() + 16);
    for line in after.split_inclusive('\n') {
        match yaml::yaml_entry(line.trim_end_matches('\n')) {
            Some(e) if changed.contains(&e.key.as_str()) && line.contains(SENSITIVE) => {
                out.push_str(&line.replacen(SENSITIVE, SENSITIVE_CHANGED, 1))
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// `v` as a YAML scalar: as is when plain is safe, else double-quoted.
pub fn yaml_scalar(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/+=@~".contains(c))
        && !v.contains(": ")
        && !v.ends_with(':')
        && secrets::parse_yaml(&format!("k: {v}\n")).is_some_and(|d| {
            d.first().and_then(|m| m.get("k")).and_then(|x| x.as_str()) == Some(v)
        });
    if plain {
        v.to_string()
    } else {
        serde_json::to_string(v).unwrap_or_default()
    }
}

/// The config.yaml of a server or agent joining through `join_url`. Never contains
/// `cluster-init` (rule 10, a joining server never uses cluster-init). Returns the text and the secrets to substitute.
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
    // The node's `k3s_config` passthrough, after the keys k3splan owns (the loader refuses
    // those keys there), sorted by key.
    for (k, v) in &node.k3s_config {
        match v {
            serde_json::Value::Array(items) => {
                s.push_str(&format!("{k}:\n"));
                for i in items {
                    s.push_str(&format!(
                        "  - {}\n",
                        yaml_scalar(i.as_str().unwrap_or_default())
                    ));
                }
            }
            serde_json::Value::Bool(b) => s.push_str(&format!("{k}: {b}\n")),
            serde_json::Value::String(x) => s.push_str(&format!("{k}: {}\n", yaml_scalar(x))),
            other => s.push_str(&format!("{k}: {other}\n")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_server_drops_cluster_init() {
        let r = rewrite_server_url("cluster-init: true\ntoken: x\n", "https://v:6443");
        assert_eq!(r, "server: https://v:6443\ntoken: x\n");
        let r = rewrite_server_url("server: https://old:6443\ntoken: x\n", "https://v:6443");
        assert_eq!(r, "server: https://v:6443\ntoken: x\n");
    }
}
