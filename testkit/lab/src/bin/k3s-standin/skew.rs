//! Issue 15: version skew between servers. A server whose k3s is more than one minor
//! version newer than another server of the cluster refuses to start.
//!
//! Kubernetes' skew policy (kubernetes.io/releases/version-skew-policy, "kube-apiserver": in
//! an HA cluster "the newest and oldest kube-apiserver instances must be within one minor
//! version") is what bites a real cluster; we know of no such check in k3s itself
//! (k3s-io/k3s#9560 reports a 3-server cluster taken 1.23 → 1.26 without k3s objecting). The
//! stand-in refuses so that a lab test fails loudly when a plan would create such a skew,
//! instead of the subtle API breakage a real cluster shows later. Other servers are found as the Nodes with
//! the `node-role.kubernetes.io/control-plane` label (servers without an agent have no Node
//! and are not seen: the check is then skipped for them).

use super::*;

/// `(major, minor)` of `v1.28.5+k3s1`.
fn minor_of(v: &str) -> Option<(u32, u32)> {
    let mut p = v.trim().trim_start_matches('v').split(['.', '+', '-']);
    Some((p.next()?.parse().ok()?, p.next()?.parse().ok()?))
}

/// Exits (fatal) when `version` is more than one minor newer than a server Node's
/// kubeletVersion; an unreadable API skips the check (it is not k3s's own).
pub(super) fn check_server_skew(lab: &HostConfig, node_name: &str, version: &str) {
    let Some(mine) = minor_of(version) else {
        return;
    };
    let (code, list) = kube(
        lab,
        "GET",
        "/api/v1/nodes",
        "application/json",
        &Value::Null,
    );
    if code != 200 {
        return;
    }
    let oldest = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["metadata"]["name"].as_str() != Some(node_name))
        .filter(|n| {
            n["metadata"]["labels"]["node-role.kubernetes.io/control-plane"].as_str()
                == Some("true")
        })
        .filter_map(|n| {
            let v = n["status"]["nodeInfo"]["kubeletVersion"].as_str()?;
            Some((
                minor_of(v)?,
                v.to_string(),
                n["metadata"]["name"].as_str()?.to_string(),
            ))
        })
        .min();
    if let Some(((maj, min), v, name)) = oldest
        && (mine.0 > maj || mine.1 > min + 1)
    {
        fatal(&format!(
            "version skew: this server runs {version} but server {name} runs {v}: the API servers of one cluster must be within one minor version of each other (kubernetes.io/releases/version-skew-policy); upgrade the other servers first (lab stand-in check: real k3s starts and breaks later)"
        ));
    }
}
