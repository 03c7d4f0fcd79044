//! k3splan: a declarative plan/apply reconciler for k3s HA clusters.
//!
//! The binary's library: the command line ([`cli`]) over `k3splan-core` (config, observed
//! model, planner, rendering) and `k3splan-engine` (observation, apply, state), re-exported
//! here under their module names.
pub use k3splan_core::{config, observed, plan, render};
pub use k3splan_engine::{apply, live, state};

pub mod cli;
