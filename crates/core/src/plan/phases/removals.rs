//! Phases `failed_removals` and `healthy_removals`: nodes and etcd members that leave the
//! cluster. Failed ones go before any join, healthy ones after the joins (rule 3,
//! remove failed members first, one membership change at a time); members that match no
//! node by peer address ("orphans") likewise, learners first.
//!
//! Guarantee: nothing is removed on the strength of an unknown fact (rule 1, never
//! destroy from an unknown fact) unless the operator listed the node in
//! `--allow-unreachable`; a refused node is recorded in `PlanCx::refused` and not rejoined.

use serde_json::json;

use crate::observed::{EtcdMember, Fact, HostUnknown};
use crate::plan::cx::PlanCx;
use crate::plan::views::{NodeView, is_healthy_member, member_json};
use crate::plan::{Action, ActionReason, Address, Operation, Refusal, Rule};

/// Learner orphans, failed orphans, then the failed and replaced nodes (`classify`).
pub(in crate::plan) fn run_failed(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    let orphans = cx.orphans.clone();
    for m in orphans.iter().filter(|m| m.is_learner) {
        remove_orphan(cx, m);
    }
    for m in orphans.iter().filter(|m| !m.is_healthy() && !m.is_learner) {
        remove_orphan(cx, m);
    }
    for (n, reason) in cx.early_removals.clone() {
        remove_node(cx, &n, reason);
    }
    Ok(())
}

/// Healthy orphans, then the healthy nodes removed from the configuration.
pub(in crate::plan) fn run_healthy(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    let orphans = cx.orphans.clone();
    for m in orphans.iter().filter(|m| m.is_healthy() && !m.is_learner) {
        remove_orphan(cx, m);
    }
    for n in cx.healthy_removed.clone() {
        remove_node(cx, &n, ActionReason::DeleteBecauseNoResourceConfig);
    }
    Ok(())
}

/// The gate of rule 1 (never destroy from an unknown fact) for destroying node
/// `n`: false (and a violation recorded) when its host is unreachable while another source says it is alive, unless allowed by the operator.
fn destruction_allowed(cx: &mut PlanCx<'_>, n: &str, addr: &str) -> bool {
    let v = cx.views[n].clone();
    let Some(reason) = v.host_reason() else {
        return true;
    };
    // A host that did not answer (or whose credentials or host key failed) says nothing
    // about whether it is alive: it may run k3s behind a partition. Only a refused
    // connection counts as a host that looks down.
    let kind = cx.o.host_failure(n).unwrap_or(HostUnknown::Unanswered);
    if kind != HostUnknown::Refused && !cx.opts.allow_unreachable.contains(n) {
        cx.refuse(
            Rule::NeverDestroyFromUnknown,
            addr.to_string(),
            format!(
                "host of {n} is unknown ({reason}): {}; an unknown host is not an absent host",
                unknown_meaning(kind)
            ),
            Some(format!(
                "check the host and re-run plan, or pass --allow-unreachable {n} to remove it anyway: k3s on it is then not uninstalled, and must be stopped by hand if the host comes back"
            )),
        );
        return false;
    }
    let ready = v.kube.is_some_and(|k| k.ready);
    let healthy = is_healthy_member(v.member);
    let kube_unknown = cx.kube.is_none();
    if (ready || healthy || kube_unknown) && !cx.opts.allow_unreachable.contains(n) {
        let mut alive = Vec::new();
        if ready {
            alive.push("the Kubernetes API says its Node is Ready".to_string());
        }
        if healthy {
            alive.push("its etcd member is healthy".to_string());
        }
        if kube_unknown {
            alive.push(format!(
                "the Kubernetes API is unknown ({})",
                cx.o.kube.unknown_reason().unwrap_or_default()
            ));
        }
        cx.refuse(
            Rule::NeverDestroyFromUnknown,
            addr.to_string(),
            format!(
                "host of {n} is unreachable ({reason}) while {}: an unreachable host is not an absent host",
                alive.join(" and ")
            ),
            Some(format!(
                "check the host and re-run plan, or pass --allow-unreachable {n} to remove it without uninstalling k3s"
            )),
        );
        return false;
    }
    true
}

