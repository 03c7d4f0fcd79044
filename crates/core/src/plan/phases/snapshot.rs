//! Phase `snapshot`: when a step is destructive, an etcd snapshot is taken first (
//! rule 4, a snapshot before the first destructive step), unless the topology says
//! `snapshot_before_apply = false` (then a warning says so). Refused when etcd is unknown
//! or empty: there is nothing to snapshot from.
//!
//! Caveat: the snapshot step is inserted before every other step; the `renumber` phase
//! shifts the dependencies recorded before it.

use crate::plan::cx::PlanCx;
use crate::plan::phases::read_step;
use crate::plan::views::is_healthy_member;
use crate::plan::{ActionReason, Address, Operation, Refusal, Rule, Step};

pub(in crate::plan) fn run(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    let destructive = cx.steps.iter().any(Step::is_destructive);
    cx.snapshot_required = destructive && cx.t.cluster.etcd.snapshot_before_apply;
    if destructive && !cx.t.cluster.etcd.snapshot_before_apply {
        cx.warnings.push(
            "snapshot_before_apply = false: no etcd snapshot is taken before the destructive steps"
                .into(),
        );
    }
    if !cx.snapshot_required {
        return Ok(());
    }
    if cx.etcd.is_none_or(|e| e.members.is_empty()) {
        cx.refuse(
            Rule::SnapshotFirst,
            "etcd_snapshot",
            format!(
                "cannot take an etcd snapshot before the destructive steps: etcd is {}",
                cx.o.etcd
                    .unknown_reason()
                    .map(|r| format!("unknown ({r})"))
                    .unwrap_or("empty".into())
            ),
            Some(
                "make etcd reachable, or set snapshot_before_apply = false to proceed without"
                    .into(),
            ),
        );
    }
    let node = snapshot_node(cx);
    cx.steps.insert(
        0,
        read_step(
            Address::EtcdSnapshot,
            ActionReason::SnapshotBeforeDestroy,
            "destructive steps follow; the snapshot's path is recorded in the state",
            Operation::Snapshot { node },
        ),
    );
    Ok(())
}

/// The etcd node to take the snapshot on: a healthy member, staying, with k3s running.
fn snapshot_node(cx: &PlanCx<'_>) -> Option<String> {
    cx.t.etcd_nodes()
        .filter(|d| !cx.lost.contains(&d.name) && !cx.joined.contains_key(&d.name))
        .find(|d| {
            let v = &cx.views[&d.name];
            is_healthy_member(v.member)
                && v.host
                    .known()
                    .is_some_and(|h| h.k3s.as_ref().is_some_and(|k| k.service_active))
        })
        .map(|d| d.name.clone())
}
