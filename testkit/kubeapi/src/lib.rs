//! k3splan test harness: an in-memory Kubernetes API server with real semantics, served over HTTP(S) on loopback.
