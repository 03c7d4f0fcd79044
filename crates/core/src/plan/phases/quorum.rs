//! Phase `quorum`: when etcd quorum is already lost, nothing can succeed; the plan is
//! refused with the recovery to perform (rule 2, etcd quorum holds after every step).

use crate::plan::cx::PlanCx;
use crate::plan::{Quorum, Refusal, Rule, Violation};

pub(in crate::plan) fn run(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    match &cx.quorum_before {
        Some(q) if !q.ok() => Err(quorum_lost_refusal(cx, q.clone())),
        _ => Ok(()),
    }
}

fn quorum_lost_refusal(cx: &PlanCx<'_>, q: Quorum) -> Refusal {
    let e = cx.etcd.expect("etcd known");
    let down: Vec<String> = e
        .members
        .iter()
        .filter(|m| !m.is_learner && !m.is_healthy())
        .map(|m| format!("{} ({})", cx.member_label(m), m.health.describe()))
        .collect();
    let up: Vec<String> = e
        .members
        .iter()
        .filter(|m| !m.is_learner && m.is_healthy())
        .map(|m| cx.member_label(m))
        .collect();
    let survivor = up.first().cloned().unwrap_or_else(|| "one server".into());
    Refusal {
        violations: vec![Violation {
            rule: Rule::Quorum,
            step: Some("etcd".into()),
            message: format!(
                "etcd quorum is already lost: {q}; members down: {}. No step can succeed without quorum",
                down.join(", ")
            ),
            advice: Some(format!(
                "recover first: `k3splan plan --recover` shows the recovery as a plan (docs/recovery.md); \
                 if a down member's data is intact, start k3s on it again and re-run plan; \
                 otherwise, on {survivor} stop k3s and run `k3s server --cluster-reset` (or \
                 `k3s server --cluster-reset --cluster-reset-restore-path=<snapshot>` to restore a snapshot), \
                 start it, move the other servers' <data-dir>/server/db/etcd aside and let them rejoin; then re-run plan"
            )),
        }],
        quorum_before: Some(q),
    }
}
