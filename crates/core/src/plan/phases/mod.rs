//! The planner's phases, one file each; their order is `PHASES` in `planner.rs`. Each
//! phase is `fn(&mut PlanCx) -> Result<(), Refusal>`: it adds steps, drift, warnings or
//! violations to the context, and returns a refusal only when planning must stop at once
//! (quorum already lost, or the final simulation).

use crate::plan::{Action, ActionReason, Address, Operation, Step};

pub(super) mod addons;
pub(super) mod check_fixes;
pub(super) mod classify;
pub(super) mod cordons;
pub(super) mod drift;
pub(super) mod endpoint;
pub(super) mod finish;
pub(super) mod join_urls;
pub(super) mod joins;
pub(super) mod keepalived;
pub(super) mod learners;
pub(super) mod quorum;
pub(super) mod rebind;
pub(super) mod removals;
pub(super) mod snapshot;
mod stale_data;
pub(super) mod upgrade;
pub(super) mod verify;

/// A step that only reads (the snapshot, the verification), with no dependency of its own.
fn read_step(address: Address, reason: ActionReason, why: &str, op: Operation) -> Step {
    Step {
        id: 0,
        address,
        action: Action::Read,
        reason,
        why: why.into(),
        operations: vec![op],
        before: None,
        after: None,
        depends_on: vec![],
        quorum: vec![],
        notes: vec![],
    }
}
