//! k3splan: a declarative plan/apply reconciler for k3s HA clusters.
pub mod apply;
pub mod cli;
pub mod config;
pub mod live;
pub mod observed;
pub mod plan;
pub mod render;
pub mod state;
