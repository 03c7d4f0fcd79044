//! Phase `joins`: declared nodes not in the cluster, and nodes being replaced, are joined:
//! etcd members first, one at a time (each joins as a learner and is promoted before the
//! next change: rule 3, one membership change at a time), then control-plane-only servers, then agents. Per node: a
//! stale etcd data dir moved aside, config.yaml written (never with `cluster-init`:
//! rule 10, a joining server never uses cluster-init), an old keepalived manifest rewritten before k3s starts, then the join.
//!
//! Caveat: a join that needs a source that is unknown (its host, etcd) is refused, not
//! skipped: the plan would otherwise look complete.

use serde_json::json;

use crate::config::Node;
use crate::observed::HostState;
use crate::plan::cx::PlanCx;
use crate::plan::files::{self, K3S_CONFIG_PATH, mask_secrets};
use crate::plan::phases::{keepalived, stale_data};
use crate::plan::{Action, ActionReason, Address, Operation, Refusal, Rule};

pub(in crate::plan) fn run(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    let replaced = cx.replaced.clone();
    joins(cx, &replaced);
    Ok(())
}

fn joins<'a>(cx: &mut PlanCx<'a>, replaced: &[String]) {
    let mut todo: Vec<&'a Node> =
        cx.t.nodes
            .iter()
            .filter(|d| replaced.contains(&d.name) || !cx.is_present(&d.name))
            .collect();
    // etcd members first (one at a time), then control-plane-only, then agents.
    todo.sort_by_key(|d| (!d.roles.runs_etcd(), !d.roles.is_server()));
    for d in todo {
        join(cx, d, replaced.contains(&d.name));
    }
}

fn join<'a>(cx: &mut PlanCx<'a>, d: &'a Node, replacing: bool) {
    let n = d.name.as_str();
    if cx.refused.contains(n) {
        return;
    }
    let Some((h, url)) = join_gates(cx, d) else {
        return;
    };
    let reason = if replacing {
        ActionReason::ReplaceByRequest
    } else {
        ActionReason::CreateBecauseDeclared
    };
    if cx.t.cluster.token.is_none() {
        cx.warnings.push(format!(
            "node.{n}: no cluster token is declared; k3s cannot join without one"
        ));
    }
    // Stale etcd data: moved aside before the join.
    let uninstalled = replacing && h.k3s.is_some();
    if d.roles.runs_etcd() && !uninstalled {
        stale_data::move_aside(cx, d, h);
    }
    write_config(cx, d, h, &url, reason);
    // An old keepalived manifest on the host (a returning ex-primary's says priority 100)
    // is a static pod: k3s would start it with k3s and it could take the VIP. Rewrite it
    // before k3s starts (issue 13).
    if d.roles.is_server()
        && h.keepalived.is_some()
        && let Some(vip) = &cx.t.cluster.vip
    {
        keepalived::keepalived_node(cx, d, vip);
        cx.keepalived_before_start.insert(n.to_string());
    }
    join_step(cx, d, &url, replacing, reason);
}

/// The host of node `d` and the URL it joins through; `None` (with a violation or a
/// warning recorded) when the join cannot be planned.
fn join_gates<'a>(cx: &mut PlanCx<'a>, d: &'a Node) -> Option<(&'a HostState, String)> {
    let n = d.name.as_str();
    let v = cx.views[n].clone();
    let addr = Address::node(n);
    let Some(h) = v.host.known().copied() else {
        if cx.kube.is_none() && v.member.is_none() {
            cx.warnings.push(format!(
                "node.{n}: neither the Kubernetes API nor its host answered ({}); whether it exists is unknown, nothing planned",
                v.host_reason().unwrap_or_default()
            ));
            return None;
        }
        cx.refuse(
            Rule::SourceUnknown,
            addr.to_string(),
            format!(
                "cannot install k3s on {n}: its host is unreachable ({})",
                v.host_reason().unwrap_or_default()
            ),
            Some(format!(
                "make {} reachable over SSH and re-run plan",
                d.address
            )),
        );
        return None;
    };
    if d.roles.runs_etcd() && cx.etcd.is_none() {
        cx.refuse(
            Rule::SourceUnknown,
            addr.to_string(),
            format!(
                "cannot plan {n}'s join: etcd is unknown ({}), the quorum cannot be simulated",
                cx.o.etcd.unknown_reason().unwrap_or_default()
            ),
            None,
        );
        return None;
    }
    if cx.etcd.is_some_and(|e| e.members.is_empty()) && d.roles.is_server() {
        cx.refuse(
            Rule::NoClusterInitOnJoin,
            addr.to_string(),
            format!("no etcd cluster exists for {n} to join; k3splan does not bootstrap a cluster (that needs cluster-init)"),
            Some("install the first server by hand with cluster-init, then re-run plan".into()),
        );
        return None;
    }
    let Some(url) = cx.join_url(n) else {
        cx.refuse(
            Rule::SourceUnknown,
            addr.to_string(),
            format!("{n} has no healthy server to join through and no api_endpoint is declared"),
            Some("declare cluster.api_endpoint (the VIP) or restore a server first".into()),
        );
        return None;
    };
    Some((h, url))
}

