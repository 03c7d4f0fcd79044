//! Host provider for k3splan: inspects and changes k3s hosts over SSH.
//!
//! This crate knows SSH hosts and nothing of plans.
