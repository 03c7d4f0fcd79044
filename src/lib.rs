//! k3splan: a declarative plan/apply reconciler for k3s HA clusters.
//!
//! The binary's library: the command line ([`cli`]) over `k3splan-core` (config, observed
//! model, planner, rendering) and `k3splan-engine` (observation, apply, state), re-exported
//! here under their module names.
pub use k3splan_core::{check, import, observed, plan, render};
pub use k3splan_engine::{apply, live, state};

pub mod cli;

/// `k3splan-core`'s configuration language, with the loader's entry points reading the local
/// file system (`k3splan_engine::sources`).
pub mod config {
    pub use k3splan_core::config::*;
    pub use k3splan_engine::sources::{config_files, load_path, load_sources, process_env};

    /// `k3splan-core`'s loader, with the entry points reading the local file system.
    pub mod load {
        pub use k3splan_core::config::load::*;
        pub use k3splan_engine::sources::{config_files, load_path, load_sources, process_env};
    }
}
