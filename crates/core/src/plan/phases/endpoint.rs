//! Phase `endpoint`: without a declared `cluster.api_endpoint`, the join URLs this plan
//! writes name a single server, and a node may not start while that server is down: a warning
//! says so.

use crate::plan::cx::PlanCx;
use crate::plan::{ActionReason, Operation, Refusal};

pub(in crate::plan) fn run(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    let pinned_url = cx.steps.iter().any(|s| {
        s.operations.iter().any(|op| {
            matches!(
                op,
                Operation::JoinServer { .. } | Operation::JoinAgent { .. }
            )
        }) || s.reason == ActionReason::JoinUrlNamesUnavailableServer
    });
    if pinned_url && cx.t.cluster.api_endpoint.is_none() {
        cx.warnings.push(
            "no cluster.api_endpoint is declared: join URLs name a single server, and a node may not start while that server is down; declare a VIP or load balancer".into(),
        );
    }
    Ok(())
}
