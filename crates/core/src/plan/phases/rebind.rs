//! Phases `rebind` and (in `cordons.rs`) `leftover_cordons`: the volumes pinned to a lost
//! node (removed by this plan, or already gone) are rebound or their workload recreated, as
//! the storage block's `on_node_loss` says, with the nodes holding sibling replicas cordoned
//! meanwhile so the recreated pods land on the target nodes (the lost-server replacement
//! scenario), then
//! uncordoned.
//!
//! Guarantee: only PVCs bound to a lost node are touched (rule 6, no PVC bound to a
//! healthy node is deleted); each rebind operation carries the plan's [`LossEvidence`] so
//! that the provider's last guard rests on it.

use std::collections::BTreeSet;

use serde_json::json;

use crate::config::{Node, OnNodeLoss, StorageBinding, WorkloadKind};
use crate::observed::{Fact, KubeState, Pod, Pvc};
use crate::plan::cx::PlanCx;
use crate::plan::{
    Action, ActionReason, Address, DEFAULT_REBIND_MIN_NOT_READY_SECS, LossEvidence, Operation,
    Refusal,
};

pub(in crate::plan) fn run(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    rebind(cx);
    Ok(())
}

/// A PVC on a lost node, its storage binding, the pod using it, and the lost node.
type Work<'a> = (&'a Pvc, &'a StorageBinding, Option<&'a Pod>, String);

/// What this plan knows about lost node `n`, for the rebind operations: the provider
/// deletes a PVC only when it says the host is gone (issue 13).
fn loss_evidence(cx: &PlanCx<'_>, n: &str) -> LossEvidence {
    let v = cx.views.get(n);
    let uninstalled_by_plan = cx.steps.iter().any(|s| {
        s.operations
            .iter()
            .any(|op| matches!(op, Operation::UninstallK3s { node } if node == n))
    });
    let host_unreachable = match v.map(|v| &v.host) {
        Some(Fact::Known(_)) => false,
        Some(Fact::Unknown { .. }) => true,
        None => !cx.o.host(n).is_known(),
    };
    let member_dead = match v.and_then(|v| v.member) {
        Some(m) => !m.is_healthy(),
        None => cx.etcd.is_some(),
    };
    LossEvidence {
        uninstalled_by_plan,
        k3s_absent: match v.map(|v| &v.host) {
            Some(Fact::Known(h)) => h.k3s.is_none(),
            _ => false,
        },
        host_unreachable,
        member_dead,
        not_ready_since: v
            .and_then(|v| v.kube)
            .filter(|k| !k.ready)
            .and_then(|k| k.ready_since.clone()),
        min_not_ready_secs: cx
            .opts
            .rebind_min_not_ready_secs
            .unwrap_or(DEFAULT_REBIND_MIN_NOT_READY_SECS),
    }
}

/// The owner kind of a storage binding's workload, as pods name it.
fn kind_name(b: &StorageBinding) -> &'static str {
    match b.kind {
        WorkloadKind::StatefulSet => "StatefulSet",
        WorkloadKind::Deployment => "Deployment",
    }
}

/// The storage binding a PVC belongs to, and the pod using it.
fn binding_of<'a>(
    cx: &PlanCx<'a>,
    k: &'a KubeState,
    pvc: &Pvc,
) -> Option<(&'a StorageBinding, Option<&'a Pod>)> {
    let pod = k
        .pods
        .iter()
        .find(|p| p.namespace == pvc.namespace && p.pvcs.iter().any(|c| c == &pvc.name));
    for b in &cx.t.storage {
        if b.namespace != pvc.namespace {
            continue;
        }
        let kind = kind_name(b);
        let by_pod = pod.is_some_and(|p| {
            p.owner_kind.as_deref() == Some(kind) && p.owner_name.as_deref() == Some(&b.name)
        });
        let by_name = b.kind == WorkloadKind::StatefulSet
            && pvc.name.rsplit_once('-').is_some_and(|(head, ord)| {
                ord.chars().all(|c| c.is_ascii_digit()) && head.ends_with(&format!("-{}", b.name))
            });
        if by_pod || by_name {
            return Some((b, pod));
        }
    }
    None
}

fn rebind(cx: &mut PlanCx<'_>) {
    let Some(k) = cx.kube else { return };
    let work = lost_volumes(cx, k);
    if work.is_empty() {
        return;
    }
    let targets = rebind_targets(cx, &work);
    let (cordon, already) = sibling_cordons(cx, k, &work, &targets);
    let target_list = targets.iter().cloned().collect::<Vec<_>>().join(", ");
    let join_deps: Vec<usize> = targets
        .iter()
        .filter_map(|t| cx.joined.get(t).copied())
        .collect();
    for n in &cordon {
        cx.push(
            Address::node(n),
            Action::Update,
            ActionReason::CordonForRebind,
            format!("volumes are rebound meanwhile and must land on {target_list}"),
            vec![Operation::Cordon { node: n.clone() }],
            Some(json!({"unschedulable": false})),
            Some(json!({"unschedulable": true})),
        );
    }
    for w in work {
        rebind_step(cx, w, &target_list, &join_deps);
    }
    let mut uncordon = cordon.clone();
    uncordon.extend(already);
    uncordon.sort();
    for n in &uncordon {
        cx.uncordoned.insert(n.clone());
        cx.push(
            Address::node(n),
            Action::Update,
            ActionReason::UncordonAfterRebind,
            "the volumes have been rebound".into(),
            vec![Operation::Uncordon { node: n.clone() }],
            Some(json!({"unschedulable": true})),
            Some(json!({"unschedulable": false})),
        );
    }
}

