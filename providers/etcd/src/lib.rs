//! etcd provider for k3splan: observes and changes etcd membership over TLS.
//!
//! This crate knows etcd and nothing of plans.
