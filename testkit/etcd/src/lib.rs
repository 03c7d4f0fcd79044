//! k3splan test harness: real etcd clusters with TLS on loopback.
