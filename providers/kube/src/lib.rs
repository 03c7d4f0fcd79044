//! Kubernetes provider for k3splan: nodes, pods, local-path volumes and add-ons.
//!
//! This crate knows the Kubernetes API and nothing of plans.
