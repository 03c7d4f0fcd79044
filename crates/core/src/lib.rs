//! k3splan-core: the pure heart of k3splan — the topology model and its HCL loader, the
//! observed-state model, the quorum-safe planner with its safety simulation, and the plan
//! renderers.
//!
//! This crate depends on no async runtime and no provider (`cargo tree -p k3splan-core`
//! shows it).
pub mod config;
pub mod observed;
pub mod plan;
pub mod render;