/// The PVCs bound to a lost node whose storage block asks for a rebind or a recreate; a
/// warning for each one left as is.
fn lost_volumes<'a>(cx: &mut PlanCx<'a>, k: &'a KubeState) -> Vec<Work<'a>> {
    let mut work = Vec::new();
    for pvc in &k.pvcs {
        let Some(node) = &pvc.bound_node else {
            continue;
        };
        // Lost: removed by this plan, or already gone (neither declared nor a Node any
        // more — e.g. an earlier, interrupted apply deleted it before rebinding).
        let gone = cx.gone(node);
        if !cx.lost.contains(node) && !gone {
            continue;
        }
        match binding_of(cx, k, pvc) {
            None => cx.warnings.push(format!(
                "pvc.{}/{}: bound to {node}, which is removed; no storage block declares its workload, so it is left as is (its pod stays Pending)",
                pvc.namespace, pvc.name
            )),
            Some((b, _)) if b.on_node_loss == OnNodeLoss::Keep => cx.warnings.push(format!(
                "pvc.{}/{}: bound to {node}, which is removed; storage \"{}\" says on_node_loss = \"keep\": left for a manual restore",
                pvc.namespace, pvc.name, b.key()
            )),
            Some((b, pod)) => work.push((pvc, b, pod, node.clone())),
        }
    }
    work
}

/// Where the volumes should land: preferred nodes, else the nodes this plan joins.
fn rebind_targets(cx: &PlanCx<'_>, work: &[Work<'_>]) -> BTreeSet<String> {
    let targets: BTreeSet<String> = work
        .iter()
        .flat_map(|(_, b, ..)| b.prefer_nodes.iter().cloned())
        .filter(|n| (cx.is_declared(n) && !cx.lost.contains(n)) || cx.joined.contains_key(n))
        .collect();
    if targets.is_empty() {
        cx.joined.keys().cloned().collect()
    } else {
        targets
    }
}

/// The nodes holding sibling replicas of the rebound workloads, so that the recreated pods
/// land on the target nodes and the replicas stay spread: those to cordon,
/// and those an interrupted apply already cordoned for this rebind (recorded in the state),
/// which are not cordoned again but are uncordoned after.
fn sibling_cordons(
    cx: &mut PlanCx<'_>,
    k: &KubeState,
    work: &[Work<'_>],
    targets: &BTreeSet<String>,
) -> (Vec<String>, Vec<String>) {
    if targets.is_empty() {
        cx.warnings.push(
            "volumes are rebound without cordoning: no preferred or new node to steer them to"
                .into(),
        );
        return (vec![], vec![]);
    }
    let workloads: BTreeSet<(String, &str, String)> = work
        .iter()
        .map(|(_, b, ..)| (b.namespace.clone(), kind_name(b), b.name.clone()))
        .collect();
    let sibling_nodes: BTreeSet<&str> = k
        .pods
        .iter()
        .filter(|p| {
            let (Some(kind), Some(owner)) = (p.owner_kind.as_deref(), p.owner_name.as_ref()) else {
                return false;
            };
            workloads.contains(&(p.namespace.clone(), kind, owner.clone()))
        })
        .filter_map(|p| p.node.as_deref())
        .collect();
    let siblings: Vec<&Node> =
        cx.t.nodes
            .iter()
            .filter(|d| !targets.contains(&d.name) && !cx.lost.contains(&d.name))
            .filter(|d| sibling_nodes.contains(d.name.as_str()))
            .collect();
    let schedulable = |d: &Node| cx.views[&d.name].kube.is_some_and(|k| !k.unschedulable);
    (
        siblings
            .iter()
            .filter(|d| schedulable(d))
            .map(|d| d.name.clone())
            .collect(),
        siblings
            .iter()
            .filter(|d| !schedulable(d) && cx.opts.cordoned_by_k3splan.contains(&d.name))
            .map(|d| d.name.clone())
            .collect(),
    )
}

/// The step rebinding one PVC (or recreating its workload), after the joins of the
/// target nodes.
fn rebind_step(cx: &mut PlanCx<'_>, w: Work<'_>, target_list: &str, join_deps: &[usize]) {
    let (pvc, b, pod, node) = w;
    let addr = Address::Pvc {
        namespace: pvc.namespace.clone(),
        name: pvc.name.clone(),
    };
    let (op, why) = match b.on_node_loss {
        OnNodeLoss::Rebind => (
            Operation::RebindVolume {
                namespace: pvc.namespace.clone(),
                pvc: pvc.name.clone(),
                pvc_uid: pvc.uid.clone(),
                pod: pod.map(|p| p.name.clone()),
                from_node: node.clone(),
                evidence: loss_evidence(cx, &node),
            },
            format!(
                "its volume is pinned to {node}, which is removed, and storage \"{}\" says on_node_loss = \"rebind\"",
                b.key()
            ),
        ),
        _ => (
            Operation::RecreateWorkload {
                namespace: pvc.namespace.clone(),
                pvc: pvc.name.clone(),
                pvc_uid: pvc.uid.clone(),
                kind: "Deployment".into(),
                name: b.name.clone(),
                from_node: node.clone(),
                evidence: loss_evidence(cx, &node),
            },
            format!(
                "its volume is pinned to {node}, which is removed, and storage \"{}\" says on_node_loss = \"recreate\"",
                b.key()
            ),
        ),
    };
    let id = cx.push(
        addr,
        Action::Replace,
        ActionReason::VolumeOnLostNode,
        why,
        vec![op],
        Some(json!({"uid": pvc.uid, "node": node, "volume": pvc.volume, "storage_class": pvc.storage_class})),
        Some(json!({"node": if target_list.is_empty() { None } else { Some(target_list.to_string()) }, "storage_class": pvc.storage_class})),
    );
    cx.steps[id - 1]
        .depends_on
        .extend(join_deps.iter().copied());
}
