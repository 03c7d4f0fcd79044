//! k3splan-engine: everything of k3splan that talks to a cluster — live observation through
//! the providers ([`live`]), the apply executor and its journal ([`apply`]), and the state
//! backends ([`state`]). Plans come from `k3splan-core`; this crate carries them out.
pub use k3splan_core::{check, config, observed, plan, render};

pub mod apply;
pub mod atomic;
pub mod live;
pub mod sources;
pub mod state;
pub mod wait;
