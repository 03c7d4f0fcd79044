//! From slim objects to the provider's model: nodes, pods and their owning workloads.

use std::collections::HashMap;

use super::slim::*;
use crate::model::*;

pub(super) fn node_info(n: SNode) -> NodeInfo {
    let ready_c = n.status.conditions.iter().find(|c| c.type_ == "Ready");
    let ready = match ready_c.map(|c| c.status.as_str()) {
        Some("True") => Readiness::Ready,
        Some("False") => Readiness::NotReady,
        _ => Readiness::Unknown,
    };
    let mut roles: Vec<String> = n
        .metadata
        .labels
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("node-role.kubernetes.io/")
                .filter(|_| v != "false")
                .map(str::to_string)
        })
        .collect();
    roles.sort();
    NodeInfo {
        internal_ip: n
            .status
            .addresses
            .iter()
            .find(|a| a.type_ == "InternalIP")
            .map(|a| a.address.clone()),
        ready,
        ready_since: ready_c.and_then(|c| c.last_transition_time.clone()),
        unschedulable: n.spec.unschedulable.unwrap_or(false),
        kubelet_version: n.status.node_info.kubelet_version,
        taints: n
            .spec
            .taints
            .into_iter()
            .map(|t| Taint {
                key: t.key,
                value: t.value,
                effect: t.effect,
            })
            .collect(),
        roles,
        name: n.metadata.name,
        uid: n.metadata.uid,
        labels: n.metadata.labels,
    }
}

pub(crate) fn resolve_owner(
    meta: &SMeta,
    rs_owner: &HashMap<(String, String), SOwner>,
) -> Option<WorkloadRef> {
    let o = meta.controller()?;
    let ns = meta.namespace.clone();
    Some(match o.kind.as_str() {
        "ReplicaSet" => match rs_owner.get(&(ns.clone(), o.name.clone())) {
            Some(d) if d.kind == "Deployment" => WorkloadRef {
                kind: WorkloadKind::Deployment,
                namespace: ns,
                name: d.name.clone(),
            },
            _ => WorkloadRef {
                kind: WorkloadKind::ReplicaSet,
                namespace: ns,
                name: o.name.clone(),
            },
        },
        "StatefulSet" => WorkloadRef {
            kind: WorkloadKind::StatefulSet,
            namespace: ns,
            name: o.name.clone(),
        },
        "DaemonSet" => WorkloadRef {
            kind: WorkloadKind::DaemonSet,
            namespace: ns,
            name: o.name.clone(),
        },
        "Job" => WorkloadRef {
            kind: WorkloadKind::Job,
            namespace: ns,
            name: o.name.clone(),
        },
        "Node" => WorkloadRef {
            kind: WorkloadKind::Node,
            namespace: String::new(),
            name: o.name.clone(),
        },
        other => WorkloadRef {
            kind: WorkloadKind::Other(other.to_string()),
            namespace: ns,
            name: o.name.clone(),
        },
    })
}

pub(crate) fn pod_info(p: &SPod, rs_owner: &HashMap<(String, String), SOwner>) -> PodInfo {
    PodInfo {
        namespace: p.metadata.namespace.clone(),
        name: p.metadata.name.clone(),
        uid: p.metadata.uid.clone(),
        node: p.spec.node_name.clone().filter(|n| !n.is_empty()),
        phase: p.status.phase.clone(),
        ready: p
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        terminating: p.metadata.deletion_timestamp.is_some(),
        mirror: p.is_mirror(),
        owner: resolve_owner(&p.metadata, rs_owner),
        pvcs: p.claims(),
        labels: p.metadata.labels.clone(),
    }
}