fn remove_orphan(cx: &mut PlanCx<'_>, m: &EtcdMember) {
    let addr = Address::member(&m.name);
    if cx.etcd.is_none() {
        return;
    }
    if m.is_healthy() && !cx.opts.allow_unreachable.contains(&m.name) {
        cx.refuse(
            Rule::NeverDestroyFromUnknown,
            addr.to_string(),
            format!(
                "etcd member {} ({}) is healthy but matches no node by peer address; its host is unknown",
                m.name,
                m.peer_urls.join(", ")
            ),
            Some(format!(
                "declare the node at that address, or pass --allow-unreachable {} to remove the member",
                m.name
            )),
        );
        return;
    }
    cx.push(
        addr,
        Action::Delete,
        ActionReason::DeleteBecauseNoMatchingNode,
        format!(
            "its peer address matches no declared node; member {}",
            m.health.describe()
        ),
        vec![remove_member(m)],
        Some(member_json(m)),
        None,
    );
}

fn remove_node(cx: &mut PlanCx<'_>, n: &str, reason: ActionReason) {
    let v = cx.views[n].clone();
    if !removal_allowed(cx, &v, reason) {
        return;
    }
    let replacing = reason == ActionReason::ReplaceByRequest;
    let why_base = if replacing {
        format!("its replacement was requested (-replace=node.{n})")
    } else {
        "it is not in the configuration".to_string()
    };
    let action = if replacing {
        Action::Replace
    } else {
        Action::Delete
    };
    let r = Removal {
        v: &v,
        action,
        reason,
        why_base: &why_base,
    };
    drain_node(cx, &r);
    // etcd side.
    if let Some(m) = v.member {
        cx.push(
            Address::member(n),
            Action::Delete,
            reason,
            format!("{why_base}; member {}", m.health.describe()),
            vec![remove_member(m)],
            Some(member_json(m)),
            None,
        );
    }
    uninstall_node(cx, &r);
}

/// One node's removal, as its parts (Kubernetes, etcd, host) need it.
#[derive(Clone, Copy)]
struct Removal<'a, 'v> {
    v: &'v NodeView<'a>,
    action: Action,
    reason: ActionReason,
    /// Why the node is removed, the start of each step's reason.
    why_base: &'v str,
}

/// The gates before removing node `v`: its host must answer for a replacement, the
/// destruction must rest on no unknown fact, and etcd must be known to remove its member.
/// False (with the violation recorded) when the removal is refused.
fn removal_allowed(cx: &mut PlanCx<'_>, v: &NodeView<'_>, reason: ActionReason) -> bool {
    let n = v.name.as_str();
    let node_addr = Address::node(n);
    let replacing = reason == ActionReason::ReplaceByRequest;
    if replacing && v.host.known().is_none() {
        cx.refused.insert(n.to_string());
        cx.refuse(
            Rule::SourceUnknown,
            node_addr.to_string(),
            format!(
                "{n}'s replacement was requested but its host is unreachable ({}): k3s cannot be reinstalled",
                v.host_reason().unwrap_or_default()
            ),
            Some(format!(
                "bring the rebuilt host up at {} first, or remove node \"{n}\" from the configuration",
                v.address.map(|a| a.to_string()).unwrap_or_default()
            )),
        );
        return false;
    }
    if !destruction_allowed(cx, n, &node_addr.to_string()) {
        cx.refused.insert(n.to_string());
        return false;
    }
    if v.member.is_some() && cx.etcd.is_none() {
        cx.refuse(
            Rule::SourceUnknown,
            Address::member(n).to_string(),
            format!(
                "cannot plan the removal of {n}'s etcd member: etcd is unknown ({})",
                cx.o.etcd.unknown_reason().unwrap_or_default()
            ),
            Some("make the etcd API reachable so the quorum can be simulated".into()),
        );
        return false;
    }
    true
}

