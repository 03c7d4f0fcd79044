//! Phase `learners`: a declared node whose member is still a learner is promoted before
//! any other membership change (rule 3, one membership change at a time, learners
//! promoted before the next).

use serde_json::json;

use crate::observed::EtcdMember;
use crate::plan::cx::PlanCx;
use crate::plan::views::member_json;
use crate::plan::{Action, ActionReason, Address, Operation, Refusal};

pub(in crate::plan) fn run(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    pending_learners(cx);
    Ok(())
}

fn pending_learners(cx: &mut PlanCx<'_>) {
    let pending: Vec<(String, &EtcdMember)> = cx
        .views
        .values()
        .filter(|v| v.declared.is_some() && !cx.replacing(&v.name))
        .filter_map(|v| {
            v.member
                .filter(|m| m.is_learner)
                .map(|m| (v.name.clone(), m))
        })
        .collect();
    for (n, m) in pending {
        cx.push(
            Address::member(&n),
            Action::Update,
            ActionReason::LearnerPending,
            "its member is still a learner, promoted before any other membership change".into(),
            vec![Operation::WaitLearnerPromoted { node: n.clone() }],
            Some(member_json(m)),
            Some(json!({"is_learner": false})),
        );
    }
}
