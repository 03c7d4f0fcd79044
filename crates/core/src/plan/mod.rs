//! The planner: desired topology + observed state → an ordered, quorum-safe [`Plan`].
//!
//! Pure: no I/O. [`plan`] returns either a plan whose every step was checked by the etcd
//! quorum simulation ([`safety::simulate`]), or a [`Refusal`] naming the step and the
//! safety rule (docs/design.md) it would break.
//!
//! Guarantees of a returned [`Plan`]:
//! - after every step, healthy voting members ≥ floor(voters/2)+1 (a restart of a healthy
//!   etcd server counts as its member missing while it restarts: rule 9, restarting
//!   a healthy server counts as removing its member);
//! - a failed member is removed before any member is added; at most one membership change is
//!   in flight; a joined learner is promoted before the next change (rule 3, one
//!   membership change at a time);
//! - an etcd snapshot precedes the first destructive step, a verification follows the last
//!   (rules 4 and 5, snapshot first and verification after apply);
//! - no join uses `cluster-init` (rule 10, a joining server never uses cluster-init);
//!   members are matched by peer address (rule 11, members matched by peer URL);
//! - no PVC bound to a node that stays is deleted (rule 6, no PVC bound to a healthy
//!   node is deleted);
//! - nothing is destroyed on the strength of an unknown fact unless the node is listed in
//!   [`PlanOptions::allow_unreachable`] (rule 1, never destroy from an unknown fact).
//!
//! Caveat: steps describe intent; the apply engine must re-check preconditions (e.g. a
//! [`Operation::RemoveEtcdMember`] is skipped when k3s already removed the member).

mod cx;
pub mod estimate;
pub mod files;
mod operation;
mod phases;
mod planner;
pub mod recover;
mod refusal;
pub mod safety;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
mod types;
mod views;

pub use files::{config_yaml_for, keepalived_manifest_for, mask_secrets};
pub use operation::*;
pub use phases::addons::{PACKAGED_ADDONS, packaged_manifest};
pub use planner::plan;
pub use refusal::*;
pub use types::*;