/// config.yaml, joining through `url`, when it differs from the host's.
fn write_config(cx: &mut PlanCx<'_>, d: &Node, h: &HostState, url: &str, reason: ActionReason) {
    let n = d.name.as_str();
    // Never with cluster-init (rule 10, a joining server never uses cluster-init).
    let (after, sensitive) = files::config_yaml_for(cx.t, d, url);
    let host_secrets = h.config.as_ref().map(|c| &c.secrets);
    let after = files::mark_changed_secrets(cx.t, &after, &sensitive, host_secrets);
    let before = h.config.as_ref().map(|c| mask_secrets(&c.raw));
    let path = h
        .config
        .as_ref()
        .map(|c| c.path.clone())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| K3S_CONFIG_PATH.to_string());
    if before.as_deref() != Some(after.as_str()) {
        let mut why = format!("the node joins through {url}, without cluster-init");
        if h.config.as_ref().is_some_and(|c| c.cluster_init) {
            why.push_str(
                " (the old file had cluster-init: starting with it would create a second cluster)",
            );
        }
        cx.push(
            Address::host_file(n, &path),
            if before.is_some() {
                Action::Update
            } else {
                Action::Create
            },
            reason,
            why,
            vec![Operation::WriteFile {
                node: n.into(),
                path: path.clone(),
                before: before.clone(),
                after: after.clone(),
                sensitive,
            }],
            before.as_ref().map(|b| json!({ "content": b })),
            Some(json!({ "content": after })),
        );
    }
}

/// The join itself: k3s installed and started, the learner promoted, the Node Ready.
fn join_step(cx: &mut PlanCx<'_>, d: &Node, url: &str, replacing: bool, reason: ActionReason) {
    let n = d.name.as_str();
    let addr = Address::node(n);
    let action = if replacing {
        Action::Replace
    } else {
        Action::Create
    };
    let mut ops = Vec::new();
    if d.roles.is_server() {
        ops.push(Operation::JoinServer {
            node: n.into(),
            via: url.to_string(),
            etcd: d.roles.runs_etcd(),
            control_plane: d.roles.runs_control_plane(),
            version: cx.t.k3s_version_of(d).map(str::to_string),
        });
        if d.roles.runs_etcd() {
            ops.push(Operation::WaitLearnerPromoted { node: n.into() });
        }
    } else {
        ops.push(Operation::JoinAgent {
            node: n.into(),
            via: url.to_string(),
            version: cx.t.k3s_version_of(d).map(str::to_string),
        });
    }
    // A server written with `disable-agent` runs no kubelet and never has a Node: its
    // health is its member and its supervisor port (issue 19).
    if d.runs_agent() {
        ops.push(Operation::WaitNodeReady { node: n.into() });
    } else {
        ops.push(Operation::WaitServerHealthy { node: n.into() });
    }
    let roles: Vec<&str> = d.roles.0.iter().map(|r| r.as_str()).collect();
    let id = cx.push(
        addr,
        action,
        reason,
        if replacing {
            format!(
                "its replacement was requested (-replace=node.{n}): it rejoins on the rebuilt host"
            )
        } else {
            "it is declared but not in the cluster".into()
        },
        ops,
        None,
        Some(json!({
            "address": d.address.to_string(),
            "roles": roles,
            "join_url": url,
            "version": cx.t.k3s_version_of(d),
        })),
    );
    cx.joined.insert(n.to_string(), id);
}
