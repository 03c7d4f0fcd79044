//! Phases `renumber` and `simulate`: the steps get their final ids and dependencies, then
//! the plan is refused if any phase recorded a violation, and otherwise checked as a whole
//! by the quorum simulation ([`safety::simulate`]), which annotates each step with the
//! quorum after it.
//!
//! Guarantee: after `simulate`, every step of the plan passed the simulation (
//! rules 2, 3, 4, 6, 9, 10); a plan that breaks one is refused with the step named.

use std::collections::BTreeSet;

use crate::plan::cx::PlanCx;
use crate::plan::safety;
use crate::plan::{Address, Refusal};

/// Ids from 1 in order; dependencies follow the order (each step after the previous one),
/// plus the explicit ones recorded while planning (shifted if a snapshot was inserted).
pub(in crate::plan) fn renumber(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    let shift = usize::from(cx.snapshot_required);
    let n = cx.steps.len();
    for (i, s) in cx.steps.iter_mut().enumerate() {
        s.id = i + 1;
        let mut deps: BTreeSet<usize> = s
            .depends_on
            .iter()
            .map(|d| d + shift)
            .filter(|d| *d <= i)
            .collect();
        if i > 0 {
            deps.insert(i);
        }
        if i + 1 == n && matches!(s.address, Address::Verify) {
            deps = BTreeSet::from([i]);
        }
        s.depends_on = deps.into_iter().collect();
    }
    Ok(())
}

/// Every violation the phases found, or the simulation of the whole plan from the
/// membership before it.
pub(in crate::plan) fn simulate(cx: &mut PlanCx<'_>) -> Result<(), Refusal> {
    if !cx.violations.is_empty() {
        return Err(Refusal {
            violations: std::mem::take(&mut cx.violations),
            quorum_before: cx.quorum_before.clone(),
        });
    }
    let mut start = cx.start.clone();
    if let Some(k) = cx.kube {
        start.gone_nodes = k
            .pvcs
            .iter()
            .filter_map(|p| p.bound_node.clone())
            .filter(|n| cx.gone(n))
            .collect();
    }
    safety::simulate(&start, &mut cx.steps, cx.snapshot_required)
}