/// The Kubernetes side of removing node `v`: cordoned and drained (eviction skipped when
/// its kubelet cannot answer); its Node object is deleted later, by [`uninstall_node`].
fn drain_node(cx: &mut PlanCx<'_>, rm: &Removal<'_, '_>) {
    let (v, why_base) = (rm.v, rm.why_base);
    let n = v.name.as_str();
    let node_addr = Address::node(n);
    // Kubernetes side.
    if let Some(k) = v.kube {
        let skip_eviction = !k.ready || v.host.known().is_none();
        let mut ops = Vec::new();
        if !k.unschedulable {
            ops.push(Operation::Cordon { node: n.into() });
        }
        ops.push(Operation::Drain {
            node: n.into(),
            skip_eviction,
        });
        // The Node object is deleted last (below), once k3s is uninstalled: a kubelet
        // that still runs registers a deleted Node again (issue 13).
        let id = cx.push(
            node_addr.clone(),
            rm.action,
            rm.reason,
            why_base.to_string(),
            ops,
            Some(cx.node_before(v)),
            None,
        );
        if skip_eviction {
            let why = match v.host_reason() {
                Some(r) => format!("host {}: {r}", cx.o.host_word(n)),
                None => "Node is NotReady".into(),
            };
            cx.note(id, format!("eviction skipped ({why}): eviction would wait for a kubelet that does not answer"));
        }
        cx.lost.insert(n.to_string());
    } else if cx.kube.is_none() {
        cx.warnings.push(format!(
            "node.{n}: the Kubernetes API is unknown ({}); its Node object (if any) is not deleted by this plan",
            cx.o.kube.unknown_reason().unwrap_or_default()
        ));
    }
}

/// The host side of removing node `v`, then its Node object: drain → uninstall k3s →
/// delete Node.
fn uninstall_node(cx: &mut PlanCx<'_>, rm: &Removal<'_, '_>) {
    let (v, why_base) = (rm.v, rm.why_base);
    let n = v.name.as_str();
    let node_addr = Address::node(n);
    let replacing = rm.reason == ActionReason::ReplaceByRequest;
    // Host side, then the Node object: drain → uninstall k3s → delete Node. Deleted
    // before the uninstall, the Node is registered again by the kubelet still running
    // there (issue 13).
    let delete_node = v.kube.map(|_| Operation::DeleteNode { node: n.into() });
    match &v.host {
        Fact::Known(h) if h.k3s.is_some() => {
            let mut ops = vec![Operation::UninstallK3s { node: n.into() }];
            ops.extend(delete_node);
            let id = cx.push(
                node_addr.clone(),
                rm.action,
                rm.reason,
                format!("{why_base}; its host answers"),
                ops,
                Some(json!({"k3s": h.k3s.as_ref().and_then(|k| k.version.clone())})),
                None,
            );
            if replacing {
                cx.note(
                    id,
                    "k3s-uninstall.sh also removes the old etcd data dir".into(),
                );
            }
        }
        host => {
            if let Fact::Unknown { reason: r } = host
                && !replacing
            {
                let word = cx.o.host_word(n);
                cx.warnings.push(format!(
                    "node.{n}: host {word} ({r}): k3s will not be uninstalled; if the host comes back, stop k3s there before it tries to rejoin"
                ));
            }
            if let Some(op) = delete_node {
                cx.push(
                    node_addr.clone(),
                    rm.action,
                    rm.reason,
                    match host {
                        Fact::Known(_) => {
                            format!("{why_base}; k3s is not installed on its host")
                        }
                        Fact::Unknown { .. } => {
                            format!("{why_base}; its host is {}", cx.o.host_word(n))
                        }
                    },
                    vec![op],
                    None,
                    None,
                );
            }
        }
    }
}

/// The operation removing member `m` (by id; its name and peer URL for the operator).
fn remove_member(m: &EtcdMember) -> Operation {
    Operation::RemoveEtcdMember {
        id: m.id,
        name: m.name.clone(),
        peer_url: m.peer_urls.first().cloned().unwrap_or_default(),
    }
}

/// What an unknown host of this kind means for a plan that would destroy it.
fn unknown_meaning(kind: HostUnknown) -> &'static str {
    match kind {
        HostUnknown::Refused => "its SSH port refuses connections",
        HostUnknown::Unanswered => {
            "it did not answer within the connect timeout and may be alive behind a partition"
        }
        HostUnknown::Credentials => {
            "SSH authentication failed, which says nothing about whether the host is alive"
        }
        HostUnknown::HostKeyUnknown => "its host key could not be verified against known_hosts",
        HostUnknown::HostKeyChanged => "its host key changed (possible man-in-the-middle)",
        HostUnknown::ObserveFailed => "it answered but could not be observed",
    }
}
