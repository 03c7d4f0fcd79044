//! The keepalived static pod manifest: the settings a server should have, the manifest
//! written for it, and an existing manifest rewritten to them.

use crate::config::{Node, Topology};
use crate::observed::KeepalivedManifest;
use crate::plan::SensitiveValue;

use super::SENSITIVE;

/// The env entries (name, YAML value as written) of the settings k3splan owns, in the
/// order the manifest lists them (the password and node IP go between, see
/// [`keepalived_manifest_for`]).
fn env_values(w: &KeepalivedWant) -> [(&'static str, String); 5] {
    [
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
    ]
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
    let [priority, vips, state, router_id, interface] = env_values(&w);
    let mut env = vec![priority, vips, state];
    if let Some(p) = &vip.password {
        env.push(("KEEPALIVED_PASSWORD", SENSITIVE.to_string()));
        sensitive.push(SensitiveValue {
            key: "KEEPALIVED_PASSWORD".into(),
            source: p.source().to_string(),
        });
    }
    env.push(router_id);
    env.push(("KEEPALIVED_NODE_IP", format!("\"{}\"", w.node_ip)));
    env.push(interface);
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
    let wanted = env_values(w);
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
