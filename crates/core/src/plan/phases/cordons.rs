//! Phase `leftover_cordons`: cordons an earlier apply made and did not undo (it was killed
//! or failed between the cordon and the uncordon) are undone, as the state recorded them
//! before they were made. A cordon the state does not record is someone else's: only the
//! `unplanned_drift` phase reports it.

use serde_json::json;

use crate::plan::cx::PlanCx;
use crate::plan::{Action, ActionReason, Address, Drift, Operation, Refusal};

pub(in crate::plan) fn run(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    leftover_cordons(cx);
    Ok(())
}

/// Cordons an earlier apply made and did not undo (it was killed or failed between the
/// cordon and the uncordon): undone, as the state recorded them before they were made.
fn leftover_cordons(cx: &mut PlanCx<'_>) {
    let mut todo = Vec::new();
    for d in &cx.t.nodes {
        let v = &cx.views[&d.name];
        if cx.lost.contains(&d.name)
            || cx.uncordoned.contains(&d.name)
            || !cx.opts.cordoned_by_k3splan.contains(&d.name)
            || !v.kube.is_some_and(|k| k.unschedulable)
        {
            continue;
        }
        todo.push(d.name.clone());
    }
    for n in todo {
        cx.uncordoned.insert(n.clone());
        cx.drift.push(Drift {
            address: Address::node(&n).to_string(),
            attribute: "unschedulable".into(),
            declared: Some("false".into()),
            observed: Some("true".into()),
            planned: true,
            note: Some("cordoned by an earlier k3splan apply that did not finish".into()),
        });
        cx.push(
            Address::node(&n),
            Action::Update,
            ActionReason::UncordonLeftByInterruptedApply,
            "an earlier apply cordoned it (recorded in the state) and was interrupted before it uncordoned it".into(),
            vec![Operation::Uncordon { node: n.clone() }],
            Some(json!({"unschedulable": true})),
            Some(json!({"unschedulable": false})),
        );
    }
}
