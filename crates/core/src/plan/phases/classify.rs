//! Phase `classify`: which nodes leave the configuration and which are replaced, and in
//! which order they are removed. Records only warnings (a replacement requested for a node
//! that is not in the cluster); the lists are kept in the context for the removal and join
//! phases.

use crate::plan::cx::PlanCx;
use crate::plan::{ActionReason, Refusal};

pub(in crate::plan) fn run(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    let (removed, mut replaced) = classify(cx);
    let (failed_removed, healthy_removed): (Vec<_>, Vec<_>) =
        removed.into_iter().partition(|n| cx.is_failed(n));
    cx.orphans.sort_by_key(|m| (m.is_healthy(), m.name.clone()));
    // Learners of removed or replaced nodes first (removing one changes no quorum and
    // unblocks the next change), then failed members, then replaced nodes, failed first
    // (rule 3, remove failed members first, one membership change at a time).
    replaced.sort_by_key(|n| !cx.is_failed(n));
    let mut removals: Vec<(String, ActionReason)> = failed_removed
        .iter()
        .map(|n| (n.clone(), ActionReason::DeleteBecauseNoResourceConfig))
        .chain(
            replaced
                .iter()
                .map(|n| (n.clone(), ActionReason::ReplaceByRequest)),
        )
        .collect();
    removals.sort_by_key(|(n, _)| !cx.views[n].member.is_some_and(|m| m.is_learner));
    cx.replaced = replaced;
    cx.early_removals = removals;
    cx.healthy_removed = healthy_removed;
    Ok(())
}

/// (removed from the configuration, marked for replacement)
fn classify(cx: &mut PlanCx<'_>) -> (Vec<String>, Vec<String>) {
    let mut removed = Vec::new();
    let mut replaced = Vec::new();
    let names: Vec<String> = cx.views.keys().cloned().collect();
    for n in names {
        let v = &cx.views[&n];
        match v.declared {
            None if v.kube.is_some() || v.member.is_some() => removed.push(n),
            None => {}
            Some(_) if cx.replacing(&n) && cx.is_present(&n) => replaced.push(n),
            Some(_) if cx.replacing(&n) => cx.warnings.push(format!(
                "node.{n}: its replacement was requested, but it is not in the cluster: it is joined as a new node"
            )),
            Some(_) => {}
        }
    }
    // Declaration order for replaced nodes.
    replaced.sort_by_key(|n| cx.t.nodes.iter().position(|d| &d.name == n));
    (removed, replaced)
}
