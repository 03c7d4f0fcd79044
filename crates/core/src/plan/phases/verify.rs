//! Phase `verify`: a plan that changes the cluster (anything but add-ons, their `.skip`
//! files and the snapshot)
//! ends with a verification of the result (rule 5, after apply: every member
//! healthy, one leader, equal KV hashes).
//!
//! What it expects follows from what the plan changes (issue 19): a member the plan leaves
//! alone while it is not healthy (a dead server the operator keeps declared) is expected
//! listed but not healthy, and the Nodes expected Ready are those of nodes that run an
//! agent (a server with `disable-agent` has no Node).

use std::collections::BTreeSet;

use crate::plan::cx::PlanCx;
use crate::plan::phases::read_step;
use crate::plan::{ActionReason, Address, Operation, Refusal};

pub(in crate::plan) fn run(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    // A packaged add-on's `.skip` file changes nothing k3s runs: no verification for it.
    let touches_cluster = cx.steps.iter().any(|s| {
        !matches!(s.address, Address::Addon { .. } | Address::EtcdSnapshot)
            && s.reason != ActionReason::PackagedAddonSkip
    });
    if touches_cluster {
        let expect_members = cx.t.etcd_nodes().count();
        let expect_nodes =
            cx.t.nodes
                .iter()
                .filter(|d| {
                    // A node this plan joins gets the declared config; others keep theirs.
                    if cx.joined.contains_key(&d.name) {
                        d.runs_agent()
                    } else {
                        cx.runs_agent(&d.name)
                    }
                })
                .count();
        let removed: BTreeSet<u64> = cx
            .steps
            .iter()
            .flat_map(|s| &s.operations)
            .filter_map(|op| match op {
                Operation::RemoveEtcdMember { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        let mut unhealthy_left: Vec<String> =
            cx.t.etcd_nodes()
                .filter(|d| !cx.joined.contains_key(&d.name) && !cx.lost.contains(&d.name))
                .filter_map(|d| cx.views[&d.name].member)
                .filter(|m| !m.is_healthy() && !m.is_learner && !removed.contains(&m.id))
                .map(|m| m.name.clone())
                .collect();
        unhealthy_left.sort();
        let why = if unhealthy_left.is_empty() {
            "the plan changed the cluster; this checks the result".to_string()
        } else {
            format!(
                "the plan changed the cluster; this checks the result (member{} {} not healthy and left alone: not expected healthy)",
                if unhealthy_left.len() == 1 { "" } else { "s" },
                unhealthy_left.join(", ")
            )
        };
        cx.steps.push(read_step(
            Address::Verify,
            ActionReason::VerifyAfterApply,
            &why,
            Operation::Verify {
                expect_members,
                expect_nodes,
                unhealthy_left,
            },
        ));
    }
    Ok(())
}
