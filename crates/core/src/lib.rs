//! k3splan-core: the pure heart of k3splan — the topology model and its HCL loader, the
//! observed-state model, the quorum-safe planner with its safety simulation, and the plan
//! renderers.
//!
//! Guarantee: this crate performs no I/O of its own and depends on no async runtime and no
//! provider (`cargo tree -p k3splan-core -e normal` shows it). Configuration files and the
//! environment are read through [`config::SourceFs`] and [`config::EnvSource`], which
//! the caller implements (the engine's `sources` module reads the real ones); the random key
//! of the secret digests is drawn by the engine and handed in.
pub mod check;
pub mod config;
pub mod import;
pub mod k3s_version;
pub mod observed;
pub mod plan;
pub mod render;
